"""The emulator starts as a process, answers ARM through the real SDK clients, and resets."""

from __future__ import annotations

import httpx
from azure.mgmt.msi.models import Identity
from azure.mgmt.resource.resources.models import ResourceGroup

from tests.plugins.emulator import EmulatorProcess, SdkClients


def test_starts_quickly(emulator_process: EmulatorProcess) -> None:
    print(f"emulator startup: {emulator_process.startup_seconds * 1000:.0f} ms")
    assert emulator_process.startup_seconds < 5


def test_sdk_round_trip(emulator_sdk: SdkClients, emulator_url: str) -> None:
    emulator_sdk.resources.resource_groups.create_or_update("rg1", ResourceGroup(location="westeurope"))
    created = emulator_sdk.msi.user_assigned_identities.create_or_update(
        "rg1", "id1", Identity(location="westeurope")
    )
    assert created.principal_id and created.client_id
    assert [i.name for i in emulator_sdk.msi.user_assigned_identities.list_by_resource_group("rg1")] == [
        "id1"
    ]
    health = httpx.get(f"{emulator_url}/_emulator/health")
    assert health.json()["status"] == "ok" and isinstance(health.json()["processId"], int)


def test_reset_empties_the_estate(emulator_arm: httpx.Client) -> None:
    assert (
        emulator_arm.get(
            "/subscriptions/00000000-0000-0000-0000-0000000000a1/resourcegroups",
            params={"api-version": "2021-04-01"},
        ).json()["value"]
        == []
    )
