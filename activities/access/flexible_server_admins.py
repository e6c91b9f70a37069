"""Microsoft Entra administrators of PostgreSQL flexible servers (and the one of a MySQL flexible server).

PostgreSQL: ``{server}/administrators/{objectId}`` (api 2024-08-01), a child (proxy) resource that
Resource Graph does not index; several administrators coexist, so the new identity can be added
next to the old one. MySQL: a single administrator ``{server}/administrators/ActiveDirectory``
(api 2023-12-30): replacing it before commit would take it from the old identity while it is still
in use, so a MySQL server whose administrator is the identity is only reported
(``MySqlEntraAdmin`` in ``actionsRequired``).

discover: Resource Graph lists the flexible servers in scope; each server's administrators are read
(PostgreSQL: list; MySQL: GET ``ActiveDirectory``) and those naming the principal (objectId / sid)
kept. copy: ``PUT {server}/administrators/{new principalId}`` ``{principalType: ServicePrincipal,
principalName: <new identity name>, tenantId}`` -- asynchronous (202 + ``Azure-AsyncOperation``),
polled to its end; the name is the principal, so a repeat converges. check: GET of the new one.
remove: DELETE the old one (async; 204/404 = gone). undo: DELETE the new one.

Example::

    KIND.copy(ctx, {"server": ".../flexibleServers/pg-payments", "objectId": "<old principal>", ...}).outcome
"""

from __future__ import annotations

from typing import Any

from azure.core.exceptions import HttpResponseError

from activities._azure import classify, same_id
from activities.access.base import NEW_CLIENT_ID, Access, Found, Missing, action, short_key
from shared.context import ItemResult, PhaseContext

PG_API = "2024-08-01"
MYSQL_API = "2023-12-30"
PG_TYPE = "microsoft.dbforpostgresql/flexibleservers"
MYSQL_TYPE = "microsoft.dbformysql/flexibleservers"


def _name(resource_id: str) -> str:
    return resource_id.rstrip("/").rsplit("/", 1)[-1]


def _get(ctx: PhaseContext, path: str, api: str) -> dict[str, Any] | None:
    try:
        _, body = ctx.clients.arm("GET", path, api)
    except HttpResponseError as exc:
        if exc.status_code == 404:
            return None
        raise classify(exc, path) from exc
    return dict(body or {})


class FlexibleServerAdmins(Access):
    key = "flexibleServerAdmins"
    title = "PostgreSQL flexible-server Entra administrators"
    copy_kind = "pgadmin"
    remove_kind = "unpgadmin"
    candidate_types = (PG_TYPE, MYSQL_TYPE)

    def discover(self, ctx: PhaseContext, found: Found) -> list[dict[str, Any]]:
        source, entries = found.source, []
        for row in found.rows_of(PG_TYPE, MYSQL_TYPE):
            server = str(row["id"])
            found.count("flexibleServersRead")
            if str(row.get("type", "")).lower() == MYSQL_TYPE:
                admin = _get(ctx, f"{server}/administrators/ActiveDirectory", MYSQL_API) or {}
                sid = (admin.get("properties") or {}).get("sid")
                if same_id(sid, source["principalId"]) or same_id(sid, source["clientId"]):
                    entries.append({"server": server, "engine": "MySQL", "objectId": sid, "reportOnly": True})
                continue
            listed = _get(ctx, f"{server}/administrators", PG_API) or {}
            for admin in listed.get("value") or []:
                props = admin.get("properties") or {}
                object_id = props.get("objectId") or _name(str(admin.get("id", "")))
                if same_id(object_id, source["principalId"]):
                    entries.append(
                        {
                            "server": server,
                            "engine": "PostgreSQL",
                            "objectId": str(object_id),
                            "principalName": props.get("principalName"),
                            "tenantId": props.get("tenantId") or source.get("tenantId"),
                        }
                    )
        return entries

    def _copied(self, ctx: PhaseContext) -> list[dict[str, Any]]:
        return [e for e in ctx.snapshot.get(self.key) or [] if not e.get("reportOnly")]

    def copy_items(self, ctx: PhaseContext) -> list[Any]:
        return [s for s in super().copy_items(ctx) if not s.data.get("reportOnly")]

    def remove_items(self, ctx: PhaseContext) -> list[Any]:
        return [s for s in super().remove_items(ctx) if not s.data.get("reportOnly")]

    def copy_key(self, ctx: PhaseContext, entry: dict[str, Any]) -> str:
        return f"pgadmin-{short_key(entry['server'])}"

    def copy(self, ctx: PhaseContext, entry: dict[str, Any]) -> ItemResult:
        target = ctx.target
        path = f"{entry['server']}/administrators/{target['principalId']}"
        body = {
            "properties": {
                "principalType": "ServicePrincipal",
                "principalName": target["name"],
                "tenantId": entry["tenantId"],
            }
        }
        try:
            ctx.clients.arm("PUT", path, PG_API, body, wait=True)
        except HttpResponseError as exc:
            raise classify(exc, entry["server"]) from exc
        return ItemResult("created", {"id": path})

    def check(self, ctx: PhaseContext, entries: list[dict[str, Any]]) -> list[Missing]:
        return [
            Missing(
                f"PostgreSQL {_name(e['server'])}: Entra administrator {ctx.target['name']} (the new principal)",
                e["server"],
            )
            for e in entries
            if not e.get("reportOnly")
            and _get(ctx, f"{e['server']}/administrators/{ctx.target['principalId']}", PG_API) is None
        ]

    def remove_key(self, ctx: PhaseContext, entry: dict[str, Any]) -> str:
        return f"unpgadmin-{short_key(entry['server'])}"

    def _delete(self, ctx: PhaseContext, server: str, principal_id: str) -> bool:
        path = f"{server}/administrators/{principal_id}"
        try:
            status, _ = ctx.clients.arm("DELETE", path, PG_API, wait=True)
        except HttpResponseError as exc:
            if exc.status_code == 404:
                return False
            raise classify(exc, path) from exc
        return status != 204

    def remove(self, ctx: PhaseContext, entry: dict[str, Any]) -> ItemResult:
        deleted = self._delete(ctx, entry["server"], ctx.snapshot["identity"]["principalId"])
        return ItemResult("deleted" if deleted else "absent", {"server": entry["server"]})

    def undo(self, ctx: PhaseContext, target: dict[str, Any]) -> int:
        return sum(self._delete(ctx, e["server"], target["principalId"]) for e in self._copied(ctx))

    def actions(self, ctx: PhaseContext, entries: list[dict[str, Any]], found: Found) -> list[dict[str, Any]]:
        return [
            action(
                "MySqlEntraAdmin",
                e["server"],
                f"MySQL flexible server {_name(e['server'])} has one Entra administrator, the old identity: "
                f"after commit set it to the new identity (sid {NEW_CLIENT_ID})",
            )
            for e in entries
            if e.get("reportOnly")
        ]


KIND = FlexibleServerAdmins()
