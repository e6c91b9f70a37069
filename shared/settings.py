"""Settings from the environment (same names as the Function App's app settings).

Contract names: ``AzureWebJobsStorage`` (or its identity-based ``AzureWebJobsStorage__*`` form, see
``shared.storage``), ``IDMOVE_ARM_ENDPOINT``, ``IDMOVE_GRAPH_ENDPOINT``,
``IDMOVE_CREDENTIAL``, ``IDMOVE_EVENTGRID_ENDPOINT``, ``IDMOVE_EVENTGRID_KEY``,
``IDMOVE_ALLOWED_SUBSCRIPTIONS``, ``IDMOVE_EMULATOR_PRINCIPAL_ID`` (with ``IDMOVE_CREDENTIAL=emulator``:
the ``oid`` of the unsigned JWT the mover sends, default ``EMULATOR_PRINCIPAL_ID``). Internal ones: ``IDMOVE_QUEUE_NAME`` (default ``idmove-work``),
``IDMOVE_TABLE_PREFIX`` (default ``idmove``), ``IDMOVE_MAX_PARALLEL_ITEMS`` (default 8),
``IDMOVE_INLINE_ITEMS`` (a fanned-out phase with at most this many pending items runs them in its own
step instead of fanning them out as messages, default 16; 0 = always fan out),
``IDMOVE_BACKOFF_SCALE`` (multiplies every engine backoff; tests use small values),
``IDMOVE_ARM_RETRY_TOTAL`` (azure-core retries per request, default 6),
``IDMOVE_ARM_WRITES_PER_SECOND`` / ``IDMOVE_ARM_WRITES_BURST`` (per-process, per-subscription pacing of
ARM writes, default 8/s with a burst of 20, see ``shared/arm_pacing.py``), ``IDMOVE_ARM_SHARED_BUDGET``
(default on: one write and one delete budget per subscription for all instances, in Table Storage,
``shared/write_budget.py``; ``false`` = per-process pacing only) with ``IDMOVE_ARM_SHARED_RATE`` /
``IDMOVE_ARM_SHARED_BURST`` (its refill per second and bucket, default ARM's own 10 and 200: every write
is granted before it reaches ARM, so ARM's bucket never holds fewer tokens than the shared one),
``IDMOVE_ROLE_ASSIGNMENT_LIMIT`` (role assignments per subscription, default 4000; 2000 in sovereign
clouds), ``IDMOVE_ROLE_ASSIGNMENT_COUNT_TTL_SECONDS`` (how long a subscription's or management group's
assignment count is reused by other moves, default 120), ``IDMOVE_INLINE_RETRY_MAX_SECONDS`` (longest
429/503 ``Retry-After`` slept inside a handler, default 2; longer ones re-enqueue the step).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from shared.storage import StorageAccess

# Who the mover is to the emulator unless IDMOVE_EMULATOR_PRINCIPAL_ID says otherwise (README, "Settings").
EMULATOR_PRINCIPAL_ID = "1d0e5a7c-6b2f-4c8e-9a3d-5f7b1e2c4a60"


@dataclass(frozen=True)
class Settings:
    storage_connection_string: str = "UseDevelopmentStorage=true"
    arm_endpoint: str = "https://management.azure.com"
    graph_endpoint: str = "https://graph.microsoft.com/v1.0"
    credential: str = "default"
    eventgrid_endpoint: str | None = None
    eventgrid_key: str | None = field(default=None, repr=False)
    allowed_subscriptions: frozenset[str] = frozenset()
    queue_name: str = "idmove-work"
    table_prefix: str = "idmove"
    max_parallel_items: int = 8
    inline_items: int = 16
    # threads a step runs its independent calls on (``shared/side_by_side.py``): cleanup's own items
    # (their ``serial`` groups in order), each kind of access's discovery and check; 1 = one after
    # another. A move's kinds of access are 9, its cleanup items ~8-12; ARM's latency (80 ms a read,
    # 300 ms a write) rather than the machine's CPU is what they wait for
    step_width: int = 6
    backoff_scale: float = 1.0
    arm_retry_total: int = 6
    arm_writes_per_second: float = 8.0
    arm_writes_burst: float = 20.0
    # one ARM write budget per subscription for all instances (shared/write_budget.py): its refill
    # and bucket sit below ARM's 10/s and 200 (room for a person or a pipeline writing meanwhile)
    arm_shared_budget: bool = True
    arm_shared_rate: float = 10.0
    arm_shared_burst: float = 200.0
    # longest wait for a write token slept in a handler thread; longer: the step goes back to the queue
    arm_max_pacing_wait: float | None = 10.0
    role_assignment_limit: int = 4000
    role_assignment_count_ttl: float = 120.0
    inline_retry_max_seconds: float = 2.0
    emulator_principal_id: str = EMULATOR_PRINCIPAL_ID

    storage_identity: StorageAccess | None = None

    @property
    def storage(self) -> StorageAccess:
        """Where tables and queues live: identity-based in Azure, a connection string locally."""
        return self.storage_identity or StorageAccess(connection_string=self.storage_connection_string)

    @property
    def poison_queue_name(self) -> str:
        return f"{self.queue_name}-poison"

    def with_(self, **changes: Any) -> Settings:
        return replace(self, **changes)

    def subscription_allowed(self, subscription_id: str) -> bool:
        return not self.allowed_subscriptions or subscription_id.lower() in self.allowed_subscriptions

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        allowed = env.get("IDMOVE_ALLOWED_SUBSCRIPTIONS", "")
        storage = StorageAccess.from_env(env)
        return cls(
            storage_connection_string=storage.connection_string or "",
            storage_identity=storage if storage.uses_identity else None,
            arm_endpoint=env.get("IDMOVE_ARM_ENDPOINT", cls.arm_endpoint).rstrip("/"),
            graph_endpoint=env.get("IDMOVE_GRAPH_ENDPOINT", cls.graph_endpoint).rstrip("/"),
            credential=env.get("IDMOVE_CREDENTIAL", "default").strip().lower() or "default",
            eventgrid_endpoint=env.get("IDMOVE_EVENTGRID_ENDPOINT") or None,
            eventgrid_key=env.get("IDMOVE_EVENTGRID_KEY") or None,
            allowed_subscriptions=frozenset(s.strip().lower() for s in allowed.split(",") if s.strip()),
            queue_name=env.get("IDMOVE_QUEUE_NAME", cls.queue_name),
            table_prefix=env.get("IDMOVE_TABLE_PREFIX", cls.table_prefix),
            max_parallel_items=max(1, int(env.get("IDMOVE_MAX_PARALLEL_ITEMS", "8"))),
            inline_items=max(0, int(env.get("IDMOVE_INLINE_ITEMS", "16"))),
            step_width=max(1, int(env.get("IDMOVE_STEP_WIDTH", "6"))),
            backoff_scale=float(env.get("IDMOVE_BACKOFF_SCALE", "1.0")),
            arm_retry_total=int(env.get("IDMOVE_ARM_RETRY_TOTAL", "6")),
            arm_writes_per_second=float(env.get("IDMOVE_ARM_WRITES_PER_SECOND", "8")),
            arm_writes_burst=float(env.get("IDMOVE_ARM_WRITES_BURST", "20")),
            arm_shared_budget=env.get("IDMOVE_ARM_SHARED_BUDGET", "true").strip().lower()
            not in ("0", "false", "no"),
            arm_shared_rate=float(env.get("IDMOVE_ARM_SHARED_RATE", "10")),
            arm_shared_burst=float(env.get("IDMOVE_ARM_SHARED_BURST", "200")),
            arm_max_pacing_wait=_max_wait(env.get("IDMOVE_ARM_MAX_PACING_WAIT", "10")),
            role_assignment_limit=int(env.get("IDMOVE_ROLE_ASSIGNMENT_LIMIT", "4000")),
            role_assignment_count_ttl=float(env.get("IDMOVE_ROLE_ASSIGNMENT_COUNT_TTL_SECONDS", "120")),
            inline_retry_max_seconds=float(env.get("IDMOVE_INLINE_RETRY_MAX_SECONDS", "2")),
            emulator_principal_id=env.get("IDMOVE_EMULATOR_PRINCIPAL_ID", "").strip().lower()
            or EMULATOR_PRINCIPAL_ID,
        )


def _max_wait(value: str) -> float | None:
    """``IDMOVE_ARM_MAX_PACING_WAIT``: seconds, or ``none``/``off`` (always wait in the thread)."""
    text = value.strip().lower()
    if text in ("", "none", "off"):
        return None
    return max(0.0, float(text))
