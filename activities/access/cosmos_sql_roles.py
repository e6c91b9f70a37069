"""Cosmos DB data-plane role assignments (``databaseAccounts/{a}/sqlRoleAssignments/{guid}``).

Cosmos DB's data plane has its own RBAC: ``{roleDefinitionId, scope, principalId}`` under the
account, invisible to ``Microsoft.Authorization`` lists and not indexed by Resource Graph.

discover: Resource Graph lists the Cosmos DB accounts in the subscriptions in scope; each account's
``sqlRoleAssignments`` are listed (api 2024-11-15) and those naming the principal kept. The plan
says how many accounts were read (``plan.discovery.cosmosAccountsRead``): this is the costly part,
one list per account whether or not the identity has anything there. copy: ``PUT
{account}/sqlRoleAssignments/{uuid5(move id + source assignment id)}`` for the new principal; the
write is asynchronous (202 + ``Azure-AsyncOperation``), polled to its end; the deterministic name
makes a repeat converge. check: the account's list holds (role, scope) for the new principal.
remove: DELETE the source assignment (async; 204/404 = gone). undo: every assignment of the new
principal on those accounts.

Example::

    KIND.copy(ctx, {"id": ".../sqlRoleAssignments/<guid>", "account": ".../databaseAccounts/cosmos-payments",
                    "roleDefinitionId": ".../sqlRoleDefinitions/00000000-0000-0000-0000-000000000002",
                    "scope": ".../databaseAccounts/cosmos-payments/dbs/orders"}).outcome  # "created"
"""

from __future__ import annotations

from typing import Any

from azure.core.exceptions import HttpResponseError

from activities._azure import classify, same_id
from activities.access.base import Access, Found, Missing
from activities.access.role_assignments import assignment_name
from shared.context import ItemResult, PhaseContext

API = "2024-11-15"
ACCOUNT_TYPE = "microsoft.documentdb/databaseaccounts"


def _list(ctx: PhaseContext, account: str) -> list[dict[str, Any]] | None:
    """The account's sqlRoleAssignments; ``None`` when the account is gone."""
    try:
        _, body = ctx.clients.arm("GET", f"{account}/sqlRoleAssignments", API)
    except HttpResponseError as exc:
        if exc.status_code == 404:
            return None
        raise classify(exc, account) from exc
    return list((body or {}).get("value") or [])


def _key(role: Any, scope: Any) -> tuple[str, str]:
    return (str(role).rsplit("/", 1)[-1].lower(), str(scope).lower().rstrip("/"))


def _short(value: str) -> str:
    return value.rsplit("/", 1)[-1]


class CosmosSqlRoles(Access):
    key = "cosmosRoleAssignments"
    title = "Cosmos DB data-plane role assignments"
    copy_kind = "cosmosrole"
    remove_kind = "uncosmosrole"
    candidate_types = (ACCOUNT_TYPE,)

    def discover(self, ctx: PhaseContext, found: Found) -> list[dict[str, Any]]:
        entries = []
        found.count("cosmosAccountsRead", 0)
        for row in found.rows_of(ACCOUNT_TYPE):
            account = str(row["id"])
            listed = _list(ctx, account)
            found.count("cosmosAccountsRead")
            for a in listed or []:
                props = a.get("properties") or {}
                if same_id(props.get("principalId"), found.source["principalId"]):
                    entries.append(
                        {
                            "id": str(a["id"]),
                            "account": account,
                            "roleDefinitionId": str(props.get("roleDefinitionId")),
                            "scope": str(props.get("scope")),
                        }
                    )
        return entries

    def copy_key(self, ctx: PhaseContext, entry: dict[str, Any]) -> str:
        return f"cosmosrole-{assignment_name(ctx.move_id, entry['id'])}"

    def copy(self, ctx: PhaseContext, entry: dict[str, Any]) -> ItemResult:
        name = assignment_name(ctx.move_id, entry["id"])
        body = {
            "properties": {
                "roleDefinitionId": entry["roleDefinitionId"],
                "scope": entry["scope"],
                "principalId": ctx.target["principalId"],
            }
        }
        path = f"{entry['account']}/sqlRoleAssignments/{name}"
        try:
            ctx.clients.arm("PUT", path, API, body, wait=True)
        except HttpResponseError as exc:
            raise classify(exc, entry["id"]) from exc
        return ItemResult("created", {"id": path})

    def check(self, ctx: PhaseContext, entries: list[dict[str, Any]]) -> list[Missing]:
        missing = []
        by_account: dict[str, list[dict[str, Any]]] = {}
        for entry in entries:
            by_account.setdefault(entry["account"].lower(), []).append(entry)
        for group in by_account.values():
            listed = _list(ctx, group[0]["account"]) or []
            have = {
                _key(
                    (a.get("properties") or {}).get("roleDefinitionId"),
                    (a.get("properties") or {}).get("scope"),
                )
                for a in listed
                if same_id((a.get("properties") or {}).get("principalId"), ctx.target["principalId"])
            }
            for entry in group:
                if _key(entry["roleDefinitionId"], entry["scope"]) not in have:
                    missing.append(
                        Missing(
                            f"Cosmos DB {_short(entry['account'])}: data role {_short(entry['roleDefinitionId'])} "
                            f"at {entry['scope']} for the new principal",
                            entry["id"],
                        )
                    )
        return missing

    def remove_key(self, ctx: PhaseContext, entry: dict[str, Any]) -> str:
        return f"uncosmosrole-{assignment_name(ctx.move_id, entry['id'])}"

    def _delete(self, ctx: PhaseContext, assignment_id: str) -> bool:
        try:
            status, _ = ctx.clients.arm("DELETE", assignment_id, API, wait=True)
        except HttpResponseError as exc:
            if exc.status_code == 404:
                return False
            raise classify(exc, assignment_id) from exc
        return status != 204

    def remove(self, ctx: PhaseContext, entry: dict[str, Any]) -> ItemResult:
        deleted = self._delete(ctx, entry["id"])
        return ItemResult("deleted" if deleted else "absent", {"id": entry["id"]})

    def undo(self, ctx: PhaseContext, target: dict[str, Any]) -> int:
        undone = 0
        accounts = {e["account"].lower(): e["account"] for e in ctx.snapshot.get(self.key) or []}
        for account in accounts.values():
            for a in _list(ctx, account) or []:
                if same_id((a.get("properties") or {}).get("principalId"), target["principalId"]):
                    undone += self._delete(ctx, str(a["id"]))
        return undone


KIND = CosmosSqlRoles()
