"""Property-based run of the HTTP API against its own OpenAPI document, on the running host.

schemathesis reads ``GET /api/openapi.json`` from ``idmove host`` (the local stack: Azurite, the
emulator, the host as processes) and sends generated requests, valid and invalid, to every
operation. For each response: no 5xx, the status code, headers, content type and body are what the
document says; a 4xx carries ARM's error shape ``{"error": {"code", "message", "target"}}`` and
wrote nothing (the host's tables and the work queue are as they were).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.data.tables import TableServiceClient
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode, checks

from idmove.stack import Stack
from shared.work_queue import queue_client
from tests.plugins.host import HOST_SETTINGS, another_host

BUSY = ("Pending", "Running")


KEY = "fuzz-key"
SETTINGS = {
    **HOST_SETTINGS,
    "IDMOVE_HOST_KEY": KEY,  # the document declares function keys: requests without one must get 401
    "IDMOVE_TABLE_PREFIX": "schemafuzz",
    "IDMOVE_QUEUE_NAME": "idmove-schemafuzz",
}


@pytest.fixture(scope="module")
def fuzz_host(local_stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A host of its own on the stack's storage and emulator, with a function key and its own tables
    and queue, so that what it writes is all this test's doing."""
    with another_host(local_stack, tmp_path_factory.mktemp("schemathesis"), SETTINGS, "fuzz host") as url:
        yield url


@pytest.fixture(scope="module")
def api_schema(fuzz_host: str) -> Any:
    return schemathesis.openapi.from_url(f"{fuzz_host}/api/openapi.json?code={KEY}")


@pytest.fixture(scope="module")
def state_of(local_stack: Stack, fuzz_host: str) -> Iterator[Any]:
    """Everything the API could write (entities of the host's tables, queued messages), once no move
    is in flight: waits (bounded) for moves that earlier requests started to come to rest."""
    service = TableServiceClient.from_connection_string(local_stack.storage)
    prefix = SETTINGS["IDMOVE_TABLE_PREFIX"]
    tables = [service.get_table_client(f"{prefix}{name}") for name in ("moves", "locks")]
    work = queue_client(local_stack.storage, SETTINGS["IDMOVE_QUEUE_NAME"])
    with contextlib.suppress(ResourceExistsError):
        work.create_queue()

    def settled(timeout: float = 90) -> tuple[Any, ...]:
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=fuzz_host, params={"code": KEY}, timeout=30) as client:
            while True:
                busy = [
                    m
                    for status in BUSY
                    for m in client.get("/api/moves", params={"status": status}).json()["value"]
                ]
                queued = int(work.get_queue_properties().approximate_message_count or 0)
                if not busy and not queued:
                    break
                assert time.monotonic() < deadline, f"moves still in flight: {busy}"
                time.sleep(0.1)
        rows = []
        for table in tables:
            try:
                entities = list(table.list_entities())
            except ResourceNotFoundError:
                entities = []
            rows.append(
                tuple(sorted((e["PartitionKey"], e["RowKey"], str(e.metadata.get("etag"))) for e in entities))
            )
        return (*rows, queued)

    yield settled
    service.close()
    work.close()


def _operations(schema: Any) -> list[Any]:
    return [result.ok() for result in schema.get_all_operations()]


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
def test_every_operation_answers_as_its_openapi_document_says(
    api_schema: Any, state_of: Any, mode: GenerationMode
) -> None:
    operations = _operations(api_schema)
    assert len(operations) >= 6, [op.label for op in operations]
    seen: dict[str, set[int]] = {}

    for operation in operations:
        # the same examples every run (a suite that passes every time): random generation found three
        # real mismatches between the document and the validators on 2026-12-02, each as a CI failure
        # one run in a few. IDMOVE_FUZZ_RANDOM=1 explores afresh (and IDMOVE_FUZZ_EXAMPLES=60 deeper).
        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=int(os.environ.get("IDMOVE_FUZZ_EXAMPLES", "20")),
            derandomize=not os.environ.get("IDMOVE_FUZZ_RANDOM"),
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case: Any) -> None:
            before = state_of()
            response = case.call(headers={"x-functions-key": KEY}, timeout=30)
            seen.setdefault(case.operation.label, set()).add(response.status_code)
            assert response.status_code < 500, (case.method, case.formatted_path, response.text)
            # $skipToken is opaque ("follow nextLink rather than building this"): no schema can say
            # which strings are tokens we issued, so a well-formed made-up one may be refused
            opaque = "$skipToken" in (case.query or {})
            excluded = [checks.positive_data_acceptance] if opaque else []
            case.validate_response(response, excluded_checks=excluded)  # status, headers, body as documented
            if 400 <= response.status_code < 500:
                content_type = response.headers.get("content-type") or [""]
                assert content_type[0].startswith("application/json"), response.text
                error = response.json()["error"]
                assert set(error) == {"code", "message", "target"}, error
                assert isinstance(error["code"], str) and error["code"]
                assert state_of() == before, (case.method, case.formatted_path, response.text)

        check()
    assert set(seen) == {op.label for op in operations}, seen
