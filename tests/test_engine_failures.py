"""Failures, retries and compensation end to end: faults, throttling, replication lag, duplicates, discard."""

from __future__ import annotations

import re
import time
from typing import Any

import httpx
import pytest
from azure.mgmt.msi.models import Identity

from idmove.estate import REGION, Estate, clients_for, seed
from idmove.queue_poller import QueuePoller
from shared.azure_clients import AzureClients
from shared.service import MoveService
from shared.work_queue import WorkMessage
from tests.plugins.engine import drain
from tests.test_decommission_fanout import decommission_steps_only
from tests.test_engine_moves import (
    WRITE_METHODS,
    full_dump,
    move_body,
    principal_state,
    requests,
    resource_views,
    run,
)


@pytest.fixture
def estate(emu: str) -> Estate:
    return seed(clients_for(emu))


@pytest.fixture
def clients(emu: str) -> AzureClients:
    return clients_for(emu)


def faults(emu: str, spec: list[dict[str, Any]] | None) -> None:
    if spec is None:
        httpx.delete(f"{emu}/_emulator/faults").raise_for_status()
    else:
        httpx.post(f"{emu}/_emulator/faults", json=spec).raise_for_status()


def config(emu: str, update: dict[str, Any]) -> None:
    response = httpx.put(f"{emu}/_emulator/config", json=update)
    response.raise_for_status()  # an emulator that cannot apply a config is a failure, not a skip


def capture_sends(service: MoveService) -> list[tuple[WorkMessage, float]]:
    """Every message the service's queue is sent from now on, with its delay; a delay is sent as at
    most 1 s (checked, not waited for)."""
    queue = service.queue
    sent: list[tuple[WorkMessage, float]] = []
    original = queue.send

    def send(message: WorkMessage, delay_seconds: float = 0) -> str:
        sent.append((message, delay_seconds))
        return original(message, min(delay_seconds, 1))

    queue.send = send  # type: ignore[method-assign]
    return sent


def assert_no_duplicates(clients: AzureClients, estate: Estate, target: dict[str, Any]) -> None:
    new = principal_state(clients, estate, target["principalId"])
    assert len(new["assignments"]) == 5, new["assignments"]
    assert len(set(new["assignments"])) == 5
    assert len(new["groups"]) == 2 and len(new["appRoles"]) == 1
    creds = list(
        clients.msi(estate.subscription_id).federated_identity_credentials.list(
            target["resourceGroup"], target["name"]
        )
    )
    assert len(creds) == 3
    views = resource_views(clients, estate)
    for short in ("web", "vm", "containers", "storage"):
        assert views[short]["userAssigned"].count(target["id"].lower()) == 1


def test_discard_after_awaiting_commit_restores_the_source_exactly(
    emulated_service: MoveService, estate: Estate, clients: AzureClients
) -> None:
    before = full_dump(clients, estate)
    status = run(emulated_service, move_body(estate))
    assert status["status"] == "AwaitingCommit", status.get("error")
    assert full_dump(clients, estate) != before  # the move changed things ...
    emulated_service.discard(status["id"])
    status = run(emulated_service, move_id=status["id"])
    assert status["status"] == "Discarded", status.get("error")
    assert full_dump(clients, estate) == before  # ... and discard put them back
    # and the lock is free again
    assert emulated_service.start(move_body(estate, dryRun=True))["status"] == "Pending"


def test_retry_after_an_injected_permanent_failure(
    emulated_service: MoveService, estate: Estate, clients: AzureClients, emu: str
) -> None:
    faults(
        emu,
        [
            {
                "method": "PUT",
                "pathPattern": "stpayments01/providers/Microsoft.Authorization/roleAssignments/",
                "status": 403,
                "times": 1,
            }
        ],
    )
    status = run(emulated_service, move_body(estate, autoCommit=True))
    assert status["status"] == "Failed"
    assert status["phase"] == "grant"
    assert status["error"]["code"] == "AuthorizationFailed"
    storage_assignment = next(a for a in estate.role_assignment_ids if "stpayments01" in a)
    assert status["error"]["target"] == storage_assignment
    faults(emu, None)
    emulated_service.retry(status["id"])
    status = run(emulated_service, move_id=status["id"])
    assert status["status"] == "Completed", status.get("error")
    assert_no_duplicates(clients, estate, status["target"])


def test_throttling_storm_still_completes_without_duplicates(
    emulated_service: MoveService, estate: Estate, clients: AzureClients, emu: str
) -> None:
    faults(emu, [{"method": "*", "pathPattern": "/", "status": 429, "rate": 0.3, "retryAfter": 0}])
    move_id = emulated_service.start(move_body(estate, autoCommit=True))["id"]
    drain(emulated_service, timeout=240)
    faults(emu, None)
    status = emulated_service.get(move_id)
    assert status["status"] == "Completed", status.get("error")
    assert sum(1 for r in requests(emu) if r["status"] == 429) > 10
    assert_no_duplicates(clients, estate, status["target"])


def test_arm_token_buckets_are_honoured(
    emulated_service: MoveService, estate: Estate, clients: AzureClients, emu: str
) -> None:
    config(
        emu,
        {"throttling": {"enabled": True, "timeScale": 20, "writes": {"capacity": 3, "refillPerSecond": 10}}},
    )
    status = run(emulated_service, move_body(estate, autoCommit=True))
    assert status["status"] == "Completed", status.get("error")
    assert_no_duplicates(clients, estate, status["target"])


def test_graph_404_for_a_fresh_service_principal_is_retried(
    emulated_service: MoveService, estate: Estate, clients: AzureClients, emu: str
) -> None:
    config(emu, {"replicationDelaySeconds": 3})
    status = run(emulated_service, move_body(estate, autoCommit=True))
    assert status["status"] == "Completed", status.get("error")
    graph_404 = [r for r in requests(emu) if "/graph/" in r["path"] and r["status"] == 404]
    assert graph_404, "the fresh principal should have been invisible for a while"
    assert_no_duplicates(clients, estate, status["target"])


def test_regional_target_with_cross_region_attachments_is_blocked(
    emulated_service: MoveService, estate: Estate, emu: str
) -> None:
    before = len(requests(emu))
    status = run(emulated_service, move_body(estate, isolationScope="Regional"))
    assert status["status"] == "Failed"
    assert status["error"]["code"] == "PlanBlocked"
    blocked = {b["target"] for b in status["plan"]["blocking"] if b["code"] == "CrossRegionAttachment"}
    assert blocked == {i.lower() for i in estate.attached_ids} or {b.lower() for b in blocked} == {
        i.lower() for i in estate.attached_ids
    }
    writes = [r for r in requests(emu)[before:] if r["method"] in WRITE_METHODS]
    assert writes == []


def test_every_message_delivered_twice_changes_nothing(
    emulated_service: MoveService, estate: Estate, clients: AzureClients, emu: str
) -> None:
    def twice(body: str, dequeue_count: int) -> None:
        emulated_service.handle_message(body, dequeue_count)
        emulated_service.handle_message(body, dequeue_count)

    move_id = emulated_service.start(move_body(estate, autoCommit=True))["id"]
    drain(emulated_service, handler=twice)
    status = emulated_service.get(move_id)
    assert status["status"] == "Completed", status.get("error")
    assert_no_duplicates(clients, estate, status["target"])
    events = emulated_service.store.events(move_id)
    kinds = [e["Type"].rsplit(".", 1)[-1] for e in events]
    assert kinds.count("Completed") == 1
    assert kinds.count("PhaseCompleted") == 6


def test_poison_messages_fail_the_move_with_the_reason(emulated_service: MoveService, estate: Estate) -> None:
    move_id = emulated_service.start(move_body(estate))["id"]

    def crash(body: str, dequeue_count: int) -> None:
        raise RuntimeError("worker crashed")

    settings = emulated_service.settings
    poller = QueuePoller(
        settings.storage_connection_string, settings.queue_name, crash, retry_visibility=0, poll_interval=0.05
    )
    poller.run_until_idle(timeout=60, idle_for=0.5)
    assert poller.poisoned == 1
    poison = QueuePoller(
        settings.storage_connection_string,
        settings.poison_queue_name,
        lambda b, n: emulated_service.handle_poison(b),
    )
    poison.run_until_idle(timeout=30, idle_for=0.5)
    status = emulated_service.get(move_id)
    assert status["status"] == "Failed"
    assert status["error"]["code"] == "StepPoisoned"


def test_region_decommission_is_idempotent_per_event(
    emulated_service: MoveService, estate: Estate, clients: AzureClients, emu: str
) -> None:
    msi = clients.msi(estate.subscription_id)
    msi.user_assigned_identities.create_or_update("rg-app", "batch-id", Identity(location=REGION))
    msi.user_assigned_identities.create_or_update("rg-app", "us-id", Identity(location="eastus"))
    data = {
        "sourceRegion": "West Europe",
        "targetRegion": "northeurope",
        "subscriptionIds": [estate.subscription_id],
    }
    steps = decommission_steps_only(emulated_service)
    assert emulated_service.start_region_decommission("evt-1", data)["status"] == "Accepted"
    drain(emulated_service, handler=steps)
    first = emulated_service.decommission("evt-1")
    assert first is not None and first["status"] == "Done"
    assert len(first["started"]) == 2 and first["skipped"] == []
    again = emulated_service.start_region_decommission("evt-1", data)
    assert again["status"] == "Done"  # a redelivery after the end starts nothing, sends nothing
    assert emulated_service.queue.client.peek_messages() == []
    emulated_service.start_region_decommission("evt-2", data)
    drain(emulated_service, handler=steps)
    other = emulated_service.decommission("evt-2")
    assert other is not None and other["started"] == []
    assert {s["reason"] for s in other["skipped"]} == {"MoveInProgress"}
    assert {s["location"] for s in other["skipped"]} == {
        f"/api/moves/{s['moveId']}" for s in first["started"]
    }
    sent = httpx.get(f"{emu}/_emulator/events").json()
    flat = [e for batch in sent for e in (batch if isinstance(batch, list) else [batch])]
    summaries = [e for e in flat if e.get("type") == "IdentityMover.RegionDecommissioning.Started"]
    assert len(summaries) == 1 and len(summaries[0]["data"]["started"]) == 2


def test_outbox_events_are_published_once_with_stable_ids(
    emulated_service: MoveService, estate: Estate, emu: str
) -> None:
    move_id = run(emulated_service, move_body(estate, dryRun=True))["id"]
    emulated_service.publish_outbox()
    sent = httpx.get(f"{emu}/_emulator/events").json()
    flat = [e for batch in sent for e in (batch if isinstance(batch, list) else [batch])]
    mine = [e for e in flat if e.get("subject") == f"moves/{move_id}"]
    assert [e["type"] for e in mine] == ["IdentityMover.Move.Started", "IdentityMover.Move.PhaseCompleted"]
    assert len({e["id"] for e in mine}) == len(mine)
    assert all(e["source"] == "/identity-mover" and e["specversion"] == "1.0" for e in mine)
    assert emulated_service.publish_outbox() == 0  # nothing pending twice


def test_crashpoint_between_writes_then_redelivery_converges(
    emulated_service: MoveService, estate: Estate, clients: AzureClients
) -> None:
    crashed: list[str] = []

    def crash_once(name: str) -> None:
        if name not in crashed and (name.startswith("grant:item-done") or name.endswith("before-save")):
            crashed.append(name)
            raise RuntimeError(f"crash at {name}")

    emulated_service.crashpoint = crash_once
    move_id = emulated_service.start(move_body(estate, autoCommit=True))["id"]
    drain(emulated_service, timeout=180)
    status = emulated_service.get(move_id)
    assert crashed
    assert status["status"] == "Completed", status.get("error")
    assert_no_duplicates(clients, estate, status["target"])


def test_cancel_stops_at_the_next_step(emulated_service: MoveService, estate: Estate, emu: str) -> None:
    move_id = emulated_service.start(move_body(estate))["id"]
    emulated_service.cancel(move_id)
    before = len(requests(emu))
    drain(emulated_service)
    assert emulated_service.get(move_id)["status"] == "Canceled"
    assert requests(emu)[before:] == []
    emulated_service.handle_message(WorkMessage(move_id, "snapshot").to_json(), 1)
    assert requests(emu)[before:] == []


def test_long_retry_after_leaves_the_handler_and_is_not_an_attempt(
    emulated_service: MoveService, estate: Estate, clients: AzureClients, emu: str
) -> None:
    # 12 x 429 "come back in 30 s" on one assignment: more than grant's max_attempts (10), so it only
    # completes if throttling is not counted as the step's failure
    faults(
        emu,
        [
            {
                "method": "PUT",
                "pathPattern": "stpayments01/providers/Microsoft.Authorization/roleAssignments/",
                "status": 429,
                "times": 12,
                "retryAfter": 30,
            }
        ],
    )
    sent = capture_sends(emulated_service)
    handled: list[float] = []

    def handler(body: str, dequeue_count: int) -> None:
        started = time.monotonic()
        try:
            emulated_service.handle_message(body, dequeue_count)
        finally:
            handled.append(time.monotonic() - started)

    move_id = emulated_service.start(move_body(estate, autoCommit=True))["id"]
    drain(emulated_service, handler=handler)
    status = emulated_service.get(move_id)
    assert status["status"] == "Completed", status.get("error")
    throttled = [r for r in requests(emu) if r["status"] == 429]
    assert len(throttled) == 12  # each one answered once: none slept and re-sent inline
    re_sent = [(m, d) for m, d in sent if m.phase == "grant" and m.batch and d >= 29]
    assert len(re_sent) == 12, [(m.batch, d) for m, d in sent]
    assert max(handled) < 29, max(handled)  # no handler sat out the 30-s Retry-After
    assert_no_duplicates(clients, estate, status["target"])


def test_short_retry_after_is_retried_inline(
    emulated_service: MoveService, estate: Estate, clients: AzureClients, emu: str
) -> None:
    faults(
        emu,
        [
            {
                "method": "PUT",
                "pathPattern": "stpayments01/providers/Microsoft.Authorization/roleAssignments/",
                "status": 429,
                "times": 2,
                "retryAfter": 1,
            }
        ],
    )
    status = run(emulated_service, move_body(estate, autoCommit=True))
    assert status["status"] == "Completed", status.get("error")
    assert len([r for r in requests(emu) if r["status"] == 429]) == 2
    assert_no_duplicates(clients, estate, status["target"])


def test_a_throttled_snapshot_resumes_from_what_it_read_and_clears_it(
    emulated_service: MoveService, estate: Estate, emu: str
) -> None:
    """A move's own snapshot throttled after both Resource Graph queries (a long Retry-After on a
    direct GET of a resource they found) keeps what it read; its re-run reads the identity again and
    resumes from the rest (no third query), and the kept progress is cleared once the snapshot is made."""
    web = estate.resources["web"]
    faults(
        emu,
        [{"method": "GET", "pathPattern": re.escape(web) + "$", "status": 429, "times": 1, "retryAfter": 30}],
    )
    service = emulated_service
    kept: list[Any] = []
    put_cached = service.store.put_cached

    def put(key: str, value: Any, now: str) -> None:
        if key.startswith("snapshotProgress|"):
            kept.append(value)
        put_cached(key, value, now)

    send = service.queue.send

    def send_soon(message: WorkMessage, delay_seconds: float = 0) -> None:
        send(message, min(delay_seconds, 1))  # the delay is Retry-After's; not waited for here

    service.store.put_cached = put  # type: ignore[method-assign]
    service.queue.send = send_soon  # type: ignore[method-assign]
    before = len(requests(emu))
    status = run(service, move_body(estate))
    assert status["status"] == "AwaitingCommit", status.get("error")
    log = requests(emu)[before:]
    assert [r["status"] for r in log if r["method"] == "GET" and r["path"].endswith(web)][:2] == [429, 200]
    queries = [r for r in log if "/providers/microsoft.resourcegraph/resources" in r["path"].lower()]
    assert len(queries) == 2, queries  # uses + candidates, once each
    identity = [r for r in log if r["method"] == "GET" and r["path"].lower() == estate.identity_id.lower()]
    assert len(identity) >= 2  # read again at the re-run (not kept)
    assert len(kept) == 2 and kept[1] is None, kept  # kept once, cleared once
    assert set(kept[0]) == {"subscriptions", "rows", "candidates", "principalId"}, kept[0]
