"""A step's message is sent before the state change that asks for it is saved (never a saved state
without its message). A worker can therefore receive the message before the save lands: it must
wait for that save, not drop the message as stale — otherwise the move sits at Running."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from idmove.estate import Estate
from shared.service import MoveService
from shared.statuses import Status
from shared.work_queue import WorkMessage
from tests.plugins.engine import drain
from tests.test_engine_moves import estate, move_body, run

__all__ = ["estate"]


def test_a_commit_step_that_overtakes_its_save_waits_for_it(
    emulated_service: MoveService, estate: Estate
) -> None:
    service = emulated_service
    status = run(service, move_body(estate))
    assert status["status"] == "AwaitingCommit"
    record = service.store.get_move(status["id"])
    assert record is not None

    # the commit's message arrives first ...
    service.handle_message(WorkMessage(record.id, "cleanup", after=record.version + 1).to_json(), 1)
    assert service.get(record.id)["status"] == "AwaitingCommit"  # nothing ran ahead of the state
    # ... then the commit's save lands, with no other message in flight
    record.committed, record.status, record.phase = True, Status.RUNNING, "cleanup"
    record.phase_entry("cleanup").update(status="Running")
    service.store.save_move(record)

    drain(service)
    assert service.get(record.id)["status"] == "Completed"


def test_a_message_for_an_older_state_is_still_stale(emulated_service: MoveService, estate: Estate) -> None:
    service = emulated_service
    status = run(service, move_body(estate))
    record = service.store.get_move(status["id"])
    assert record is not None
    service.handle_message(WorkMessage(record.id, "cleanup", after=record.version).to_json(), 1)
    drain(service, timeout=10)
    assert service.get(record.id)["status"] == "AwaitingCommit"


def test_a_command_that_loses_a_race_to_a_worker_reads_again_instead_of_refusing(
    emulated_service: MoveService, estate: Estate
) -> None:
    """A worker's write (a step claim, a phase ending) between a command's read and its save: the
    command decides again on the fresh record; the person does not get a 409 for it."""
    service = emulated_service
    status = run(service, move_body(estate))
    assert status["status"] == "AwaitingCommit"
    original = service.queue.send
    raced: list[int] = []

    def send_then_race(message: WorkMessage, delay_seconds: float = 0) -> None:
        original(message, delay_seconds)
        if not raced:  # the command has read the move and is about to save it: a worker writes first
            record = service.store.get_move(status["id"])
            assert record is not None
            service.store.save_move(record)
            raced.append(record.version)

    service.queue.send = send_then_race  # type: ignore[method-assign]
    accepted = service.commit(status["id"])
    service.queue.send = original  # type: ignore[method-assign]
    assert raced and accepted["status"] == "Running"
    drain(service)
    assert service.get(status["id"])["status"] == "Completed"


def test_a_message_of_an_earlier_round_does_not_run_the_step_again(
    emulated_service: MoveService, estate: Estate
) -> None:
    """A command that runs a phase afresh (commit, retry, discard) starts a new round (epoch): a
    message of the earlier round still in the queue (a delayed retry at a higher attempt, a stalled
    move's resend) is acknowledged instead of claiming the step a second time."""
    service = emulated_service
    status = run(service, move_body(estate))
    assert status["status"] == "AwaitingCommit"
    claims: list[str] = []
    service.crashpoint = lambda name: claims.append(name) if name == "cleanup:after-claim" else None
    service.commit(status["id"])
    service.queue.send(WorkMessage(status["id"], "cleanup", attempt=5))  # round 0, a higher attempt
    drain(service)
    assert service.get(status["id"])["status"] == "Completed"
    assert claims == ["cleanup:after-claim"]


def test_resume_stalled_leaves_a_fanned_out_phase_whose_items_move(
    emulated_service: MoveService, estate: Estate
) -> None:
    """Items are marked under their own ETags without saving the move record: a long, throttled
    grant looks idle by its record alone. The stalled-move timer looks at the items too."""
    service = emulated_service
    status = run(service, move_body(estate))
    record = service.store.get_move(status["id"])
    assert record is not None
    record.status, record.phase = record.status.__class__("Running"), "grant"
    service.store.save_move(record)
    record = service.store.get_move(status["id"])
    assert record is not None
    hour_ago = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    record.updated_at = hour_ago  # save_move keeps it: only the engine's and commands' saves stamp it
    service.store.save_move(record)
    assert service.store.get_move(status["id"]).updated_at == hour_ago  # type: ignore[union-attr]
    assert service.resume_stalled(older_than_seconds=600) == 0  # its items changed seconds ago
    assert service.resume_stalled(older_than_seconds=0) == 1
