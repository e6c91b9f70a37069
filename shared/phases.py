"""The chain of phases, with retries and timeouts declared once.

``entry`` is ``module:function`` in ``activities/`` (resolved lazily, so ``shared`` never imports
``activities`` at import time). ``items`` phases fan out one work message per batch of items;
the others run as one step. ``needs_commit``: the engine refuses to run it before the move is
committed AND verified.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Phase:
    name: str
    entry: str
    max_attempts: int
    backoff_seconds: float  # first retry delay, doubled each attempt
    backoff_max: float
    timeout_seconds: float  # from the phase's start to its end, all attempts included
    items: bool = False
    needs_commit: bool = False
    # a step running its own items runs them side by side (``Engine._run_lanes``): cleanup's are
    # deletes, whose budget a fleet never spends (~4 a move against ~14 writes); grant's and rebind's
    # writes queue for the subscription's write budget, where side by side only lengthens the queue
    # (300x10 bench: 11 items given back for their budget against 0, 5x the threads' pacing waits)
    side_by_side: bool = False

    def backoff(self, attempt: int, scale: float = 1.0) -> float:
        return float(min(self.backoff_max, self.backoff_seconds * 2**attempt) * scale)

    def function(self) -> Any:
        module, _, name = self.entry.partition(":")
        return getattr(importlib.import_module(module), name)

    def items_function(self) -> Any:
        """A fanned-out phase's ``items(ctx) -> list[ItemSpec]``, next to its entry point."""
        module, _, _ = self.entry.partition(":")
        return importlib.import_module(module).items


PHASES: tuple[Phase, ...] = (
    Phase("snapshot", "activities.snapshot:run", 5, 2, 60, 1800),
    # create: a fresh identity's principal replicates for seconds to minutes
    Phase("create", "activities.create:run", 6, 2, 60, 1800),
    # grant: Graph 404 for the fresh service principal and 409 on concurrent credential writes are retried
    Phase("grant", "activities.grant:run_item", 10, 2, 120, 3600, items=True),
    Phase("rebind", "activities.rebind:run_item", 6, 2, 60, 3600, items=True),
    # verify: a missing item may be replication lag (Graph memberships, a fresh principal, ARM
    # consistency): re-checked for max_attempts (backoff 5+10+20+40+80 s, ~2.6 min) well inside the
    # timeout, then VerificationFailed is permanent with the full diff
    Phase("verify", "activities.verify:run", 6, 5, 120, 1800),
    Phase(
        "cleanup",
        "activities.cleanup:run_item",
        6,
        2,
        60,
        3600,
        items=True,
        needs_commit=True,
        side_by_side=True,
    ),
)
DISCARD = Phase("discard", "activities.discard:run", 6, 2, 60, 3600)

BY_NAME: dict[str, Phase] = {p.name: p for p in (*PHASES, DISCARD)}
ORDER: tuple[str, ...] = tuple(p.name for p in PHASES)


def next_phase(name: str) -> str | None:
    index = ORDER.index(name)
    return ORDER[index + 1] if index + 1 < len(ORDER) else None
