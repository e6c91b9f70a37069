"""Time-driven behaviour with an injected clock (Azurite only, no Azure): PhaseTimeout, resume_stalled, list counts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from azure.storage.queue import QueueClient

from shared.phases import BY_NAME
from shared.service import MoveService
from shared.settings import Settings
from shared.store import Item
from shared.work_queue import WorkMessage
from tests.test_engine_requests import IDENTITY, body


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def service(engine_settings: Settings, clock: Clock) -> MoveService:
    return MoveService(engine_settings, clock=clock)


def messages(service: MoveService) -> list[dict[str, Any]]:
    client = QueueClient.from_connection_string(
        service.settings.storage_connection_string, service.settings.queue_name
    )
    from azure.storage.queue import TextBase64DecodePolicy

    client._message_decode_policy = TextBase64DecodePolicy()
    import json

    return [json.loads(m.content) for m in client.peek_messages(max_messages=32)]


def test_a_phase_past_its_timeout_fails_with_phase_timeout(service: MoveService, clock: Clock) -> None:
    move_id = service.start(body())["id"]
    clock.advance(BY_NAME["snapshot"].timeout_seconds + 1)
    service.handle_message(WorkMessage(move_id, "snapshot").to_json(), 1)
    status = service.get(move_id)
    assert status["status"] == "Failed"
    assert status["error"]["code"] == "PhaseTimeout"
    assert status["phases"][0]["status"] == "Failed"
    kinds = [e["Type"] for e in service.store.events(move_id)]
    assert kinds == ["IdentityMover.Move.Started", "IdentityMover.Move.Failed"]
    # the identity is free again: a new move may start
    assert service.start(body())["status"] == "Pending"


def test_resume_stalled_resends_only_moves_idle_past_the_threshold(
    service: MoveService, clock: Clock
) -> None:
    stalled = service.start(body())["id"]
    service.queue.client.clear_messages()  # its message is lost (start sends it before saving the move)
    assert messages(service) == []
    clock.advance(300)
    fresh = service.start(body(sourceIdentityId=IDENTITY.replace("app-id", "other-id")))["id"]
    assert service.resume_stalled(older_than_seconds=600) == 0
    clock.advance(301)
    assert service.resume_stalled(older_than_seconds=600) == 1
    sent = messages(service)
    assert {(m["moveId"], m["phase"]) for m in sent} == {(fresh, "snapshot"), (stalled, "snapshot")}


def test_list_items_carry_the_same_per_item_counts_as_get(service: MoveService) -> None:
    move_id = service.start(body())["id"]
    record = service.store.get_move(move_id)
    assert record is not None
    record.phase = "grant"
    record.status = record.status.__class__("Running")
    service.store.save_move(record)
    service.store.add_items(
        move_id,
        "grant",
        [
            Item(move_id, "grant", f"role-{n}", "role", {}, status="Done" if n < 2 else "Pending")
            for n in range(3)
        ],
    )
    listed = {m["id"]: m for m in service.list()[0]}[move_id]
    got = service.get(move_id)
    assert listed["phases"] == got["phases"]
    grant = next(p for p in got["phases"] if p["name"] == "grant")
    assert grant["items"] == {"total": 3, "done": 2, "failed": 0}
