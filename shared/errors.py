"""Errors of the engine, in one small tree.

::

    ApiError(status, code, message, target, location)      raised to callers (HTTP layer -> ARM error shape)
     +-- InvalidRequest          400  bad input; nothing was written
     +-- MoveNotFound            404
     +-- MoveConflict            409  MoveInProgress / InvalidMoveState

    PhaseError(code, message, target)                      raised inside phases (activities/)
     +-- TransientError          retry with backoff (429 after azure-core gave up, 5xx, replication lag)
     +-- PermanentError          stop the move: status Failed with error.code/message/target
     |    +-- BlockedError       needs a person (plan blockers): error.code PlanBlocked
     +-- SourceChanged           cleanup found access the snapshot lacks: copy and verify it first

Phases raise ``PhaseError`` subclasses; the engine decides what each means for the move.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class ApiError(Exception):
    """An error a caller of ``MoveService`` sees, in ARM's error shape."""

    def __init__(
        self, status: int, code: str, message: str, target: str | None = None, location: str | None = None
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.target = target
        self.location = location

    def to_body(self) -> dict[str, Any]:
        """ARM's error body: ``{"error": {"code", "message", "target"}}``."""
        return {"error": {"code": self.code, "message": self.message, "target": self.target}}


class InvalidRequest(ApiError):
    def __init__(self, code: str, message: str, target: str | None = None) -> None:
        super().__init__(400, code, message, target)


class MoveNotFound(ApiError):
    def __init__(self, move_id: str) -> None:
        super().__init__(404, "MoveNotFound", f"no move with id {move_id!r}", "id")


class MoveConflict(ApiError):
    def __init__(
        self, code: str, message: str, target: str | None = None, location: str | None = None
    ) -> None:
        super().__init__(409, code, message, target, location)


class PhaseError(Exception):
    """Raised by a phase; carries what the move's ``error`` will show."""

    def __init__(self, code: str, message: str, target: str | None = None) -> None:
        super().__init__(f"{code}: {message}" + (f" (target {target})" if target else ""))
        self.code = code
        self.message = message
        self.target = target


class TransientError(PhaseError):
    """Not done yet: the engine retries the step with backoff, up to the phase's max attempts.

    ``throttled``: Azure said "not now" (429, or 503 with ``Retry-After``); that is not the step's
    fault, so the engine waits ``retry_after`` without counting an attempt (the phase's timeout bounds it).

    ``on_scheduled``: called with the handle of the retry message the engine sent (``WorkQueue.send``),
    so whoever the step waits for can wake it early (``WorkQueue.wake``); e.g. fleet discovery keeps
    it with the waiting member. If it fails, the step is still retried after its delay.
    """

    def __init__(
        self,
        code: str,
        message: str,
        target: str | None = None,
        retry_after: float | None = None,
        throttled: bool = False,
        on_scheduled: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__(code, message, target)
        self.retry_after = retry_after
        self.throttled = throttled
        self.on_scheduled = on_scheduled


class PermanentError(PhaseError):
    """Retrying cannot help: the move stops with status Failed."""


class BlockedError(PermanentError):
    """The plan has blockers: a person must change the request or the estate."""

    def __init__(self, message: str, target: str | None = None) -> None:
        super().__init__("PlanBlocked", message, target)


class SourceChanged(PhaseError):
    """Before cleanup deletes anything, the source was found to hold access the snapshot does not
    (granted while the move awaited commit). ``snapshot`` = the stored one plus what was added;
    ``added`` names each addition; ``redo`` the copy items whose entry changed. The engine saves it
    and runs grant, rebind and verify again."""

    def __init__(
        self,
        snapshot: dict[str, Any],
        added: list[str],
        redo: list[tuple[str, str]] | None = None,
        actions: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(
            "SourceChanged",
            f"{len(added)} grant(s) added to the source after the snapshot: {'; '.join(added)}",
            added[0] if added else None,
        )
        self.snapshot = snapshot
        self.added = added
        self.redo = redo or []  # (phase, item key) of copies to run again: their entry changed
        self.actions = actions or []  # new plan.actionsRequired entries: a person must act first
