"""``idmove host`` serves the app's non-HTTP triggers like the Functions host: Event Grid, queues, keys."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from idmove.stack import Stack
from shared.statuses import Status
from shared.store import StateStore
from shared.work_queue import WorkMessage, queue_client
from tests.plugins.host import HOST_SETTINGS, MakeIdentity, another_host, wait_for
from tests.waiting import wait_until

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


NOTIFY = {"aeg-event-type": "Notification"}


@pytest.mark.parametrize(
    ("params", "headers", "body", "status"),
    [
        ({"functionName": "nope"}, NOTIFY, b"[]", 404),  # unknown function, as the real host: 404
        ({}, NOTIFY, b"[]", 404),  # no functionName
        ({"functionName": "move_worker"}, NOTIFY, b"[]", 404),  # a function, but not an Event Grid one
        (FUNCTION, {}, b"[]", 400),  # no aeg-event-type header
        (FUNCTION, {"aeg-event-type": "Surprise"}, b"[]", 400),
        (FUNCTION, NOTIFY, b"{not json", 400),
        (FUNCTION, NOTIFY, b"[1, 2]", 400),
        (FUNCTION, NOTIFY, b'"text"', 400),
        (FUNCTION, NOTIFY, b"[]", 400),
        (FUNCTION, {"aeg-event-type": "SubscriptionValidation"}, b'[{"data": {}}]', 400),
        (FUNCTION, {"aeg-event-type": "SubscriptionValidation"}, b"{not json", 400),
        (FUNCTION, {"aeg-event-type": "Unsubscribe"}, b"", 202),
    ],
)
def test_webhook_answers_like_the_functions_host(
    api: httpx.Client, params: dict[str, str], headers: dict[str, str], body: bytes, status: int
) -> None:
    response = api.post(
        WEBHOOK, params=params, content=body, headers={"content-type": "application/json", **headers}
    )
    assert response.status_code == status, response.text
    if status >= 400:
        assert response.json()["error"]["message"]


def test_a_validation_event_without_the_header_starts_nothing_and_is_not_answered(
    api: httpx.Client,
) -> None:
    """The real host answers the handshake only for ``aeg-event-type: SubscriptionValidation``."""
    validation = [{"id": "v", "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
                   "subject": "", "eventTime": "2026-01-01T00:00:00Z", "dataVersion": "1",
                   "data": {"validationCode": "abc"}}]  # fmt: skip
    response = api.post(WEBHOOK, params=FUNCTION, json=validation)
    assert response.status_code == 400
    assert "validationResponse" not in response.text


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


def _summaries(emulator_url: str, event_id: str) -> list[dict[str, Any]]:
    """``IdentityMover.RegionDecommissioning.Started`` events the Event Grid sink got for ``event_id``."""
    deadline = time.monotonic() + 30
    while True:
        sent = httpx.get(f"{emulator_url}/_emulator/events", timeout=10).json()
        flat = [e for batch in sent for e in (batch if isinstance(batch, list) else [batch])]
        found = [
            e
            for e in flat
            if e.get("type") == "IdentityMover.RegionDecommissioning.Started"
            and (e.get("data") or {}).get("eventId") == event_id
        ]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def test_a_decommission_event_delivered_three_times_starts_one_move_per_identity(
    api: httpx.Client, make_identity: MakeIdentity, stack_emulator_url: str
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
        assert response.status_code == 202, response.text
    # the handler only records the event; the host's queue worker lists the region and starts the moves
    wait_until(lambda: len(_moves_of(api, in_region | {elsewhere})) >= 2, timeout=60, what="moves started")
    moves = _moves_of(api, in_region | {elsewhere})
    assert sorted(m["source"]["id"].lower() for m in moves) == sorted(in_region)
    summaries = _summaries(stack_emulator_url, event_id)
    assert len(summaries) == 1, summaries  # one summary, not one per delivery
    assert sorted(s["moveId"] for s in summaries[0]["data"]["started"]) == sorted(m["id"] for m in moves)
    for move in moves:
        assert move["request"]["targetRegion"] == "japanwest"
        wait_for(api, move["id"], {"AwaitingCommit", "Failed"})
        api.post(f"/api/moves/{move['id']}/discard")


def test_other_event_types_are_ignored(api: httpx.Client, make_identity: MakeIdentity) -> None:
    subscription = str(uuid.uuid4())
    source = make_identity("japaneast", subscription).lower()
    event = _decommission(str(uuid.uuid4()), subscription, "eventgrid")
    event[0]["eventType"] = "Contoso.Something.Else"
    assert api.post(WEBHOOK, params=FUNCTION, json=event, headers=NOTIFY).status_code == 202
    assert _moves_of(api, {source}) == []


@pytest.mark.parametrize(
    "data",
    [
        {"sourceRegion": "atlantis", "targetRegion": "japanwest"},
        {"sourceRegion": "japaneast", "targetRegion": "japaneast"},
        {"sourceRegion": "japaneast", "targetRegion": "japanwest", "subscriptionIds": ["not-a-guid"]},
        # refused with the event, not once per identity at its move's start (values as sent: no strip)
        {"sourceRegion": "japaneast", "targetRegion": "japanwest", "targetResourceGroup": "rg-target "},
        "just text",
    ],
    ids=["unknown region", "equal regions", "bad subscription", "bad target resource group", "not an object"],
)
def test_a_decommission_event_with_bad_data_is_accepted_and_starts_nothing(
    api: httpx.Client, make_identity: MakeIdentity, data: Any
) -> None:
    """Bad data never gets better: 202 (no redelivery storm), no move, the reason in the host log."""
    subscription = str(uuid.uuid4())
    source = make_identity("japaneast", subscription).lower()
    event = _decommission(str(uuid.uuid4()), subscription, "eventgrid")
    if isinstance(data, dict):
        event[0]["data"] = {"subscriptionIds": [subscription], **data}
    else:
        event[0]["data"] = data
    response = api.post(WEBHOOK, params=FUNCTION, json=event, headers=NOTIFY)
    assert response.status_code == 202, response.text
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
    record.phase_entry("snapshot").pop("step", None)  # run the step afresh, as a retry would
    store.save_move(record)
    work = queue_client(local_stack.storage, "idmove-work")
    poison = queue_client(local_stack.storage, "idmove-work-poison")
    work.send_message(WorkMessage(move_id, "snapshot").to_json())

    failed = wait_for(api, move_id, {"Failed"}, timeout=60)
    assert failed["error"]["code"] == "StepPoisoned", failed["error"]
    assert failed["error"]["target"] == "snapshot"
    deadline = time.monotonic() + 30  # the poison-queue function ran; its message is deleted right after
    while int(poison.get_queue_properties().approximate_message_count or 0) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert int(poison.get_queue_properties().approximate_message_count or 0) == 0


KEYED_QUEUE = "idmove-keyed"


@pytest.fixture(scope="module")
def keyed_host(local_stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A second host instance on the same storage (like a scale-out), with a function key."""
    settings = {**HOST_SETTINGS, "IDMOVE_HOST_KEY": "s3cret", "IDMOVE_QUEUE_NAME": KEYED_QUEUE}
    with another_host(local_stack, tmp_path_factory.mktemp("keyed"), settings, "keyed host") as url:
        yield url


def test_a_configured_host_key_is_required_like_function_keys(keyed_host: str) -> None:
    assert httpx.get(f"{keyed_host}/api/moves").status_code == 401
    assert httpx.get(f"{keyed_host}/api/moves", params={"code": "wrong"}).status_code == 401
    assert httpx.get(f"{keyed_host}/api/moves", params={"code": "s3cret"}).status_code == 200
    assert httpx.get(f"{keyed_host}/api/moves", headers={"x-functions-key": "s3cret"}).status_code == 200
    assert httpx.post(f"{keyed_host}{WEBHOOK}", params=FUNCTION, json=[]).status_code == 401
    # every route of the host, as in Azure: admin API and the Event Grid handshake too
    assert httpx.get(f"{keyed_host}/admin/host/status").status_code == 401
    assert httpx.get(f"{keyed_host}/admin/host/status", params={"code": "wrong"}).status_code == 401
    assert httpx.get(f"{keyed_host}/admin/host/status", params={"code": "s3cret"}).status_code == 200
    assert httpx.post(f"{keyed_host}/admin/functions/outbox_publisher", json={}).status_code == 401
    handshake = {"WebHook-Request-Origin": "eventgrid.azure.net"}
    assert httpx.options(f"{keyed_host}{WEBHOOK}", params=FUNCTION, headers=handshake).status_code == 401
    keyed = httpx.options(f"{keyed_host}{WEBHOOK}", params={**FUNCTION, "code": "s3cret"}, headers=handshake)
    assert keyed.status_code == 200


def test_queue_triggers_follow_the_queue_name_setting(
    keyed_host: str, local_stack: Stack, make_identity: MakeIdentity
) -> None:
    """The keyed host runs with IDMOVE_QUEUE_NAME=idmove-keyed: its engine sends there, and only its
    triggers (bound to %IDMOVE_QUEUE_NAME%) read it, so the move gets anywhere only if they follow it."""
    key = {"code": "s3cret"}
    status = httpx.get(f"{keyed_host}/admin/host/status", params=key).json()
    assert {"move_worker", "move_poison"} <= set(status["functions"])
    started = httpx.post(
        f"{keyed_host}/api/moves",
        params=key,
        json={"sourceIdentityId": make_identity(), "targetRegion": "northeurope", "dryRun": True},
    )
    assert started.status_code == 202, started.text
    deadline = time.monotonic() + 60
    while (move := httpx.get(started.headers["Location"]).json())["status"] != "Planned":
        assert time.monotonic() < deadline, move
        time.sleep(0.25)
    for name in (KEYED_QUEUE, f"{KEYED_QUEUE}-poison"):  # created by the host's pollers
        assert queue_client(local_stack.storage, name).get_queue_properties().name == name


def test_timer_functions_can_be_run_through_the_admin_api(api: httpx.Client) -> None:
    assert api.get("/admin/host/status").json()["state"] == "Running"
    assert api.post("/admin/functions/outbox_publisher", json={"input": ""}).status_code == 202
    assert api.post("/admin/functions/http_api", json={}).status_code == 404


def test_urls_handed_out_carry_a_key_sent_as_code_and_can_be_followed_as_they_are(
    keyed_host: str, make_identity: MakeIdentity
) -> None:
    """Logic Apps and scripts that authenticate with ``?code=`` follow Location and nextLink verbatim."""
    key = {"code": "s3cret"}
    sources = [make_identity("koreacentral") for _ in range(2)]
    for source in sources:
        started = httpx.post(
            f"{keyed_host}/api/moves",
            params=key,
            json={"sourceIdentityId": source, "targetRegion": "northeurope", "dryRun": True},
        )
        assert started.status_code == 202, started.text
        location = started.headers["Location"]
        assert parse_qs(urlsplit(location).query) == {"code": ["s3cret"]}
        assert all(
            parse_qs(urlsplit(url).query) == {"code": ["s3cret"]} for url in started.json()["links"].values()
        )
        deadline = time.monotonic() + 60
        while (status := httpx.get(location)).json()["status"] != "Planned":
            assert status.status_code in (200, 202) and time.monotonic() < deadline, status.text
            time.sleep(0.25)
    again = httpx.post(
        f"{keyed_host}/api/moves",
        params=key,
        json={"sourceIdentityId": sources[0], "targetRegion": "northeurope"},
    )
    assert again.status_code == 202  # a Planned move is at rest: a new move may start
    conflict = httpx.post(
        f"{keyed_host}/api/moves",
        params=key,
        json={"sourceIdentityId": sources[0], "targetRegion": "uksouth"},
    )
    assert conflict.status_code == 409
    assert conflict.headers["Location"] == again.headers["Location"]
    assert httpx.get(conflict.headers["Location"]).status_code in (200, 202)

    page = httpx.get(f"{keyed_host}/api/moves", params={**key, "top": 1, "sourceRegion": "koreacentral"})
    assert page.status_code == 200, page.text
    next_link = page.json()["nextLink"]
    assert parse_qs(urlsplit(next_link).query)["code"] == ["s3cret"]
    followed = httpx.get(next_link)
    assert followed.status_code == 200, followed.text
    assert followed.json()["value"] and followed.json()["value"] != page.json()["value"]

    by_header = httpx.get(
        f"{keyed_host}/api/moves",
        params={"top": 1, "sourceRegion": "koreacentral"},
        headers={"x-functions-key": "s3cret"},
    )
    assert "code" not in parse_qs(
        urlsplit(by_header.json()["nextLink"]).query
    )  # never put a header key in a URL
    httpx.post(again.headers["Location"].replace("?", "/cancel?"))


def test_a_starting_stack_waits_for_its_own_process_not_whatever_answers_on_its_port(
    local_stack: Stack,
) -> None:
    """``wait_http`` counts an answer only from the process it started (``answered_by``): another
    test's emulator that took the host's port answered its readiness check with 401, and 23 tests then
    talked to it."""
    from idmove.stack import answered_by

    host, emulator = local_stack.processes["host"], local_stack.processes["emulator"]
    status = httpx.get(f"{local_stack.api_url}/admin/host/status")  # with or without a key, the host's
    health = httpx.get(f"{local_stack.emulator_url}/_emulator/health")
    assert answered_by(health, emulator) and not answered_by(health, host)
    assert answered_by(status, host) and not answered_by(status, emulator)
    arm = httpx.post(f"{local_stack.emulator_url}/runtime/webhooks/eventgrid")  # the emulator's 401 / 404
    assert not answered_by(arm, host)
