"""Phase 5, verify: prove through the control plane that the new identity has everything.

Needs: the snapshot and the target. Changes in Azure: nothing (direct GETs and lists only, never
Resource Graph, which lags). Each kind of access in ``activities/access`` checks its own entries
(``check``: role + scope + condition, federated credentials, group memberships, app role
assignments, the data-plane grants services keep themselves); then the attachments (the new id in
each resource's identity block) and property references (no string still names the old
id/clientId). Anything missing is first taken for replication lag (Entra ID memberships and service
principals, ARM's eventual consistency): ``TransientError`` ``VerificationFailed`` listing every gap,
target = the first, so the engine retries with the verify phase's backoff, bounded by its
``max_attempts`` in ``shared/phases.py``; when those run out the move fails permanently with the same
code, the full list and target. Idempotency: a pure read.

Example::

    run(ctx).checked   # {"roleAssignments": 5, "federatedCredentials": 3, ...}
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from azure.core.exceptions import HttpResponseError

from activities._azure import classify, get_resource, has_identity, identity_refs
from activities.access import KINDS, Missing
from activities.rebind import counterpart
from shared.azure_clients import GraphError
from shared.context import PhaseContext
from shared.errors import TransientError
from shared.side_by_side import side_by_side


@dataclass
class VerifyResult:
    checked: dict[str, int]


def run(ctx: PhaseContext) -> VerifyResult:
    snap, target = ctx.snapshot, ctx.target
    # each kind's check, and the attachments', reads apart from the others: side by side
    checks: list[Callable[[], list[Missing]]] = [
        partial(kind.check, ctx, snap[kind.key]) for kind in KINDS if snap.get(kind.key)
    ]
    checks.append(partial(_attachments, ctx))
    try:
        missing = [m for found in side_by_side(checks, ctx.settings.step_width) for m in found]
    except (HttpResponseError, GraphError) as exc:
        raise classify(exc, target["id"]) from exc
    if missing:
        listing = "; ".join(m.what for m in missing)
        raise TransientError(
            "VerificationFailed", f"{len(missing)} missing on the new identity: {listing}", missing[0].target
        )
    checked = {kind.key: len(snap.get(kind.key) or []) for kind in KINDS}
    return VerifyResult({**checked, "attachments": len(snap["attachments"])})


def _attachments(ctx: PhaseContext) -> list[Missing]:
    old, new = ctx.snapshot["identity"], ctx.target
    missing: list[Missing] = []
    for a in ctx.snapshot["attachments"]:
        resource_id = counterpart(ctx, a["id"])
        resource = get_resource(ctx.clients, resource_id)
        if resource is None:
            missing.append(Missing(f"resource {resource_id}", resource_id))
            continue
        if a["attached"] and not has_identity(resource, new["id"]):
            missing.append(Missing(f"attachment to {resource_id}", resource_id))
        for ref in identity_refs(resource, old):
            path = ".".join(str(p) for p in ref["path"])
            missing.append(
                Missing(f"reference {path} of {resource_id} still names the old identity", resource_id)
            )
    return missing
