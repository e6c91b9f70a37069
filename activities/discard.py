"""Compensation, discard: undo what the move created; the source is left exactly as it was.

Needs: the snapshot and the target (it may not have been created). Refused by the engine once
cleanup has begun. Changes in Azure, in this order:
1. each resource (or its ``resourceMap`` counterpart): references rewritten to the new identity go
   back to the old id/clientId, and the new identity is detached (one PATCH, GET + PUT fallback);
2. each kind of access in ``activities/access`` undoes what the move added for the new principal
   (``undo``): its role assignments (the principal is the move's own), group memberships, app role
   assignments, and the data-plane grants services keep themselves;
3. the new identity is deleted -- only if its ``idmove-move`` tag names this move.
Idempotency: each step checks the live state first; running it again finds nothing to do.

Example::

    run(ctx).undone   # {"resources": 4, "roleAssignments": 5, "groups": 2, "appRoles": 1, "identity": 1}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from azure.core.exceptions import HttpResponseError

from activities._azure import (
    classify,
    get_resource,
    has_identity,
    identity_refs,
    without_identity,
    write_resource,
)
from activities.access import KINDS
from activities.rebind import counterpart
from shared.azure_clients import GraphError
from shared.context import PhaseContext


@dataclass
class DiscardResult:
    undone: dict[str, int]


def run(ctx: PhaseContext) -> DiscardResult:
    undone = {"resources": 0, "roleAssignments": 0, "groups": 0, "appRoles": 0, "identity": 0}
    target = _target(ctx)
    if target is None:
        return DiscardResult(undone)
    try:
        # settings first: an app must not be left asking for the new clientId once it is detached
        for kind in [k for k in KINDS if k.copy_phase == "rebind"]:
            undone[kind.key] = kind.undo(ctx, target)
        for attachment in ctx.snapshot.get("attachments", []):
            undone["resources"] += _restore(ctx, counterpart(ctx, attachment["id"]), target)
            ctx.crashpoint("discard:after-resource")
        for kind in [k for k in KINDS if k.copy_phase != "rebind"]:
            undone[kind.key] = undone.get(kind.key, 0) + kind.undo(ctx, target)
        ctx.clients.msi(target["subscriptionId"]).user_assigned_identities.delete(
            target["resourceGroup"], target["name"]
        )
        undone["identity"] = 1
    except (HttpResponseError, GraphError) as exc:
        raise classify(exc, target["id"]) from exc
    return DiscardResult(undone)


def _target(ctx: PhaseContext) -> dict[str, Any] | None:
    """The identity this move created, if it exists (create may have crashed after its PUT)."""
    planned = ctx.target or ctx.snapshot.get("target")
    if not planned or not planned.get("name"):
        return None
    msi = ctx.clients.msi(planned["subscriptionId"]).user_assigned_identities
    try:
        identity = msi.get(planned["resourceGroup"], planned["name"])
    except HttpResponseError as exc:
        if exc.status_code == 404:
            return None
        raise classify(exc, planned["id"]) from exc
    if (identity.tags or {}).get("idmove-move") != ctx.move_id:
        return None  # not ours: never touch it
    return {
        **planned,
        "id": str(identity.id),
        "principalId": str(identity.principal_id),
        "clientId": str(identity.client_id),
    }


def _restore(ctx: PhaseContext, resource_id: str, target: dict[str, Any]) -> int:
    resource = get_resource(ctx.clients, resource_id)
    if resource is None:
        return 0
    refs = identity_refs(resource, target)
    attached = has_identity(resource, target["id"])
    if not refs and not attached:
        return 0
    old = ctx.snapshot["identity"]
    block = without_identity(resource, target["id"]) if attached else None
    write_resource(
        ctx.clients, resource_id, resource, refs, {"id": old["id"], "clientId": old["clientId"]}, block
    )
    return 1
