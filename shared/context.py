"""What the engine hands a phase: typed inputs and outputs shared by ``activities/``.

A phase gets a ``PhaseContext`` (clients, the validated request, the stored snapshot, the target as
known so far) and, for fanned-out phases, one ``ItemInput`` per item. ``cache`` is the one piece of storage a phase may touch: short-lived values
shared by all moves and instances (``get(key, max_age)`` -> value or ``None``, ``put(key, value)``);
it is an estimate, never state the engine decides on. ``crashpoint(name)`` is called
between writes so the crash-anywhere suite can stop a step at any point.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from shared.azure_clients import AzureClients
from shared.models import MoveRequest
from shared.settings import Settings


def no_crash(name: str) -> None:
    """The default crashpoint: does nothing."""


class Cache(Protocol):
    def get(self, key: str, max_age: float) -> Any: ...

    def put(self, key: str, value: Any) -> None: ...


class NoCache:
    """Remembers nothing (a context built outside the engine)."""

    def get(self, key: str, max_age: float) -> Any:
        return None

    def put(self, key: str, value: Any) -> None:
        return None


@dataclass
class PhaseContext:
    clients: AzureClients
    settings: Settings
    move_id: str
    request: MoveRequest
    snapshot: dict[str, Any] = field(default_factory=dict)
    target: dict[str, Any] = field(default_factory=dict)
    crashpoint: Callable[[str], None] = no_crash
    cache: Cache = field(default_factory=NoCache)
    plan: dict[str, Any] = field(default_factory=dict)  # the move's stored plan (cleanup compares with it)
    stats: Any = None  # the engine's StoreStats: a phase's own storage (fleet discovery) counts there too
    epoch: int = 0  # the step's round: a command that runs the phase afresh (retry, ...) starts a new one
    # the region decommission (fleet) the move belongs to, from its start's audit entry (its event);
    # None: a move started by HTTP, or a record that does not say (fleet discovery asks its link then)
    fleet: str | None = None
    # Makes a step's delayed retry message visible now, given the handle the engine passed to a
    # ``TransientError``'s ``on_scheduled`` (``WorkQueue.wake``); False when that message was already
    # delivered or deleted. E.g. fleet discovery wakes the moves waiting for its run when it is done,
    # instead of their polling. Outside the engine: wakes nothing.
    wake: Callable[[str], bool] = field(default=lambda handle: False)


@dataclass(frozen=True)
class ItemSpec:
    """An item a phase fans out. Items with the same ``serial`` key run one after another in one batch."""

    kind: str
    key: str
    data: dict[str, Any]
    serial: str = ""


@dataclass
class ItemInput:
    ctx: PhaseContext
    kind: str
    key: str
    data: dict[str, Any]


@dataclass
class ItemResult:
    """What was done for one item (stored on the item entity)."""

    outcome: str  # "created" | "existed" | "deleted" | "absent" | "updated" | "unchanged"
    detail: dict[str, Any] = field(default_factory=dict)
