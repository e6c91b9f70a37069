"""Phase 3, grant: give the new identity every access the old one had. One item per grant.

Needs: the snapshot and the created target (principalId). Changes in Azure: for each kind of
access in ``activities/access`` (the table ``KINDS``) whose ``copy_phase`` is grant, its ``copy``
of each snapshot entry -- role assignments, federated credentials (one at a time), group
memberships, app role assignments, and the data-plane grants services keep themselves. How each is
copied, and what counts as "already there", is in the kind's module. Graph 404 for a fresh service
principal and ``PrincipalNotFound`` are transient (retried with the phase's backoff).
Idempotency key: the item key (deterministic names in Azure too).

Example::

    items(ctx)        # [ItemSpec("role", "role-<uuid>", {...}), ItemSpec("credential", ..., serial="credentials"), ...]
    run_item(ItemInput(ctx, "role", key, data)).outcome   # "created" | "existed"
"""

from __future__ import annotations

from activities.access import KINDS, by_copy_kind
from activities.access.role_assignments import assignment_name
from shared.context import ItemInput, ItemResult, ItemSpec, PhaseContext

__all__ = ["assignment_name", "items", "run_item"]


def items(ctx: PhaseContext) -> list[ItemSpec]:
    return [spec for kind in KINDS if kind.copy_phase == "grant" for spec in kind.copy_items(ctx)]


def run_item(item: ItemInput) -> ItemResult:
    return by_copy_kind(item.kind).copy(item.ctx, item.data)
