"""A step's message is sent before the state change that asks for it is saved (never a saved state
without its message). A worker can therefore receive the message before the save lands: it must
wait for that save, not drop the message as stale — otherwise the move sits at Running."""

from __future__ import annotations

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
