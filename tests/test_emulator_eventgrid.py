"""Event Grid custom-topic sink (FACTS.md "Event Grid"; spec EventGrid.json 2018-01-01)."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

URL = "/eventgrid/api/events"
CUSTOM_SCHEMA_EVENTS = json.loads(
    (
        Path(__file__).parent
        / "conformance/examples/Microsoft.EventGrid/2018-01-01/PublishEventsToEventGridTopicAsCustomSchemaEvents.json"
    ).read_text()
)["parameters"]["events"]
API = {"api-version": "2018-01-01"}
CLOUD = [
    {
        "id": "1",
        "source": "/identity-mover",
        "type": "IdentityMover.Move.Started",
        "specversion": "1.0",
        "subject": "moves/1",
        "data": {"a": 1},
    }
]
EG = [
    {
        "id": "2",
        "subject": "moves/2",
        "data": {},
        "eventType": "IdentityMover.RegionDecommissioning",
        "eventTime": "2025-01-01T00:00:00Z",
        "dataVersion": "1.0",
    }
]


def post(
    url: str, body: object, headers: dict[str, str] | None = None, raw: bytes | None = None
) -> httpx.Response:
    content = raw if raw is not None else json.dumps(body).encode()
    return httpx.post(
        f"{url}{URL}",
        params=API,
        content=content,
        headers={"aeg-sas-key": "k", "Content-Type": "application/json", **(headers or {})},
    )


def test_accepts_both_schemas_and_keeps_events(emulator_url: str) -> None:
    r = post(emulator_url, CLOUD, {"Content-Type": "application/cloudevents-batch+json; charset=utf-8"})
    assert r.status_code == 200 and r.content == b""
    assert post(emulator_url, EG).status_code == 200
    assert (
        httpx.post(
            f"{emulator_url}{URL}", params=API, json=EG, headers={"Authorization": "Bearer t"}
        ).status_code
        == 200
    )
    assert httpx.get(f"{emulator_url}/_emulator/events").json() == CLOUD + EG + EG


def test_rejects_malformed_batches(emulator_url: str) -> None:
    cases = [
        post(emulator_url, None, raw=b"{not json"),
        post(emulator_url, {"id": "x"}),
        post(emulator_url, []),
        post(
            emulator_url,
            [{k: v for k, v in CLOUD[0].items() if k != "source"}],
            {"Content-Type": "application/cloudevents-batch+json"},
        ),
        post(emulator_url, [{k: v for k, v in EG[0].items() if k != "dataVersion"}]),
        post(emulator_url, [{**CLOUD[0], "specversion": "0.3"}]),
        # the spec's custom-schema example: a CloudEvents / Event Grid schema topic refuses it
        post(emulator_url, CUSTOM_SCHEMA_EVENTS),
    ]
    for r in cases:
        assert r.status_code == 400 and r.json()["error"]["message"], r.text
    assert httpx.get(f"{emulator_url}/_emulator/events").json() == []


def test_needs_a_key_or_token(emulator_url: str) -> None:
    r = httpx.post(f"{emulator_url}{URL}", params=API, json=EG)
    assert r.status_code == 401
    assert post(emulator_url, EG, {"aeg-sas-key": ""}).status_code == 401
