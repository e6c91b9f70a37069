"""Phase 6, cleanup (only after verify passed AND the move was committed; the engine enforces it).

Needs: the snapshot. Changes in Azure, one item each, then the identity last:
- detach the old identity from each resource it was attached to (PATCH ``{<old id>: null}``,
  GET + PUT where PATCH is refused), keeping system-assigned and the new identity as they are;
- delete the old identity's role assignments recorded in the snapshot (DELETE; 204 = already gone);
- remove its group memberships and app role assignments explicitly (deleting the identity would
  remove its service principal anyway; doing it makes the record complete and each step visible);
- finally delete the old identity (its federated credentials go with it; DELETE 204 = already gone).
Idempotency key: the item key; every step checks or tolerates "already done".

Example::

    items(ctx)[-1].kind   # "identity" (runs after all others: data "_final")
"""

from __future__ import annotations

from typing import Any

from azure.core.exceptions import HttpResponseError

from activities._azure import (
    classify,
    get_resource,
    has_identity,
    without_identity,
    write_resource,
)
from activities.grant import assignment_name
from activities.rebind import resource_key
from shared.azure_clients import GraphError, subscription_of
from shared.context import ItemInput, ItemResult, ItemSpec, PhaseContext


def items(ctx: PhaseContext) -> list[ItemSpec]:
    snap = ctx.snapshot
    specs = [
        ItemSpec("detach", f"detach-{resource_key(a['id'])}", a) for a in snap["attachments"] if a["attached"]
    ]
    specs += [
        ItemSpec("unassign", f"unassign-{assignment_name(ctx.move_id, a['id'])}", a)
        for a in snap["roleAssignments"]
    ]
    specs += [ItemSpec("ungroup", f"ungroup-{g['id']}", g) for g in snap["groups"]]
    specs += [ItemSpec("unapprole", f"unapprole-{a['id']}", a) for a in snap["appRoles"]]
    specs.append(ItemSpec("identity", "identity", {"id": snap["identity"]["id"], "_final": True}))
    return specs


def run_item(item: ItemInput) -> ItemResult:
    handlers = {
        "detach": _detach,
        "unassign": _unassign,
        "ungroup": _ungroup,
        "unapprole": _unapprole,
        "identity": _delete_identity,
    }
    return handlers[item.kind](item.ctx, item.data)


def detach(ctx: PhaseContext, resource_id: str, identity_id: str) -> ItemResult:
    """Remove ``identity_id`` from a resource's identity block (shared with discard)."""
    resource = get_resource(ctx.clients, resource_id)
    if resource is None or not has_identity(resource, identity_id):
        return ItemResult("absent", {"resource": resource_id})
    verb = write_resource(ctx.clients, resource_id, resource, [], {}, without_identity(resource, identity_id))
    return ItemResult("updated", {"resource": resource_id, "verb": verb})


def _detach(ctx: PhaseContext, a: dict[str, Any]) -> ItemResult:
    return detach(ctx, a["id"], ctx.snapshot["identity"]["id"])


def _unassign(ctx: PhaseContext, a: dict[str, Any]) -> ItemResult:
    auth = ctx.clients.authorization(
        subscription_of(a["scope"]) or ctx.snapshot["identity"]["subscriptionId"]
    )
    try:
        deleted = auth.role_assignments.delete_by_id(a["id"])
    except HttpResponseError as exc:
        if exc.status_code == 404:
            return ItemResult("absent", {"id": a["id"]})
        raise classify(exc, a["id"]) from exc
    return ItemResult("deleted" if deleted is not None else "absent", {"id": a["id"]})


def _ungroup(ctx: PhaseContext, g: dict[str, Any]) -> ItemResult:
    principal = ctx.snapshot["identity"]["principalId"]
    try:
        ctx.clients.graph.delete(f"/groups/{g['id']}/members/{principal}/$ref")
    except GraphError as exc:
        if exc.status == 404:
            return ItemResult("absent", {"group": g["id"]})
        raise classify(exc, g["id"]) from exc
    return ItemResult("deleted", {"group": g["id"]})


def _unapprole(ctx: PhaseContext, a: dict[str, Any]) -> ItemResult:
    principal = ctx.snapshot["identity"]["principalId"]
    try:
        ctx.clients.graph.delete(f"/servicePrincipals/{principal}/appRoleAssignments/{a['id']}")
    except GraphError as exc:
        if exc.status == 404:
            return ItemResult("absent", {"id": a["id"]})
        raise classify(exc, a["id"]) from exc
    return ItemResult("deleted", {"id": a["id"]})


def _delete_identity(ctx: PhaseContext, data: dict[str, Any]) -> ItemResult:
    source = ctx.snapshot["identity"]
    try:
        ctx.clients.msi(source["subscriptionId"]).user_assigned_identities.delete(
            source["resourceGroup"], source["name"]
        )
    except HttpResponseError as exc:
        if exc.status_code == 404:
            return ItemResult("absent", {"id": source["id"]})
        raise classify(exc, source["id"]) from exc
    return ItemResult("deleted", {"id": source["id"]})
