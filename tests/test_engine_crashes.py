"""Crash anywhere: stop the engine once at each declared crashpoint, redeliver, and converge.

The points come from ``shared/crashpoints.py`` (generated from the phase table). For each one a
committed move of the realistic estate is run; the first time the point is reached the step raises
(the worker "dies"), the queue redelivers, and the move must still complete with no duplicate role
assignment, credential, membership, app role or attachment, and exactly one event per transition.

By default (and so in ``make test``) every declared point runs, each a move of its own, spread over
the suite's parallel workers; ``IDMOVE_CRASH_EXHAUSTIVE=0`` runs a representative set instead (one
point of every kind, the start and a fanned-out phase's item write included) for a quick local loop.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable
from datetime import timedelta

import pytest

from idmove.estate import Estate, clients_for, seed
from shared import crashpoints
from shared.azure_clients import AzureClients
from shared.errors import MoveConflict
from shared.service import LOCK_ORPHAN_SECONDS, MoveService, utc_now
from shared.settings import Settings
from shared.work_queue import WorkMessage
from tests.plugins.engine import drain
from tests.test_engine_failures import assert_no_duplicates
from tests.test_engine_moves import full_dump, move_body, run

REPRESENTATIVE = [
    "start:after-record",
    "snapshot:after-save",
    "create:after-run",
    "grant:after-items",
    "grant:item-done",
    "rebind:item-done",
    "verify:after-claim",
    "cleanup:item-done",
    "cleanup:before-save",
]
EXHAUSTIVE = os.environ.get("IDMOVE_CRASH_EXHAUSTIVE", "1") != "0"
MOVE_POINTS = crashpoints.for_move() if EXHAUSTIVE else REPRESENTATIVE


class Crash(RuntimeError):
    pass


@pytest.fixture
def estate(emu: str) -> Estate:
    return seed(clients_for(emu))


@pytest.fixture
def clients(emu: str) -> AzureClients:
    return clients_for(emu)


def test_the_registry_is_exactly_what_a_move_passes_through(
    emulated_service: MoveService, estate: Estate
) -> None:
    seen: list[str] = []
    emulated_service.crashpoint = seen.append
    status = run(emulated_service, move_body(estate, autoCommit=True))
    assert status["status"] == "Completed", status.get("error")
    assert set(seen) == set(crashpoints.for_move())
    assert set(REPRESENTATIVE) <= crashpoints.ALL


def test_with_batches_a_move_passes_through_the_batch_points_too(
    emulated_settings: Settings, estate: Estate
) -> None:
    service = MoveService(emulated_settings.with_(inline_items=0))
    seen: list[str] = []
    service.crashpoint = seen.append
    status = run(service, move_body(estate, autoCommit=True))
    assert status["status"] == "Completed", status.get("error")
    assert set(seen) == {*crashpoints.for_move(), *crashpoints.for_batches()}


def test_a_move_is_one_message_from_start_to_end(emulated_service: MoveService, estate: Estate) -> None:
    """Each completed phase claims the next step for the same message: no message per phase."""
    sent: list[WorkMessage] = []
    send = emulated_service.queue.send

    def counting(message: WorkMessage, delay_seconds: float = 0) -> None:
        sent.append(message)
        send(message, delay_seconds)

    emulated_service.queue.send = counting  # type: ignore[method-assign]
    status = run(emulated_service, move_body(estate, autoCommit=True))
    assert status["status"] == "Completed", status.get("error")
    assert [(m.phase, m.batch) for m in sent] == [("snapshot", ())], sent


@pytest.mark.parametrize(
    "point",
    [*crashpoints.for_batches(), "grant:item-done", "cleanup:item-done", "rebind:before-save"]
    if EXHAUSTIVE
    else ["grant:after-send-batch"],
)
def test_crash_with_batches_then_redelivery_converges(
    emulated_settings: Settings, estate: Estate, clients: AzureClients, point: str
) -> None:
    crash_once_then_converge(MoveService(emulated_settings.with_(inline_items=0)), estate, clients, point)


@pytest.mark.parametrize("point", MOVE_POINTS)
def test_crash_once_then_redelivery_converges(
    emulated_service: MoveService, estate: Estate, clients: AzureClients, point: str
) -> None:
    crash_once_then_converge(emulated_service, estate, clients, point)


def crash_once_then_converge(
    emulated_service: MoveService, estate: Estate, clients: AzureClients, point: str
) -> None:
    assert crashpoints.is_declared(point)
    crashed: list[str] = []

    def crash_once(name: str) -> None:
        if name == point and not crashed:
            crashed.append(name)
            raise Crash(f"worker died at {name}")

    emulated_service.crashpoint = crash_once
    try:
        move_id = emulated_service.start(move_body(estate, autoCommit=True))["id"]
    except Crash:  # start sends the first message before it saves the move: no timer needed
        listed = [m["id"] for m in emulated_service.list()[0]]
        if not listed:  # died between the message and the record: no move; the lock frees in a minute
            # the orphan's message only waits for a record that never comes (test_engine_outbox.py):
            # drop it here rather than let drain() sit out its bounded waits
            emulated_service.queue.client.clear_messages()
            emulated_service.clock = lambda: utc_now() + timedelta(seconds=LOCK_ORPHAN_SECONDS)
            listed = [emulated_service.start(move_body(estate, autoCommit=True))["id"]]
        (move_id,) = listed
    drain(emulated_service, timeout=180)
    assert crashed == [point]
    status = emulated_service.get(move_id)
    assert status["status"] == "Completed", status.get("error")
    assert_no_duplicates(clients, estate, status["target"])
    events = emulated_service.store.events(move_id)
    kinds = Counter(e["Type"].rsplit(".", 1)[-1] for e in events)
    assert kinds == Counter({"Started": 1, "PhaseCompleted": 6, "Completed": 1}), kinds
    assert len({e["RowKey"] for e in events}) == len(events)


@pytest.mark.parametrize("point", crashpoints.for_discard() if EXHAUSTIVE else ["discard:after-resource"])
def test_crash_during_discard_still_restores_the_source(
    emulated_service: MoveService, estate: Estate, clients: AzureClients, point: str
) -> None:
    before = full_dump(clients, estate)
    status = run(emulated_service, move_body(estate))
    assert status["status"] == "AwaitingCommit", status.get("error")
    crashed: list[str] = []

    def crash_once(name: str) -> None:
        if name == point and not crashed:
            crashed.append(name)
            raise Crash(f"worker died at {name}")

    emulated_service.crashpoint = crash_once
    emulated_service.discard(status["id"])
    drain(emulated_service, timeout=120)
    assert crashed == [point]
    assert emulated_service.get(status["id"])["status"] == "Discarded"
    assert full_dump(clients, estate) == before
    kinds = Counter(e["Type"].rsplit(".", 1)[-1] for e in emulated_service.store.events(status["id"]))
    assert kinds["Discarded"] == 1


def test_a_cleanup_cut_short_is_on_record_so_discard_is_refused(
    emulated_service: MoveService, estate: Estate
) -> None:
    """Cleanup runs its items in its own step and keeps their marks for the phase's end, but saves
    ``removing`` on its phase entry before the first item runs: a worker that dies after removing
    some of the source's access leaves that on record, so a discard (which would delete the target
    holding the copies) is refused although no item is marked Done."""
    service = emulated_service
    move_id = service.start(move_body(estate))["id"]
    drain(service)
    assert service.get(move_id)["status"] == "AwaitingCommit"
    service.commit(move_id)
    done: list[str] = []

    def die_at_the_third_item(name: str) -> None:
        if name == "cleanup:item-done":
            done.append(name)
            if len(done) == 3:
                raise Crash(name)

    _dies_handling_the_next_message(service, die_at_the_third_item, visibility_timeout=300)
    items = service.store.list_items(move_id, "cleanup")
    assert sum(i.status == "Done" for i in items) == 0, [(i.key, i.status) for i in items]
    record = service.store.get_move(move_id)
    assert record is not None and "removing" in record.phase_entry("cleanup")
    service.cancel(move_id)
    with pytest.raises(MoveConflict) as refused:
        service.discard(move_id)
    assert refused.value.code == "InvalidMoveState"


def _dies_handling_the_next_message(
    service: MoveService, crashpoint: Callable[[str], None], visibility_timeout: int
) -> None:
    """The next queue message, handled by a worker that dies where ``crashpoint`` raises ``Crash``."""
    service.crashpoint = crashpoint
    (message,) = service.queue.client.receive_messages(visibility_timeout=visibility_timeout, max_messages=1)
    with pytest.raises(Crash):
        service.handle_message(message.content)
    service.crashpoint = lambda name: None


def _cleanup_items_of_an_older_record(service: MoveService, estate: Estate) -> str:
    """A committed move whose cleanup worker died right after creating the items, then made to look
    like a record saved before ``itemsCreated``/``removing`` existed, with its first item Done."""
    move_id = str(service.start(move_body(estate))["id"])
    drain(service)
    service.commit(move_id)

    def die_after_items(name: str) -> None:
        if name == "cleanup:after-items":
            raise Crash(name)

    _dies_handling_the_next_message(service, die_after_items, visibility_timeout=1)
    record = service.store.get_move(move_id)
    assert record is not None
    entry = record.phase_entry("cleanup")
    assert entry.pop("itemsCreated") is True and "removing" in entry  # saved with the items
    del entry["removing"]
    service.store.save_move(record)
    first = next(i for i in service.store.list_items(move_id, "cleanup") if not i.data.get("_final"))
    first.status, first.result = "Done", {"outcome": "kept"}
    service.store.save_items([first])
    return move_id


def test_items_a_record_does_not_know_of_are_listed_not_reset(
    emulated_service: MoveService, estate: Estate, clients: AzureClients
) -> None:
    """The first fan-out inserts a phase's items without listing them; items that exist although the
    record does not say so (a record saved before it did) fail that insert whole, and the step lists
    them instead: a Done mark stays Done, the rest run, and cleanup saves ``removing`` first."""
    service = emulated_service
    move_id = _cleanup_items_of_an_older_record(service, estate)
    drain(service)
    status = service.get(move_id)
    assert status["status"] == "Completed", status.get("error")
    items = service.store.list_items(move_id, "cleanup")
    assert all(i.status == "Done" for i in items), [(i.key, i.status) for i in items]
    assert [i.result for i in items].count({"outcome": "kept"}) == 1  # not run again: not reset
    record = service.store.get_move(move_id)
    assert record is not None and "removing" in record.phase_entry("cleanup")
    assert_no_duplicates(clients, estate, status["target"])


def test_a_done_cleanup_item_still_refuses_discard_without_the_removing_mark(
    emulated_service: MoveService, estate: Estate
) -> None:
    """A move recorded before ``removing`` existed, or a batch of cleanup items (each marked Done on
    its own entity): a cleanup item Done is enough to refuse a discard."""
    service = emulated_service
    move_id = _cleanup_items_of_an_older_record(service, estate)
    service.cancel(move_id)
    with pytest.raises(MoveConflict) as refused:
        service.discard(move_id)
    assert refused.value.code == "InvalidMoveState"
