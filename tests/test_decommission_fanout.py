"""A region decommission is fanned out through the work queue (``shared/decommission.py``).

Real Azurite and the emulator. The handler's own work is counted, not timed: ARM requests in the
emulator's log and storage transactions in ``StoreStats`` while it runs. Only the decommission's
steps are worked here (each move's own first message is acknowledged unworked): what is under test
is that every move starts, once, and that the summary is stored and published once.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections import Counter
from typing import Any

import httpx
import pytest

from shared import crashpoints
from shared.decommission import SUMMARY_TYPE, is_step, partition_for
from shared.outbox import CLAIM_LEASE_SECONDS
from shared.service import MoveService
from shared.store import MOVE_ROW
from tests.plugins.emulator import configure, identity_path, put_identity
from tests.plugins.engine import drain
from tests.test_engine_outbox import Clock, Crash, crash_once, delivered

SOURCE, TARGET = "japaneast", "japanwest"
OWNER = {"Authorization": "Bearer t"}


def _identities(
    emu: str, subscription: str, count: int, location: str = SOURCE, pad: int = 0, name_pad: int = 0
) -> set[str]:
    """``count`` identities; ``pad`` lengthens names (a long id makes a big summary), ``name_pad``
    the identity's name alone."""
    made = set()
    name_pad = name_pad or pad
    with httpx.Client(base_url=emu, headers=OWNER, timeout=30) as arm:
        for n in range(count):
            tag = uuid.uuid4().hex[:8]
            group = f"rg-{tag}".ljust(pad, "g") if pad else f"rg-{tag}"
            name = f"id-{n:04d}-{tag}".ljust(name_pad, "x") if name_pad else f"id-{tag}"
            put_identity(arm, group, name, location, subscription)
            made.add(identity_path(group, name, subscription).lower())
    return made


def _arm_log(emu: str) -> list[dict[str, Any]]:
    return list(httpx.get(f"{emu}/_emulator/requests", timeout=30).json())


def decommission_steps_only(service: MoveService) -> Any:
    """Work a decommission's steps; a move's own messages are acknowledged without running."""

    def handle(body: str, dequeue_count: int) -> None:
        if is_step(body):
            service.handle_message(body, dequeue_count)

    return handle


def _moves(service: MoveService) -> list[Any]:
    rows = service.store.moves.query_entities("RowKey eq @row", parameters={"row": MOVE_ROW})
    return list(rows)


def _summary_events(emu: str, event_id: str) -> list[dict[str, Any]]:
    batches = httpx.get(f"{emu}/_emulator/events", timeout=30).json()
    flat = [e for batch in batches for e in (batch if isinstance(batch, list) else [batch])]
    return [e for e in flat if e.get("type") == SUMMARY_TYPE and e["data"].get("eventId") == event_id]


def test_a_decommission_of_200_identities_is_answered_with_o1_work_and_every_move_starts(
    emulated_service: MoveService, emu: str
) -> None:
    configure(httpx.Client(base_url=emu), replicationDelaySeconds=0, pageSize=50)
    subscription = str(uuid.uuid4())
    sources = _identities(emu, subscription, 200, pad=80)
    elsewhere = _identities(emu, subscription, 3, location="westeurope")
    data = {"sourceRegion": SOURCE, "targetRegion": TARGET, "subscriptionIds": [subscription]}
    event_id = str(uuid.uuid4())

    emulated_service.store.ensure_tables()
    before_log, before_stats = len(_arm_log(emu)), Counter(emulated_service.stats.counts)
    answer = emulated_service.start_region_decommission(event_id, data)
    handler_arm = _arm_log(emu)[before_log:]
    handler_storage = Counter(emulated_service.stats.counts) - before_stats

    assert answer["status"] == "Accepted"
    assert handler_arm == []  # the listing is the queue's work, not the handler's
    assert handler_storage["queue.send"] == 1  # one message, whatever the fleet's size
    assert handler_storage.total() <= 3, handler_storage  # + the decommission's row (+ queue create)

    before_log = len(_arm_log(emu))
    drain(emulated_service, timeout=300, handler=decommission_steps_only(emulated_service))
    listing = [
        r
        for r in _arm_log(emu)[before_log:]
        if r["method"] == "GET" and r["path"].lower().endswith("/userassignedidentities")
    ]
    assert len(listing) == 5  # one ARM call per page: 203 identities in the subscription, pages of 50

    moves = _moves(emulated_service)
    assert sorted(json.loads(m["Request"])["sourceIdentityId"].lower() for m in moves) == sorted(sources)
    assert not {json.loads(m["Request"])["sourceIdentityId"].lower() for m in moves} & elsewhere
    status = emulated_service.decommission(event_id)
    assert status is not None and status["status"] == "Done" and status["skipped"] == []
    assert {s["moveId"] for s in status["started"]} == {m["PartitionKey"] for m in moves}

    # the summary outgrows a Table Storage property (64 KB): stored in chunks, published once, whole
    (summary,) = _summary_events(emu, event_id)
    assert len(json.dumps(summary["data"]).encode()) > 64 * 1024
    assert {s["id"].lower() for s in summary["data"]["started"]} == sources
    assert summary["subject"] == f"decommissions/{partition_for(event_id).removeprefix('decommission-')}"
    (row,) = emulated_service.store.events(partition_for(event_id))
    assert row["Published"] and row["DataChunks"] >= 3
    assert emulated_service.publish_outbox() == 0
    assert emulated_service.start_region_decommission(event_id, data)["status"] == "Done"  # redelivered
    assert len(_moves(emulated_service)) == 200


@pytest.mark.parametrize("point", crashpoints.for_decommission())
def test_a_redelivery_during_the_fan_out_and_a_crashed_step_converge(
    emulated_service: MoveService, emu: str, point: str
) -> None:
    configure(httpx.Client(base_url=emu), replicationDelaySeconds=0, pageSize=10)
    subscription = str(uuid.uuid4())
    sources = _identities(emu, subscription, 30)
    data = {"sourceRegion": SOURCE, "targetRegion": TARGET, "subscriptionIds": [subscription]}
    event_id = str(uuid.uuid4())
    crash, crashed = crash_once(point)
    emulated_service.decommissions.crashpoint = crash
    if point == "decommission:after-summary":
        # the step that wrote the summary dies -- not another step's check that found it written (two
        # checks can run at once: the writer would then send it) -- and its process with it: the
        # rows its thread wrote are lost, not sent by that thread's next message as after an exception
        writers: set[int] = set()
        create = emulated_service.store.create_chunked_event

        def creating(event: Any) -> None:
            create(event)
            writers.add(threading.get_ident())

        def dying(name: str) -> None:
            if name == point and threading.get_ident() in writers and not crashed:
                emulated_service.store.take_written()
                crash(name)

        emulated_service.store.create_chunked_event = creating  # type: ignore[method-assign]
        emulated_service.decommissions.crashpoint = dying
    started: Counter[str] = Counter()
    start_move = emulated_service.decommissions.start_move

    def counting_start(request: Any, move_id: str, who: dict[str, Any], delay: float = 0.0) -> dict[str, Any]:
        started[move_id] += 1
        return start_move(request, move_id, who, delay)

    emulated_service.decommissions.start_move = counting_start
    if point == "decommission:after-record":  # the handler died: Event Grid delivers the event again
        with pytest.raises(Crash):
            emulated_service.start_region_decommission(event_id, data)
    assert emulated_service.start_region_decommission(event_id, data)["status"] == "Accepted"

    redelivered: list[dict[str, Any]] = []
    lock = threading.Lock()
    steps = decommission_steps_only(emulated_service)

    def handle(body: str, dequeue_count: int) -> None:
        steps(body, dequeue_count)
        with lock:  # Event Grid delivers the event again while the first pages fan out
            if json.loads(body).get("step") == "page" and not redelivered:
                redelivered.append(emulated_service.start_region_decommission(event_id, data))

    poller = drain(emulated_service, timeout=180, handler=handle)
    assert crashed == [point]
    assert poller.failures >= (point != "decommission:after-record")  # the crashed step came back
    assert redelivered and redelivered[0]["status"] == "Accepted"

    moves = _moves(emulated_service)
    assert sorted(json.loads(m["Request"])["sourceIdentityId"].lower() for m in moves) == sorted(sources)
    status = emulated_service.decommission(event_id)
    assert status is not None and status["status"] == "Done"
    assert {s["moveId"] for s in status["started"]} == {m["PartitionKey"] for m in moves}
    # each move was started once: the second listing's starts messages found the first's claim (or
    # its ``ran|`` row); a starts message that crashed after starting runs again, reading its moves
    assert started == Counter({s["moveId"]: 1 for s in status["started"]}), started
    # the summary is sent once by the step that wrote it; one that died after writing it left it
    # claimed: the timer's sweep sends it once the claim is older than the lease
    summary = f"{partition_for(event_id)}/event|00001"
    if point == "decommission:after-summary":
        assert delivered(emu, "decommissions/") == Counter()
        clock = Clock()
        clock.advance(CLAIM_LEASE_SECONDS)
        assert MoveService(emulated_service.settings, clock=clock).publish_outbox() == 1
    assert MoveService(emulated_service.settings).publish_outbox() == 0  # the timer: nothing left
    assert delivered(emu, "decommissions/") == Counter({summary: 1})

    again = emulated_service.start_region_decommission(event_id, data)  # after the end: nothing
    assert again["status"] == "Done" and emulated_service.queue.client.peek_messages() == []
    assert len(_moves(emulated_service)) == 30


def test_a_poisoned_starts_message_skips_its_identities_not_the_decommission(
    emulated_service: MoveService, emu: str
) -> None:
    configure(httpx.Client(base_url=emu), replicationDelaySeconds=0)
    subscription = str(uuid.uuid4())
    sources = _identities(emu, subscription, 3)
    other = str(uuid.uuid4())  # a second subscription, whose identity starts as usual
    (elsewhere,) = _identities(emu, other, 1)
    data = {"sourceRegion": SOURCE, "targetRegion": TARGET, "subscriptionIds": [subscription, other]}
    event_id = str(uuid.uuid4())
    emulated_service.start_region_decommission(event_id, data)
    poisoned: list[str] = []
    dying = threading.local()
    emulated_service.decommissions.crashpoint, _ = crash_once(
        "decommission:after-move", when=lambda: getattr(dying, "now", False)
    )

    def handle(body: str, dequeue_count: int) -> None:
        message = json.loads(body)
        if message.get("step") == "starts" and message["identities"][0].lower() in sources:
            # it dies after its first move (as on each of its 5 deliveries) and is set aside
            dying.now = True
            with pytest.raises(Crash):
                emulated_service.handle_message(body, dequeue_count)
            dying.now = False
            poisoned.append(body)
            return
        emulated_service.handle_message(body, dequeue_count)

    drain(emulated_service, timeout=60, handler=decommission_steps_only_with(emulated_service, handle))
    assert emulated_service.decommission(event_id)["status"] == "Starting"  # type: ignore[index]
    (body,) = poisoned
    emulated_service.handle_poison(body)
    status = emulated_service.decommission(event_id)
    assert status is not None and status["status"] == "Done"
    first = json.loads(body)["identities"][0].lower()  # its move was written before the crash
    assert sorted(s["id"].lower() for s in status["started"]) == sorted([first, elsewhere])
    assert sorted((s["id"].lower(), s["reason"]) for s in status["skipped"]) == sorted(
        (i, "StartFailed") for i in sources - {first}
    )
    assert {s["moveId"] for s in status["started"]} == {m["PartitionKey"] for m in _moves(emulated_service)}
    emulated_service.handle_poison(body)  # the poison trigger again: nothing changes
    assert emulated_service.decommission(event_id) == status


def decommission_steps_only_with(service: MoveService, handle: Any) -> Any:
    def only_steps(body: str, dequeue_count: int) -> None:
        if is_step(body):
            handle(body, dequeue_count)

    return only_steps
