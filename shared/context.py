"""What the engine hands a phase: typed inputs and outputs shared by ``activities/``.

A phase gets a ``PhaseContext`` (clients, the validated request, the stored snapshot, the target as
known so far) and, for fanned-out phases, one ``ItemInput`` per item. ``crashpoint(name)`` is called
between writes so the crash-anywhere suite can stop a step at any point.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from shared.azure_clients import AzureClients
from shared.models import MoveRequest
from shared.settings import Settings


def no_crash(name: str) -> None:
    """The default crashpoint: does nothing."""


@dataclass
class PhaseContext:
    clients: AzureClients
    settings: Settings
    move_id: str
    request: MoveRequest
    snapshot: dict[str, Any] = field(default_factory=dict)
    target: dict[str, Any] = field(default_factory=dict)
    crashpoint: Callable[[str], None] = no_crash


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
