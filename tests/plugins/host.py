"""pytest fixtures for the Function App served by ``idmove host``: a whole local stack over real HTTP.

``local_stack`` (session) is what ``idmove up`` starts, on free ports: its own Azurite, the
emulator and ``python -m idmove host`` as processes. The host's settings make tests quick: small
engine backoff, 2 s queue retry visibility (``AzureFunctionsJobHost__`` overrides of host.json).
Tests share it, so each one makes its own identities (``make_identity``) rather than resetting.
A test that needs a host of its own settings (a function key, its own tables or queue) starts one
on the same stack with ``another_host``.
"""

from __future__ import annotations

import contextlib
import sys
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import httpx
import pytest

from idmove.stack import Stack, host_env, spawn_listening, stop_process

SUBSCRIPTION = "00000000-0000-0000-0000-0000000000a1"
HOST_SETTINGS = {
    "IDMOVE_BACKOFF_SCALE": "0.05",
    "IDMOVE_HOST_KEY": "",  # no key, whatever a local.settings.json says
    "IDMOVE_TABLE_PREFIX": "hosttest",
    # retry interval after a failure, and (locally) the lease of a running message, renewed at half-time
    "AzureFunctionsJobHost__extensions__queues__visibilityTimeout": "00:00:02",
    "AzureFunctionsJobHost__extensions__queues__maxPollingInterval": "00:00:00.2",
}
ARM_HEADERS = {"Authorization": "Bearer local-test-token"}
MakeIdentity = Callable[..., str]


@pytest.fixture(scope="session")
def local_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    logs: Path = tmp_path_factory.mktemp("stack-logs")
    with Stack.start(host_settings=HOST_SETTINGS, log_dir=logs) as stack:
        httpx.put(f"{stack.emulator_url}/_emulator/config", json={"replicationDelaySeconds": 0}, timeout=10)
        yield stack


@contextlib.contextmanager
def another_host(stack: Stack, log_dir: Path, settings: Mapping[str, str], name: str) -> Iterator[str]:
    """One more ``python -m idmove host`` on ``stack``'s storage and emulator, with ``settings`` (which
    carry its ``IDMOVE_HOST_KEY``); yields its base URL once it answers, stops it on the way out."""
    env = host_env(stack.storage, stack.emulator_url, dict(settings))
    status = f"/admin/host/status?code={settings['IDMOVE_HOST_KEY']}"
    cmd = [sys.executable, "-m", "idmove", "host"]
    proc, port = spawn_listening("host", cmd, status, log_dir / "host.log", env, name)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(proc)


@pytest.fixture(scope="session")
def host_url(local_stack: Stack) -> str:
    return local_stack.api_url


@pytest.fixture(scope="session")
def stack_emulator_url(local_stack: Stack) -> str:
    return local_stack.emulator_url


@pytest.fixture
def api(host_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=host_url, timeout=30) as client:
        yield client


@pytest.fixture
def arm(stack_emulator_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=stack_emulator_url, headers=ARM_HEADERS, timeout=30) as client:
        yield client


def identity_id(subscription: str, group: str, name: str) -> str:
    return (
        f"/subscriptions/{subscription}/resourceGroups/{group}"
        f"/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}"
    )


@pytest.fixture
def make_identity(arm: httpx.Client) -> MakeIdentity:
    """Create a resource group and a user-assigned identity in the emulator, the way a user would."""

    def make(location: str = "westeurope", subscription: str = SUBSCRIPTION, group: str | None = None) -> str:
        group = group or f"rg-{uuid.uuid4().hex[:8]}"
        name = f"id-{uuid.uuid4().hex[:10]}"
        rg = arm.put(
            f"/subscriptions/{subscription}/resourcegroups/{group}",
            params={"api-version": "2021-04-01"},
            json={"location": location},
        )
        assert rg.status_code in (200, 201), rg.text
        resource = identity_id(subscription, group, name)
        created = arm.put(resource, params={"api-version": "2023-01-31"}, json={"location": location})
        assert created.status_code in (200, 201), created.text
        return resource

    return make


def wait_for(api: httpx.Client, move_id: str, statuses: set[str], timeout: float = 90) -> dict[str, object]:
    """Poll the status URL until the move reaches one of ``statuses``."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        response = api.get(f"/api/moves/{move_id}")
        body: dict[str, object] = response.json()
        if body.get("status") in statuses:
            return body
        assert time.monotonic() < deadline, (
            f"move {move_id} stuck at {body.get('status')}/{body.get('phase')}"
        )
        time.sleep(0.25)
