"""Phase 4, rebind: attach the new identity wherever the old one is used. One item per resource.

Needs: the snapshot's attachments and the created target. Changes in Azure: per resource (or its
counterpart in ``resourceMap``) one PATCH ``{"identity": {"type": <system-assigned kept>,
"userAssignedIdentities": {<new id>: {}}}}`` plus the property references found by snapshot
(old id -> new id, old clientId -> new clientId) in the same write; where the type refuses PATCH
(405) or a reference sits inside a list, GET + PUT. The old identity stays attached until cleanup.
References move here, not at cleanup: the old identity keeps working meanwhile, and verify can then
check that nothing names the old one. Idempotency key: the resource id -- a resource that already
has the new identity and no old reference is left alone (no write).

Example::

    run_item(ItemInput(ctx, "attachment", key, attachment)).outcome   # "updated" | "unchanged"
"""

from __future__ import annotations

import hashlib

from activities._azure import (
    get_resource,
    has_identity,
    identity_refs,
    identity_type,
    user_identities,
    write_resource,
)
from shared.context import ItemInput, ItemResult, ItemSpec, PhaseContext
from shared.errors import PermanentError


def resource_key(resource_id: str) -> str:
    return hashlib.sha1(resource_id.lower().encode()).hexdigest()[:20]


def counterpart(ctx: PhaseContext, resource_id: str) -> str:
    mapping = {k.lower(): v for k, v in ctx.request.resource_map.items()}
    return mapping.get(resource_id.lower(), resource_id)


def items(ctx: PhaseContext) -> list[ItemSpec]:
    return [ItemSpec("attachment", f"res-{resource_key(a['id'])}", a) for a in ctx.snapshot["attachments"]]


def run_item(item: ItemInput) -> ItemResult:
    ctx, attachment = item.ctx, item.data
    resource_id = counterpart(ctx, attachment["id"])
    old, new = ctx.snapshot["identity"], ctx.target
    resource = get_resource(ctx.clients, resource_id)
    if resource is None:
        raise PermanentError("ResourceNotFound", f"{resource_id} no longer exists", resource_id)
    refs = identity_refs(resource, old)
    attach = attachment["attached"] and not has_identity(resource, new["id"])
    if not attach and not refs:
        return ItemResult("unchanged", {"resource": resource_id})
    block = None
    if attach:  # add the new identity; the old one stays until cleanup
        kind = identity_type(resource, keep_user_assigned=True)
        entries = {key: {} for key in user_identities(resource)} | {new["id"]: {}}
        block = (
            {"type": kind, "userAssignedIdentities": {new["id"]: {}}},
            {"type": kind, "userAssignedIdentities": entries},
        )
    values = {"id": new["id"], "clientId": new["clientId"]}
    verb = write_resource(ctx.clients, resource_id, resource, refs, values, block)
    return ItemResult("updated", {"resource": resource_id, "attached": attach, "refs": refs, "verb": verb})
