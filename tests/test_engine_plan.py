"""The plan (snapshot) end to end: every blocker and warning, and the opt-in for privileged roles.

Azurite + the emulator over HTTP. Blockers are read from dry runs (``Planned`` shows the plan and
writes nothing); one non-dry run per kind shows that a blocked move fails with ``PlanBlocked`` and
writes nothing anywhere.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from azure.mgmt.authorization.v2022_04_01.models import RoleAssignmentCreateParameters
from azure.mgmt.msi.models import FederatedIdentityCredential, Identity
from azure.mgmt.resource.resources.models import ResourceGroup

from idmove.estate import REGION, ROLES, Estate, clients_for, rid, seed
from shared.azure_clients import AzureClients
from shared.service import MoveService
from shared.settings import Settings
from tests.test_engine_failures import config
from tests.test_engine_moves import WRITE_METHODS, move_body, principal_state, requests, run

OTHER_SUB = "9a8b7c6d-1111-4222-8333-944455556666"
PRIVILEGED = {
    "Owner": "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
    "User Access Administrator": "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9",
    "Role Based Access Control Administrator": "f58310d9-a9f6-439a-9e8d-f62e7b41a168",
}


@pytest.fixture
def estate(emu: str) -> Estate:
    return seed(clients_for(emu))


@pytest.fixture
def clients(emu: str) -> AzureClients:
    return clients_for(emu)


def service_with(settings: Settings, **changes: Any) -> MoveService:
    return MoveService(settings.with_(**changes))


def assign(clients: AzureClients, estate: Estate, scope: str, role_guid: str, sub: str | None = None) -> str:
    sub = sub or estate.subscription_id
    created = clients.authorization(sub).role_assignments.create(
        scope,
        str(uuid.uuid4()),
        RoleAssignmentCreateParameters(
            role_definition_id=f"/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/{role_guid}",
            principal_id=estate.principal_id,
            principal_type="ServicePrincipal",
        ),
    )
    return str(created.id)


def custom_role(
    clients: AzureClients, sub: str, name: str, actions: list[str], not_actions: list[str]
) -> str:
    guid = str(uuid.uuid5(uuid.NAMESPACE_URL, name))
    clients.authorization(sub).role_definitions.create_or_update(
        f"/subscriptions/{sub}",
        guid,
        {
            "properties": {
                "roleName": name,
                "type": "CustomRole",
                "assignableScopes": [f"/subscriptions/{sub}"],
                "permissions": [{"actions": actions, "notActions": not_actions}],
            }
        },
    )
    return guid


def plan_of(service: MoveService, estate: Estate, **extra: Any) -> dict[str, Any]:
    status = run(service, move_body(estate, dryRun=True, **extra))
    assert status["status"] == "Planned", status.get("error")
    return dict(status["plan"])


def codes(entries: list[dict[str, Any]]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for entry in entries:
        out.setdefault(entry["code"], []).append(entry["target"])
    return out


def test_privileged_roles_block_unless_opted_in_and_then_are_copied(
    emulated_service: MoveService, estate: Estate, clients: AzureClients, emu: str
) -> None:
    sub, scope = estate.subscription_id, f"/subscriptions/{estate.subscription_id}/resourceGroups/rg-data"
    privileged = {name: assign(clients, estate, scope, guid) for name, guid in PRIVILEGED.items()}
    writer = custom_role(clients, sub, "Access granter", ["Microsoft.Authorization/roleAssignments/*"], [])
    star_write = custom_role(clients, sub, "Everything writer", ["*/write"], [])
    harmless = custom_role(
        clients,
        sub,
        "Contributor-like",
        ["*"],
        ["Microsoft.Authorization/*/Write", "Microsoft.Authorization/*/Delete"],
    )
    privileged["custom"] = assign(clients, estate, scope, writer)
    privileged["custom */write"] = assign(clients, estate, scope, star_write)
    harmless_id = assign(clients, estate, scope, harmless)

    blocking = codes(plan_of(emulated_service, estate)["blocking"])
    assert set(blocking) == {"PrivilegedRole"}
    assert {t.lower() for t in blocking["PrivilegedRole"]} == {i.lower() for i in privileged.values()}
    assert harmless_id.lower() not in {t.lower() for t in blocking["PrivilegedRole"]}  # nor Contributor

    before = len(requests(emu))
    status = run(emulated_service, move_body(estate))
    assert status["status"] == "Failed" and status["error"]["code"] == "PlanBlocked"
    assert [r for r in requests(emu)[before:] if r["method"] in WRITE_METHODS] == []

    status = run(emulated_service, move_body(estate, allowPrivilegedRoles=True, autoCommit=True))
    assert status["status"] == "Completed", status.get("error")
    roles = {
        role
        for _, role, _, _ in principal_state(clients, estate, status["target"]["principalId"])["assignments"]
    }
    assert set(PRIVILEGED.values()) | {writer, star_write, harmless} <= roles


def test_too_many_credentials_block(
    emulated_service: MoveService, estate: Estate, clients: AzureClients, emu: str
) -> None:
    config(emu, {"ficLimit": 30})
    msi = clients.msi(estate.subscription_id)
    for n in range(3, 21):  # the estate has 3: 21 in all
        msi.federated_identity_credentials.create_or_update(
            "rg-app",
            estate.identity_name,
            f"fic-{n}",
            FederatedIdentityCredential(
                issuer="https://issuer.example", subject=f"s-{n}", audiences=["api://x"]
            ),
        )
    assert codes(plan_of(emulated_service, estate)["blocking"]) == {
        "TooManyCredentials": ["federatedCredentials"]
    }


def test_role_assignment_headroom_blocks_only_when_the_copies_do_not_fit(
    emulated_settings: Settings, estate: Estate, emu: str
) -> None:
    # the estate's 4 subscription-level assignments are there; the copies add 4 more (+1 at the MG)
    config(emu, {"roleAssignmentLimit": 8})
    fits = service_with(emulated_settings, role_assignment_limit=8)
    assert plan_of(fits, estate)["blocking"] == []
    status = run(fits, move_body(estate, autoCommit=True))  # and the emulator agrees: 8 fit
    assert status["status"] == "Completed", status.get("error")


def test_role_assignment_headroom_blocker(emulated_settings: Settings, estate: Estate, emu: str) -> None:
    config(emu, {"roleAssignmentLimit": 7})
    tight = service_with(emulated_settings, role_assignment_limit=7)
    blocking = codes(plan_of(tight, estate)["blocking"])
    assert blocking == {"RoleAssignmentLimit": [f"/subscriptions/{estate.subscription_id}"]}


def test_headroom_is_not_counted_for_a_move_without_assignments(
    emulated_service: MoveService, clients: AzureClients, emu: str
) -> None:
    sub = "5f7c2b4e-1d3a-4c5b-9e8f-0a1b2c3d4e5f"
    clients.resources(sub).resource_groups.create_or_update("rg-lone", ResourceGroup(location=REGION))
    identity = clients.msi(sub).user_assigned_identities.create_or_update(
        "rg-lone", "lone-id", Identity(location=REGION)
    )
    before = len(requests(emu))
    status = run(
        emulated_service,
        {"sourceIdentityId": str(identity.id), "targetRegion": "northeurope", "dryRun": True},
    )
    assert status["status"] == "Planned" and status["plan"]["blocking"] == []
    unfiltered = [
        r
        for r in requests(emu)[before:]
        if r["path"].lower().endswith("/roleassignments") and r["method"] == "GET"
    ]
    # one filtered list per visible subscription (discovery), no unfiltered count of the subscription
    assert len(unfiltered) <= 2


def test_allow_list_bounds_assignment_scopes_and_attachments(
    emulated_settings: Settings, estate: Estate, clients: AzureClients, emu: str
) -> None:
    other = clients.resources(OTHER_SUB)
    other.resource_groups.create_or_update("rg-elsewhere", ResourceGroup(location=REGION))
    elsewhere = assign(
        clients, estate, f"/subscriptions/{OTHER_SUB}/resourceGroups/rg-elsewhere", ROLES["Reader"], OTHER_SUB
    )
    vm = rid(OTHER_SUB, "rg-elsewhere", "Microsoft.Compute/virtualMachines", "vm-elsewhere")
    other.resources.begin_create_or_update_by_id(
        vm,
        {
            "location": REGION,
            "identity": {"type": "UserAssigned", "userAssignedIdentities": {estate.identity_id: {}}},
        },
        api_version=clients.api_version_for(vm),
    ).result()
    bounded = service_with(emulated_settings, allowed_subscriptions=frozenset({estate.subscription_id}))
    blocking = codes(plan_of(bounded, estate)["blocking"])
    assert {t.lower() for t in blocking["SubscriptionNotAllowed"]} == {elsewhere.lower(), vm.lower()}
    # without an allow-list the same estate is found and planned, not silently left behind
    plan = plan_of(MoveService(emulated_settings), estate)
    assert plan["blocking"] == []
    assert run(MoveService(emulated_settings), move_body(estate, autoCommit=True))["status"] == "Completed"
    assert len(principal_state(clients, estate, estate.principal_id)["assignments"]) == 0
    with pytest.raises(Exception) as refused:
        bounded.start(move_body(estate, resourceMap={vm: vm.replace("elsewhere", "x")}))
    assert getattr(refused.value, "code", None) == "SubscriptionNotAllowed"


def test_target_name_taken_and_name_rules(
    emulated_service: MoveService, estate: Estate, clients: AzureClients
) -> None:
    clients.msi(estate.subscription_id).user_assigned_identities.create_or_update(
        "rg-app", "taken-id", Identity(location="northeurope")
    )
    blocking = codes(plan_of(emulated_service, estate, targetName="taken-id")["blocking"])
    assert blocking == {"TargetNameTaken": ["targetName"]}
    for bad in ("-bad", "ab", "a" * 129, "has space", "dot.ted"):
        with pytest.raises(Exception) as refused:
            emulated_service.start(move_body(estate, targetName=bad))
        assert getattr(refused.value, "status", None) == 400, bad


def test_long_name_with_a_vm_warns_and_the_default_name_fits(
    emulated_service: MoveService, estate: Estate
) -> None:
    long_name = "payments-api-identity-northeu"  # 29 characters
    plan = plan_of(emulated_service, estate, targetName=long_name)
    warnings = codes(plan["warnings"])
    assert warnings["NameTooLongForVm"] == ["targetName"]
    assert "KeyVaultAccessPolicy" not in warnings  # access policies are copied now, not warned about
    assert plan["blocking"] == []
    default = plan_of(emulated_service, estate)
    assert "NameTooLongForVm" not in codes(default["warnings"])


def test_default_target_name_is_cut_to_24_characters_when_a_vm_uses_it(
    emulated_service: MoveService, emu: str
) -> None:
    clients = clients_for(emu)
    estate = seed(clients, name="payments-api-identity")  # 21 + "-northeurope" > 24
    status = run(emulated_service, move_body(estate, dryRun=True))
    assert len(status["target"]["name"]) <= 24
    assert "NameTooLongForVm" not in codes(status["plan"]["warnings"])


class _ScopeRecorder:
    """A TokenCredential that records the scopes asked for, then stops the request."""

    def __init__(self) -> None:
        self.scopes: list[tuple[str, ...]] = []

    def get_token(self, *scopes: str, **kwargs: Any) -> Any:
        self.scopes.append(scopes)
        raise _Stop

    def get_token_info(self, *scopes: str, options: Any = None) -> Any:
        return self.get_token(*scopes)


class _Stop(Exception):
    pass


def test_eventgrid_without_a_key_uses_the_token_credential_with_the_eventgrid_scope() -> None:
    from azure.core.messaging import CloudEvent

    credential = _ScopeRecorder()
    settings = Settings(eventgrid_endpoint="https://topic.westeurope-1.eventgrid.azure.net/api/events")
    client = AzureClients(settings, credential=credential).eventgrid()
    assert client is not None
    with pytest.raises(_Stop):
        client.send([CloudEvent(source="/identity-mover", type="t", data={})])
    assert credential.scopes == [("https://eventgrid.azure.net/.default",)]


def _subscription_counts(emu: str, since: int) -> list[dict[str, Any]]:
    """Unfiltered role-assignment lists: the headroom check's count of a subscription."""
    return [
        r
        for r in requests(emu)[since:]
        if r["method"] == "GET"
        and r["path"].lower().endswith("/roleassignments")
        and "filter" not in str(r.get("query") or "").lower()
    ]


def test_headroom_count_is_shared_by_moves_in_a_subscription(
    emulated_settings: Settings, estate: Estate, emu: str
) -> None:
    # 4 assignments in the subscription, 4 more from the copies: far from 4,000
    before = len(requests(emu))
    first = plan_of(service_with(emulated_settings), estate)
    assert first["blocking"] == []
    assert len(_subscription_counts(emu, before)) == 1
    middle = len(requests(emu))
    second = plan_of(MoveService(emulated_settings), estate)  # another instance, same tables
    assert second["blocking"] == []
    assert _subscription_counts(emu, middle) == []  # one table read instead of the list
    # a cached count never blocks on its own and never hides a blocker: close to the limit, count live
    config(emu, {"roleAssignmentLimit": 7})
    middle = len(requests(emu))
    tight = plan_of(service_with(emulated_settings, role_assignment_limit=7), estate)
    assert codes(tight["blocking"]) == {"RoleAssignmentLimit": [f"/subscriptions/{estate.subscription_id}"]}
    assert len(_subscription_counts(emu, middle)) == 1
