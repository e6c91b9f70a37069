"""The commit policy: a move left in AwaitingCommit past its deadline is discarded or committed.

A request (or RegionDecommissioning event data) may carry ``commitPolicy: {"timeoutMinutes": n,
"onTimeout": "discard" | "commit"}``. The deadline is n minutes after verify completed (the move
reached AwaitingCommit); it is derived from the record, never stored apart from it, so a retried
verify moves it. The timer trigger ``commit_deadlines`` (``MoveService.enforce_commit_deadlines``)
acts on moves past it, recording an ``audit`` entry by ``POLICY_ACTOR``; commit on timeout still
waits while ``plan.actionsRequired`` is not empty and not acknowledged (as autoCommit does), and
says so once (outcome ``waitingForActionsRequired``).

Example::

    deadline = commit_deadline(record)   # datetime, or None without a policy / before verify
    outcome(record)                      # {"outcome": "discard", "at": ..., ...} once the timer acted
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from shared.store import MoveRecord

POLICY_ACTOR = "commit policy"
WAITING = "waitingForActionsRequired"


def policy(record: MoveRecord) -> dict[str, Any] | None:
    value = record.request.get("commitPolicy")
    return value if isinstance(value, dict) and value.get("timeoutMinutes") else None


def commit_deadline(record: MoveRecord) -> datetime | None:
    rule = policy(record)
    verify = next((p for p in record.phases if p.get("name") == "verify"), None)
    if rule is None or verify is None or verify.get("status") != "Succeeded" or not verify.get("completedAt"):
        return None
    return datetime.fromisoformat(str(verify["completedAt"])) + timedelta(minutes=int(rule["timeoutMinutes"]))


def unacknowledged_actions(record: MoveRecord) -> bool:
    return bool((record.plan or {}).get("actionsRequired")) and not record.request.get(
        "acknowledgeActionsRequired"
    )


def outcome(record: MoveRecord) -> dict[str, Any] | None:
    """What the timer did on the deadline (the last such entry), or None."""
    for entry in reversed(record.audit):
        if entry.get("by") == POLICY_ACTOR:
            return {
                "outcome": entry.get("outcome") or entry.get("command"),
                "at": entry.get("at"),
                "reason": entry.get("reason"),
            }
    return None


def status_fields(record: MoveRecord) -> dict[str, Any]:
    """``commitDeadline`` and ``commitTimeout`` (the outcome) for the status body and events' data."""
    fields: dict[str, Any] = {}
    deadline = commit_deadline(record)
    if deadline is not None:
        fields["commitDeadline"] = deadline.isoformat()
    done = outcome(record)
    if done is not None:
        fields["commitTimeout"] = done
    return fields
