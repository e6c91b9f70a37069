"""The commit policy (``shared/commit_policy.py``): a move left in AwaitingCommit past its deadline
is discarded or committed by the timer (``MoveService.enforce_commit_deadlines``), with an injected
clock; commit on timeout still waits for unacknowledged actionsRequired; a crash in the timer's
command leaves the move AwaitingCommit and the next run finishes the job once."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest

from idmove.estate import Estate, clients_for, seed
from shared.models import RegionDecommissionRequest
from shared.service import MoveService
from shared.settings import Settings
from tests.plugins.engine import drain
from tests.test_engine_moves import move_body
from tests.test_engine_timers import Clock


class Crash(Exception):
    """Stands for the worker process dying."""


@pytest.fixture
def estate(emu: str) -> Estate:
    return seed(clients_for(emu))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def service(emulated_settings: Settings, clock: Clock) -> MoveService:
    return MoveService(emulated_settings, clock=clock)


def awaiting(service: MoveService, body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    move_id = service.start(body)["id"]
    drain(service)
    status = service.get(move_id)
    assert status["status"] == "AwaitingCommit", status.get("error")
    return move_id, status


def events(service: MoveService, move_id: str) -> list[tuple[str, dict[str, Any]]]:
    return [(e["Type"].rsplit(".", 1)[-1], json.loads(e["Data"])) for e in service.store.events(move_id)]


def crash_once(service: MoveService) -> Callable[[], int]:
    """The next save of a move record dies before it is written (the command's message was sent)."""
    real = service.store.save_move
    crashes = []

    def save_move(*args: Any, **kwargs: Any) -> None:
        if not crashes:
            crashes.append(1)
            raise Crash("the worker died before saving")
        real(*args, **kwargs)

    service.store.save_move = save_move  # type: ignore[method-assign]
    return lambda: len(crashes)


def test_discard_on_timeout(service: MoveService, estate: Estate, clock: Clock) -> None:
    policy = {"timeoutMinutes": 30, "onTimeout": "discard"}
    move_id, status = awaiting(service, move_body(estate, commitPolicy=policy))
    verified = next(p for p in status["phases"] if p["name"] == "verify")["completedAt"]
    deadline = datetime.fromisoformat(verified) + timedelta(minutes=30)
    assert status["commitDeadline"] == deadline.isoformat()
    assert status["request"]["commitPolicy"] == policy
    awaiting_event = next(data for kind, data in events(service, move_id) if kind == "AwaitingCommit")
    assert awaiting_event["commitDeadline"] == deadline.isoformat()

    clock.now = deadline - timedelta(seconds=1)
    assert service.enforce_commit_deadlines() == 0
    assert service.get(move_id)["status"] == "AwaitingCommit"

    clock.now = deadline
    assert service.enforce_commit_deadlines() == 1
    drain(service)
    status = service.get(move_id)
    assert status["status"] == "Discarded"
    assert status["commitTimeout"]["outcome"] == "discard"
    discarded = [data for kind, data in events(service, move_id) if kind == "Discarded"]
    assert len(discarded) == 1 and discarded[0]["commitTimeout"]["outcome"] == "discard"
    report = service.report(move_id)
    assert [(c["command"], c["by"]) for c in report["commands"]] == [("discard", "commit policy")]
    assert service.enforce_commit_deadlines() == 0  # at rest: nothing more to do


def test_commit_on_timeout_waits_while_actions_required_are_unacknowledged(
    service: MoveService, estate: Estate, clock: Clock
) -> None:
    policy = {"timeoutMinutes": 5, "onTimeout": "commit"}
    move_id, status = awaiting(service, move_body(estate, commitPolicy=policy))
    assert status["plan"]["actionsRequired"]  # the seeded identity's GitHub and AKS credentials
    clock.advance(3600)
    assert service.enforce_commit_deadlines() == 0
    assert service.enforce_commit_deadlines() == 0
    status = service.get(move_id)
    assert status["status"] == "AwaitingCommit"
    assert status["commitTimeout"]["outcome"] == "waitingForActionsRequired"
    assert len(service.report(move_id)["commands"]) == 1  # said once, not on every timer run
    service.commit(move_id, by="a person")  # a person still may
    drain(service)
    assert service.get(move_id)["status"] == "Completed"


def test_commit_on_timeout_survives_a_crash_in_the_timer(
    service: MoveService, estate: Estate, clock: Clock
) -> None:
    policy = {"timeoutMinutes": 1, "onTimeout": "commit"}
    move_id, _ = awaiting(service, move_body(estate, commitPolicy=policy, acknowledgeActionsRequired=True))
    clock.advance(61)
    crashes = crash_once(service)
    with pytest.raises(Crash):
        service.enforce_commit_deadlines()
    assert crashes() == 1
    assert service.get(move_id)["status"] == "AwaitingCommit"  # the crash wrote nothing that counts
    assert service.enforce_commit_deadlines() == 1  # the next run commits
    assert service.enforce_commit_deadlines() == 0  # and only once
    drain(service)
    status = service.get(move_id)
    assert status["status"] == "Completed", status.get("error")
    assert status["commitTimeout"]["outcome"] == "commit"
    report = service.report(move_id)
    assert [(c["command"], c["by"]) for c in report["commands"]] == [("commit", "commit policy")]
    assert report["deleted"] and all(i["status"] == "Done" for i in report["deleted"])
    completed = [data for kind, data in events(service, move_id) if kind == "Completed"]
    assert len(completed) == 1 and completed[0]["commitTimeout"]["outcome"] == "commit"


def test_commit_policy_is_validated_and_accepted_in_decommission_events(service: MoveService) -> None:
    from shared.errors import InvalidRequest
    from tests.test_engine_requests import body

    for bad in ({"timeoutMinutes": 0, "onTimeout": "commit"}, {"timeoutMinutes": 5, "onTimeout": "later"}):
        with pytest.raises(InvalidRequest) as caught:
            service.start(body(commitPolicy=bad))
        assert caught.value.target is not None and caught.value.target.startswith("commitPolicy")
    event = RegionDecommissionRequest.parse(
        {
            "sourceRegion": "westeurope",
            "targetRegion": "northeurope",
            "subscriptionIds": ["00000000-0000-0000-0000-000000000001"],
            "commitPolicy": {"timeoutMinutes": 60, "onTimeout": "discard"},
        }
    )
    assert event.commit_policy is not None and event.commit_policy.on_timeout == "discard"
