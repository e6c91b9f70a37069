"""Random bodies for ``POST /api/moves`` against the running host: never a 5xx, every 4xx in ARM's
error shape, and a 4xx writes nothing (no table entity, no queue message).

Bounded (60 examples, no deadline) so it stays a test, not a soak.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from azure.data.tables import TableServiceClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from idmove.stack import Stack
from shared.work_queue import queue_client
from tests.plugins.host import HOST_SETTINGS, SUBSCRIPTION, identity_id

BUSY = {"Pending", "Running"}
SUB = st.sampled_from([SUBSCRIPTION, "not-a-guid", "", "00000000-0000-0000-0000-00000000000g"])
NAME = st.text(alphabet="abcXYZ019-_. /%", min_size=0, max_size=30)
IDENTITY_IDS = st.one_of(
    st.text(max_size=80),
    st.builds(identity_id, SUB, NAME, NAME),
    st.builds(lambda name: f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/{name}", NAME),
    st.just("/subscriptions/nope"),
    st.integers(),
    st.none(),
)  # fmt: skip
REGIONS = st.one_of(
    st.sampled_from(["northeurope", "North Europe", "atlantis", "", "westeurope ", "NORTHEUROPE"]),
    st.text(max_size=20),
    st.integers(),
    st.booleans(),
)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
OPTIONAL_FIELDS = {
    "targetResourceGroup": st.one_of(NAME, st.integers(), st.none()),
    "targetName": st.one_of(NAME, st.text(min_size=100, max_size=200), st.none()),
    "isolationScope": st.one_of(st.sampled_from(["Inherit", "None", "Regional", "regional", "Global"]), JSON_VALUES),
    "resourceMap": st.one_of(st.dictionaries(st.text(max_size=30), st.text(max_size=30), max_size=3), JSON_VALUES),
    "dryRun": st.one_of(st.booleans(), JSON_VALUES),
    "autoCommit": st.one_of(st.booleans(), JSON_VALUES),
    "allowPrivilegedRoles": st.one_of(st.booleans(), JSON_VALUES),
    "unknownField": JSON_VALUES,
}  # fmt: skip


@st.composite
def move_bodies(draw: st.DrawFn) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if draw(st.integers(0, 9)):  # mostly present: the interesting failures are past "missing"
        body["sourceIdentityId"] = draw(IDENTITY_IDS)
    if draw(st.integers(0, 9)):
        body["targetRegion"] = draw(REGIONS)
    for name in draw(st.sets(st.sampled_from(sorted(OPTIONAL_FIELDS)), max_size=4)):
        body[name] = draw(OPTIONAL_FIELDS[name])
    body.setdefault("dryRun", True)  # a 202 then ends as a plan, never a real move
    return body


SAFE_NAME = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=3, max_size=20).filter(
    lambda name: name[0].isalnum()
)


@st.composite
def nearly_valid_bodies(draw: st.DrawFn) -> dict[str, Any]:
    """A valid dry run for an identity that does not exist, with at most one field drawn at random."""
    body: dict[str, Any] = {
        "sourceIdentityId": identity_id(SUBSCRIPTION, draw(SAFE_NAME), draw(SAFE_NAME)),
        "targetRegion": draw(st.sampled_from(["northeurope", "uksouth", "japanwest"])),
        "dryRun": True,
    }
    field = draw(st.sampled_from(["", "sourceIdentityId", "targetRegion", *sorted(OPTIONAL_FIELDS)]))
    if field == "sourceIdentityId":
        body[field] = draw(IDENTITY_IDS)
    elif field == "targetRegion":
        body[field] = draw(REGIONS)
    elif field:
        body[field] = draw(OPTIONAL_FIELDS[field])
    body["dryRun"] = True if field != "dryRun" else body["dryRun"]
    return body


REQUESTS = st.one_of(
    move_bodies().map(lambda body: json.dumps(body).encode()),
    nearly_valid_bodies().map(lambda body: json.dumps(body).encode()),
    JSON_VALUES.map(lambda value: json.dumps(value).encode()),
    st.binary(max_size=200),
)


@pytest.fixture(scope="module")
def written(local_stack: Stack) -> Iterator[Any]:
    """A snapshot of everything the API could write: entities in the host's tables, queued messages."""
    service = TableServiceClient.from_connection_string(local_stack.storage)
    prefix = HOST_SETTINGS["IDMOVE_TABLE_PREFIX"]
    tables = [service.get_table_client(f"{prefix}{name}") for name in ("moves", "locks")]
    work = queue_client(local_stack.storage, "idmove-work")

    def snapshot() -> tuple[int, ...]:
        counts = [sum(1 for _ in table.list_entities(select=["PartitionKey"])) for table in tables]
        return (*counts, int(work.get_queue_properties().approximate_message_count or 0))

    yield snapshot
    service.close()
    work.close()


def _settle(api: httpx.Client, written: Any, timeout: float = 90) -> None:
    """Wait until no move is in flight and the work queue is empty (the last step's message is deleted
    only after its writes), so that only this test's requests could write."""
    deadline = time.monotonic() + timeout
    while (
        any(
            m["status"] in BUSY
            for status in BUSY
            for m in api.get("/api/moves", params={"status": status}).json()["value"]
        )
        or written()[-1]
    ):
        assert time.monotonic() < deadline, "moves still in flight"
        time.sleep(0.1)


def test_random_start_bodies_never_fail_the_server_and_4xx_writes_nothing(
    api: httpx.Client, written: Any
) -> None:
    _settle(api, written)
    seen: dict[int, int] = {}

    @settings(
        max_examples=60,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(content=REQUESTS)
    def run(content: bytes) -> None:
        before = written()
        response = api.post("/api/moves", content=content, headers={"content-type": "application/json"})
        seen[response.status_code] = seen.get(response.status_code, 0) + 1
        assert response.status_code < 500, (content, response.text)
        if response.status_code == 202:  # a valid request for an identity that does not exist: fine
            _settle(api, written)
            return
        assert 400 <= response.status_code < 500, (content, response.status_code, response.text)
        assert response.headers["content-type"].startswith("application/json")
        error = response.json()["error"]
        assert set(error) == {"code", "message", "target"}, error
        assert isinstance(error["code"], str) and error["code"] and isinstance(error["message"], str)
        assert error["target"] is None or isinstance(error["target"], str)
        assert written() == before, (content, response.text)

    run()
    assert sum(count for status, count in seen.items() if 400 <= status < 500) >= 20, seen
