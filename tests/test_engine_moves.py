"""End-to-end moves: Azurite + the emulator over real HTTP with the real SDK clients, no mocks.

Each test seeds the realistic estate of ``idmove/estate.py`` and drives the engine through its work
queue with ``QueuePoller`` (the Functions host's semantics).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.core.exceptions import ResourceNotFoundError

from idmove.estate import TARGET_REGION, Estate, clients_for, seed
from shared.azure_clients import AzureClients, GraphError
from shared.service import MoveService
from shared.settings import Settings
from shared.work_queue import WorkMessage
from tests.plugins.engine import drain

WRITE_METHODS = {"PUT", "PATCH", "DELETE"}
RESULTS = Path(__file__).resolve().parent.parent / ".pytest_cache" / "engine-costs.json"


@pytest.fixture
def estate(emu: str) -> Estate:
    return seed(clients_for(emu))


@pytest.fixture
def clients(emu: str) -> AzureClients:
    return clients_for(emu)


def requests(emu: str) -> list[dict[str, Any]]:
    return list(httpx.get(f"{emu}/_emulator/requests").json())


def move_body(estate: Estate, **extra: Any) -> dict[str, Any]:
    """A move of the seeded identity. Its GitHub and AKS federated credentials put steps in
    ``plan.actionsRequired``, which hold autoCommit: a test asking for autoCommit acknowledges them
    (``tests/test_engine_dataplane.py`` tests the wait itself)."""
    if extra.get("autoCommit") is True:
        extra.setdefault("acknowledgeActionsRequired", True)
    return {"sourceIdentityId": estate.identity_id, "targetRegion": TARGET_REGION, **extra}


def run(
    service: MoveService, body: dict[str, Any] | None = None, move_id: str | None = None
) -> dict[str, Any]:
    if body is not None:
        move_id = service.start(body)["id"]
    assert move_id is not None
    drain(service)
    return service.get(move_id)


def principal_state(clients: AzureClients, estate: Estate, principal_id: str) -> dict[str, Any]:
    """Everything a principal has, read through the control plane."""
    auth = clients.authorization(estate.subscription_id)
    assignments = sorted(
        (
            str(ra.scope).lower(),
            str(ra.role_definition_id).rsplit("/", 1)[-1],
            ra.condition or "",
            ra.description or "",
        )
        for ra in auth.role_assignments.list_for_subscription(filter=f"principalId eq '{principal_id}'")
        if ra.principal_id == principal_id
    )
    graph = clients.graph
    try:
        groups = sorted(g["id"] for g in graph.list(f"/servicePrincipals/{principal_id}/memberOf"))
        app_roles = sorted(
            (a["resourceId"], a["appRoleId"])
            for a in graph.list(f"/servicePrincipals/{principal_id}/appRoleAssignments")
        )
    except GraphError as exc:  # the principal is gone with its identity
        assert exc.status == 404
        groups, app_roles = [], []
    return {"assignments": assignments, "groups": groups, "appRoles": app_roles}


def resource_views(clients: AzureClients, estate: Estate) -> dict[str, Any]:
    from activities._azure import get_resource

    views = {}
    for short, resource_id in estate.resources.items():
        body = get_resource(clients, resource_id) or {}
        identity = body.get("identity") or {}
        views[short] = {
            "type": identity.get("type"),
            "userAssigned": sorted(k.lower() for k in (identity.get("userAssignedIdentities") or {})),
            "properties": body.get("properties"),
        }
    return views


def full_dump(clients: AzureClients, estate: Estate) -> dict[str, Any]:
    msi = clients.msi(estate.subscription_id)
    identities = sorted(
        (str(i.id).lower(), str(i.location), json.dumps(i.tags, sort_keys=True))
        for i in msi.user_assigned_identities.list_by_subscription()
    )
    try:
        creds = sorted(
            (c.name, c.issuer, c.subject)
            for c in msi.federated_identity_credentials.list("rg-app", estate.identity_name)
        )
    except ResourceNotFoundError:
        creds = []
    return {
        "identities": identities,
        "credentials": creds,
        "principal": principal_state(clients, estate, estate.principal_id),
        "resources": resource_views(clients, estate),
    }


def is_read_post(path: str) -> bool:
    """POSTs that only read: a Resource Graph query, App Service ``config/*/list``."""
    lowered = path.lower()
    return "/providers/microsoft.resourcegraph/resources" in lowered or lowered.endswith("/list")


def count_by_method(reqs: list[dict[str, Any]]) -> dict[str, int]:
    return dict(Counter(r["method"] for r in reqs))


def test_full_move_with_commit(
    emulated_service: MoveService, estate: Estate, clients: AzureClients, emu: str
) -> None:
    before = len(requests(emu))
    status = run(emulated_service, move_body(estate))
    assert status["status"] == "AwaitingCommit", status.get("error")
    # the vault's access policy is copied now (activities/access/key_vault_policies.py), not warned about
    assert [
        g["vault"].lower()
        for g in emulated_service.get(status["id"], expand_inventory=True)["plan"]["inventory"][
            "keyVaultAccessPolicies"
        ]
    ] == [estate.resources["vault"].lower()]
    target = status["target"]
    assert target["location"] == TARGET_REGION and target["principalId"] and target["clientId"]
    assert [p["status"] for p in status["phases"]][:5] == ["Succeeded"] * 5
    grant = next(p for p in status["phases"] if p["name"] == "grant")
    assert grant["items"] == {"total": 12, "done": 12, "failed": 0}

    emulated_service.commit(status["id"])
    status = run(emulated_service, move_id=status["id"])
    assert status["status"] == "Completed", status.get("error")

    # the new identity has everything the old one had ...
    new = principal_state(clients, estate, target["principalId"])
    assert len(new["assignments"]) == 5
    assert any("invoices" in condition for _, _, condition, _ in new["assignments"])
    assert len(new["groups"]) == 2 and len(new["appRoles"]) == 1
    msi = clients.msi(estate.subscription_id)
    new_identity = msi.user_assigned_identities.get(target["resourceGroup"], target["name"])
    assert new_identity.location == TARGET_REGION
    assert len(list(msi.federated_identity_credentials.list(target["resourceGroup"], target["name"]))) == 3
    views = resource_views(clients, estate)
    for short in ("web", "vm", "containers", "storage"):
        assert views[short]["userAssigned"] == [target["id"].lower()], short
    assert views["web"]["type"].replace(" ", "") == "SystemAssigned,UserAssigned"
    assert views["web"]["properties"]["keyVaultReferenceIdentity"].lower() == target["id"].lower()
    _, listed = clients.arm("POST", f"{estate.resources['web']}/config/appsettings/list", "2023-12-01")
    assert listed["properties"]["AZURE_CLIENT_ID"] == target["clientId"]  # a GET of the site has no values
    assert (
        views["storage"]["properties"]["encryption"]["identity"]["userAssignedIdentity"].lower()
        == target["id"].lower()
    )
    # ... and the old one is gone, detached, its assignments deleted
    assert all(i[0] != estate.identity_id.lower() for i in full_dump(clients, estate)["identities"])
    assert principal_state(clients, estate, estate.principal_id)["assignments"] == []

    events = [e for e in httpx.get(f"{emu}/_emulator/events").json()]
    types = [e.get("type") for batch in events for e in (batch if isinstance(batch, list) else [batch])]
    for kind in ("Started", "PhaseCompleted", "AwaitingCommit", "Completed"):
        assert f"IdentityMover.Move.{kind}" in types

    arm = [r for r in requests(emu)[before:] if "eventgrid" not in r["path"]]
    costs = {
        "arm_and_graph_calls_by_method": count_by_method(arm),
        "arm_writes": sum(1 for r in arm if r["method"] in WRITE_METHODS and "/graph/" not in r["path"]),
        "graph_calls": sum(1 for r in arm if "/graph/" in r["path"]),
        "storage_transactions": dict(emulated_service.stats.counts),
        "storage_total": emulated_service.stats.total,
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(costs, indent=2))


def test_a_phase_creates_its_items_without_listing_them_first(
    emulated_service: MoveService, estate: Estate
) -> None:
    """Grant, rebind and cleanup insert their items the first time in one transaction with the record
    saying so (``itemsCreated``; cleanup's ``removing`` too): no query of what exists. A crash after
    it, or items the record does not know of, are in ``tests/test_engine_crashes.py``."""
    service = emulated_service
    listed: list[str] = []
    list_items = service.store.list_items

    def listing(move_id: str, phase: str) -> Any:
        listed.append(phase)
        return list_items(move_id, phase)

    service.store.list_items = listing  # type: ignore[method-assign]
    status = run(service, move_body(estate, autoCommit=True))
    assert status["status"] == "Completed", status.get("error")
    assert listed == []
    record = service.store.get_move(status["id"])
    assert record is not None
    assert all(record.phase_entry(name).get("itemsCreated") for name in ("grant", "rebind", "cleanup"))
    assert "removing" in record.phase_entry("cleanup")
    assert all(set(p) & {"itemsCreated", "removing"} == set() for p in status["phases"])  # not shown


def test_dry_run_writes_nothing(emulated_service: MoveService, estate: Estate, emu: str) -> None:
    before = len(requests(emu))
    status = run(emulated_service, move_body(estate, dryRun=True))
    assert status["status"] == "Planned", status.get("error")
    assert status["plan"]["blocking"] == []
    seen = requests(emu)[before:]
    writes = [
        r
        for r in seen
        if r["method"] in WRITE_METHODS or (r["method"] == "POST" and not is_read_post(r["path"]))
    ]
    assert writes == [], writes
    assert any("resourcegraph" in r["path"].lower() for r in seen)
    # the plan can show what the move would copy, read from the stored snapshot
    inventory = emulated_service.get(status["id"], expand_inventory=True)["plan"]["inventory"]
    assert {a["scope"].lower() for a in inventory["roleAssignments"]} >= {
        a.split("/providers/Microsoft.Authorization/")[0].lower() for a in estate.role_assignment_ids
    }
    assert sorted(c["name"] for c in inventory["federatedCredentials"]) == sorted(estate.credential_names)
    assert sorted(g["id"] for g in inventory["groups"]) == sorted(estate.group_ids)
    assert len(inventory["appRoles"]) == len(estate.app_role_assignment_ids)
    assert {a["id"].lower() for a in inventory["attachments"]} >= {i.lower() for i in estate.attached_ids}
    assert "inventory" not in emulated_service.get(status["id"])["plan"]  # a status poll stays cheap


def test_cleanup_never_runs_before_commit(emulated_service: MoveService, estate: Estate, emu: str) -> None:
    status = run(emulated_service, move_body(estate))
    assert status["status"] == "AwaitingCommit"
    before = len(requests(emu))
    # a forged or stale cleanup step is refused: nothing of the source is deleted
    emulated_service.handle_message(WorkMessage(status["id"], "cleanup").to_json(), 1)
    record = emulated_service.store.get_move(status["id"])
    assert record is not None
    record.phase = "cleanup"  # even if the record said so, the engine checks verified AND committed
    record.status = record.status.__class__("Running")
    emulated_service.store.save_move(record)
    emulated_service.handle_message(WorkMessage(status["id"], "cleanup").to_json(), 1)
    assert [r for r in requests(emu)[before:] if r["method"] == "DELETE"] == []
    assert emulated_service.get(status["id"])["error"]["code"] == "NotCommitted"


def test_second_start_is_409_while_awaiting_commit(emulated_service: MoveService, estate: Estate) -> None:
    status = run(emulated_service, move_body(estate))
    with pytest.raises(Exception) as caught:
        emulated_service.start(move_body(estate))
    assert getattr(caught.value, "code", None) == "MoveInProgress"
    assert getattr(caught.value, "location", None) == f"/api/moves/{status['id']}"


def _unused(settings: Settings) -> None:  # keep imports honest for type checkers
    del settings
