"""Phase 4, rebind: attach the new identity wherever the old one is used. One item per resource.

Needs: the snapshot's attachments and the created target. Changes in Azure: per resource (or its
counterpart in ``resourceMap``) one PATCH ``{"identity": {"type": <system-assigned kept>,
"userAssignedIdentities": {<new id>: {}}}}`` plus the property references found by snapshot
(old id -> new id, old clientId -> new clientId) in the same write; where the type refuses PATCH
(405) or a reference sits inside a list, GET + PUT. The old identity stays attached until cleanup.
References move here, not at cleanup: the old identity keeps working meanwhile, and verify can then
check that nothing names the old one. Idempotency key: the resource id -- a resource that already
has the new identity and no old reference is left alone (no write).

Settings that name the identity (App Service ``config/appsettings``, ``config/connectionstrings``;
``activities/access/app_settings.py``) are rewritten here too, each right after its site's
attachment in the same serial batch: the app must not ask for the new clientId before the new
identity is attached.

Example::

    run_item(ItemInput(ctx, "attachment", key, attachment)).outcome   # "updated" | "unchanged"
"""

from __future__ import annotations

import hashlib

from activities._azure import (
    counterpart_of,
    get_resource,
    has_identity,
    identity_refs,
    identity_type,
    user_identities,
    write_resource,
)
from activities.access import KINDS, by_copy_kind
from activities.access.app_settings import serial_for
from shared.context import ItemInput, ItemResult, ItemSpec, PhaseContext
from shared.errors import PermanentError


def resource_key(resource_id: str) -> str:
    return hashlib.sha1(resource_id.lower().encode()).hexdigest()[:20]


def counterpart(ctx: PhaseContext, resource_id: str) -> str:
    return counterpart_of(ctx.request.resource_map, resource_id)


def items(ctx: PhaseContext) -> list[ItemSpec]:
    """One item per resource, then the copies of kinds of access whose ``copy_phase`` is rebind (settings
    naming the identity), each in one serial batch with its resource's attachment, which runs first."""
    copies = [spec for kind in KINDS if kind.copy_phase == "rebind" for spec in kind.copy_items(ctx)]
    serials = {spec.serial for spec in copies}
    specs = []
    for a in ctx.snapshot["attachments"]:
        serial = serial_for(a["id"])
        specs.append(
            ItemSpec("attachment", f"res-{resource_key(a['id'])}", a, serial if serial in serials else "")
        )
    return specs + copies


def run_item(item: ItemInput) -> ItemResult:
    if item.kind != "attachment":
        return by_copy_kind(item.kind).copy(item.ctx, item.data)
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
