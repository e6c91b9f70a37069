"""Microsoft Entra group memberships of the identity's service principal (Microsoft Graph).

discover: ``GET /servicePrincipals/{id}/memberOf`` (groups only). copy: ``POST /groups/{id}/members/$ref``
("already exist" 400 = done; a 404 for the fresh service principal is transient). check: the new
principal's ``memberOf``. remove: ``DELETE /groups/{gid}/members/{old principal}/$ref`` (404 = done;
deleting the identity would remove it anyway -- doing it makes each step visible). undo: every
membership of the new principal.

Example::

    KIND.copy(ctx, {"id": "<group id>", "displayName": "sg-payments-readers"}).outcome  # "created" | "existed"
"""

from __future__ import annotations

from typing import Any

from activities._azure import classify
from activities.access.base import Access, Found, Missing
from shared.azure_clients import GraphError
from shared.context import ItemResult, PhaseContext


class GroupMemberships(Access):
    key = "groups"
    title = "Entra group memberships"
    copy_kind = "group"
    remove_kind = "ungroup"

    def discover(self, ctx: PhaseContext, found: Found) -> list[dict[str, Any]]:
        return [
            {"id": g["id"], "displayName": g.get("displayName")}
            for g in ctx.clients.graph.list(f"/servicePrincipals/{found.source['principalId']}/memberOf")
            if str(g.get("@odata.type", "#microsoft.graph.group")).endswith("group")
        ]

    def copy_key(self, ctx: PhaseContext, entry: dict[str, Any]) -> str:
        return f"group-{entry['id']}"

    def copy(self, ctx: PhaseContext, entry: dict[str, Any]) -> ItemResult:
        principal, graph = ctx.target["principalId"], ctx.clients.graph
        try:
            graph.post(
                f"/groups/{entry['id']}/members/$ref",
                {"@odata.id": f"{graph.endpoint}/directoryObjects/{principal}"},
            )
        except GraphError as exc:
            if exc.status == 400 and "already exist" in exc.message.lower():
                return ItemResult("existed", {"group": entry["id"]})
            raise classify(exc, entry["id"]) from exc
        return ItemResult("created", {"group": entry["id"]})

    def check(self, ctx: PhaseContext, entries: list[dict[str, Any]]) -> list[Missing]:
        member_of = {
            g["id"].lower()
            for g in ctx.clients.graph.list(f"/servicePrincipals/{ctx.target['principalId']}/memberOf")
        }
        return [
            Missing(f"membership of group {g.get('displayName') or g['id']}", g["id"])
            for g in entries
            if g["id"].lower() not in member_of
        ]

    def remove_key(self, ctx: PhaseContext, entry: dict[str, Any]) -> str:
        return f"ungroup-{entry['id']}"

    def remove(self, ctx: PhaseContext, entry: dict[str, Any]) -> ItemResult:
        principal = ctx.snapshot["identity"]["principalId"]
        try:
            ctx.clients.graph.delete(f"/groups/{entry['id']}/members/{principal}/$ref")
        except GraphError as exc:
            if exc.status == 404:
                return ItemResult("absent", {"group": entry["id"]})
            raise classify(exc, entry["id"]) from exc
        return ItemResult("deleted", {"group": entry["id"]})

    def undo(self, ctx: PhaseContext, target: dict[str, Any]) -> int:
        graph, principal, undone = ctx.clients.graph, target["principalId"], 0
        for group in graph.list(f"/servicePrincipals/{principal}/memberOf"):
            graph.delete(f"/groups/{group['id']}/members/{principal}/$ref")
            undone += 1
        return undone


KIND = GroupMemberships()
