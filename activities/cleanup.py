"""Phase 6, cleanup (only after verify passed AND the move was committed; the engine enforces it).

Needs: the snapshot. Changes in Azure, one item each, then the identity last:
- detach the old identity from each resource it was attached to (PATCH ``{<old id>: null}``,
  GET + PUT where PATCH is refused), keeping system-assigned and the new identity as they are;
- each kind of access in ``activities/access`` removes the old identity's entries (``remove``): its
  role assignments, group memberships, app role assignments, and the data-plane grants services
  keep themselves (how, and what "already gone" is, in the kind's module);
- finally delete the old identity (its federated credentials go with it; DELETE 204 = already gone).
Idempotency key: the item key; every step checks or tolerates "already done".

Example::

    items(ctx)[-1].kind   # "identity" (runs after all others: data "_final")
"""

from __future__ import annotations

import json
from typing import Any

from azure.core.exceptions import HttpResponseError

from activities import snapshot
from activities._azure import (
    classify,
    get_resource,
    has_identity,
    without_identity,
    write_resource,
)
from activities.access import KINDS, by_remove_kind
from activities.rebind import resource_key
from shared.context import ItemInput, ItemResult, ItemSpec, PhaseContext
from shared.errors import SourceChanged


def items(ctx: PhaseContext) -> list[ItemSpec]:
    reconcile(ctx)
    snap = ctx.snapshot
    specs = [
        ItemSpec("detach", f"detach-{resource_key(a['id'])}", a) for a in snap["attachments"] if a["attached"]
    ]
    specs += [spec for kind in KINDS for spec in kind.remove_items(ctx)]
    specs.append(ItemSpec("identity", "identity", {"id": snap["identity"]["id"], "_final": True}))
    return specs


def reconcile(ctx: PhaseContext) -> None:
    """Nothing is deleted that was not copied: re-read the source's access (every kind the move
    copies, and the resources it is attached to) and compare with the snapshot. Access granted since
    (hours may pass before a commit) raises ``SourceChanged`` with the widened snapshot, and the
    engine runs grant, rebind and verify again before cleanup starts over. An entry whose content
    changed under the same item key (e.g. another app setting naming the identity) is new too: its
    copy item runs again (``redo``)."""
    old, fresh = ctx.snapshot, snapshot.discover(ctx)
    merged = dict(old)
    added: list[str] = []
    redo: list[tuple[str, str]] = []
    for kind in KINDS:
        if not kind.copy_kind:
            continue
        before = {kind.copy_key(ctx, e): e for e in old.get(kind.key) or []}
        entries = list(old.get(kind.key) or [])
        for entry in fresh.get(kind.key) or []:
            key = kind.copy_key(ctx, entry)
            if key not in before:
                entries.append(entry)
                added.append(f"{kind.title} {key}")
            elif _differs(before[key], entry):
                entries[entries.index(before[key])] = entry
                added.append(f"{kind.title} {key} (changed)")
                redo.append((kind.copy_phase, key))
        merged[kind.key] = entries
    known = {str(a["id"]).lower() for a in old.get("attachments") or []}
    new_attachments = [a for a in fresh.get("attachments") or [] if str(a["id"]).lower() not in known]
    if new_attachments:
        merged["attachments"] = [*(old.get("attachments") or []), *new_attachments]
        added += [f"attachment to {a['id']}" for a in new_attachments]
    if added:
        raise SourceChanged(merged, added, redo)


def _differs(old: dict[str, Any], new: dict[str, Any]) -> bool:
    return json.dumps(old, sort_keys=True, default=str) != json.dumps(new, sort_keys=True, default=str)


def run_item(item: ItemInput) -> ItemResult:
    if item.kind == "detach":
        return detach(item.ctx, item.data["id"], item.ctx.snapshot["identity"]["id"])
    if item.kind == "identity":
        return _delete_identity(item.ctx, item.data)
    return by_remove_kind(item.kind).remove(item.ctx, item.data)


def detach(ctx: PhaseContext, resource_id: str, identity_id: str) -> ItemResult:
    """Remove ``identity_id`` from a resource's identity block (shared with discard)."""
    resource = get_resource(ctx.clients, resource_id)
    if resource is None or not has_identity(resource, identity_id):
        return ItemResult("absent", {"resource": resource_id})
    verb = write_resource(ctx.clients, resource_id, resource, [], {}, without_identity(resource, identity_id))
    return ItemResult("updated", {"resource": resource_id, "verb": verb})


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
