"""App role assignments (API permissions granted straight to the service principal; Microsoft Graph).

discover: ``GET /servicePrincipals/{id}/appRoleAssignments``. copy: ``POST
/servicePrincipals/{new}/appRoleAssignments`` ``{principalId, resourceId, appRoleId}`` (a duplicate =
done after the list confirms it). check: the new principal's list holds each (resourceId, appRoleId).
remove: ``DELETE /servicePrincipals/{old}/appRoleAssignments/{id}`` (404 = done). undo: every app role
assignment of the new principal.

Example::

    KIND.copy(ctx, {"id": "...", "resourceId": "<graph sp>", "appRoleId": "df021288-..."}).outcome  # "created"
"""

from __future__ import annotations

from typing import Any

from activities._azure import classify, same_id
from activities.access.base import Access, Found, Missing
from shared.azure_clients import GraphError
from shared.context import ItemResult, PhaseContext


def _holds(granted: list[Any], a: dict[str, Any]) -> bool:
    return any(
        same_id(e.get("resourceId"), a["resourceId"]) and same_id(e.get("appRoleId"), a["appRoleId"])
        for e in granted
    )


class AppRoleAssignments(Access):
    key = "appRoles"
    title = "App role assignments (Graph)"
    copy_kind = "approle"
    remove_kind = "unapprole"

    def discover(self, ctx: PhaseContext, found: Found) -> list[dict[str, Any]]:
        return [
            {
                "id": a["id"],
                "resourceId": a["resourceId"],
                "appRoleId": a["appRoleId"],
                "resourceDisplayName": a.get("resourceDisplayName"),
            }
            for a in ctx.clients.graph.list(
                f"/servicePrincipals/{found.source['principalId']}/appRoleAssignments"
            )
        ]

    def copy_key(self, ctx: PhaseContext, entry: dict[str, Any]) -> str:
        return f"approle-{entry['id']}"

    def copy(self, ctx: PhaseContext, entry: dict[str, Any]) -> ItemResult:
        principal, graph = ctx.target["principalId"], ctx.clients.graph
        body = {"principalId": principal, "resourceId": entry["resourceId"], "appRoleId": entry["appRoleId"]}
        try:
            created = graph.post(f"/servicePrincipals/{principal}/appRoleAssignments", body)
        except GraphError as exc:
            if exc.status in (400, 409) and self._exists(ctx, entry):
                return ItemResult(
                    "existed", {"resourceId": entry["resourceId"], "appRoleId": entry["appRoleId"]}
                )
            raise classify(exc, entry["id"]) from exc
        return ItemResult("created", {"id": (created or {}).get("id")})

    def _exists(self, ctx: PhaseContext, entry: dict[str, Any]) -> bool:
        try:
            granted = ctx.clients.graph.list(
                f"/servicePrincipals/{ctx.target['principalId']}/appRoleAssignments"
            )
        except GraphError:
            return False
        return _holds(granted, entry)

    def check(self, ctx: PhaseContext, entries: list[dict[str, Any]]) -> list[Missing]:
        granted = ctx.clients.graph.list(f"/servicePrincipals/{ctx.target['principalId']}/appRoleAssignments")
        return [
            Missing(f"app role {a['appRoleId']} on {a['resourceId']}", a["id"])
            for a in entries
            if not _holds(granted, a)
        ]

    def remove_key(self, ctx: PhaseContext, entry: dict[str, Any]) -> str:
        return f"unapprole-{entry['id']}"

    def remove(self, ctx: PhaseContext, entry: dict[str, Any]) -> ItemResult:
        principal = ctx.snapshot["identity"]["principalId"]
        try:
            ctx.clients.graph.delete(f"/servicePrincipals/{principal}/appRoleAssignments/{entry['id']}")
        except GraphError as exc:
            if exc.status == 404:
                return ItemResult("absent", {"id": entry["id"]})
            raise classify(exc, entry["id"]) from exc
        return ItemResult("deleted", {"id": entry["id"]})

    def undo(self, ctx: PhaseContext, target: dict[str, Any]) -> int:
        graph, principal, undone = ctx.clients.graph, target["principalId"], 0
        for grant in graph.list(f"/servicePrincipals/{principal}/appRoleAssignments"):
            graph.delete(f"/servicePrincipals/{principal}/appRoleAssignments/{grant['id']}")
            undone += 1
        return undone


KIND = AppRoleAssignments()
