"""Verify: a missing item is first replication lag (retried), then a permanent diff with every gap."""

from __future__ import annotations

import json
from typing import Any

import pytest

from idmove.estate import Estate, clients_for, seed
from shared.azure_clients import AzureClients
from shared.service import MoveService
from shared.settings import Settings
from tests.plugins.engine import drain
from tests.test_engine_moves import move_body


@pytest.fixture
def estate(emu: str) -> Estate:
    return seed(clients_for(emu))


@pytest.fixture
def clients(emu: str) -> AzureClients:
    return clients_for(emu)


def _remove_grants(
    service: MoveService, clients: AzureClients, estate: Estate, move_id: str
) -> dict[str, Any]:
    """Take two things away from the new identity, as if Entra/ARM had not replicated them yet."""
    target = service.store.get_move(move_id).target  # type: ignore[union-attr]
    group = estate.group_ids[0]
    clients.graph.delete(f"/groups/{group}/members/{target['principalId']}/$ref")
    clients.msi(estate.subscription_id).federated_identity_credentials.delete(
        target["resourceGroup"], target["name"], "fic-1"
    )
    return {"group": group, "target": target}


def test_missing_items_are_lag_first_then_verify_passes(
    emulated_service: MoveService, estate: Estate, clients: AzureClients
) -> None:
    move_id = emulated_service.start(move_body(estate))["id"]
    seen: list[int] = []
    removed: dict[str, Any] = {}

    def handler(body: str, dequeue_count: int) -> None:
        message = json.loads(body)
        if message["phase"] == "verify":
            seen.append(message["attempt"])
            if message["attempt"] == 0 and not removed:
                removed.update(_remove_grants(emulated_service, clients, estate, move_id))
            if message["attempt"] == 2:  # "replication" catches up before the third look
                target = removed["target"]
                graph = clients.graph
                graph.post(
                    f"/groups/{removed['group']}/members/$ref",
                    {"@odata.id": f"{graph.endpoint}/directoryObjects/{target['principalId']}"},
                )
                from azure.mgmt.msi.models import FederatedIdentityCredential

                clients.msi(estate.subscription_id).federated_identity_credentials.create_or_update(
                    target["resourceGroup"],
                    target["name"],
                    "fic-1",
                    FederatedIdentityCredential(
                        issuer="https://token.actions.githubusercontent.com",
                        subject="repo:contoso/payments:environment:prod",
                        audiences=["api://AzureADTokenExchange"],
                    ),
                )
        emulated_service.handle_message(body, dequeue_count)

    drain(emulated_service, handler=handler)
    status = emulated_service.get(move_id)
    assert status["status"] == "AwaitingCommit", status.get("error")
    assert seen[:3] == [0, 1, 2]


def test_items_still_missing_after_the_declared_attempts_fail_with_the_full_diff(
    emulated_settings: Settings, estate: Estate, clients: AzureClients
) -> None:
    service = MoveService(emulated_settings.with_(backoff_scale=0.01))
    move_id = service.start(move_body(estate))["id"]
    attempts: list[int] = []

    def handler(body: str, dequeue_count: int) -> None:
        message = json.loads(body)
        if message["phase"] == "verify":
            if not attempts:
                _remove_grants(service, clients, estate, move_id)
            attempts.append(message["attempt"])
        service.handle_message(body, dequeue_count)

    drain(service, handler=handler)
    status = service.get(move_id)
    assert status["status"] == "Failed"
    error = status["error"]
    assert error["code"] == "VerificationFailed"
    assert "federated credential fic-1" in error["message"]
    assert "membership of group sg-payments-readers" in error["message"]
    assert error["message"].startswith("2 missing")
    assert error["target"] == "fic-1"  # the first gap
    from shared.phases import BY_NAME

    assert len(attempts) == BY_NAME["verify"].max_attempts
    assert not any(p["status"] == "Running" for p in status["phases"])
