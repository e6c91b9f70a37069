"""Each event reaches Event Grid once when nothing fails; the start and decommission windows close.

Real Azurite, the emulator's Event Grid sink (``GET /_emulator/events``), several engine instances
working one queue in parallel (as a scaled-out Function App does). No sleeps: pollers run until the
queue is idle, and time that must pass (a claim's lease, an orphaned lock) is skipped with an
injected clock.
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from idmove.estate import Estate, clients_for, seed
from shared.errors import MoveConflict
from shared.outbox import CLAIM_LEASE_SECONDS
from shared.service import LOCK_ORPHAN_SECONDS, MoveService
from shared.settings import Settings
from shared.work_queue import WorkMessage
from tests.plugins.emulator import SUBSCRIPTION, configure, identity_path, put_identity
from tests.plugins.engine import drain, poller_for
from tests.test_engine_moves import move_body


class Crash(RuntimeError):
    """The process "dies" here."""


class Clock:
    def __init__(self) -> None:
        self.offset = timedelta()

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)


def crash_once(
    point: str, when: Callable[[], bool] = lambda: True
) -> tuple[Callable[[str], None], list[str]]:
    crashed: list[str] = []

    def hook(name: str) -> None:
        if name == point and not crashed and when():
            crashed.append(name)
            raise Crash(f"died at {name}")

    return hook, crashed


def delivered(emu: str, subject_prefix: str) -> Counter[str]:
    """Event id -> how many times the Event Grid sink got it, for subjects starting with the prefix."""
    batches = httpx.get(f"{emu}/_emulator/events", timeout=10).json()
    flat = [e for batch in batches for e in (batch if isinstance(batch, list) else [batch])]
    return Counter(e["id"] for e in flat if str(e.get("subject", "")).startswith(subject_prefix))


def outbox_ids(service: MoveService, partition: str) -> set[str]:
    return {f"{partition}/{e['RowKey']}" for e in service.store.events(partition)}


def run_in_parallel(services: list[MoveService], timeout: float = 240) -> None:
    """Every instance polls the same queue with its own worker threads until the queue is idle."""
    errors: list[BaseException] = []

    def work(service: MoveService) -> None:
        try:
            poller_for(service).run_until_idle(timeout=timeout, idle_for=0.6)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(s,)) for s in services]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout + 30)
    assert not errors, errors


# ---- item 2: once when nothing fails, at most one duplicate after a crash between send and mark --------


def test_a_move_with_parallel_workers_sends_each_event_exactly_once(
    emulated_settings: Settings, emu: str
) -> None:
    estate: Estate = seed(clients_for(emu))
    instances = [MoveService(emulated_settings) for _ in range(3)]
    move_id = instances[0].start(move_body(estate))["id"]
    run_in_parallel(instances)
    assert instances[1].get(move_id)["status"] == "AwaitingCommit"
    instances[2].commit(move_id)
    run_in_parallel(instances)
    assert instances[0].get(move_id)["status"] == "Completed"

    sent = delivered(emu, f"moves/{move_id}")
    assert set(sent) == outbox_ids(instances[0], move_id)  # every event ...
    assert {i: n for i, n in sent.items() if n != 1} == {}  # ... exactly once
    kinds = Counter(e["Type"].rsplit(".", 1)[-1] for e in instances[0].store.events(move_id))
    assert kinds == Counter({"Started": 1, "PhaseCompleted": 6, "AwaitingCommit": 1, "Completed": 1})
    assert all(e["Published"] for e in instances[0].store.events(move_id))
    assert instances[1].publish_outbox() == 0  # the timer finds nothing left


def test_a_step_sends_the_events_it_wrote_without_querying_the_outbox(
    emulated_settings: Settings, emu: str
) -> None:
    """The rows a step writes are born claimed by it and sent by it: no step queries the table for
    unsent rows (the timer's sweep does), and no other instance claims them meanwhile."""
    estate: Estate = seed(clients_for(emu))
    service = MoveService(emulated_settings)

    def no_sweep() -> None:
        raise AssertionError("a step swept the outbox")

    service.store.pending_events = no_sweep  # type: ignore[assignment,method-assign]
    move_id = service.start(move_body(estate))["id"]
    drain(service)
    assert service.get(move_id)["status"] == "AwaitingCommit"
    service.commit(move_id)
    drain(service)
    assert service.get(move_id)["status"] == "Completed"
    rows = service.store.events(move_id)
    assert rows and all(e["Published"] and e.get("ClaimedAt") for e in rows)  # claimed at write, sent
    assert delivered(emu, f"moves/{move_id}") == Counter({f"{move_id}/{e['RowKey']}": 1 for e in rows})


def test_a_crash_between_send_and_mark_sends_those_events_once_more_at_most(
    emulated_settings: Settings, emu: str
) -> None:
    configure(httpx.Client(base_url=emu), replicationDelaySeconds=0)
    with httpx.Client(base_url=emu, headers={"Authorization": "Bearer t"}) as arm:
        put_identity(arm, "rg-outbox", "id-outbox")
    quiet = MoveService(emulated_settings.with_(eventgrid_endpoint=None))  # events stay in the outbox
    move_id = quiet.start(
        {
            "sourceIdentityId": identity_path("rg-outbox", "id-outbox"),
            "targetRegion": "northeurope",
            "dryRun": True,
        }
    )["id"]
    drain(quiet)
    assert quiet.get(move_id)["status"] == "Planned"
    pending = outbox_ids(quiet, move_id)
    assert len(pending) == 2 and delivered(emu, f"moves/{move_id}") == Counter()

    clock = Clock()
    dying = MoveService(emulated_settings, clock=clock)
    dying.outbox_crashpoint, crashed = crash_once("outbox:after-send")
    with pytest.raises(Crash):
        dying.publish_outbox()  # sent, never marked
    assert crashed and set(delivered(emu, f"moves/{move_id}")) == pending

    other = MoveService(emulated_settings, clock=clock)
    assert other.publish_outbox() == 0  # the claim holds: no duplicate while it is fresh
    clock.advance(CLAIM_LEASE_SECONDS)
    assert other.publish_outbox() == 2  # the lease ran out: its publisher died, send again
    assert other.publish_outbox() == 0
    assert delivered(emu, f"moves/{move_id}") == Counter({event_id: 2 for event_id in pending})


# ---- item 3: the start window and the decommission redelivery -----------------------------------------


def _identity(emu: str, location: str = "westeurope", subscription: str = SUBSCRIPTION) -> str:
    name = f"id-{uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=emu, headers={"Authorization": "Bearer t"}) as arm:
        put_identity(arm, f"rg-{name}", name, location, subscription)
    return identity_path(f"rg-{name}", name, subscription)


def test_a_crash_right_after_start_saved_the_move_needs_no_timer(
    emulated_service: MoveService, emu: str
) -> None:
    """The first message is sent before the record is saved: the move runs without resume_stalled."""
    configure(httpx.Client(base_url=emu), replicationDelaySeconds=0)
    emulated_service.crashpoint, crashed = crash_once("start:after-record")
    with pytest.raises(Crash):
        emulated_service.start(
            {"sourceIdentityId": _identity(emu), "targetRegion": "northeurope", "dryRun": True}
        )
    assert crashed
    (move,) = emulated_service.list()[0]
    drain(emulated_service)
    assert emulated_service.get(move["id"])["status"] == "Planned"


def test_a_crash_between_the_first_message_and_the_record_frees_the_identity_in_a_minute(
    emulated_settings: Settings, emu: str
) -> None:
    configure(httpx.Client(base_url=emu), replicationDelaySeconds=0)
    clock = Clock()
    service = MoveService(emulated_settings, clock=clock)
    body = {"sourceIdentityId": _identity(emu), "targetRegion": "northeurope", "dryRun": True}
    service.crashpoint, crashed = crash_once("start:after-send")
    with pytest.raises(Crash):
        service.start(body)
    service.crashpoint = lambda name: None
    assert crashed and service.list()[0] == []  # no move was written
    with pytest.raises(MoveConflict) as conflict:
        service.start(body)  # the orphaned lock names the move that never came
    assert conflict.value.code == "MoveInProgress" and conflict.value.location
    orphan = conflict.value.location.rsplit("/", 1)[-1]
    # the orphan's message waits for its record (bounded re-sends), writing nothing meanwhile
    (message,) = service.queue.client.receive_messages()
    assert WorkMessage.from_json(message.content).move_id == orphan
    service.handle_message(message.content)
    service.queue.client.delete_message(message)
    (again,) = service.queue.client.peek_messages()
    assert WorkMessage.from_json(again.content).waits == 1 and service.store.get_move(orphan) is None
    service.queue.client.clear_messages()  # rather than sit out the rest of its bounded waits

    clock.advance(LOCK_ORPHAN_SECONDS)
    move_id = service.start(body)["id"]
    drain(service)
    assert service.get(move_id)["status"] == "Planned"


@pytest.mark.parametrize(
    ("point", "which"),
    [("start:after-send", "first"), ("start:after-record", "last")],
    ids=["died between an identity's lock and its move", "died after the last move, before its done row"],
)
def test_a_redelivered_decommission_event_finishes_what_the_first_delivery_began(
    emulated_service: MoveService, emu: str, point: str, which: str
) -> None:
    configure(httpx.Client(base_url=emu), replicationDelaySeconds=0)
    subscription = str(uuid.uuid4())
    sources = {_identity(emu, "japaneast", subscription).lower() for _ in range(3)}
    data = {"sourceRegion": "japaneast", "targetRegion": "japanwest", "subscriptionIds": [subscription]}
    event_id = str(uuid.uuid4())
    starts: list[str] = []
    original = emulated_service.crashpoint

    def counting(name: str) -> None:
        if name == "start:after-send":
            starts.append(name)
        original(name)

    hook, crashed = crash_once(point, lambda: (len(starts) == 1) if which == "first" else len(starts) >= 3)
    emulated_service.crashpoint = lambda name: (counting(name), hook(name))[1]
    assert emulated_service.start_region_decommission(event_id, data)["status"] == "Accepted"
    # the starts run on the queue: the crashed one is delivered again; Event Grid delivers again too
    again = emulated_service.start_region_decommission(event_id, data)
    assert again["status"] == "Accepted"  # not finished yet: the listing runs again, starts nothing twice

    poller = drain(emulated_service, timeout=180)
    assert crashed == [point] and poller.failures >= 1
    summary = emulated_service.decommission(event_id)
    assert summary is not None and summary["status"] == "Done" and summary["skipped"] == []
    assert {s["id"].lower() for s in summary["started"]} == sources
    moves = [emulated_service.get(s["moveId"]) for s in summary["started"]]
    assert {m["source"]["id"].lower() for m in moves} == sources
    assert all(m["status"] not in ("Pending", "Running") for m in moves), [
        (m["id"], m["status"]) for m in moves
    ]
    summaries = delivered(emu, "decommissions/")
    assert len(summaries) == 1 and set(summaries.values()) == {1}, summaries


def test_a_writer_leaves_its_rows_to_the_sweep_once_their_claim_is_old(
    emulated_settings: Settings, emu: str
) -> None:
    """A chain of steps on one message can outlast the lease: the sweep may then claim and send the
    rows its writer still holds. The writer must not send them a second time afterwards."""
    configure(httpx.Client(base_url=emu), replicationDelaySeconds=0)
    with httpx.Client(base_url=emu, headers={"Authorization": "Bearer t"}) as arm:
        put_identity(arm, "rg-old-claim", "id-old-claim")
    service = MoveService(emulated_settings)
    publish = service._publish_quietly
    service._publish_quietly = lambda: None  # type: ignore[method-assign]  # the chain goes on
    body = {"sourceIdentityId": identity_path("rg-old-claim", "id-old-claim"), "targetRegion": "northeurope"}
    move_id = service.start({**body, "dryRun": True})["id"]
    old = (datetime.now(UTC) - timedelta(seconds=CLAIM_LEASE_SECONDS + 10)).isoformat()
    held = service.store._written.rows
    assert held and all(r["PartitionKey"] == move_id for r in held)
    for row in held:  # claimed when the chain began, longer ago than the lease
        row["ClaimedAt"] = old
        service.store.moves.update_entity(
            {"PartitionKey": move_id, "RowKey": row["RowKey"], "ClaimedAt": old}
        )
    assert MoveService(emulated_settings).publish_outbox() == len(held)  # the sweep: the lease ran out
    service._publish_quietly = publish  # type: ignore[method-assign]
    service._publish_quietly()  # the chain ends: its old rows are the sweep's, not sent again
    assert delivered(emu, f"moves/{move_id}") == Counter({f"{move_id}/{r['RowKey']}": 1 for r in held})
