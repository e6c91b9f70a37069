"""``idmove host`` serves the app's non-HTTP triggers like the Functions host: Event Grid, queues, keys."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from idmove.azurite import free_port
from idmove.stack import Stack, host_env, stop_process, wait_http
from shared.statuses import Status
from shared.store import StateStore
from shared.work_queue import WorkMessage, queue_client
from tests.plugins.host import HOST_SETTINGS, MakeIdentity, wait_for

WEBHOOK = "/runtime/webhooks/eventgrid"
FUNCTION = {"functionName": "region_decommissioning"}


def test_event_grid_schema_validation_handshake(api: httpx.Client) -> None:
    validation = [
        {
            "id": str(uuid.uuid4()),
            "topic": "/subscriptions/x/resourceGroups/rg/providers/Microsoft.EventGrid/topics/t",
            "subject": "",
            "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
            "eventTime": "2026-01-01T00:00:00Z",
            "dataVersion": "1",
            "data": {"validationCode": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6", "validationUrl": "https://x"},
        }
    ]
    response = api.post(
        WEBHOOK, params=FUNCTION, json=validation, headers={"aeg-event-type": "SubscriptionValidation"}
    )
    assert response.status_code == 200
    assert response.json() == {"validationResponse": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"}


def test_cloudevents_abuse_protection_handshake(api: httpx.Client) -> None:
    response = api.options(
        WEBHOOK, params=FUNCTION, headers={"WebHook-Request-Origin": "eventgrid.azure.net"}
    )
    assert response.status_code == 200
    assert response.headers["WebHook-Allowed-Origin"] == "eventgrid.azure.net"


def test_webhook_rejects_unknown_functions_and_bad_bodies(api: httpx.Client) -> None:
    assert api.post(WEBHOOK, params={"functionName": "nope"}, json=[]).status_code == 404
    assert api.post(WEBHOOK, json=[]).status_code == 400
    assert api.post(WEBHOOK, params=FUNCTION, content=b"{not json").status_code == 400


def _decommission(event_id: str, subscription: str, schema: str) -> Any:
    data = {"sourceRegion": "japaneast", "targetRegion": "japanwest", "subscriptionIds": [subscription]}
    if schema == "cloudevents":
        return {
            "specversion": "1.0",
            "id": event_id,
            "source": "/ops/regions",
            "type": "IdentityMover.RegionDecommissioning",
            "subject": "regions/japaneast",
            "time": "2026-01-01T00:00:00Z",
            "datacontenttype": "application/json",
            "data": data,
        }
    return [
        {
            "id": event_id,
            "topic": "/ops/regions",
            "subject": "regions/japaneast",
            "eventType": "IdentityMover.RegionDecommissioning",
            "eventTime": "2026-01-01T00:00:00Z",
            "dataVersion": "1.0",
            "data": data,
        }
    ]


def _moves_of(api: httpx.Client, sources: set[str]) -> list[dict[str, Any]]:
    found, url = [], "/api/moves?top=200"
    while url:
        page = api.get(url).json()
        found += [m for m in page["value"] if m["source"]["id"].lower() in sources]
        url = page.get("nextLink")
    return found


def test_a_decommission_event_delivered_three_times_starts_one_move_per_identity(
    api: httpx.Client, make_identity: MakeIdentity
) -> None:
    subscription = str(uuid.uuid4())
    in_region = {make_identity("japaneast", subscription).lower() for _ in range(2)}
    elsewhere = make_identity("westeurope", subscription).lower()
    event_id = str(uuid.uuid4())
    deliveries = [
        ("eventgrid", "application/json"),
        ("eventgrid", "application/json"),
        ("cloudevents", "application/cloudevents+json"),
    ]
    for schema, content_type in deliveries:
        body = _decommission(event_id, subscription, schema)
        response = api.post(
            WEBHOOK,
            params=FUNCTION,
            content=httpx.Request("POST", "http://x", json=body).content,
            headers={"content-type": content_type, "aeg-event-type": "Notification"},
        )
        assert response.status_code in (200, 202), response.text
    moves = _moves_of(api, in_region | {elsewhere})
    assert sorted(m["source"]["id"].lower() for m in moves) == sorted(in_region)
    for move in moves:
        assert move["request"]["targetRegion"] == "japanwest"
        wait_for(api, move["id"], {"AwaitingCommit", "Failed"})
        api.post(f"/api/moves/{move['id']}/discard")


def test_other_event_types_are_ignored(api: httpx.Client, make_identity: MakeIdentity) -> None:
    subscription = str(uuid.uuid4())
    source = make_identity("japaneast", subscription).lower()
    event = _decommission(str(uuid.uuid4()), subscription, "eventgrid")
    event[0]["eventType"] = "Contoso.Something.Else"
    assert api.post(WEBHOOK, params=FUNCTION, json=event).status_code in (200, 202)
    assert _moves_of(api, {source}) == []


def test_a_step_that_always_fails_is_poisoned_after_five_dequeues_and_the_move_fails(
    api: httpx.Client, local_stack: Stack, make_identity: MakeIdentity
) -> None:
    move_id = api.post(
        "/api/moves",
        json={"sourceIdentityId": make_identity(), "targetRegion": "northeurope", "dryRun": True},
    ).json()["id"]
    wait_for(api, move_id, {"Planned"})
    # Make the move's next step fail on every delivery: a stored request the engine cannot load.
    store = StateStore(local_stack.storage, HOST_SETTINGS["IDMOVE_TABLE_PREFIX"])
    record = store.get_move(move_id)
    assert record is not None
    record.status, record.phase = Status.RUNNING, "snapshot"
    record.request = {**record.request, "targetRegion": "no-such-region"}
    store.save_move(record)
    work = queue_client(local_stack.storage, "idmove-work")
    poison = queue_client(local_stack.storage, "idmove-work-poison")
    work.send_message(WorkMessage(move_id, "snapshot").to_json())

    failed = wait_for(api, move_id, {"Failed"}, timeout=60)
    assert failed["error"]["code"] == "StepPoisoned", failed["error"]
    assert failed["error"]["target"] == "snapshot"
    deadline = time.monotonic() + 10  # the poison-queue function ran; its message is deleted right after
    while int(poison.get_queue_properties().approximate_message_count or 0) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert int(poison.get_queue_properties().approximate_message_count or 0) == 0


@pytest.fixture(scope="module")
def keyed_host(local_stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A second host instance on the same storage (like a scale-out), with a function key."""
    port = free_port()
    log = tmp_path_factory.mktemp("keyed") / "host.log"
    env = host_env(
        local_stack.storage, local_stack.emulator_url, {**HOST_SETTINGS, "IDMOVE_HOST_KEY": "s3cret"}
    )
    with log.open("wb") as handle:
        proc = subprocess.Popen(
            [sys.executable, "-m", "idmove", "host", "--port", str(port)],
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=env,
        )
        try:
            wait_http(f"http://127.0.0.1:{port}/admin/host/status?code=s3cret", proc, "keyed host", log)
            yield f"http://127.0.0.1:{port}"
        finally:
            stop_process(proc)


def test_a_configured_host_key_is_required_like_function_keys(keyed_host: str) -> None:
    assert httpx.get(f"{keyed_host}/api/moves").status_code == 401
    assert httpx.get(f"{keyed_host}/api/moves", params={"code": "wrong"}).status_code == 401
    assert httpx.get(f"{keyed_host}/api/moves", params={"code": "s3cret"}).status_code == 200
    assert httpx.get(f"{keyed_host}/api/moves", headers={"x-functions-key": "s3cret"}).status_code == 200
    assert httpx.post(f"{keyed_host}{WEBHOOK}", params=FUNCTION, json=[]).status_code == 401


def test_timer_functions_can_be_run_through_the_admin_api(api: httpx.Client) -> None:
    assert api.get("/admin/host/status").json()["state"] == "Running"
    assert api.post("/admin/functions/outbox_publisher", json={"input": ""}).status_code == 202
    assert api.post("/admin/functions/http_api", json={}).status_code == 404
