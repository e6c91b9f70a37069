"""Start, validation, the per-identity lock, listing and the command table: Azurite only, no Azure."""

from __future__ import annotations

from typing import Any

import pytest
from azure.storage.queue import QueueClient

from shared.errors import ApiError
from shared.service import MoveService
from shared.statuses import COMMANDS, Status
from shared.store import Conflict

SUB = "00000000-0000-0000-0000-0000000000a1"
IDENTITY = f"/subscriptions/{SUB}/resourceGroups/rg-app/providers/Microsoft.ManagedIdentity/userAssignedIdentities/app-id"


def body(**extra: Any) -> dict[str, Any]:
    return {"sourceIdentityId": IDENTITY, "targetRegion": "northeurope", **extra}


def queue_count(service: MoveService) -> int:
    client = QueueClient.from_connection_string(
        service.settings.storage_connection_string, service.settings.queue_name
    )
    try:
        return int(client.get_queue_properties().approximate_message_count or 0)
    except Exception:  # the queue was never created
        return 0


def table_rows(service: MoveService) -> int:
    try:
        return len(list(service.store.moves.list_entities())) + len(list(service.store.locks.list_entities()))
    except Exception:  # the tables were never created
        return 0


BAD = [
    ({"targetRegion": "northeurope"}, "sourceIdentityId", "InvalidRequestContent"),
    (
        body(sourceIdentityId="/subscriptions/x/resourceGroups/rg"),
        "sourceIdentityId",
        "InvalidSourceIdentityId",
    ),
    (
        body(sourceIdentityId=IDENTITY.replace("userAssignedIdentities", "virtualMachines")),
        "sourceIdentityId",
        "InvalidSourceIdentityId",
    ),
    (body(targetRegion="mars"), "targetRegion", "InvalidTargetRegion"),
    (body(targetRegion="north europe; drop"), "targetRegion", "InvalidTargetRegion"),
    (body(isolationScope="Global"), "isolationScope", "InvalidRequestContent"),
    (body(resourceMap={"x": "y"}), "resourceMap", "InvalidRequestContent"),
    (body(dryRun="yes"), "dryRun", "InvalidRequestContent"),
    (body(surprise=1), "surprise", "InvalidRequestContent"),
    (body(targetName="-bad"), "targetName", "InvalidRequestContent"),
]


@pytest.mark.parametrize(("payload", "target", "code"), BAD)
def test_bad_input_is_400_and_writes_nothing(
    engine_service: MoveService, payload: Any, target: str, code: str
) -> None:
    with pytest.raises(ApiError) as caught:
        engine_service.start(payload)
    assert (caught.value.status, caught.value.code, caught.value.target) == (400, code, target)
    assert table_rows(engine_service) == 0
    assert queue_count(engine_service) == 0


def test_non_object_body_is_400(engine_service: MoveService) -> None:
    with pytest.raises(ApiError) as caught:
        engine_service.start(["not", "an", "object"])  # type: ignore[arg-type]
    assert caught.value.code == "InvalidRequestContent"


def test_start_writes_pending_move_event_and_one_message(engine_service: MoveService) -> None:
    accepted = engine_service.start(body(targetRegion="North Europe"))
    assert accepted["status"] == "Pending"
    assert accepted["links"]["self"] == f"/api/moves/{accepted['id']}"
    status = engine_service.get(accepted["id"])
    assert status["status"] == "Pending"
    assert status["request"]["targetRegion"] == "northeurope"
    assert [p["name"] for p in status["phases"]] == [
        "snapshot",
        "create",
        "grant",
        "rebind",
        "verify",
        "cleanup",
    ]
    assert status["source"]["name"] == "app-id"
    events = engine_service.store.events(accepted["id"])
    assert [e["Type"] for e in events] == ["IdentityMover.Move.Started"]
    assert queue_count(engine_service) == 1


def test_second_start_for_same_identity_is_409_with_location(engine_service: MoveService) -> None:
    first = engine_service.start(body())
    with pytest.raises(ApiError) as caught:
        engine_service.start(
            body(sourceIdentityId=IDENTITY.upper().replace("/SUBSCRIPTIONS/", "/subscriptions/"))
        )
    assert (caught.value.status, caught.value.code) == (409, "MoveInProgress")
    assert caught.value.location == f"/api/moves/{first['id']}"


def test_lock_is_free_again_once_the_move_is_at_rest(engine_service: MoveService) -> None:
    first = engine_service.start(body())
    engine_service.cancel(first["id"])
    assert engine_service.get(first["id"])["status"] == "Canceled"
    second = engine_service.start(body())
    assert second["id"] != first["id"]
    with pytest.raises(ApiError) as caught:  # the first cannot resume while the second holds the lock
        engine_service.retry(first["id"])
    assert caught.value.code == "MoveInProgress"


def test_lock_claim_is_create_if_not_exists(engine_service: MoveService) -> None:
    engine_service.store.ensure_tables()
    engine_service.store.create_lock(IDENTITY, "a", "2026-01-01T00:00:00+00:00")
    with pytest.raises(Conflict):
        engine_service.store.create_lock(IDENTITY.lower(), "b", "2026-01-01T00:00:00+00:00")


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_commands_refused_in_other_statuses(engine_service: MoveService, command: str) -> None:
    accepted = engine_service.start(body())  # Pending
    if Status.PENDING in COMMANDS[command]:
        getattr(engine_service, command)(accepted["id"])
        return
    with pytest.raises(ApiError) as caught:
        getattr(engine_service, command)(accepted["id"])
    assert (caught.value.status, caught.value.code) == (409, "InvalidMoveState")


def test_unknown_move_is_404(engine_service: MoveService) -> None:
    with pytest.raises(ApiError) as caught:
        engine_service.get("nope")
    assert caught.value.status == 404


def test_list_pages_with_opaque_tokens_and_filters(engine_service: MoveService) -> None:
    ids = set()
    for n in range(5):
        ident = IDENTITY.replace("app-id", f"app-{n}")
        ids.add(engine_service.start(body(sourceIdentityId=ident))["id"])
    engine_service.cancel(sorted(ids)[0])
    seen: list[str] = []
    token = None
    while True:
        page, token = engine_service.list(top=2, skip_token=token)
        assert len(page) <= 2
        seen += [m["id"] for m in page]
        if token is None:
            break
        assert isinstance(token, str)
    assert set(seen) == ids
    canceled, _ = engine_service.list(status="Canceled")
    assert [m["id"] for m in canceled] == [sorted(ids)[0]]
    with pytest.raises(ApiError):
        engine_service.list(status="Sleeping")


def test_emulator_credential_is_refused_for_remote_endpoints() -> None:
    from shared.azure_clients import AzureClients, CredentialRefused
    from shared.settings import Settings

    with pytest.raises(CredentialRefused, match=r"management\.azure\.com"):
        AzureClients(Settings(credential="emulator"))
    local = AzureClients(
        Settings(
            credential="emulator", arm_endpoint="http://127.0.0.1:1", graph_endpoint="http://localhost:1/v1.0"
        )
    )
    assert "redacted" in repr(local.credential)
