"""pytest fixtures for the Azure control-plane emulator.

``emulator_process`` starts ``python -m emulator --port 0`` once per session (the same
command ``idmove emulator`` runs); ``emulator_url`` resets it (``POST /_emulator/reset``) before each
test and yields ``http://127.0.0.1:<port>``. ``sdk_clients(url)`` builds the real, unmodified Azure
SDK clients against it: only ``base_url``, the credential (a static token) and the https allowance
differ from production. The static-token helpers live here on purpose: the product has its own and
the emulator shares no code with it.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from azure.core.credentials import AccessToken, AccessTokenInfo
from azure.mgmt.authorization import AuthorizationManagementClient
from azure.mgmt.core.policies import ARMChallengeAuthenticationPolicy
from azure.mgmt.msi import ManagedServiceIdentityClient
from azure.mgmt.resource.resources import ResourceManagementClient
from azure.mgmt.resourcegraph import ResourceGraphClient

from idmove.stack import spawn_listening, stop_process

SUBSCRIPTION = "00000000-0000-0000-0000-0000000000a1"
ARM_SCOPE = "https://management.azure.com/.default"


class StaticTokenCredential:
    """A credential that always returns the same bearer token (the emulator accepts any)."""

    def __init__(self, token: str = "emulator-token") -> None:
        self.token = token

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self.token, int(time.time()) + 3600)

    def get_token_info(self, *scopes: str, options: Any = None) -> AccessTokenInfo:
        return AccessTokenInfo(self.token, int(time.time()) + 3600)


class LoopbackArmAuthPolicy(ARMChallengeAuthenticationPolicy):
    """ARM's own bearer policy, allowed over plain http (azure-core refuses bearer tokens on http)."""

    def on_request(self, request: Any) -> None:
        request.context.options["enforce_https"] = False
        super().on_request(request)


@dataclass
class SdkClients:
    msi: ManagedServiceIdentityClient
    authorization: AuthorizationManagementClient
    resources: ResourceManagementClient
    resource_graph: ResourceGraphClient

    def close(self) -> None:
        for client in (self.msi, self.authorization, self.resources, self.resource_graph):
            client.close()


def sdk_clients(base_url: str, subscription_id: str = SUBSCRIPTION) -> SdkClients:
    credential = StaticTokenCredential()

    def common() -> dict[str, Any]:
        return {"base_url": base_url, "authentication_policy": LoopbackArmAuthPolicy(credential, ARM_SCOPE)}

    return SdkClients(
        msi=ManagedServiceIdentityClient(credential, subscription_id, **common()),  # type: ignore[arg-type]
        authorization=AuthorizationManagementClient(credential, subscription_id, **common()),  # type: ignore[arg-type]
        resources=ResourceManagementClient(credential, subscription_id, **common()),  # type: ignore[arg-type]
        resource_graph=ResourceGraphClient(credential, **common()),  # type: ignore[arg-type]
    )


@dataclass
class EmulatorProcess:
    url: str
    process: subprocess.Popen[bytes]
    startup_seconds: float


@pytest.fixture(scope="session")
def emulator_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    log = tmp_path_factory.mktemp("emulator") / "emulator.log"
    started = time.perf_counter()
    process, port = spawn_listening("emulator", [sys.executable, "-m", "emulator"], "/_emulator/health", log)
    try:
        yield EmulatorProcess(f"http://127.0.0.1:{port}", process, time.perf_counter() - started)
    finally:
        stop_process(process, timeout=5)


@pytest.fixture
def emulator_url(emulator_process: EmulatorProcess) -> str:
    response = httpx.post(f"{emulator_process.url}/_emulator/reset", timeout=10)
    response.raise_for_status()
    return emulator_process.url


@pytest.fixture
def emulator_arm(emulator_url: str) -> Iterator[httpx.Client]:
    """A plain HTTP client with a bearer token, for raw REST calls to the emulator."""
    with httpx.Client(
        base_url=emulator_url, headers={"Authorization": "Bearer test-token"}, timeout=30
    ) as client:
        yield client


@pytest.fixture
def emulator_sdk(emulator_url: str) -> Iterator[SdkClients]:
    """The real Azure SDK management clients pointed at the emulator."""
    clients = sdk_clients(emulator_url)
    try:
        yield clients
    finally:
        clients.close()


# --- helpers for building an estate over plain REST -------------------------------------
ARM_API = {"api-version": "2021-04-01"}
MSI_API = {"api-version": "2024-11-30"}
RBAC_API = {"api-version": "2022-04-01"}


def rg_path(group: str, subscription: str = SUBSCRIPTION) -> str:
    return f"/subscriptions/{subscription}/resourceGroups/{group}"


def identity_path(group: str, name: str, subscription: str = SUBSCRIPTION) -> str:
    return f"{rg_path(group, subscription)}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}"


def put_group(
    client: httpx.Client, group: str, location: str = "westeurope", subscription: str = SUBSCRIPTION
) -> dict[str, Any]:
    r = client.put(rg_path(group, subscription), params=ARM_API, json={"location": location})
    assert r.status_code in (200, 201), r.text
    return dict(r.json())


def put_identity(
    client: httpx.Client,
    group: str,
    name: str,
    location: str = "westeurope",
    subscription: str = SUBSCRIPTION,
    **properties: Any,
) -> dict[str, Any]:
    put_group(client, group, location, subscription)
    body: dict[str, Any] = {"location": location}
    if properties:
        body["properties"] = properties
    r = client.put(identity_path(group, name, subscription), params=MSI_API, json=body)
    assert r.status_code in (200, 201), r.text
    return dict(r.json())


def configure(client: httpx.Client, **config: Any) -> dict[str, Any]:
    r = client.put("/_emulator/config", json=config)
    assert r.status_code == 200, r.text
    return dict(r.json())
