"""The protocol every kind of access implements, and what snapshot hands it.

A kind of access is one way the old identity is trusted (a role assignment, a Key Vault access
policy, an app setting holding its clientId, ...). Its module says, in one place:

* ``discover(ctx, found)`` -> the entries the snapshot stores under ``key`` (reads only);
* ``copy(ctx, entry)`` -> give the new identity the same (one item of ``copy_phase``, idempotent);
* ``check(ctx, entries)`` -> what verify finds missing, as ``Missing(what, target)`` (reads only);
* ``remove(ctx, entry)`` -> cleanup: the old identity's entry goes (only after commit);
* ``undo(ctx, target)`` -> discard: what the move added for ``target`` goes (the source is untouched);
* ``actions(ctx, entries, found)`` -> steps a person must take that the mover cannot (``actionsRequired``).

A kind that only reports (nothing ARM can copy) sets ``copy_kind = ""``. ``candidates`` is a KQL
predicate over ``Resources``, made of the kind's declaration: ``candidate_types`` (the resource types
it reads) and, optionally, ``candidate_needle`` = (KQL text expression, identity field): only rows
whose expression contains the identity's value. Declared rather than written as KQL so that fleet
discovery (``activities/fleet.py``) can ask once for many identities and tell, row by row, which
identity's predicate it meets (``candidate_match``). Snapshot ORs every kind's predicate into ONE Resource Graph query
(its quota is the scarcest read) and hands the rows to each kind in ``Found.rows``; a kind then
confirms each candidate with a direct GET or list, because Resource Graph lags ARM and does not
index child resources (``sqlRoleAssignments``, administrators, app settings).

Example::

    class KeyVaultPolicies(Access):
        key, title, copy_kind, remove_kind = "keyVaultAccessPolicies", "Key Vault access policies", "kvpolicy", "unkvpolicy"
        def discover(self, ctx, found): ...
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from typing import Any

from shared.context import ItemResult, ItemSpec, PhaseContext

NEW_CLIENT_ID = "<new clientId>"  # filled in by the status body once the new identity exists


@dataclass(frozen=True)
class Missing:
    """One gap verify found: a readable ``what`` (the precise diff) and the id it concerns."""

    what: str
    target: str


_COUNTING = threading.Lock()


@dataclass
class Found:
    """What snapshot read before the kinds discover (see ``activities/snapshot.py``)."""

    source: dict[str, Any]
    subscriptions: list[str]
    rows: list[dict[str, Any]] = field(default_factory=list)  # Resource Graph candidates of every kind
    attachments: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)  # what discovery read, for the plan
    target: dict[str, Any] = field(default_factory=dict)  # the planned target (set before ``actions``)
    # role assignments already listed by fleet discovery (``raw_assignment`` dicts of this principal in
    # ``subscriptions``); None = the kind lists them itself
    assignments: list[dict[str, Any]] | None = None

    def rows_of(self, *types: str) -> list[dict[str, Any]]:
        wanted = {t.lower() for t in types}
        return [r for r in self.rows if str(r.get("type", "")).lower() in wanted]

    def count(self, name: str, n: int = 1) -> None:
        with _COUNTING:  # the kinds discover side by side (``shared/side_by_side.py``)
            self.counts[name] = self.counts.get(name, 0) + n


def short_key(resource_id: str) -> str:
    """A stable, short item-key part for a resource id (the same hash as ``rebind.resource_key``)."""
    return hashlib.sha1(resource_id.lower().encode()).hexdigest()[:20]


# where a kind's entry lives: the resource its copy and its removal write to
ENTRY_RESOURCE_FIELDS = ("vault", "account", "server", "site")


def resource_serial(resource_id: str) -> str:
    """The ``serial`` key of the cleanup items that write to one resource: they run one after another
    while cleanup runs its items side by side (``Engine._run_lanes``). Cosmos DB refuses a second
    role-assignment operation on an account while one is in progress (412 "another user operation in
    progress which requires an exclusive lock"), and a resource's detach (a PATCH of its identity
    block) and the removal of a grant kept on it should not race either."""
    return f"res-{short_key(resource_id)}"


def entry_serial(entry: dict[str, Any]) -> str:
    """``resource_serial`` of the resource an entry lives on ("" for one that lives on none: a role
    assignment, a Graph membership, each removed on its own)."""
    for name in ENTRY_RESOURCE_FIELDS:
        if entry.get(name):
            return resource_serial(str(entry[name]))
    return ""


def action(code: str, target: str, message: str) -> dict[str, Any]:
    return {"code": code, "target": target, "message": message}


class Access:
    """Base of every kind: defaults that do nothing, so a kind implements only what it has."""

    key: str = ""  # snapshot / inventory key, e.g. "roleAssignments"
    title: str = ""  # for people: plan report, README
    copy_kind: str = ""  # item kind in ``copy_phase``; "" = reported only, never copied
    copy_phase: str = "grant"
    remove_kind: str = ""  # item kind in cleanup; "" = nothing of the old identity to remove
    serial: str = ""  # copies with the same serial key run one after another
    candidate_types: tuple[str, ...] = ()  # lower-case resource types; () = no Resource Graph rows needed
    candidate_needle: tuple[str, str] | None = (
        None  # (KQL text expression, identity field) that must contain it
    )

    @property
    def candidates(self) -> str | None:
        """The KQL predicate over Resources (identity fields as ``{principal_id}`` etc.), None = none needed."""
        if not self.candidate_types:
            return None
        types = self.candidate_types
        kql = (
            f"type =~ '{types[0]}'"
            if len(types) == 1
            else "type in~ ({})".format(", ".join(f"'{t}'" for t in types))
        )
        if self.candidate_needle:
            expression, field_name = self.candidate_needle
            kql += f" and {expression} contains '{{{field_name}}}'"
        return kql

    def candidate_match(self, row: dict[str, Any], fields: dict[str, str], texts: dict[str, str]) -> bool:
        """Whether ``row`` meets ``candidates`` for the identity with ``fields``; ``texts``: the row's value of
        each needle expression (KQL ``contains`` is a case-insensitive substring test, ``=~``/``in~`` too)."""
        if str(row.get("type", "")).lower() not in self.candidate_types:
            return False
        if self.candidate_needle is None:
            return True
        expression, field_name = self.candidate_needle
        return fields[field_name].lower() in str(texts.get(expression) or "").lower()

    def discover(self, ctx: PhaseContext, found: Found) -> list[dict[str, Any]]:
        return []

    def copy_key(self, ctx: PhaseContext, entry: dict[str, Any]) -> str:
        raise NotImplementedError

    def copy_items(self, ctx: PhaseContext) -> list[ItemSpec]:
        if not self.copy_kind:
            return []
        return [
            ItemSpec(self.copy_kind, self.copy_key(ctx, e), e, serial=self.serial)
            for e in ctx.snapshot.get(self.key) or []
        ]

    def copy(self, ctx: PhaseContext, entry: dict[str, Any]) -> ItemResult:
        raise NotImplementedError

    def check(self, ctx: PhaseContext, entries: list[dict[str, Any]]) -> list[Missing]:
        return []

    def remove_key(self, ctx: PhaseContext, entry: dict[str, Any]) -> str:
        raise NotImplementedError

    def remove_items(self, ctx: PhaseContext) -> list[ItemSpec]:
        if not self.remove_kind:
            return []
        return [
            ItemSpec(self.remove_kind, self.remove_key(ctx, e), e, serial=entry_serial(e))
            for e in ctx.snapshot.get(self.key) or []
        ]

    def remove(self, ctx: PhaseContext, entry: dict[str, Any]) -> ItemResult:
        raise NotImplementedError

    def undo(self, ctx: PhaseContext, target: dict[str, Any]) -> int:
        return 0

    def actions(self, ctx: PhaseContext, entries: list[dict[str, Any]], found: Found) -> list[dict[str, Any]]:
        return []
