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
from activities.access.base import resource_serial
from activities.rebind import resource_key
from shared.context import ItemInput, ItemResult, ItemSpec, PhaseContext
from shared.errors import PermanentError, SourceChanged


def items(ctx: PhaseContext) -> list[ItemSpec]:
    reconcile(ctx)
    snap = ctx.snapshot
    specs = [
        ItemSpec("detach", f"detach-{resource_key(a['id'])}", a, serial=resource_serial(a["id"]))
        for a in snap["attachments"]
        if a["attached"]
    ]
    specs += [spec for kind in KINDS for spec in kind.remove_items(ctx)]
    specs.append(ItemSpec("identity", "identity", {"id": snap["identity"]["id"], "_final": True}))
    return specs


# plan rules that access granted after the snapshot must pass too before it is copied
RECHECKED_RULES = ("PrivilegedRole", "SubscriptionNotAllowed", "CrossRegionAttachment", "TooManyCredentials")


def reconcile(ctx: PhaseContext) -> None:
    """Nothing is deleted that was not copied: re-read the source's access (every kind, the
    resources it is attached to or referenced by, the steps a person must take) and compare with the
    snapshot. What was granted since (hours may pass before a commit) raises ``SourceChanged`` with
    the widened snapshot, and the engine runs grant, rebind and verify again before cleanup starts
    over; new ``actionsRequired`` send the move back to a person's commit. An entry whose content
    changed under the same item key (another app setting naming the identity, a resource that now
    has the identity attached or names it in a property) runs its copy again (``redo``). Added
    access the plan's rules refuse (a privileged role without ``allowPrivilegedRoles``, a
    subscription outside the allow-list, ...) fails the move before anything is written or deleted.
    A source identity already gone (deleted by hand, or by this cleanup's last item) leaves nothing
    to protect."""
    old = ctx.snapshot
    try:
        result = snapshot.discover(ctx)
    except PermanentError as exc:
        if exc.code == "IdentityNotFound":
            return
        raise
    fresh = result.snapshot
    merged = dict(old)
    added: list[str] = []
    redo: list[tuple[str, str]] = []
    for kind in KINDS:
        key_of = kind.copy_key if kind.copy_kind else _report_key
        before = {key_of(ctx, e): e for e in old.get(kind.key) or []}
        entries = list(old.get(kind.key) or [])
        for entry in fresh.get(kind.key) or []:
            key = key_of(ctx, entry)
            if key not in before:
                entries.append(entry)
                added.append(f"{kind.title} {key}")
            elif _differs(before[key], entry) and kind.copy_kind:
                entries[entries.index(before[key])] = entry
                added.append(f"{kind.title} {key} (changed)")
                redo.append((kind.copy_phase, key))
        merged[kind.key] = entries
    merged["attachments"] = _attachments(old, fresh, added, redo)
    known = {(a["code"], a.get("target")) for a in ctx.plan.get("actionsRequired") or []}
    actions = [
        a for a in result.plan.get("actionsRequired") or [] if (a["code"], a.get("target")) not in known
    ]
    added += [f"a step a person must take: {a['code']} {a.get('target')}" for a in actions]
    if not added:
        return
    stored = {(b["code"], b.get("target")) for b in ctx.plan.get("blocking") or []}
    refused = [
        b
        for b in result.plan.get("blocking") or []
        if b["code"] in RECHECKED_RULES and (b["code"], b.get("target")) not in stored
    ]
    if refused:
        raise PermanentError(
            "PlanBlocked",
            f"access granted to the source after the snapshot cannot be copied: {refused[0]['message']}"
            f" ({len(refused)} blocker(s)); nothing was deleted",
            refused[0].get("target"),
        )
    raise SourceChanged(merged, added, redo, actions)


def _attachments(
    old: dict[str, Any], fresh: dict[str, Any], added: list[str], redo: list[tuple[str, str]]
) -> list[dict[str, Any]]:
    """The snapshot's attachments with what changed since: a new resource, a resource that now has
    the old identity attached (it had only a reference), or one with a reference it did not have
    (rebind rewrites the references it knew of, so a fresh one is new)."""
    merged = list(old.get("attachments") or [])
    index = {str(a["id"]).lower(): n for n, a in enumerate(merged)}
    for entry in fresh.get("attachments") or []:
        n = index.get(str(entry["id"]).lower())
        if n is None:
            merged.append(entry)
            added.append(f"attachment to {entry['id']}")
            continue
        was = merged[n]
        new_refs = [r for r in entry.get("refs") or [] if r not in (was.get("refs") or [])]
        if (entry["attached"] and not was["attached"]) or new_refs:
            merged[n] = {**entry, "refs": [*(was.get("refs") or []), *new_refs]}
            added.append(f"attachment to {entry['id']} (changed)")
            redo.append(("rebind", f"res-{resource_key(entry['id'])}"))
    return merged


def _report_key(ctx: PhaseContext, entry: dict[str, Any]) -> str:
    return json.dumps(entry, sort_keys=True, default=str)


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
