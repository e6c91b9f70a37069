"""pytest fixtures for the engine: isolated tables/queues on the session's Azurite, a service, a poller.

``engine_settings`` gives each test its own table prefix and queue names, so tests never see each
other's rows or messages. ``engine_service`` is a ``MoveService`` on them (emulator credential; the
ARM/Graph endpoints are the emulator's when the test asks for ``emulator_url`` through
``emulated_service``). ``drain(service)`` runs the work queue until idle like the Functions host.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest

from idmove.queue_poller import QueuePoller
from shared.service import MoveService
from shared.settings import Settings


def make_settings(
    connection_string: str, base_url: str = "http://127.0.0.1:9", **changes: object
) -> Settings:
    tag = uuid.uuid4().hex[:10]
    settings = Settings(
        storage_connection_string=connection_string,
        arm_endpoint=base_url,
        graph_endpoint=f"{base_url}/graph/v1.0",
        credential="emulator",
        queue_name=f"work-{tag}",
        table_prefix=f"t{tag}",
        max_parallel_items=4,
        backoff_scale=0.05,
        arm_retry_total=4,
    )
    return settings.with_(**changes) if changes else settings


@pytest.fixture
def engine_settings(storage_connection_string: str) -> Settings:
    return make_settings(storage_connection_string)


@pytest.fixture
def engine_service(engine_settings: Settings) -> MoveService:
    return MoveService(engine_settings)


def poller_for(service: MoveService, handler: Callable[[str, int], None] | None = None) -> QueuePoller:
    settings = service.settings
    return QueuePoller(
        settings.storage_connection_string,
        settings.queue_name,
        handler or service.handle_message,
        visibility_timeout=30,
        retry_visibility=1,
        poll_interval=0.1,
    )


def drain(
    service: MoveService, timeout: float = 120, handler: Callable[[str, int], None] | None = None
) -> QueuePoller:
    poller = poller_for(service, handler)
    poller.run_until_idle(timeout=timeout, idle_for=0.6)
    return poller


@pytest.fixture
def emulated_settings(storage_connection_string: str, emu: str) -> Settings:
    return make_settings(
        storage_connection_string,
        emu,
        eventgrid_endpoint=f"{emu}/eventgrid/api/events",
        eventgrid_key="test-key",
    )


@pytest.fixture
def emulated_service(emulated_settings: Settings) -> MoveService:
    return MoveService(emulated_settings)


@pytest.fixture(scope="session")
def _own_emulator() -> Iterator[str]:
    """Fallback while ``tests/plugins/emulator.py`` has no ``emulator_url``: our own emulator process."""
    import sys
    import tempfile
    from pathlib import Path

    from idmove.stack import spawn_listening, stop_process

    with tempfile.TemporaryDirectory(prefix="idmove-emulator-") as logs:
        cmd = [sys.executable, "-m", "emulator"]
        proc, port = spawn_listening("emulator", cmd, "/_emulator/health", Path(logs) / "emulator.log")
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            stop_process(proc)


@pytest.fixture
def emu(request: pytest.FixtureRequest) -> str:
    """A reset emulator base URL (the emulator plugin's ``emulator_url`` when it exists)."""
    import httpx

    try:
        url = str(request.getfixturevalue("emulator_url"))
    except pytest.FixtureLookupError:
        url = str(request.getfixturevalue("_own_emulator"))
        httpx.post(f"{url}/_emulator/reset").raise_for_status()
    return url
