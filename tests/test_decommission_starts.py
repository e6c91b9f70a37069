"""A region decommission starts a page's moves with one ``starts`` message per up to 98 identities
(``shared/decommission.py``).

Real Azurite and the emulator; only the decommission's steps are worked (each move's own first
message is acknowledged unworked). What is under test: every move starts once (a duplicate delivery
of a ``starts`` message, a second listing of the page, a claim taken over, a message from before
``starts``), the storage it costs per identity (counted in ``StoreStats``, not timed) and the size of
its messages. Time that must pass (a claim's lease) is skipped with an injected clock.
"""

from __future__ import annotations

import base64
import json
import threading
import uuid
from collections import Counter
from typing import Any

import httpx
import pytest

from shared import crashpoints, outbox
from shared.decommission import (
    CLAIM_SECONDS,
    STARTS_PER_MESSAGE,
    _hash,
    is_step,
    move_id_for,
    partition_for,
)
from shared.models import MoveRequest
from shared.service import MoveService
from shared.settings import Settings
from tests.plugins.emulator import configure
from tests.plugins.engine import drain
from tests.test_decommission_fanout import SOURCE, TARGET, _identities, _moves
from tests.test_engine_outbox import Clock, Crash, crash_once

QUEUE_LIMIT = 64 * 1024  # a Storage queue message, after base64


class Starts:
    """Counts ``start_move`` per move id and works only the decommission's steps."""

    def __init__(self, service: MoveService) -> None:
        self.service = service
        self.counts: Counter[str] = Counter()
        self.bodies: list[str] = []  # every starts message received
        self.carrier: dict[str, str] = {}  # move id -> the starts message that named it
        self.lock = threading.Lock()
        self.start_move = service.decommissions.start_move
        service.decommissions.start_move = self.counting

    def counting(self, request: Any, move_id: str, who: dict[str, Any], delay: float = 0.0) -> dict[str, Any]:
        with self.lock:
            self.counts[move_id] += 1
        return self.start_move(request, move_id, who, delay)

    def handle(self, body: str, dequeue_count: int) -> None:
        if not is_step(body):
            return
        message = json.loads(body)
        if message["step"] == "starts":
            with self.lock:
                self.bodies.append(body)
                for identity_id in message["identities"]:
                    self.carrier[move_id_for(message["eventId"], identity_id)] = body
        self.service.handle_message(body, dequeue_count)


def _decommission(service: MoveService, emu: str, count: int, page_size: int = 100, **kw: Any) -> Any:
    configure(httpx.Client(base_url=emu), replicationDelaySeconds=0, pageSize=page_size)
    subscription = str(uuid.uuid4())
    sources = _identities(emu, subscription, count, **kw)
    data = {"sourceRegion": SOURCE, "targetRegion": TARGET, "subscriptionIds": [subscription]}
    return sources, data, str(uuid.uuid4())


def test_a_page_of_120_identities_starts_each_move_once_under_a_duplicate_delivery(
    emulated_settings: Settings, emu: str
) -> None:
    # no Event Grid: the outbox (2 transactions per move's Started event) is not the start's cost
    emulated_service = MoveService(emulated_settings.with_(eventgrid_endpoint=None))
    # ids as long as ARM makes them (resource group 90, name 128 characters): the biggest messages
    sources, data, event_id = _decommission(emulated_service, emu, 120, page_size=150, pad=90, name_pad=128)
    decommissions = emulated_service.decommissions
    # the start's own cost: the discovery run ahead is the snapshots' (tests/test_fleet_discovery.py)
    decommissions.discover_ahead = False
    seen: list[str] = []
    decommissions.crashpoint = seen.append
    starts = Starts(emulated_service)
    duplicated: list[str] = []

    def deliver_again_while_it_runs(
        request: Any, move_id: str, who: dict[str, Any], delay: float = 0.0
    ) -> dict[str, Any]:
        with starts.lock:
            body = None if duplicated else starts.carrier[move_id]
            duplicated.append(move_id)
        if body is not None:  # a second copy of the running message (same token, first delivery)
            emulated_service.handle_message(body, 1)
        return starts.counting(request, move_id, who, delay)

    decommissions.start_move = deliver_again_while_it_runs
    emulated_service.store.ensure_tables()
    before = Counter(emulated_service.stats.counts)
    assert emulated_service.start_region_decommission(event_id, data)["status"] == "Accepted"
    poller = drain(emulated_service, timeout=300, handler=starts.handle)
    cost = Counter(emulated_service.stats.counts) - before

    # one page: 98 + 22 identities, two starts messages, each under the queue's 64 KB
    sizes = sorted(len(json.loads(b)["identities"]) for b in starts.bodies)
    assert sizes == [120 - STARTS_PER_MESSAGE, STARTS_PER_MESSAGE], sizes
    longest = max(len(base64.b64encode(b.encode())) for b in starts.bodies)
    assert longest < QUEUE_LIMIT * 0.85, longest
    assert poller.failures == 0

    moves = _moves(emulated_service)
    assert sorted(json.loads(m["Request"])["sourceIdentityId"].lower() for m in moves) == sorted(sources)
    assert starts.counts == Counter({m["PartitionKey"]: 1 for m in moves}), starts.counts
    status = emulated_service.decommission(event_id)
    assert status is not None and status["status"] == "Done" and status["skipped"] == []
    assert set(status) == {"decommissionId", "status", "eventId", "started", "skipped"}
    assert all(set(s) == {"id", "moveId"} for s in status["started"])
    assert {s["moveId"] for s in status["started"]} == {m["PartitionKey"] for m in moves}
    assert set(seen) == set(crashpoints.for_decommission())

    # per identity: a move's lock, first message, index row and record, plus a share of the steps
    storage = sum(n for kind, n in cost.items() if kind.startswith(("table.", "queue.")))
    assert storage / 120 < 4.5, cost
    assert cost["table.transaction"] <= 2 + 2 + 120 + 4, cost  # links, marks, records, the rest

    for body in starts.bodies:  # late copies of both messages: their work is done
        emulated_service.handle_message(body, 1)
    assert sum(starts.counts.values()) == 120
    assert emulated_service.decommission(event_id) == status


def test_a_page_listed_again_waits_for_a_live_claim_takes_over_an_old_one_and_after_the_end_starts_nothing(
    emulated_service: MoveService, emu: str
) -> None:
    sources, data, event_id = _decommission(emulated_service, emu, 3)
    clock = Clock()
    decommissions = emulated_service.decommissions
    decommissions.clock = clock
    starts = Starts(emulated_service)
    hung: list[str] = []

    def handle(body: str, dequeue_count: int) -> None:
        if is_step(body) and json.loads(body)["step"] == "starts" and not hung:
            # its worker stops after the claim and never comes back (the message is gone with it)
            decommissions.crashpoint, _ = crash_once("decommission:after-claim")
            with pytest.raises(Crash):
                emulated_service.handle_message(body, dequeue_count)
            decommissions.crashpoint = lambda name: None
            hung.append(body)
            return
        starts.handle(body, dequeue_count)

    emulated_service.start_region_decommission(event_id, data)
    drain(emulated_service, timeout=60, handler=handle)
    (body,) = hung
    relisted = json.dumps({**json.loads(body), "token": uuid.uuid4().hex[:16]})  # the page's again
    emulated_service.handle_message(relisted, 1)
    assert starts.counts == Counter()  # the claim is young: its holder may be at work
    assert emulated_service.decommission(event_id)["status"] == "Starting"  # type: ignore[index]

    clock.advance(CLAIM_SECONDS + 1)
    emulated_service.handle_message(relisted, 1)  # now it may take the claim over
    ids = {move_id_for(event_id, i) for i in json.loads(body)["identities"]}
    assert starts.counts == Counter({m: 1 for m in ids})
    status = emulated_service.decommission(event_id)
    assert status is not None and status["status"] == "Done"
    assert sorted(s["id"].lower() for s in status["started"]) == sorted(sources)

    emulated_service.handle_message(body, 2)  # the first message after all: nothing left to do
    emulated_service.handle_message(relisted, 1)
    assert sum(starts.counts.values()) == 3

    # the page listed once more (its step redelivered): its row is written again, then its message
    pk, key = partition_for(event_id), json.loads(body)["key"]
    emulated_service.store.moves.upsert_entity({"PartitionKey": pk, "RowKey": f"pending|start|{key}"})
    emulated_service.handle_message(json.dumps({**json.loads(body), "token": "again"}), 1)
    assert sum(starts.counts.values()) == 3  # its ``ran|`` row says it is done: the row goes
    assert emulated_service.store.moves.get_entity(pk, "decommission")["Status"] == "Done"
    assert not list(
        emulated_service.store.moves.query_entities(
            "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi",
            parameters={"pk": pk, "lo": "pending|", "hi": "pending}"},
        )
    )


@pytest.mark.parametrize("point", [None, *crashpoints.for_decommission_start()])
def test_start_messages_sent_before_starts_existed_are_still_run(
    emulated_service: MoveService, emu: str, point: str | None
) -> None:
    sources, data, event_id = _decommission(emulated_service, emu, 4)
    pk = partition_for(event_id)
    decommissions = emulated_service.decommissions
    crashed: list[str] = []
    if point:
        decommissions.crashpoint, crashed = crash_once(point)
    starts = Starts(emulated_service)

    def old_page(body: str, dequeue_count: int) -> None:
        """The page step as it was: a ``pending|id|`` row and a ``start`` message per identity."""
        message = json.loads(body)
        if not (is_step(body) and message["step"] == "page"):
            starts.handle(body, dequeue_count)
            return
        for identity_id in sorted(sources):
            emulated_service.store.moves.upsert_entity(
                {"PartitionKey": pk, "RowKey": f"pending|id|{_hash(identity_id)}", "Identity": identity_id}
            )
            start = {"decommission": pk, "eventId": event_id, "step": "start", "identity": identity_id}
            start.update(move=message["move"], topic=message.get("topic"), token=uuid.uuid4().hex[:16])
            emulated_service.queue.send_text(json.dumps(start, separators=(",", ":")))
        decommissions._finish_subscription(pk, event_id, message["subscription"], None)

    emulated_service.start_region_decommission(event_id, data)
    drain(emulated_service, timeout=60, handler=old_page)
    assert crashed == ([point] if point else [])
    moves = _moves(emulated_service)
    assert sorted(json.loads(m["Request"])["sourceIdentityId"].lower() for m in moves) == sorted(sources)
    assert starts.counts == Counter({m["PartitionKey"]: 1 for m in moves})
    status = emulated_service.decommission(event_id)
    assert status is not None and status["status"] == "Done" and len(status["started"]) == 4


def test_a_start_run_again_with_its_move_id_reads_the_move_instead_of_writing_it_twice(
    emulated_service: MoveService, emu: str
) -> None:
    (source,), _, _ = _decommission(emulated_service, emu, 1)
    request = MoveRequest.parse({"sourceIdentityId": source, "targetRegion": TARGET})
    move_id = str(uuid.uuid4())
    first = emulated_service._start(request, move_id, {"by": "test"})
    before = Counter(emulated_service.stats.counts)
    again = emulated_service._start(request, move_id, {"by": "test"})  # e.g. a resumed starts message
    cost = Counter(emulated_service.stats.counts) - before
    assert again == first
    assert cost["queue.send"] == cost["table.upsert"] == cost["table.transaction"] == 0, cost
    index = emulated_service.store.moves.query_entities("MoveId eq @id", parameters={"id": move_id})
    assert len(list(index)) == 1


def test_the_outbox_is_published_once_per_message_not_once_per_move(
    emulated_service: MoveService, emu: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, data, event_id = _decommission(emulated_service, emu, 5)
    published: list[int] = []
    publish = outbox.publish_written

    def counting_publish(store: Any, clients: Any, entities: list[Any], crashpoint: Any = None) -> int:
        published.append(len(entities))
        return publish(store, clients, entities, crashpoint)

    monkeypatch.setattr(outbox, "publish_written", counting_publish)
    starts = Starts(emulated_service)
    emulated_service.start_region_decommission(event_id, data)
    poller = drain(emulated_service, timeout=60, handler=starts.handle)
    assert sum(starts.counts.values()) == 5
    # subscriptions, page, starts: one publish each (the handler's own is not a message's); the
    # starts message's sends the 5 moves' Started events and the summary, which it wrote itself
    assert len(published) == poller.handled - 5 == 3, (published, poller.handled)
    assert published[-1] == 6, published
    assert emulated_service.publish_outbox() == 0  # the timer's sweep: nothing left


def test_a_page_listed_again_after_it_changed_reads_its_moves_instead_of_starting_them_again(
    emulated_service: MoveService, emu: str
) -> None:
    """A redelivered page (or event) lists a page that changed meanwhile: its groups, and their keys,
    are new, so no claim says its identities were started. A move of the first listing that came to
    rest (its lock released) must be read, not started a second time (a second first message, a
    second list-index row, its ``Started`` outcome overwritten)."""
    sources, data, event_id = _decommission(emulated_service, emu, 3)
    starts = Starts(emulated_service)
    pages: list[str] = []

    def handle(body: str, dequeue_count: int) -> None:
        if is_step(body) and json.loads(body)["step"] == "page":
            pages.append(body)
        starts.handle(body, dequeue_count)

    emulated_service.start_region_decommission(event_id, data)
    drain(emulated_service, timeout=60, handler=handle)
    first = {move_id_for(event_id, i) for i in sources}
    assert starts.counts == Counter({m: 1 for m in first})
    resting = sorted(first)[0]
    record = emulated_service.store.get_move(resting)
    assert record is not None
    emulated_service.store.release_lock(record.source_id, resting)  # as when a move comes to rest
    subscription = data["subscriptionIds"][0]
    (added,) = _identities(emu, subscription, 1)  # the page changed

    emulated_service.handle_message(pages[0], 2)  # the page step's redelivery lists it again
    drain(emulated_service, timeout=60, handler=starts.handle)
    assert starts.counts == Counter({**{m: 1 for m in first}, move_id_for(event_id, added): 1})
    index = emulated_service.store.moves.query_entities("MoveId eq @id", parameters={"id": resting})
    assert len([r for r in index if str(r["RowKey"]).endswith(f"|{resting}")]) == 1  # list index rows
    status = emulated_service.decommission(event_id)
    assert status is not None and status["skipped"] == []
    assert {s["moveId"] for s in status["started"]} == {*first, move_id_for(event_id, added)}


def test_an_identity_whose_start_fails_every_time_is_skipped_alone(
    emulated_service: MoveService, emu: str
) -> None:
    """From the ``ISOLATE_FROM``-th delivery of a ``starts`` message on, an identity whose start fails
    with something unforeseen is Skipped (``StartFailed``) and the others start: it does not take
    the whole message's identities down with it when the message is poisoned."""
    sources, data, event_id = _decommission(emulated_service, emu, 3)
    starts = Starts(emulated_service)
    bad: list[str] = []

    def failing(request: Any, move_id: str, who: dict[str, Any], delay: float = 0.0) -> dict[str, Any]:
        if not bad:
            bad.append(move_id)  # the message's first identity: without isolation none would start
        if move_id == bad[0]:
            raise RuntimeError("this identity's start always fails")
        return starts.counting(request, move_id, who, delay)

    emulated_service.decommissions.start_move = failing
    emulated_service.start_region_decommission(event_id, data)
    drain(emulated_service, timeout=90, handler=starts.handle)
    status = emulated_service.decommission(event_id)
    assert status is not None and status["status"] == "Done", status
    (skipped,) = status["skipped"]
    assert (skipped["moveId"], skipped["reason"]) == (bad[0], "StartFailed"), skipped
    assert "always fails" in skipped["message"]
    others = {move_id_for(event_id, i) for i in sources} - {bad[0]}
    assert {s["moveId"] for s in status["started"]} == others
    assert starts.counts == Counter({m: 1 for m in others})


def test_an_identity_whose_move_was_written_before_its_start_failed_counts_as_started(
    emulated_service: MoveService, emu: str
) -> None:
    """The start failed three deliveries running, then at the 4th wrote the move and failed anyway
    (e.g. the answer to the record's write was lost): isolated, the identity is Started (its move
    exists and runs), not Skipped."""
    sources, data, event_id = _decommission(emulated_service, emu, 2)
    starts = Starts(emulated_service)
    flaky: list[str] = []

    def written_then_failed(
        request: Any, move_id: str, who: dict[str, Any], delay: float = 0.0
    ) -> dict[str, Any]:
        if not flaky:
            flaky.append(move_id)
        if move_id != flaky[0]:
            return starts.counting(request, move_id, who, delay)
        flaky.append(move_id)
        if len(flaky) <= 4:  # deliveries 1-3: nothing written
            raise RuntimeError("storage unavailable")
        starts.counting(request, move_id, who, delay)
        raise RuntimeError("the answer was lost")

    emulated_service.decommissions.start_move = written_then_failed
    emulated_service.start_region_decommission(event_id, data)
    drain(emulated_service, timeout=90, handler=starts.handle)
    status = emulated_service.decommission(event_id)
    assert status is not None and status["status"] == "Done" and status["skipped"] == [], status
    assert {s["moveId"] for s in status["started"]} == {move_id_for(event_id, i) for i in sources}


def _first_message_delays(
    service: MoveService, event_id: str, data: dict[str, Any]
) -> tuple[dict[str, float], Starts]:
    """Run only the decommission's steps (no discovery ahead); each move's first message's delay."""
    from shared.work_queue import WorkMessage

    service.decommissions.discover_ahead = False
    delays: dict[str, float] = {}
    send = service.queue.send

    def sending(message: WorkMessage, delay_seconds: float = 0) -> str:
        if message.phase == "snapshot" and message.move_id not in delays:
            delays[message.move_id] = delay_seconds
        return send(message, delay_seconds)

    service.queue.send = sending  # type: ignore[method-assign]
    starts = Starts(service)
    service.start_region_decommission(event_id, data)
    drain(service, timeout=60, handler=starts.handle)
    return delays, starts


def test_a_starts_messages_moves_reach_the_queue_one_after_another_at_the_budget_rate(
    emulated_settings: Settings, emu: str
) -> None:
    """The n-th move of a ``starts`` message is visible after n x ``START_SPACING_WRITES`` writes at the
    subscription's budget rate: the subscriptions' moves interleave in the queue, whatever order their
    ``starts`` steps ran in (all at once, the slowest step's subscription waited behind all others)."""
    from shared.decommission import START_SPACING_WRITES

    rate = 1.5  # IDMOVE_ARM_SHARED_RATE: 3 writes = 2 s
    service = MoveService(emulated_settings.with_(eventgrid_endpoint=None, arm_shared_rate=rate))
    sources, data, event_id = _decommission(service, emu, 4)
    delays, starts = _first_message_delays(service, event_id, data)
    (body,) = starts.bodies
    order = [move_id_for(event_id, i) for i in json.loads(body)["identities"]]
    assert sorted(order) == sorted(move_id_for(event_id, s) for s in sources)
    assert [delays[m] for m in order] == [n * START_SPACING_WRITES / rate for n in range(4)] == [0, 2, 4, 6]
    for move_id in order:  # each written, its first message sent (this drain works only the decommission)
        assert service.get(move_id)["status"] == "Pending"


def test_a_subscriptions_later_starts_messages_space_their_moves_after_the_earlier_ones(
    emulated_settings: Settings, emu: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two pages of a subscription's listing, two ``starts`` messages on the first: each message's
    moves become visible after those of the messages before it in the listing (each spaced its own
    from zero until 2026-12-02, so a subscription of several messages entered the queue that many
    times faster)."""
    from shared import decommission
    from shared.decommission import START_SPACING_WRITES

    monkeypatch.setattr(decommission, "STARTS_PER_MESSAGE", 2)
    rate = 1.5  # 3 writes = 2 s
    service = MoveService(emulated_settings.with_(eventgrid_endpoint=None, arm_shared_rate=rate))
    sources, data, event_id = _decommission(service, emu, 6, page_size=4)  # pages of 4 and 2
    delays, starts = _first_message_delays(service, event_id, data)
    messages = sorted((json.loads(b) for b in starts.bodies), key=lambda m: m["offset"])
    assert [(m["offset"], len(m["identities"])) for m in messages] == [(0, 2), (2, 2), (4, 2)]
    order = [move_id_for(event_id, i) for m in messages for i in m["identities"]]
    assert sorted(order) == sorted(move_id_for(event_id, s) for s in sources)
    spacing = START_SPACING_WRITES / rate
    assert [delays[m] for m in order] == [n * spacing for n in range(6)] == [0, 2, 4, 6, 8, 10]


def test_start_delays_wrap_around_within_the_spread_rather_than_pile_up_at_it() -> None:
    """Past ``START_SPREAD_MAX`` the delays start again from zero: capped, every identity from the
    200th on (ARM's 10/s) reached the queue at the same instant, a whole message at a time."""
    from shared.decommission import START_SPREAD_MAX, start_delay

    rate = 10.0  # 3 writes = 0.3 s
    assert [start_delay(n, rate) for n in range(3)] == pytest.approx([0.0, 0.3, 0.6])
    assert start_delay(199, rate) == pytest.approx(59.7)
    assert start_delay(200, rate) == pytest.approx(0.0, abs=1e-9)  # 60 s: around again
    later = [start_delay(n, rate) for n in range(200, 400)]
    assert max(later) < START_SPREAD_MAX and len({round(d, 6) for d in later}) == 200  # spread, not one block
    assert start_delay(5, 0.0) == pytest.approx(5 * 3 / 0.01 % START_SPREAD_MAX)  # a rate of 0 is clamped


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("subscriptionIds", [" 7d2f4b1a-6c3e-4f5a-8b9c-1e2d3f4a5b6c"]),
        ("targetResourceGroup", " rg-target"),
        ("targetResourceGroup", "rg target"),
    ],
)
def test_decommission_event_data_is_taken_as_sent_and_a_bad_target_group_is_refused_with_the_event(
    field: str, value: Any
) -> None:
    """As ``POST /api/moves``: no value is stripped, and what each move would refuse at its start
    is refused here, once (the handler logs it and starts nothing)."""
    from shared.errors import ApiError
    from shared.models import RegionDecommissionRequest

    data = {"sourceRegion": SOURCE, "targetRegion": TARGET, "subscriptionIds": [str(uuid.uuid4())]}
    assert RegionDecommissionRequest.parse({**data, "targetResourceGroup": "rg-target"})
    with pytest.raises(ApiError) as refused:
        RegionDecommissionRequest.parse({**data, field: value})
    assert refused.value.status == 400 and refused.value.code == "InvalidRequestContent"


def test_a_decommission_whose_stored_request_no_longer_parses_fails_instead_of_poisoning_forever(
    emulated_service: MoveService, emu: str
) -> None:
    """A request stored by an older version (an empty ``targetResourceGroup``, which was stripped
    and kept) that today's rules refuse: its ``subscriptions`` step fails the decommission at once,
    with why, instead of failing 5 deliveries and leaving it ``Starting``; a poisoned
    ``subscriptions`` step fails it too."""
    _, data, event_id = _decommission(emulated_service, emu, 2)
    emulated_service.start_region_decommission(event_id, data)
    pk = partition_for(event_id)
    table = emulated_service.store.moves
    record = table.get_entity(pk, "decommission")
    legacy = {**json.loads(record["Request"]), "targetResourceGroup": ""}
    table.upsert_entity({"PartitionKey": pk, "RowKey": "decommission", "Request": json.dumps(legacy)})
    handled: list[str] = []

    def work(body: str, dequeue_count: int) -> None:
        handled.append(json.loads(body)["step"])
        emulated_service.handle_message(body, dequeue_count)  # raises: the message stays, poisons

    drain(emulated_service, timeout=30, handler=work)
    assert handled == ["subscriptions"]  # once: acknowledged, not retried
    status = emulated_service.decommission(event_id)
    assert status is not None and status["status"] == "Failed", status
    assert status["error"].startswith("StoredRequestInvalid: ") and "resource group" in status["error"]
    assert status["started"] == [] and _moves(emulated_service) == []

    other = str(uuid.uuid4())
    emulated_service.start_region_decommission(other, data)
    body = {"decommission": partition_for(other), "eventId": other, "step": "subscriptions"}
    emulated_service.decommissions.fail_step(json.dumps(body))
    status = emulated_service.decommission(other)
    assert status is not None and status["status"] == "Failed"
    assert status["error"] == "StepPoisoned: the subscriptions step failed 5 deliveries"


def test_a_poisoned_subscriptions_step_after_the_decommission_was_done_leaves_it_done(
    emulated_service: MoveService, emu: str
) -> None:
    """A delivery that sent its pages and then failed: the pages finish the decommission before the
    poison trigger runs. It stays Done, so a redelivered event still starts nothing."""
    _, data, event_id = _decommission(emulated_service, emu, 2)
    emulated_service.start_region_decommission(event_id, data)
    drain(emulated_service, timeout=60, handler=Starts(emulated_service).handle)
    status = emulated_service.decommission(event_id)
    assert status is not None and status["status"] == "Done" and len(status["started"]) == 2
    body = {"decommission": partition_for(event_id), "eventId": event_id, "step": "subscriptions"}
    emulated_service.decommissions.fail_step(json.dumps(body))
    status = emulated_service.decommission(event_id)
    assert status is not None and status["status"] == "Done" and "error" not in status
    assert emulated_service.start_region_decommission(event_id, data)["status"] == "Done"
