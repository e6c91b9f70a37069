"""Least privilege, proven (issue 9): the infra grants exactly what ``shared/permissions.py`` says the mover
needs, a full move completes with exactly those roles in the enforcing emulator, and taking away any one
of them blocks the plan before anything is written.

The roles are read from the parsed Bicep (``infra/app/rbac.bicep``: the unconditioned built-ins, the
conditioned RBAC Administrator with its condition, the custom rebinding role's actions) and assigned to the
mover's principal at the management group above the estate's subscription, as ``rbac-managementgroup.bicep``
does; the Graph permissions are read from ``infra/scripts/grant-graph-permissions.sh``.
"""

from __future__ import annotations

import io
import json
import re
import uuid
from contextlib import redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.mgmt.msi.models import Identity
from azure.mgmt.resource.resources.models import ResourceGroup

from activities import preflight
from idmove.cli import main as idmove
from idmove.estate import (
    ESTATE_OWNER_TOKEN,
    MG,
    REGION,
    TARGET_REGION,
    Estate,
    clients_for,
    seed,
    seed_data_plane,
)
from shared import permissions
from shared.service import MoveService
from tests.plugins.engine import drain, make_settings
from tests.test_infra_bicep import (  # noqa: F401  (fixtures)
    BUILTIN_ROLES,
    ROLE_VARIABLES,
    bicep,
    parsed,
    resolve,
    variable,
)

ROOT = Path(__file__).resolve().parent.parent
MG_SCOPE = f"/providers/Microsoft.Management/managementGroups/{MG}"
RBAC_API = {"api-version": "2022-04-01"}
WRITES = {"PUT", "PATCH", "DELETE"}
READ_POSTS = ("/providers/microsoft.resourcegraph/resources", "/list", "/listsecrets")
INFRA_NAMES = {  # rbac.bicep role variable -> the role's name in shared/permissions.py
    "managedIdentityContributorRoleId": permissions.MI_CONTRIBUTOR,
    "managedIdentityOperatorRoleId": permissions.MI_OPERATOR,
}


@dataclass(frozen=True)
class InfraRole:
    name: str
    role_id: str | None = None  # a built-in role's GUID
    actions: tuple[str, ...] = ()  # a custom role's actions
    condition: str | None = None


def infra_roles(tree: dict[str, Any]) -> list[InfraRole]:
    rbac = tree["app/rbac.bicep"]
    roles = [InfraRole(INFRA_NAMES[v], variable(rbac, v)) for v in variable(rbac, "managedScopeRoleIds")]
    condition = resolve(rbac, variable(rbac, "rbacAdministratorCondition"))
    roles.append(
        InfraRole(permissions.RBAC_ADMIN, variable(rbac, "rbacAdministratorRoleId"), condition=condition)
    )
    roles.append(
        InfraRole(variable(rbac, "rebindRoleName"), actions=tuple(variable(rbac, "rebindRoleActions")))
    )
    return roles


def graph_script_permissions() -> list[str]:
    script = (ROOT / "infra" / "scripts" / "grant-graph-permissions.sh").read_text()
    match = re.search(r'^permissions="([^"]*)"', script, re.MULTILINE)
    assert match, "grant-graph-permissions.sh has no permissions= line"
    return match.group(1).split()


# --- the list, the infra, the CLI and the README agree ------------------------------------------------


def test_infra_assigns_exactly_the_roles_of_the_list(bicep: dict[str, Any]) -> None:  # noqa: F811
    roles = infra_roles(bicep)
    assert [r.name for r in roles] == list(permissions.ROLES)
    rebinder = roles[-1]
    assert list(rebinder.actions) == permissions.custom_role_actions()
    assert not any("*" in a for a in rebinder.actions), "the custom role must name actions, not wildcards"
    held = {a.lower() for a in rebinder.actions}
    for need in permissions.ARM:
        if need.role == permissions.REBINDER and "{type}" not in need.action:
            assert need.action.lower() in held


def test_graph_script_grants_exactly_the_list_and_each_is_needed() -> None:
    granted = graph_script_permissions()
    assert granted == list(permissions.GRAPH_GRANTED)
    assert all(permissions.graph_satisfied(n, set(granted)) for n in permissions.GRAPH)
    for dropped in granted:
        rest = set(granted) - {dropped}
        assert not all(permissions.graph_satisfied(n, rest) for n in permissions.GRAPH), dropped
    assert set(granted) <= set(permissions.GRAPH_PERMISSION_IDS)


def test_every_kind_of_access_that_copies_has_a_preflight_rule() -> None:
    assert preflight.kinds_without_rule() == []


def test_idmove_permissions_prints_the_list() -> None:
    out = io.StringIO()
    with redirect_stdout(out):
        assert idmove(["permissions", "--output", "json"]) == 0
    assert json.loads(out.getvalue()) == json.loads(json.dumps(permissions.as_json()))
    out = io.StringIO()
    with redirect_stdout(out):
        assert idmove(["permissions"]) == 0
    assert out.getvalue() == permissions.markdown()


def test_readme_what_the_app_may_do_is_generated_from_the_list() -> None:
    readme = (ROOT / "README.md").read_text()
    assert permissions.markdown() in readme, "regenerate the README table with `idmove permissions`"
    for name in permissions.GRAPH_GRANTED:
        assert name in readme


# --- the enforcing emulator ---------------------------------------------------------------------------


def owner_http(emu: str) -> httpx.Client:
    return httpx.Client(base_url=emu, headers={"Authorization": f"Bearer {ESTATE_OWNER_TOKEN}"}, timeout=30)


def mover_principal(estate_clients: Any, sub: str) -> str:
    """The app's own user-assigned identity (infra/app/identity.bicep), created by the estate owner."""
    estate_clients.resources(sub).resource_groups.create_or_update(
        "rg-idmove", ResourceGroup(location=REGION)
    )
    identity = estate_clients.msi(sub).user_assigned_identities.create_or_update(
        "rg-idmove", "id-idmove", Identity(location=REGION)
    )
    return str(identity.principal_id)


def grant(http: httpx.Client, principal: str, roles: list[InfraRole], graph: list[str], scope: str) -> None:
    """Assign ``roles`` at ``scope`` and Graph application permissions, as azd + the script would."""
    for role in roles:
        if role.actions:
            guid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{scope}|{role.name}"))
            definition = f"{scope}/providers/Microsoft.Authorization/roleDefinitions/{guid}"
            body = {"properties": {"roleName": f"{role.name} ({scope.rsplit('/', 1)[-1]})", "type": "CustomRole",
                                   "permissions": [{"actions": list(role.actions), "notActions": []}],
                                   "assignableScopes": [scope]}}  # fmt: skip
            r = http.put(definition, params=RBAC_API, json=body)
            assert r.status_code in (200, 201), r.text
        else:
            definition = f"/providers/Microsoft.Authorization/roleDefinitions/{role.role_id}"
        props: dict[str, Any] = {"roleDefinitionId": definition, "principalId": principal,
                                 "principalType": "ServicePrincipal"}  # fmt: skip
        if role.condition:
            props |= {"condition": role.condition, "conditionVersion": "2.0"}
        r = http.put(
            f"{scope}/providers/Microsoft.Authorization/roleAssignments/{uuid.uuid4()}",
            params=RBAC_API,
            json={"properties": props},
        )
        assert r.status_code == 201, r.text
    g = "/graph/v1.0"
    graph_sp = http.get(
        f"{g}/servicePrincipals", params={"$filter": f"appId eq '{permissions.GRAPH_APP_ID}'"}
    )
    graph_sp_id = graph_sp.json()["value"][0]["id"]
    for name in graph:
        body = {"principalId": principal, "resourceId": graph_sp_id,
                "appRoleId": permissions.GRAPH_PERMISSION_IDS[name]}  # fmt: skip
        r = http.post(f"{g}/servicePrincipals/{graph_sp_id}/appRoleAssignedTo", json=body)
        assert r.status_code == 201, r.text


def enforce(http: httpx.Client) -> None:
    http.put("/_emulator/config", json={"rbac": {"enforce": True}}).raise_for_status()


def log(http: httpx.Client) -> list[dict[str, Any]]:
    return list(http.get("/_emulator/requests").json())


def writes(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [
        e
        for e in entries
        if e["method"] in WRITES
        or (e["method"] == "POST" and not e["path"].lower().split("?")[0].endswith(READ_POSTS)
            and "/providers/microsoft.resourcegraph/resources" not in e["path"].lower()
            and "/eventgrid/" not in e["path"].lower())
    ]  # fmt: skip


@dataclass
class Stage:
    estate: Estate
    principal: str
    http: httpx.Client
    service: MoveService


@pytest.fixture
def stage(emu: str, storage_connection_string: str) -> Stage:
    owner = clients_for(emu)
    estate = seed(owner)
    principal = mover_principal(owner, estate.subscription_id)
    settings = make_settings(
        storage_connection_string,
        emu,
        emulator_principal_id=principal,
        eventgrid_endpoint=f"{emu}/eventgrid/api/events",
        eventgrid_key="test-key",
    )
    return Stage(estate, principal, owner_http(emu), MoveService(settings))


def run_move(stage: Stage, **extra: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    before = len(log(stage.http))
    body = {"sourceIdentityId": stage.estate.identity_id, "targetRegion": TARGET_REGION, **extra}
    move_id = stage.service.start(body)["id"]
    drain(stage.service)
    return stage.service.get(move_id), log(stage.http)[before:]


@pytest.mark.parametrize("data_plane", [False, True], ids=["estate", "estate+data-plane"])
def test_a_full_move_completes_with_exactly_the_infra_roles(
    stage: Stage,
    bicep: dict[str, Any],  # noqa: F811
    data_plane: bool,
) -> None:
    if data_plane:  # Key Vault policies, Cosmos DB, PostgreSQL/SQL administrators, AKS, settings and a slot
        seed_data_plane(clients_for(str(stage.http.base_url).rstrip("/")), stage.estate)
    grant(stage.http, stage.principal, infra_roles(bicep), graph_script_permissions(), MG_SCOPE)
    enforce(stage.http)
    start = len(log(stage.http))
    status, _ = run_move(stage)
    assert status["status"] == "AwaitingCommit", (status.get("error"), status["plan"]["blocking"])
    assert status["plan"]["blocking"] == []
    planned = log(stage.http)[start:]
    asked = [
        e["path"].lower()
        for e in planned
        if e["path"].lower().endswith("/microsoft.authorization/permissions")
    ]
    assert asked and len(asked) == len(set(asked)), asked  # one permissions call per distinct scope
    # the roles sit at the management group: the subscription's answer holds every action, so no scope
    # inside it is asked on its own (``Rights.held_above``), not even where a role assignment is copied
    # (the ABAC condition check reads the mover's own assignments there, not the permissions API)
    sub = f"/subscriptions/{stage.estate.subscription_id}/providers/microsoft.authorization/permissions"
    assert set(asked) == {sub.lower()}, asked
    stage.service.commit(status["id"])
    drain(stage.service)
    status = stage.service.get(status["id"])
    assert status["status"] == "Completed", status.get("error")
    seen = log(stage.http)[start:]
    refused = [e for e in seen if e["status"] in (401, 403)]
    assert refused == [], refused[:5]
    owner = clients_for(str(stage.http.base_url).rstrip("/"))
    names = {
        i.name
        for i in owner.msi(stage.estate.subscription_id).user_assigned_identities.list_by_subscription()
    }
    assert stage.estate.identity_name not in names and status["target"]["name"] in names


REMOVABLE = [*permissions.ROLES, *(f"graph:{p}" for p in permissions.GRAPH_GRANTED)]


@pytest.mark.parametrize("removed", REMOVABLE)
def test_without_any_one_role_the_plan_blocks_and_nothing_is_written(
    stage: Stage,
    bicep: dict[str, Any],  # noqa: F811
    removed: str,
) -> None:
    roles = [r for r in infra_roles(bicep) if r.name != removed]
    graph = [p for p in graph_script_permissions() if f"graph:{p}" != removed]
    assert len(roles) + len(graph) == len(REMOVABLE) - 1, f"{removed} is not in the infra"
    grant(stage.http, stage.principal, roles, graph, MG_SCOPE)
    enforce(stage.http)
    status, seen = run_move(stage)
    assert status["status"] == "Failed" and status["error"]["code"] == "PlanBlocked", status.get("error")
    missing = [b for b in status["plan"]["blocking"] if b["code"] == "MissingPermission"]
    assert missing, status["plan"]["blocking"]
    assert all("'" in b["message"] or "Microsoft Graph" in b["message"] for b in missing)
    assert writes(seen) == [], writes(seen)


def test_roles_at_the_subscription_only_cannot_copy_a_management_group_assignment(
    stage: Stage,
    bicep: dict[str, Any],  # noqa: F811
) -> None:
    """``managedSubscriptionIds`` mode: the estate's Reader at the management group needs role-assignment
    rights there; the dry run names the action and the scope, and writes nothing."""
    grant(stage.http, stage.principal, infra_roles(bicep), graph_script_permissions(),
          f"/subscriptions/{stage.estate.subscription_id}")  # fmt: skip
    enforce(stage.http)
    status, seen = run_move(stage, dryRun=True)
    assert status["status"] == "Planned"
    messages = [b["message"] for b in status["plan"]["blocking"] if b["code"] == "MissingPermission"]
    # no read at the management group either: the blocker names what was refused there first
    named = r"Microsoft\.Authorization/roleAssignments/(write|read)' over '" + re.escape(MG_SCOPE)
    assert any(re.search(named, m, re.IGNORECASE) for m in messages), messages
    assert writes(seen) == []


def test_a_dry_run_without_the_rebinding_role_names_every_resource_it_could_not_write(
    stage: Stage,
    bicep: dict[str, Any],  # noqa: F811
) -> None:
    roles = [r for r in infra_roles(bicep) if r.name != permissions.REBINDER]
    grant(stage.http, stage.principal, roles, graph_script_permissions(), MG_SCOPE)
    enforce(stage.http)
    status, seen = run_move(stage, dryRun=True)
    assert status["status"] == "Planned"
    text = "\n".join(b["message"] for b in status["plan"]["blocking"])
    web = stage.estate.resources["web"]
    assert "Microsoft.Web/sites/config/list/action" in text  # the snapshot's refused read, not a crash
    for short in ("vm", "containers", "storage"):
        resource = stage.estate.resources[short]
        assert f"'{resource}'".lower() in text.lower(), short
    assert "Microsoft.KeyVault/vaults/accessPolicies/write" in text or web.lower() in text.lower()
    assert writes(seen) == []


def test_a_privileged_role_the_condition_refuses_is_a_blocker(stage: Stage, bicep: dict[str, Any]) -> None:  # noqa: F811
    owner = clients_for(str(stage.http.base_url).rstrip("/"))
    from azure.mgmt.authorization.v2022_04_01.models import RoleAssignmentCreateParameters

    sub = stage.estate.subscription_id
    scope = f"/subscriptions/{sub}/resourceGroups/rg-data"
    owner.authorization(sub).role_assignments.create(
        scope,
        str(uuid.uuid4()),
        RoleAssignmentCreateParameters(
            role_definition_id=f"/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/"
            + BUILTIN_ROLES["User Access Administrator"],
            principal_id=stage.estate.principal_id,
            principal_type="ServicePrincipal",
        ),
    )
    grant(stage.http, stage.principal, infra_roles(bicep), graph_script_permissions(), MG_SCOPE)
    enforce(stage.http)
    status, seen = run_move(stage, allowPrivilegedRoles=True)
    assert status["status"] == "Failed", status.get("error")
    refused = [b["message"] for b in status["plan"]["blocking"] if "condition" in b["message"]]
    assert len(refused) == 2, status["plan"]["blocking"]  # the copy (write) and the cleanup (delete)
    assert all("User Access Administrator" in m and scope.lower() in m.lower() for m in refused)
    assert {m.split("'")[1] for m in refused} == {
        "Microsoft.Authorization/roleAssignments/write",
        "Microsoft.Authorization/roleAssignments/delete",
    }
    assert writes(seen) == []


def test_without_the_rebinding_role_every_data_plane_grant_is_named(
    stage: Stage,
    bicep: dict[str, Any],  # noqa: F811
) -> None:
    data = seed_data_plane(clients_for(str(stage.http.base_url).rstrip("/")), stage.estate)
    roles = [r for r in infra_roles(bicep) if r.name != permissions.REBINDER]
    grant(stage.http, stage.principal, roles, graph_script_permissions(), MG_SCOPE)
    enforce(stage.http)
    status, seen = run_move(stage, dryRun=True)
    assert status["status"] == "Planned"
    text = "\n".join(b["message"] for b in status["plan"]["blocking"]).lower()
    for action, scope in (
        ("Microsoft.KeyVault/vaults/accessPolicies/write", stage.estate.resources["vault"]),
        ("Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments/write", data.cosmos),
        ("Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments/delete", data.cosmos),
        ("Microsoft.DBforPostgreSQL/flexibleServers/administrators/write", data.postgres),
    ):
        assert f"'{action}' over '{scope}'".lower() in text, (action, text)
    assert writes(seen) == []


def test_a_mover_that_may_not_read_the_identity_gets_a_blocker_not_a_crash(stage: Stage) -> None:
    enforce(stage.http)  # no role at all
    status, seen = run_move(stage, dryRun=True)
    assert status["status"] == "Planned", status.get("error")
    [blocked] = status["plan"]["blocking"]
    assert blocked["code"] == "MissingPermission"
    assert f"'{permissions.MI}/read' over '{stage.estate.identity_id}'".lower() in blocked["message"].lower()
    assert writes(seen) == []


def test_a_read_refused_at_commit_stops_cleanup_before_it_deletes_anything(
    stage: Stage,
    bicep: dict[str, Any],  # noqa: F811
) -> None:
    """Cleanup re-reads the source's access first (``cleanup.reconcile``); a read Azure now refuses is not
    taken for "nothing new": the move fails with ``MissingPermission`` and nothing is deleted."""
    grant(stage.http, stage.principal, infra_roles(bicep), graph_script_permissions(), MG_SCOPE)
    enforce(stage.http)
    status, _ = run_move(stage)
    assert status["status"] == "AwaitingCommit", status.get("error")
    mine = stage.http.get(
        f"{MG_SCOPE}/providers/Microsoft.Authorization/roleAssignments",
        params={**RBAC_API, "$filter": f"principalId eq '{stage.principal}'"},
    ).json()["value"]
    rebinder = str(
        uuid.uuid5(uuid.NAMESPACE_URL, f"{MG_SCOPE}|{permissions.REBINDER}")
    )  # as grant() names it
    custom = [a for a in mine if a["properties"]["roleDefinitionId"].lower().endswith(rebinder)]
    assert len(custom) == 1
    stage.http.delete(custom[0]["id"], params=RBAC_API).raise_for_status()  # the rebinding role goes
    before = len(log(stage.http))
    stage.service.commit(status["id"])
    drain(stage.service)  # the refusal fails the move at once (a PermanentError), not via the poison queue
    status = stage.service.get(status["id"])
    assert status["status"] == "Failed", status.get("error")
    assert status["error"]["code"] == "MissingPermission", status["error"]
    assert [e for e in log(stage.http)[before:] if e["method"] == "DELETE"] == []


def test_with_enforcement_off_the_default_mover_passes_and_says_graph_was_not_checked(
    emulated_service: MoveService, emu: str
) -> None:
    estate = seed(clients_for(emu))
    body = {"sourceIdentityId": estate.identity_id, "targetRegion": TARGET_REGION, "dryRun": True}
    move_id = emulated_service.start(body)["id"]
    drain(emulated_service)
    plan = emulated_service.get(move_id)["plan"]
    assert plan["blocking"] == []
    assert [w["code"] for w in plan["warnings"]] == ["PermissionsUnchecked"]  # no service principal behind it
