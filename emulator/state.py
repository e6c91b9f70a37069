"""The emulated estate: everything ARM, Entra ID (Graph) and the Event Grid sink hold, in memory.

One ``threading.RLock`` guards all of it; handlers take it for the short in-memory work and never
sleep while holding it (latency and the federated-credential write window are slept outside).
``reset()`` empties the estate and restores what exists in every real tenant: built-in role
definitions (``builtin_roles.py``) and first-party service principals (``graph.FIRST_PARTY``).
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from emulator import config as config_mod
from emulator.ids import key
from emulator.throttle import Throttle

# A fixed tenant for the emulated directory (uuid5 so it is stable across runs).
TENANT_ID = str(uuid.uuid5(uuid.NAMESPACE_URL, "https://identity-mover.local/emulator/tenant"))
# The principal that "calls" the emulator; reported as createdBy/updatedBy.
CALLER_ID = str(uuid.uuid5(uuid.NAMESPACE_URL, "https://identity-mover.local/emulator/caller"))


def now_iso() -> str:
    """UTC timestamp the way ARM writes them: ``2024-05-01T10:00:00.1234567Z``."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


@dataclass
class ResourceMeta:
    """Bookkeeping ARM keeps but does not return as such."""

    created: float  # time.monotonic() at creation
    system_principal: dict[str, str] | None = None  # {"principalId", "tenantId", "clientId"}


@dataclass
class State:
    lock: threading.RLock = field(default_factory=threading.RLock)
    config: dict[str, Any] = field(default_factory=config_mod.defaults)
    subscriptions: dict[str, str] = field(default_factory=dict)  # lower -> as first seen
    resource_groups: dict[str, dict[str, Any]] = field(default_factory=dict)  # key(rg id) -> body
    resources: dict[str, dict[str, Any]] = field(default_factory=dict)  # key(id) -> stored body
    resource_meta: dict[str, ResourceMeta] = field(default_factory=dict)
    fics: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)  # identity key -> name -> body
    fic_inflight: set[str] = field(default_factory=set)
    role_definitions: dict[str, dict[str, Any]] = field(default_factory=dict)  # custom; guid -> body
    role_assignments: dict[str, dict[str, Any]] = field(default_factory=dict)  # key(id) -> body
    management_groups: dict[str, dict[str, Any]] = field(default_factory=dict)  # lower name -> record
    directory: dict[str, dict[str, Any]] = field(default_factory=dict)  # object id -> Graph object
    directory_visible_at: dict[str, float] = field(default_factory=dict)  # object id -> monotonic time
    group_members: dict[str, list[str]] = field(default_factory=dict)  # group id -> member ids
    app_role_assignments: dict[str, dict[str, Any]] = field(default_factory=dict)
    arg_versions: dict[str, list[tuple[float, dict[str, Any] | None]]] = field(default_factory=dict)
    async_operations: dict[str, Any] = field(default_factory=dict)  # operation id -> async_ops.Operation
    events: list[Any] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    faults: list[dict[str, Any]] = field(default_factory=list)
    throttle: Throttle = field(default_factory=Throttle)

    def reset(self) -> None:
        from emulator.graph import seed_first_party

        with self.lock:
            fresh = State()
            for name in self.__dataclass_fields__:
                if name != "lock":
                    setattr(self, name, getattr(fresh, name))
            seed_first_party(self)

    # --- subscriptions ------------------------------------------------------------------
    def touch_subscription(self, subscription_id: str) -> str:
        """Subscriptions exist on first use; returns the casing first seen."""
        return self.subscriptions.setdefault(subscription_id.lower(), subscription_id)

    # --- resources and the Resource Graph's delayed view --------------------------------
    def put_resource(self, resource_id: str, body: dict[str, Any]) -> None:
        k = key(resource_id)
        self.resources[k] = body
        self.arg_versions.setdefault(k, []).append((time.monotonic(), body))
        self._prune_versions(k)

    def remove_resource(self, resource_id: str) -> dict[str, Any] | None:
        k = key(resource_id)
        body = self.resources.pop(k, None)
        self.resource_meta.pop(k, None)
        if body is not None:
            self.arg_versions.setdefault(k, []).append((time.monotonic(), None))
            self._prune_versions(k)
        return body

    def _prune_versions(self, k: str) -> None:
        lag = float(self.config["resourceGraphLagSeconds"])
        versions = self.arg_versions[k]
        cutoff = time.monotonic() - lag
        # Keep the newest version older than the cutoff and everything after it.
        while len(versions) > 1 and versions[1][0] <= cutoff:
            versions.pop(0)

    def graph_view(self, subscriptions: set[str] | None = None) -> list[dict[str, Any]]:
        """Resources as Azure Resource Graph sees them: ARM as of ``resourceGraphLagSeconds`` ago; only
        those of ``subscriptions`` (lower-case ids) when given (a query's scope, picked before any
        row is built: 10 queries of one subscription each took 2.4-3.8 s over a 10-subscription estate)."""

        def scoped(k: str) -> bool:
            parts = k.split("/", 3)
            return subscriptions is None or (len(parts) > 2 and parts[2] in subscriptions)

        lag = float(self.config["resourceGraphLagSeconds"])
        if lag <= 0:
            return [body for k, body in self.resources.items() if scoped(k)]
        cutoff = time.monotonic() - lag
        view = []
        for k, versions in self.arg_versions.items():
            if not scoped(k):
                continue
            seen = [body for t, body in versions if t <= cutoff]
            if seen and seen[-1] is not None:
                view.append(seen[-1])
        return view

    # --- directory (Entra ID) -----------------------------------------------------------
    def add_directory_object(self, obj: dict[str, Any], replicates: bool = False) -> None:
        """Add a Graph object; ``replicates`` makes it invisible for ``replicationDelaySeconds``."""
        self.directory[obj["id"]] = obj
        delay = float(self.config["replicationDelaySeconds"]) if replicates else 0.0
        self.directory_visible_at[obj["id"]] = time.monotonic() + delay

    def remove_directory_object(self, object_id: str) -> None:
        """Deleting a principal also drops its group memberships and app role grants (as Entra does)."""
        self.directory.pop(object_id, None)
        self.directory_visible_at.pop(object_id, None)
        self.group_members.pop(object_id, None)
        for members in self.group_members.values():
            if object_id in members:
                members.remove(object_id)
        for assignment_id in [
            a
            for a, body in self.app_role_assignments.items()
            if object_id in (body["principalId"], body["resourceId"])
        ]:
            del self.app_role_assignments[assignment_id]

    def visible_object(self, object_id: str) -> dict[str, Any] | None:
        """The object if it exists and has finished replicating."""
        obj = self.directory.get(object_id.lower()) or self.directory.get(object_id)
        if obj is None:
            return None
        if time.monotonic() < self.directory_visible_at.get(obj["id"], 0.0):
            return None
        return obj


def create_state() -> State:
    state = State()
    state.reset()
    return state
