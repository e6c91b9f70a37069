"""Every kind of access a move carries over: one module each, registered in ``KINDS`` (one line each).

The phases loop over this table: snapshot calls each kind's ``discover``, grant (and rebind, for
kinds whose ``copy_phase`` is "rebind") its ``copy``, verify its ``check``, cleanup its ``remove``,
discard its ``undo``. The protocol is in ``activities/access/base.py``. A new kind of access is one
new module plus one line here; "how are X copied?" is answered by opening X's module.

Example::

    from activities.access import KINDS, by_copy_kind
    [k.key for k in KINDS]              # ["roleAssignments", "federatedCredentials", ...]
    by_copy_kind("role").copy(ctx, entry)
"""

from __future__ import annotations

from activities.access import (
    app_role_assignments,
    app_settings,
    cosmos_sql_roles,
    federated_credentials,
    flexible_server_admins,
    group_memberships,
    key_vault_policies,
    role_assignments,
    sql_servers,
)
from activities.access.base import Access, Found, Missing

KINDS: tuple[Access, ...] = (
    role_assignments.KIND,
    federated_credentials.KIND,
    group_memberships.KIND,
    app_role_assignments.KIND,
    key_vault_policies.KIND,
    cosmos_sql_roles.KIND,
    flexible_server_admins.KIND,
    app_settings.KIND,
    sql_servers.KIND,
)


def by_copy_kind(kind: str) -> Access:
    return next(k for k in KINDS if k.copy_kind == kind)


def by_remove_kind(kind: str) -> Access:
    return next(k for k in KINDS if k.remove_kind == kind)


__all__ = ["KINDS", "Access", "Found", "Missing", "by_copy_kind", "by_remove_kind"]
