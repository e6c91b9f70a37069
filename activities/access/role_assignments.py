"""Azure role assignments of the identity's principal, in every subscription in scope.

discover: ``$filter=principalId eq`` per subscription (at, above -- management groups included --
and below), with the role's name and whether it can grant access (privileged). copy: PUT
``{scope}/providers/Microsoft.Authorization/roleAssignments/{uuid5(move id + source assignment id)}``
with ``principalType: ServicePrincipal`` (no ``PrincipalNotFound`` while Entra replicates) and the
source's condition/conditionVersion/description; ``RoleAssignmentExists`` (409) = done after a
``$filter=principalId eq`` list confirms it. check: the new principal's list has every (scope, role,
condition). remove: DELETE the old assignment (204/404 = already gone). undo: every assignment of
the new principal in those subscriptions (the principal is the move's own).

Example::

    KIND.copy(ctx, {"id": ".../roleAssignments/<guid>", "scope": "/subscriptions/<sub>", ...}).outcome  # "created"
"""

from __future__ import annotations

import fnmatch
import uuid
from typing import Any

from azure.core.exceptions import HttpResponseError
from azure.mgmt.authorization.v2022_04_01.models import RoleAssignmentCreateParameters

from activities._azure import assignment_subscriptions, classify, role_definition, same_id
from activities.access.base import Access, Found, Missing
from shared.azure_clients import AzureClients, subscription_of
from shared.context import ItemResult, PhaseContext
from shared.errors import TransientError

PRIVILEGED_ACTIONS = ("microsoft.authorization/roleassignments/write",)


def assignment_name(move_id: str, source_assignment_id: str) -> str:
    """The copy's deterministic name: uuid5(move id, move id + source assignment id)."""
    return str(
        uuid.uuid5(
            uuid.UUID(move_id) if _is_uuid(move_id) else uuid.NAMESPACE_URL,
            f"{move_id}|{source_assignment_id.lower()}",
        )
    )


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def can_write_role_assignments(actions: list[str], not_actions: list[str]) -> bool:
    """True when ``actions`` grant ``Microsoft.Authorization/roleAssignments/write`` and ``notActions`` don't remove it.

    Owner (``*``), User Access Administrator (``Microsoft.Authorization/*``) and RBAC Administrator
    (``.../roleAssignments/write``) are privileged; Contributor is not (``notActions`` exclude
    ``Microsoft.Authorization/*/Write``).
    """
    for wanted in PRIVILEGED_ACTIONS:
        granted = any(fnmatch.fnmatchcase(wanted, pattern.lower()) for pattern in actions)
        removed = any(fnmatch.fnmatchcase(wanted, pattern.lower()) for pattern in not_actions)
        if granted and not removed:
            return True
    return False


def _definition(clients: AzureClients, sub: str, definition_id: str) -> dict[str, Any]:
    definition = role_definition(clients, sub, definition_id)
    actions: list[str] = []
    not_actions: list[str] = []
    for permission in definition["permissions"]:
        actions += [a.lower() for a in permission["actions"]]
        not_actions += [a.lower() for a in permission["notActions"]]
    return {
        "roleName": definition["roleName"],
        "privileged": can_write_role_assignments(actions, not_actions),
    }


def raw_assignment(ra: Any, sub: str) -> dict[str, Any]:
    """A listed role assignment as JSON (what discovery needs of it; ``sub``: where it was listed)."""
    return {
        "id": str(ra.id),
        "name": str(ra.name),
        "scope": str(ra.scope),
        "roleDefinitionId": str(ra.role_definition_id),
        "principalId": str(ra.principal_id or ""),
        "condition": ra.condition,
        "conditionVersion": ra.condition_version,
        "description": ra.description,
        "sub": sub,
    }


def _assignment_key(scope: str, role: str, condition: Any) -> tuple[str, str, str]:
    return (scope.lower().rstrip("/"), role.rsplit("/", 1)[-1].lower(), str(condition or ""))


class RoleAssignments(Access):
    key = "roleAssignments"
    title = "Azure role assignments"
    copy_kind = "role"
    remove_kind = "unassign"

    def discover(self, ctx: PhaseContext, found: Found) -> list[dict[str, Any]]:
        clients, principal_id = ctx.clients, found.source["principalId"]
        listed = found.assignments
        if listed is None:
            listed = [
                raw_assignment(ra, sub)
                for sub in found.subscriptions
                for ra in clients.authorization(sub).role_assignments.list_for_subscription(
                    filter=f"principalId eq '{principal_id}'"
                )
            ]
        entries: dict[str, dict[str, Any]] = {}
        definitions: dict[str, dict[str, Any]] = {}
        for ra in listed:
            key = str(ra["id"]).lower()
            if key in entries or not same_id(ra["principalId"], principal_id):
                continue
            definition_id = str(ra["roleDefinitionId"])
            if definition_id.lower() not in definitions:
                definitions[definition_id.lower()] = _definition(clients, ra["sub"], definition_id)
            entries[key] = {
                "id": ra["id"],
                "name": ra["name"],
                "scope": ra["scope"],
                "roleDefinitionId": definition_id,
                "roleName": definitions[definition_id.lower()]["roleName"],
                "privileged": definitions[definition_id.lower()]["privileged"],
                "condition": ra["condition"],
                "conditionVersion": ra["conditionVersion"],
                "description": ra["description"],
            }
        return sorted(entries.values(), key=lambda a: str(a["id"]).lower())

    def copy_key(self, ctx: PhaseContext, entry: dict[str, Any]) -> str:
        return f"role-{assignment_name(ctx.move_id, entry['id'])}"

    def copy(self, ctx: PhaseContext, entry: dict[str, Any]) -> ItemResult:
        a = entry
        name = assignment_name(ctx.move_id, a["id"])
        auth = ctx.clients.authorization(subscription_of(a["scope"]) or ctx.target["subscriptionId"])
        params = RoleAssignmentCreateParameters(
            role_definition_id=a["roleDefinitionId"],
            principal_id=ctx.target["principalId"],
            principal_type="ServicePrincipal",
            condition=a.get("condition"),
            condition_version=a.get("conditionVersion"),
            description=a.get("description"),
        )
        try:
            auth.role_assignments.create(a["scope"], name, params)
        except HttpResponseError as exc:
            if exc.status_code == 409 and "RoleAssignmentExists" in str(exc):
                if self._exists(ctx, a):
                    return ItemResult("existed", {"scope": a["scope"]})
                raise TransientError(
                    "RoleAssignmentExists", "exists per ARM but not listed yet", a["id"]
                ) from exc
            raise classify(exc, a["id"]) from exc
        return ItemResult("created", {"name": name, "scope": a["scope"]})

    def _exists(self, ctx: PhaseContext, a: dict[str, Any]) -> bool:
        principal = ctx.target["principalId"]
        auth = ctx.clients.authorization(subscription_of(a["scope"]) or ctx.target["subscriptionId"])
        role_guid = a["roleDefinitionId"].rsplit("/", 1)[-1].lower()
        return any(
            same_id(ra.scope, a["scope"])
            and str(ra.role_definition_id).rsplit("/", 1)[-1].lower() == role_guid
            for ra in auth.role_assignments.list_for_scope(a["scope"], filter=f"principalId eq '{principal}'")
        )

    def check(self, ctx: PhaseContext, entries: list[dict[str, Any]]) -> list[Missing]:
        principal = ctx.target["principalId"]
        have: set[tuple[str, str, str]] = set()
        for sub in assignment_subscriptions(ctx.snapshot):
            for ra in ctx.clients.authorization(sub).role_assignments.list_for_subscription(
                filter=f"principalId eq '{principal}'"
            ):
                if same_id(ra.principal_id, principal):
                    have.add(_assignment_key(str(ra.scope), str(ra.role_definition_id), ra.condition))
        return [
            Missing(f"role {a['roleName']} at {a['scope']}", a["id"])
            for a in entries
            if _assignment_key(a["scope"], a["roleDefinitionId"], a.get("condition")) not in have
        ]

    def remove_key(self, ctx: PhaseContext, entry: dict[str, Any]) -> str:
        return f"unassign-{assignment_name(ctx.move_id, entry['id'])}"

    def remove(self, ctx: PhaseContext, entry: dict[str, Any]) -> ItemResult:
        auth = ctx.clients.authorization(
            subscription_of(entry["scope"]) or ctx.snapshot["identity"]["subscriptionId"]
        )
        try:
            deleted = auth.role_assignments.delete_by_id(entry["id"])
        except HttpResponseError as exc:
            if exc.status_code == 404:
                return ItemResult("absent", {"id": entry["id"]})
            raise classify(exc, entry["id"]) from exc
        return ItemResult("deleted" if deleted is not None else "absent", {"id": entry["id"]})

    def undo(self, ctx: PhaseContext, target: dict[str, Any]) -> int:
        principal, undone = target["principalId"], 0
        for sub in assignment_subscriptions(ctx.snapshot):
            auth = ctx.clients.authorization(sub)
            for ra in auth.role_assignments.list_for_subscription(filter=f"principalId eq '{principal}'"):
                if same_id(ra.principal_id, principal):
                    auth.role_assignments.delete_by_id(str(ra.id))
                    undone += 1
        return undone


KIND = RoleAssignments()
