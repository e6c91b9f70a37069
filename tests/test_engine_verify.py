"""Verify: a missing item is first replication lag (retried), then a permanent diff with every gap."""

from __future__ import annotations

from typing import Any

import pytest
from azure.mgmt.msi.models import FederatedIdentityCredential

from idmove.estate import Estate, clients_for, seed
from shared.azure_clients import AzureClients
from shared.phases import BY_NAME
from shared.service import MoveService
from shared.settings import Settings
from shared.work_queue import WorkMessage
from tests.plugins.engine import drain
from tests.test_engine_moves import move_body, requests


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


def _verify_attempt(service: MoveService, move_id: str) -> int:
    record = service.store.get_move(move_id)
    assert record is not None
    return int(record.phase_entry("verify")["step"]["attempt"])


def _verify_reads(emu: str, target: dict[str, Any]) -> int:
    """How many times verify read the new principal's group memberships (only verify reads them)."""
    wanted = f"/servicePrincipals/{target['principalId']}/memberOf".lower()
    return sum(1 for r in requests(emu) if r["method"] == "GET" and r["path"].lower().endswith(wanted))


def test_missing_items_are_lag_first_then_verify_passes(
    emulated_service: MoveService, estate: Estate, clients: AzureClients, emu: str
) -> None:
    """Driven by what the engine runs (each verify attempt is claimed once), not by what the queue
    delivers: duplicate deliveries of a step are the engine's business and must not run it twice."""
    move_id = emulated_service.start(move_body(estate))["id"]
    attempts: list[int] = []
    removed: dict[str, Any] = {}

    def on_point(name: str) -> None:
        if name != "verify:after-claim":
            return
        attempt = _verify_attempt(emulated_service, move_id)
        attempts.append(attempt)
        if attempt == 0:
            removed.update(_remove_grants(emulated_service, clients, estate, move_id))
        if attempt == 2:  # "replication" catches up before the third look
            target = removed["target"]
            graph = clients.graph
            graph.post(
                f"/groups/{removed['group']}/members/$ref",
                {"@odata.id": f"{graph.endpoint}/directoryObjects/{target['principalId']}"},
            )
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

    emulated_service.crashpoint = on_point
    drain(emulated_service)
    status = emulated_service.get(move_id)
    assert status["status"] == "AwaitingCommit", status.get("error")
    assert attempts == [0, 1, 2]
    verify = next(p for p in status["phases"] if p["name"] == "verify")
    assert verify["attempts"] == 3 and "step" not in verify
    assert _verify_reads(emu, status["target"]) == 3  # Azure was read once per attempt, not per delivery


def test_items_still_missing_after_the_declared_attempts_fail_with_the_full_diff(
    emulated_settings: Settings, estate: Estate, clients: AzureClients, emu: str
) -> None:
    service = MoveService(emulated_settings.with_(backoff_scale=0.01))
    move_id = service.start(move_body(estate))["id"]
    attempts: list[int] = []

    def on_point(name: str) -> None:
        if name == "verify:after-claim":
            attempt = _verify_attempt(service, move_id)
            if not attempts:
                _remove_grants(service, clients, estate, move_id)
            attempts.append(attempt)

    service.crashpoint = on_point
    drain(service)
    status = service.get(move_id)
    assert status["status"] == "Failed"
    error = status["error"]
    assert error["code"] == "VerificationFailed"
    assert "federated credential fic-1" in error["message"]
    assert "membership of group sg-payments-readers" in error["message"]
    assert error["message"].startswith("2 missing")
    assert error["target"] == "fic-1"  # the first gap
    declared = BY_NAME["verify"].max_attempts
    assert attempts == list(range(declared))
    assert _verify_reads(emu, status["target"]) == declared
    assert not any(p["status"] == "Running" for p in status["phases"])


def test_duplicate_step_messages_run_the_step_once(
    emulated_service: MoveService, estate: Estate, emu: str
) -> None:
    """Two messages for one step (e.g. two batches completing the previous phase at once, a stalled-move
    resend, or a queue delivering twice): the first claims the step, the second is acknowledged
    without Azure reads."""
    service = emulated_service
    move_id = service.start(move_body(estate))["id"]
    duplicated: list[str] = []

    def on_point(name: str) -> None:
        if name == "rebind:before-save" and not duplicated:
            duplicated.append(name)  # a second message for the same verify step, sent at once
            record = service.store.get_move(move_id)
            assert record is not None
            service.queue.send(WorkMessage(move_id, "verify", after=record.version + 1))

    service.crashpoint = on_point
    drain(service)
    status = service.get(move_id)
    assert duplicated and status["status"] == "AwaitingCommit", status.get("error")
    assert _verify_reads(emu, status["target"]) == 1
    verify = next(p for p in status["phases"] if p["name"] == "verify")
    assert verify["attempts"] == 1
