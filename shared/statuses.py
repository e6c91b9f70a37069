"""Move statuses and which command each allows: the one transition table.

=================  ======================================================================
command            allowed when the move is ...            -> then
=================  ======================================================================
commit             AwaitingCommit                           -> Running (phase cleanup)
cancel             Pending, Running, AwaitingCommit         -> Canceled (stops at the next step
                                                               boundary; what exists is left as is)
retry              Failed, Canceled                         -> Running (resumes the phase it stopped in)
discard            AwaitingCommit, Failed, Canceled,        -> Running (phase discard) -> Discarded
                   Planned                                     (Planned: nothing created -> Discarded at once)
=================  ======================================================================

Any other combination is 409 ``InvalidMoveState``. A move "in flight" (holds the per-identity
lock) is Pending, Running or AwaitingCommit; every other status is "at rest" for the lock.
"""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    PLANNED = "Planned"
    AWAITING_COMMIT = "AwaitingCommit"
    COMPLETED = "Completed"
    FAILED = "Failed"
    CANCELED = "Canceled"
    DISCARDED = "Discarded"


IN_FLIGHT: frozenset[Status] = frozenset({Status.PENDING, Status.RUNNING, Status.AWAITING_COMMIT})
AT_REST: frozenset[Status] = frozenset(set(Status) - {Status.PENDING, Status.RUNNING})

COMMANDS: dict[str, frozenset[Status]] = {
    "commit": frozenset({Status.AWAITING_COMMIT}),
    "cancel": frozenset({Status.PENDING, Status.RUNNING, Status.AWAITING_COMMIT}),
    "retry": frozenset({Status.FAILED, Status.CANCELED}),
    "discard": frozenset({Status.AWAITING_COMMIT, Status.FAILED, Status.CANCELED, Status.PLANNED}),
}


def allows(command: str, status: Status) -> bool:
    return status in COMMANDS[command]
