"""The emulator's callers and authorization (CONTRACT.md "Emulator", "Callers and authorization";
issue 9): JWT callers, the enforcement switch, ARM's RBAC with inheritance, groups, notActions,
custom roles, ABAC conditions on role-assignment writes, linked authorization, the permissions API,
Resource Graph filtering and Microsoft Graph application permissions.

Tokens are unsigned JWTs built here (``header.payload.signature``, base64url), as the contract allows.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from emulator import arm_actions, conditions, rbac_enforce
from tests.plugins.emulator import (
    ARM_API,
    MSI_API,
    RBAC_API,
    SUBSCRIPTION,
    configure,
    identity_path,
    put_group,
    put_identity,
    rg_path,
)

SUB = f"/subscriptions/{SUBSCRIPTION}"
RA = "providers/Microsoft.Authorization/roleAssignments"
G = "/graph/v1.0"
# Built-in roles (real ids).
OWNER = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"
CONTRIBUTOR = "b24988ac-6180-42a0-ab88-20f7382dd24c"
READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
USER_ACCESS_ADMIN = "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9"
RBAC_ADMIN = "f58310d9-a9f6-439a-9e8d-f62e7b41a168"
MI_CONTRIBUTOR = "e40ec5ca-96e0-45a2-b4ff-59039f2c2b59"
MI_OPERATOR = "f1a07417-d97a-45cb-824c-7a7467783830"
WEBSITE_CONTRIBUTOR = "de139f84-1756-47ae-9be6-808fbbe84772"
# Microsoft Graph application permissions (real ids).
GRAPH_APP = "00000003-0000-0000-c000-000000000000"
APPLICATION_READ_ALL = "9a5d68dd-52b0-4cc2-bd40-abcf44ac3a30"
APPLICATION_READWRITE_ALL = "1bfefb4e-e0b5-418b-a88f-73c46d2cc8e9"
GROUPMEMBER_READWRITE_ALL = "dbaae8cf-10b5-4b86-a4a1-f871c94c6695"
APPROLEASSIGNMENT_READWRITE_ALL = "06b708a9-e830-4db3-a914-8e69da51d44f"
SITE_API = {"api-version": "2023-01-01"}
REFRESH = "If access was recently granted, please refresh your credentials."
CONSTRAINED = (
    "((!(ActionMatches{'Microsoft.Authorization/roleAssignments/write'})) OR "
    "(@Request[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAllValues:GuidNotEquals "
    f"{{{OWNER}, {USER_ACCESS_ADMIN}, {RBAC_ADMIN}}} AND "
    "@Request[Microsoft.Authorization/roleAssignments:PrincipalType] ForAnyOfAnyValues:StringEqualsIgnoreCase "
    "{'ServicePrincipal'})) AND "
    "((!(ActionMatches{'Microsoft.Authorization/roleAssignments/delete'})) OR "
    "(@Resource[Microsoft.Authorization/roleAssignments:RoleDefinitionId] ForAnyOfAllValues:GuidNotEquals "
    f"{{{OWNER}, {USER_ACCESS_ADMIN}, {RBAC_ADMIN}}} AND "
    "@Resource[Microsoft.Authorization/roleAssignments:PrincipalType] ForAnyOfAnyValues:StringEqualsIgnoreCase "
    "{'ServicePrincipal'}))"
)


def jwt(claims: dict[str, Any]) -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}.unsigned"


def token_for(oid: str) -> str:
    return jwt({"oid": oid, "tid": str(uuid.uuid4()), "appid": str(uuid.uuid4()), "idtyp": "app"})


def client_for(url: str, token: str) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30)


def role_id(guid: str) -> str:
    return f"{SUB}/providers/Microsoft.Authorization/roleDefinitions/{guid}"


def assign(
    client: httpx.Client,
    scope: str,
    principal: str,
    role: str,
    principal_type: str = "ServicePrincipal",
    **props: Any,
) -> httpx.Response:
    body = {"properties": {"roleDefinitionId": role_id(role), "principalId": principal,
                           "principalType": principal_type, **props}}  # fmt: skip
    return client.put(f"{scope}/{RA}/{uuid.uuid4()}", params=RBAC_API, json=body)


def granted(client: httpx.Client, scope: str, principal: str, role: str, **props: Any) -> dict[str, Any]:
    r = assign(client, scope, principal, role, **props)
    assert r.status_code == 201, r.text
    return dict(r.json())


def refusal(oid: str, action: str, scope: str, abac: bool = False) -> str:
    what = (
        "does not have authorization or an ABAC condition not fulfilled"
        if abac
        else "does not have authorization"
    )
    return (
        f"The client '{oid}' with object id '{oid}' {what} to perform action '{action}' over scope '{scope}' "
        f"or the scope is invalid. {REFRESH}"
    )


def enforce(owner: httpx.Client, on: bool = True) -> None:
    configure(owner, rbac={"enforce": on})


@pytest.fixture
def mover(emulator_arm: httpx.Client, emulator_url: str) -> Iterator[tuple[str, httpx.Client]]:
    """A principal (a managed identity's service principal) and a client that calls as it."""
    oid = str(put_identity(emulator_arm, "rg-ops", "mover")["properties"]["principalId"])
    with client_for(emulator_url, token_for(oid)) as client:
        yield oid, client


def new_group(owner: httpx.Client, name: str) -> str:
    r = owner.post(f"{G}/groups", json={"displayName": name, "mailEnabled": False, "mailNickname": name,
                                        "securityEnabled": True})  # fmt: skip
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def add_member(client: httpx.Client, group: str, member: str) -> httpx.Response:
    return client.post(
        f"{G}/groups/{group}/members/$ref",
        json={"@odata.id": f"https://graph.microsoft.com/v1.0/directoryObjects/{member}"},
    )


# --- who calls, and the switch ------------------------------------------------------------------
def test_switch_is_off_by_default_and_reset_turns_it_off(
    emulator_arm: httpx.Client, emulator_url: str, mover: tuple[str, httpx.Client]
) -> None:
    _oid, client = mover
    assert emulator_arm.get("/_emulator/config").json()["rbac"] == {"enforce": False}
    assert client.put(rg_path("rg-free"), params=ARM_API, json={"location": "westeurope"}).status_code == 201
    enforce(emulator_arm)
    refused = client.put(rg_path("rg-free"), params=ARM_API, json={"location": "westeurope"})
    assert refused.status_code == 403
    assert emulator_arm.post("/_emulator/reset").status_code == 200
    assert emulator_arm.get("/_emulator/config").json()["rbac"] == {"enforce": False}


def test_tokens_without_oid_are_the_estate_owner(emulator_arm: httpx.Client, emulator_url: str) -> None:
    enforce(emulator_arm)
    for token in ("opaque-token", jwt({"tid": str(uuid.uuid4()), "appid": str(uuid.uuid4())}), "a.b.c"):
        with client_for(emulator_url, token) as owner:
            assert owner.put(
                rg_path("rg-own"), params=ARM_API, json={"location": "westeurope"}
            ).status_code in (
                200,
                201,
            )
            perms = owner.get(
                f"{rg_path('rg-own')}/providers/Microsoft.Authorization/permissions", params=RBAC_API
            )
            assert perms.json()["value"][0]["actions"] == ["*"]


def test_event_grid_sink_and_control_api_are_outside_rbac(
    emulator_arm: httpx.Client, mover: tuple[str, httpx.Client]
) -> None:
    _, client = mover
    enforce(emulator_arm)
    sent = client.post(
        "/eventgrid/api/events",
        params={"api-version": "2018-01-01"},
        json=[{"id": "1", "subject": "s", "data": {}, "eventType": "t", "eventTime": "2024-01-01T00:00:00Z",
               "dataVersion": "1"}],
    )  # fmt: skip
    assert sent.status_code == 200, sent.text
    assert client.get("/_emulator/health").status_code == 200


# --- ARM: refusal, roles, inheritance, groups, notActions, custom roles -------------------------
def test_refused_with_arms_message_even_for_what_does_not_exist(
    emulator_arm: httpx.Client, mover: tuple[str, httpx.Client]
) -> None:
    oid, client = mover
    put_identity(emulator_arm, "rg1", "app-id")
    enforce(emulator_arm)
    for name in ("app-id", "no-such-identity"):
        path = identity_path("rg1", name)
        r = client.get(path, params=MSI_API)
        assert r.status_code == 403, r.text
        assert r.json()["error"] == {
            "code": "AuthorizationFailed",
            "message": refusal(oid, "Microsoft.ManagedIdentity/userAssignedIdentities/read", path),
        }


def test_role_at_resource_group_allows_its_actions_only(
    emulator_arm: httpx.Client, mover: tuple[str, httpx.Client]
) -> None:
    oid, client = mover
    put_identity(emulator_arm, "rg1", "app-id")
    put_group(emulator_arm, "rg2")
    granted(emulator_arm, rg_path("rg1"), oid, READER)
    enforce(emulator_arm)
    assert client.get(identity_path("rg1", "app-id"), params=MSI_API).status_code == 200
    assert client.get(f"{rg_path('rg1')}/providers/Microsoft.ManagedIdentity/userAssignedIdentities",
                      params=MSI_API).status_code == 200  # fmt: skip
    written = client.put(identity_path("rg1", "app-id"), params=MSI_API, json={"location": "westeurope"})
    assert written.status_code == 403
    assert written.json()["error"]["message"] == refusal(
        oid, "Microsoft.ManagedIdentity/userAssignedIdentities/write", identity_path("rg1", "app-id")
    )
    elsewhere = client.get(rg_path("rg2"), params=ARM_API)
    assert elsewhere.status_code == 403
    assert elsewhere.json()["error"]["message"] == refusal(
        oid, "Microsoft.Resources/subscriptions/resourceGroups/read", rg_path("rg2")
    )


def test_roles_inherited_from_subscription_and_management_group(
    emulator_arm: httpx.Client, mover: tuple[str, httpx.Client]
) -> None:
    oid, client = mover
    put_identity(emulator_arm, "rg1", "app-id")
    mg = "/providers/Microsoft.Management/managementGroups/mg-parent"
    child = "/providers/Microsoft.Management/managementGroups/mg-child"
    assert emulator_arm.put(mg, params=ARM_API, json={"properties": {"displayName": "P"}}).status_code == 202
    assert emulator_arm.put(child, params=ARM_API, json={"properties": {"displayName": "C", "details": {
        "parent": {"id": mg}}}}).status_code == 202  # fmt: skip
    assert emulator_arm.put(f"{child}/subscriptions/{SUBSCRIPTION}", params=ARM_API).status_code == 200
    enforce(emulator_arm)
    assert client.get(identity_path("rg1", "app-id"), params=MSI_API).status_code == 403
    granted(emulator_arm, SUB, oid, READER)
    assert client.get(identity_path("rg1", "app-id"), params=MSI_API).status_code == 200
    assert (
        client.put(
            identity_path("rg1", "new-id"), params=MSI_API, json={"location": "westeurope"}
        ).status_code
        == 403
    )
    granted(emulator_arm, mg, oid, MI_CONTRIBUTOR)  # two management groups above the subscription
    created = client.put(identity_path("rg1", "new-id"), params=MSI_API, json={"location": "westeurope"})
    assert created.status_code == 201, created.text
    fic = f"{identity_path('rg1', 'new-id')}/federatedIdentityCredentials/github"
    body = {"properties": {"issuer": "https://token.actions.githubusercontent.com", "subject": "repo:o/r:ref:x",
                           "audiences": ["api://AzureADTokenExchange"]}}  # fmt: skip
    assert client.put(fic, params=MSI_API, json=body).status_code == 201


def test_roles_of_groups_count_transitively(
    emulator_arm: httpx.Client, mover: tuple[str, httpx.Client]
) -> None:
    oid, client = mover
    put_identity(emulator_arm, "rg1", "app-id")
    outer, inner = new_group(emulator_arm, "outer"), new_group(emulator_arm, "inner")
    assert add_member(emulator_arm, inner, oid).status_code == 204
    assert add_member(emulator_arm, outer, inner).status_code == 204
    granted(emulator_arm, SUB, outer, READER, principal_type="Group")
    enforce(emulator_arm)
    assert client.get(identity_path("rg1", "app-id"), params=MSI_API).status_code == 200
    assert emulator_arm.delete(f"{G}/groups/{inner}/members/{oid}/$ref").status_code == 204
    assert client.get(identity_path("rg1", "app-id"), params=MSI_API).status_code == 403


def test_not_actions_take_away_what_actions_give(
    emulator_arm: httpx.Client, mover: tuple[str, httpx.Client]
) -> None:
    oid, client = mover
    put_identity(emulator_arm, "rg1", "app-id")
    target = put_identity(emulator_arm, "rg1", "target")["properties"]["principalId"]
    granted(emulator_arm, SUB, oid, CONTRIBUTOR)
    enforce(emulator_arm)
    assert (
        client.put(identity_path("rg1", "other"), params=MSI_API, json={"location": "westeurope"}).status_code
        == 201
    )
    r = assign(client, rg_path("rg1"), target, READER)
    assert r.status_code == 403
    scope = r.request.url.path
    assert r.json()["error"] == {
        "code": "AuthorizationFailed",
        "message": refusal(oid, "Microsoft.Authorization/roleAssignments/write", scope, abac=True),
    }


def test_custom_role_definitions_authorize_like_built_in_ones(
    emulator_arm: httpx.Client, mover: tuple[str, httpx.Client]
) -> None:
    oid, client = mover
    put_identity(emulator_arm, "rg1", "app-id")
    guid = str(uuid.uuid4())
    body = {"properties": {"roleName": "Identity reader and credential writer", "assignableScopes": [SUB],
                           "permissions": [{"actions": ["Microsoft.ManagedIdentity/userAssignedIdentities/read",
                                                        "Microsoft.ManagedIdentity/*/federatedIdentityCredentials/*"],
                                            "notActions": ["microsoft.managedidentity/userassignedidentities/"
                                                           "federatedidentitycredentials/DELETE"]}]}}  # fmt: skip
    r = emulator_arm.put(
        f"{SUB}/providers/Microsoft.Authorization/roleDefinitions/{guid}", params=RBAC_API, json=body
    )
    assert r.status_code == 201, r.text
    granted(emulator_arm, rg_path("rg1"), oid, guid)
    enforce(emulator_arm)
    ident = identity_path("rg1", "app-id")
    assert client.get(ident, params=MSI_API).status_code == 200
    fic = f"{ident}/federatedIdentityCredentials/github"
    fic_body = {"properties": {"issuer": "https://issuer.example", "subject": "s", "audiences": ["a"]}}
    assert client.put(fic, params=MSI_API, json=fic_body).status_code == 201
    refused = client.delete(fic, params=MSI_API)
    assert refused.status_code == 403
    assert refused.json()["error"]["message"] == refusal(
        oid, "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials/delete", fic
    )
    assert client.patch(ident, params=MSI_API, json={"tags": {"a": "b"}}).status_code == 403


# --- ABAC conditions on role-assignment writes and deletes ---------------------------------------
def test_condition_refuses_privileged_roles_and_allows_others(
    emulator_arm: httpx.Client, mover: tuple[str, httpx.Client]
) -> None:
    oid, client = mover
    target = put_identity(emulator_arm, "rg1", "target")["properties"]["principalId"]
    granted(emulator_arm, SUB, oid, RBAC_ADMIN, condition=CONSTRAINED, conditionVersion="2.0")
    owners = granted(emulator_arm, rg_path("rg1"), target, OWNER)
    enforce(emulator_arm)
    refused = assign(client, rg_path("rg1"), target, OWNER)
    assert refused.status_code == 403
    assert refused.json()["error"]["message"] == refusal(
        oid, "Microsoft.Authorization/roleAssignments/write", refused.request.url.path, abac=True
    )
    assert assign(client, rg_path("rg1"), target, USER_ACCESS_ADMIN).status_code == 403
    assert assign(client, rg_path("rg1"), target, READER, principal_type="User").status_code == 403
    allowed = assign(client, rg_path("rg1"), target, READER)
    assert allowed.status_code == 201, allowed.text
    assert client.delete(allowed.json()["id"], params=RBAC_API).status_code == 200
    kept = client.delete(owners["id"], params=RBAC_API)
    assert kept.status_code == 403
    assert kept.json()["error"]["message"] == refusal(
        oid, "Microsoft.Authorization/roleAssignments/delete", owners["id"], abac=True
    )
    assert (
        client.delete(owners["id"].replace(owners["name"], str(uuid.uuid4())), params=RBAC_API).status_code
        == 204
    )
    # The same role without a condition can do both.
    granted(emulator_arm, rg_path("rg1"), oid, USER_ACCESS_ADMIN)
    assert client.delete(owners["id"], params=RBAC_API).status_code == 200


def test_the_condition_our_infra_writes_is_the_one_evaluated() -> None:
    """``infra/app/rbac.bicep``'s RBAC Administrator condition, as Bicep renders it, refuses Owner and
    non-service-principal grants and allows Reader for a service principal."""
    bicep = (Path(__file__).resolve().parents[1] / "infra" / "app" / "rbac.bicep").read_text()
    variables = dict(re.findall(r"^var (\w+) = '([^']*)'", bicep, re.MULTILINE))
    line = re.search(r"^var rbacAdministratorCondition = '(.*)'$", bicep, re.MULTILINE)
    assert line is not None
    privileged = re.search(r"^var privilegedRoleIds = '(.*)'$", bicep, re.MULTILINE)
    assert privileged is not None

    def render(text: str) -> str:
        return re.sub(r"\$\{(\w+)\}", lambda m: variables[m.group(1)], text)

    variables["privilegedRoleIds"] = render(privileged.group(1))
    condition = render(line.group(1).replace("\\'", "'"))

    def write(role: str, kind: str) -> bool:
        request = {"microsoft.authorization/roleassignments:roledefinitionid": [role_id(role)],
                   "microsoft.authorization/roleassignments:principaltype": [kind]}  # fmt: skip
        return conditions.evaluate(
            condition,
            "Microsoft.Authorization/roleAssignments/write",
            request,
            None,
            rbac_enforce.action_matches,
        )

    assert write(READER, "ServicePrincipal") and write(CONTRIBUTOR, "ServicePrincipal")
    assert not write(OWNER, "ServicePrincipal") and not write(RBAC_ADMIN, "ServicePrincipal")
    assert not write(READER, "User") and not write(READER, "Group")


def test_condition_operators_and_unreadable_conditions() -> None:
    attr = "microsoft.authorization/roleassignments:principaltype"
    action = "Microsoft.Authorization/roleAssignments/write"
    cond = "@Request[Microsoft.Authorization/roleAssignments:PrincipalType] StringEqualsIgnoreCase 'group'"
    assert conditions.evaluate(cond, action, {attr: ["Group"]})
    assert not conditions.evaluate(cond, action, {})
    both = "NOT ActionMatches{'Microsoft.Authorization/*/delete'} && " + cond.replace(
        "'group'", "{'User', 'Group'}"
    )
    assert conditions.evaluate(both, action, {attr: ["User"]}, action_matches=rbac_enforce.action_matches)
    with pytest.raises(conditions.ConditionError):
        conditions.evaluate("@Request[x] Frobnicate {'a'}", action, {})


# --- linked authorization -------------------------------------------------------------------------
def test_attaching_an_identity_needs_assign_on_it(
    emulator_arm: httpx.Client, mover: tuple[str, httpx.Client]
) -> None:
    oid, client = mover
    ident = put_identity(emulator_arm, "rg-ids", "app-id")["id"]
    put_group(emulator_arm, "rg-web")
    site = f"{rg_path('rg-web')}/providers/Microsoft.Web/sites/app1"
    granted(emulator_arm, rg_path("rg-web"), oid, WEBSITE_CONTRIBUTOR)
    enforce(emulator_arm)
    body = {
        "location": "westeurope",
        "identity": {"type": "UserAssigned", "userAssignedIdentities": {ident: {}}},
    }
    refused = client.put(site, params=SITE_API, json=body)
    assert refused.status_code == 403
    assert refused.json()["error"] == {
        "code": "LinkedAuthorizationFailed",
        "message": f"The client '{oid}' with object id '{oid}' has permission to perform action "
        f"'Microsoft.Web/sites/write' on scope '{site}'; however, it does not have permission to perform action "
        f"'Microsoft.ManagedIdentity/userAssignedIdentities/assign/action' on the linked scope(s) '{ident}' or the "
        "linked scope(s) are invalid.",
    }
    assert client.put(site, params=SITE_API, json={"location": "westeurope"}).status_code == 201
    granted(emulator_arm, rg_path("rg-ids"), oid, MI_OPERATOR)  # …/userAssignedIdentities/*/assign/action
    attached = client.put(site, params=SITE_API, json=body)
    assert attached.status_code == 200, attached.text
    # Detaching (a null entry) names no identity to assign.
    operator = emulator_arm.get(f"{rg_path('rg-ids')}/{RA}", params=RBAC_API).json()["value"][0]["id"]
    assert emulator_arm.delete(operator, params=RBAC_API).status_code == 200
    detach = {"identity": {"userAssignedIdentities": {ident: None}}}
    detached = client.patch(site, params=SITE_API, json=detach)
    assert detached.status_code == 200, detached.text
    assert client.put(site, params=SITE_API, json=body).status_code == 403


def test_service_specific_operations_are_authorized_by_their_own_actions(
    emulator_arm: httpx.Client, mover: tuple[str, httpx.Client]
) -> None:
    """App settings (``POST …/config/appsettings/list``, ``PUT …/config/appsettings``) as the mover
    rebinds them: Reader may not list the values, a role with ``Microsoft.Web/sites/config/list/action``
    and ``…/config/write`` may."""
    oid, client = mover
    put_group(emulator_arm, "rg-web")
    site = f"{rg_path('rg-web')}/providers/Microsoft.Web/sites/app1"
    assert emulator_arm.put(site, params=SITE_API, json={"location": "westeurope"}).status_code == 201
    settings = {"properties": {"AZURE_CLIENT_ID": "old"}}
    assert emulator_arm.put(f"{site}/config/appsettings", params=SITE_API, json=settings).status_code == 200
    granted(emulator_arm, SUB, oid, READER)
    enforce(emulator_arm)
    listed = client.post(f"{site}/config/appsettings/list", params=SITE_API)
    assert listed.status_code == 403
    assert listed.json()["error"]["message"] == refusal(
        oid, "Microsoft.Web/sites/config/list/action", f"{site}/config/appsettings"
    )
    guid = str(uuid.uuid4())
    role = {"properties": {"roleName": "App settings rebinder", "assignableScopes": [SUB], "permissions": [
        {"actions": ["Microsoft.Web/sites/config/list/action", "Microsoft.Web/sites/config/write"]}]}}  # fmt: skip
    assert emulator_arm.put(f"{SUB}/providers/Microsoft.Authorization/roleDefinitions/{guid}", params=RBAC_API,
                            json=role).status_code == 201  # fmt: skip
    granted(emulator_arm, site, oid, guid)
    assert client.post(f"{site}/config/appsettings/list", params=SITE_API).json()["properties"] == {
        "AZURE_CLIENT_ID": "old"
    }
    new = {"properties": {"AZURE_CLIENT_ID": "new"}}
    assert client.put(f"{site}/config/appsettings", params=SITE_API, json=new).status_code == 200
    assert client.put(site, params=SITE_API, json={"location": "westeurope"}).status_code == 403


# --- the permissions API ----------------------------------------------------------------------------
def test_permissions_answer_the_callers_own_grants(
    emulator_arm: httpx.Client, mover: tuple[str, httpx.Client]
) -> None:
    oid, client = mover
    put_group(emulator_arm, "rg1")
    put_group(emulator_arm, "rg2")
    group = new_group(emulator_arm, "operators")
    assert add_member(emulator_arm, group, oid).status_code == 204
    granted(emulator_arm, SUB, oid, READER)
    granted(emulator_arm, rg_path("rg1"), group, CONTRIBUTOR, principal_type="Group")
    perms = "providers/Microsoft.Authorization/permissions"
    enforce(emulator_arm)
    at_rg1 = client.get(f"{rg_path('rg1')}/{perms}", params=RBAC_API)
    assert at_rg1.status_code == 200, at_rg1.text
    reader = {"actions": ["*/read"], "notActions": [], "dataActions": [], "notDataActions": []}
    entries = at_rg1.json()["value"]
    assert reader in entries and len(entries) == 2
    contributor = next(e for e in entries if e != reader)
    assert contributor["actions"] == ["*"] and "Microsoft.Authorization/*/Write" in contributor["notActions"]
    assert client.get(f"{rg_path('rg2')}/{perms}", params=RBAC_API).json()["value"] == [reader]
    assert emulator_arm.get(f"{rg_path('rg2')}/{perms}", params=RBAC_API).json()["value"][0]["actions"] == [
        "*"
    ]
    enforce(emulator_arm, on=False)  # unrestricted again: the implicit grant comes first
    assert client.get(f"{rg_path('rg2')}/{perms}", params=RBAC_API).json()["value"][0]["actions"] == ["*"]


def test_resource_graph_answers_only_readable_rows(
    emulator_arm: httpx.Client, mover: tuple[str, httpx.Client]
) -> None:
    oid, client = mover
    put_identity(emulator_arm, "rg1", "seen")
    put_identity(emulator_arm, "rg2", "hidden")
    granted(emulator_arm, rg_path("rg1"), oid, READER)
    enforce(emulator_arm)
    query = {"subscriptions": [SUBSCRIPTION], "query": "Resources | project id, name | order by id asc"}
    r = client.post(
        "/providers/Microsoft.ResourceGraph/resources", params={"api-version": "2022-10-01"}, json=query
    )
    assert r.status_code == 200, r.text
    assert [row["name"] for row in r.json()["data"]] == ["seen"]


def test_subscriptions_list_shows_where_the_caller_has_access(
    emulator_arm: httpx.Client, mover: tuple[str, httpx.Client]
) -> None:
    oid, client = mover
    other = "00000000-0000-0000-0000-0000000000b2"
    put_group(emulator_arm, "rg-x", subscription=other)
    granted(emulator_arm, SUB, oid, READER)
    enforce(emulator_arm)
    listed = client.get("/subscriptions", params=ARM_API)
    assert listed.status_code == 200
    assert [s["subscriptionId"] for s in listed.json()["value"]] == [SUBSCRIPTION]
    assert {
        s["subscriptionId"] for s in emulator_arm.get("/subscriptions", params=ARM_API).json()["value"]
    } == {
        SUBSCRIPTION,
        other,
    }


def test_role_assignments_record_who_created_them(
    emulator_arm: httpx.Client, mover: tuple[str, httpx.Client]
) -> None:
    oid, client = mover
    target = put_identity(emulator_arm, "rg1", "target")["properties"]["principalId"]
    granted(emulator_arm, SUB, oid, RBAC_ADMIN, condition=CONSTRAINED, conditionVersion="2.0")
    enforce(emulator_arm)
    made = assign(client, rg_path("rg1"), target, READER)
    assert made.status_code == 201, made.text
    assert made.json()["properties"]["createdBy"] == oid == made.json()["properties"]["updatedBy"]


# --- Microsoft Graph application permissions --------------------------------------------------------
def grant_graph(owner: httpx.Client, principal: str, app_role: str) -> None:
    graph_sp = owner.get(f"{G}/servicePrincipals", params={"$filter": f"appId eq '{GRAPH_APP}'"}).json()[
        "value"
    ][0]
    r = owner.post(
        f"{G}/servicePrincipals/{principal}/appRoleAssignments",
        json={"principalId": principal, "resourceId": graph_sp["id"], "appRoleId": app_role},
    )
    assert r.status_code == 201, r.text


def test_graph_offers_its_application_permissions_with_real_ids(emulator_arm: httpx.Client) -> None:
    graph_sp = emulator_arm.get(
        f"{G}/servicePrincipals", params={"$filter": f"appId eq '{GRAPH_APP}'"}
    ).json()["value"][0]
    roles = {r["value"]: r["id"] for r in graph_sp["appRoles"]}
    assert roles["GroupMember.ReadWrite.All"] == GROUPMEMBER_READWRITE_ALL
    assert roles["AppRoleAssignment.ReadWrite.All"] == APPROLEASSIGNMENT_READWRITE_ALL
    assert roles["Application.Read.All"] == APPLICATION_READ_ALL
    assert roles["Group.Read.All"] == "5b567255-7703-4780-807c-7be8301ae99b"
    assert roles["Directory.Read.All"] == "7ab1d382-f21e-4acd-a863-ba3e13f7da61"


def test_graph_operations_need_application_permissions(
    emulator_arm: httpx.Client, mover: tuple[str, httpx.Client]
) -> None:
    oid, client = mover
    source = put_identity(emulator_arm, "rg1", "source")["properties"]["principalId"]
    group = new_group(emulator_arm, "readers")
    assert add_member(emulator_arm, group, source).status_code == 204
    enforce(emulator_arm)
    assert client.get(f"{G}/servicePrincipals/{oid}").status_code == 200  # itself, always
    denied = client.get(f"{G}/servicePrincipals/{source}/memberOf")
    assert denied.status_code == 403
    error = denied.json()["error"]
    assert (error["code"], error["message"]) == (
        "Authorization_RequestDenied",
        "Insufficient privileges to complete the operation.",
    )
    assert "innerError" in error
    grant_graph(emulator_arm, oid, APPLICATION_READ_ALL)
    assert client.get(f"{G}/servicePrincipals/{source}/memberOf").status_code == 200
    # Adding a service principal to a group: GroupMember.ReadWrite.All and Application.ReadWrite.All.
    assert add_member(client, group, oid).status_code == 403
    grant_graph(emulator_arm, oid, GROUPMEMBER_READWRITE_ALL)
    assert add_member(client, group, oid).status_code == 403
    grant_graph(emulator_arm, oid, APPLICATION_READWRITE_ALL)
    assert add_member(client, group, oid).status_code == 204
    assert client.delete(f"{G}/groups/{group}/members/{oid}/$ref").status_code == 204
    # Granting app roles: AppRoleAssignment.ReadWrite.All (with Application.Read.All).
    graph_sp = client.get(f"{G}/servicePrincipals", params={"$filter": f"appId eq '{GRAPH_APP}'"}).json()[
        "value"
    ][0]
    grant = {"principalId": source, "resourceId": graph_sp["id"], "appRoleId": APPLICATION_READ_ALL}
    assert client.post(f"{G}/servicePrincipals/{source}/appRoleAssignments", json=grant).status_code == 403
    grant_graph(emulator_arm, oid, APPROLEASSIGNMENT_READWRITE_ALL)
    made = client.post(f"{G}/servicePrincipals/{source}/appRoleAssignments", json=grant)
    assert made.status_code == 201, made.text
    assert (
        client.delete(f"{G}/servicePrincipals/{source}/appRoleAssignments/{made.json()['id']}").status_code
        == 204
    )


def test_app_roles_granted_from_the_resource_side_as_administrators_do(
    emulator_arm: httpx.Client, mover: tuple[str, httpx.Client]
) -> None:
    """``POST /servicePrincipals/{graph}/appRoleAssignedTo`` (``infra/scripts/grant-graph-permissions.sh``)."""
    oid, client = mover
    graph_sp = emulator_arm.get(
        f"{G}/servicePrincipals", params={"$filter": f"appId eq '{GRAPH_APP}'"}
    ).json()["value"][0]
    grant = {"principalId": oid, "resourceId": graph_sp["id"], "appRoleId": APPLICATION_READ_ALL}
    made = emulator_arm.post(f"{G}/servicePrincipals/{graph_sp['id']}/appRoleAssignedTo", json=grant)
    assert made.status_code == 201, made.text
    assert made.json()["@odata.context"].endswith(
        f"servicePrincipals('{graph_sp['id']}')/appRoleAssignedTo/$entity"
    )
    mine = emulator_arm.get(f"{G}/servicePrincipals/{oid}/appRoleAssignments").json()["value"]
    assert [(a["resourceId"], a["appRoleId"]) for a in mine] == [(graph_sp["id"], APPLICATION_READ_ALL)]
    enforce(emulator_arm)
    assert client.get(f"{G}/servicePrincipals/{graph_sp['id']}/appRoleAssignedTo").status_code == 200
    other = {**grant, "appRoleId": GROUPMEMBER_READWRITE_ALL}
    assert (
        client.post(f"{G}/servicePrincipals/{graph_sp['id']}/appRoleAssignedTo", json=other).status_code
        == 403
    )
    revoked = emulator_arm.delete(
        f"{G}/servicePrincipals/{graph_sp['id']}/appRoleAssignedTo/{made.json()['id']}"
    )
    assert revoked.status_code == 204
    assert client.get(f"{G}/servicePrincipals/{graph_sp['id']}/appRoleAssignedTo").status_code == 403


# --- the action names derived per request kind ------------------------------------------------------
IDENT = identity_path("rg1", "id1")
SITE = f"{rg_path('rg1')}/providers/Microsoft.Web/sites/app1"


@pytest.mark.parametrize(
    ("method", "path", "action", "scope"),
    [
        ("GET", IDENT, "Microsoft.ManagedIdentity/userAssignedIdentities/read", IDENT),
        ("PUT", IDENT, "Microsoft.ManagedIdentity/userAssignedIdentities/write", IDENT),
        ("PATCH", IDENT, "Microsoft.ManagedIdentity/userAssignedIdentities/write", IDENT),
        ("DELETE", IDENT, "Microsoft.ManagedIdentity/userAssignedIdentities/delete", IDENT),
        ("GET", f"{SUB}/providers/Microsoft.ManagedIdentity/userAssignedIdentities",
         "Microsoft.ManagedIdentity/userAssignedIdentities/read", SUB),
        ("PUT", f"{IDENT}/federatedIdentityCredentials/f1",
         "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials/write",
         f"{IDENT}/federatedIdentityCredentials/f1"),
        ("GET", f"{IDENT}/federatedIdentityCredentials",
         "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials/read",
         f"{IDENT}/federatedIdentityCredentials"),
        ("PUT", f"{SITE}/{RA}/g1", "Microsoft.Authorization/roleAssignments/write", SITE),
        ("DELETE", f"{SUB}/{RA}/g1", "Microsoft.Authorization/roleAssignments/delete", SUB),
        ("GET", f"{SUB}/{RA}", "Microsoft.Authorization/roleAssignments/read", SUB),
        ("PUT", f"{SUB}/providers/Microsoft.Authorization/roleDefinitions/r1",
         "Microsoft.Authorization/roleDefinitions/write", SUB),
        ("PUT", SITE, "Microsoft.Web/sites/write", SITE),
        ("PATCH", SITE, "Microsoft.Web/sites/write", SITE),
        ("GET", f"{SITE}/providers/Microsoft.ManagedIdentity/identities/default",
         "Microsoft.ManagedIdentity/identities/read", SITE),
        ("POST", f"{SITE}/config/appsettings/list", "Microsoft.Web/sites/config/list/action",
         f"{SITE}/config/appsettings"),
        ("PUT", f"{SITE}/config/appsettings", "Microsoft.Web/sites/config/write", f"{SITE}/config/appsettings"),
        ("POST", f"{rg_path('rg1')}/providers/Microsoft.App/containerApps/a1/listSecrets",
         "Microsoft.App/containerApps/listSecrets/action", f"{rg_path('rg1')}/providers/Microsoft.App/containerApps/a1"),
        ("PUT", f"{rg_path('rg1')}/providers/Microsoft.KeyVault/vaults/v1/accessPolicies/add",
         "Microsoft.KeyVault/vaults/accessPolicies/write",
         f"{rg_path('rg1')}/providers/Microsoft.KeyVault/vaults/v1/accessPolicies/add"),
        ("PUT", f"{rg_path('rg1')}/providers/Microsoft.DocumentDB/databaseAccounts/c1/sqlRoleAssignments/g1",
         "Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments/write",
         f"{rg_path('rg1')}/providers/Microsoft.DocumentDB/databaseAccounts/c1/sqlRoleAssignments/g1"),
        ("DELETE", f"{rg_path('rg1')}/providers/Microsoft.DBforPostgreSQL/flexibleServers/p1/administrators/o1",
         "Microsoft.DBforPostgreSQL/flexibleServers/administrators/delete",
         f"{rg_path('rg1')}/providers/Microsoft.DBforPostgreSQL/flexibleServers/p1/administrators/o1"),
        ("PUT", rg_path("rg1"), "Microsoft.Resources/subscriptions/resourceGroups/write", rg_path("rg1")),
        ("HEAD", rg_path("rg1"), "Microsoft.Resources/subscriptions/resourceGroups/read", rg_path("rg1")),
        ("GET", f"{rg_path('rg1')}/resources", "Microsoft.Resources/subscriptions/resourceGroups/resources/read",
         rg_path("rg1")),
        ("GET", f"{SUB}/resources", "Microsoft.Resources/subscriptions/resources/read", SUB),
        ("GET", f"{SUB}/resourcegroups", "Microsoft.Resources/subscriptions/resourceGroups/read", SUB),
        ("GET", SUB, "Microsoft.Resources/subscriptions/read", SUB),
        ("GET", f"{SUB}/providers/Microsoft.Web", "Microsoft.Resources/subscriptions/providers/read", SUB),
    ],
)  # fmt: skip
def test_action_derived_for_each_request_kind(method: str, path: str, action: str, scope: str) -> None:
    check = arm_actions.derive(method, path)
    assert check is not None and (check.action, check.scope) == (action, scope)


@pytest.mark.parametrize(
    "path",
    ["/subscriptions", f"{SUB}/providers/Microsoft.Authorization/permissions",
     "/providers/Microsoft.ResourceGraph/resources", f"{SUB}/operationresults/abc",
     f"/providers/Microsoft.Authorization/roleDefinitions/{READER}", f"{SUB}/providers/Microsoft.Authorization/roleDefinitions",
     f"{rg_path('rg1')}/providers/Microsoft.DocumentDB/locations/westeurope/operationsStatus/op1"],
)  # fmt: skip
def test_requests_that_check_no_action(path: str) -> None:
    assert arm_actions.derive("GET" if "ResourceGraph" not in path else "POST", path) is None


@pytest.mark.parametrize(
    ("pattern", "action", "expected"),
    [
        ("*", "Microsoft.Web/sites/write", True),
        ("*/read", "Microsoft.Web/sites/read", True),
        ("*/read", "Microsoft.Web/sites/write", False),
        ("Microsoft.Authorization/*/Write", "microsoft.authorization/roleassignments/write", True),
        ("Microsoft.ManagedIdentity/userAssignedIdentities/*/assign/action",
         "Microsoft.ManagedIdentity/userAssignedIdentities/assign/action", True),
        ("Microsoft.ManagedIdentity/userAssignedIdentities/*/read",
         "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials/read", True),
        ("Microsoft.Web/sites/*", "Microsoft.Web/sites/config/list/action", True),
        ("Microsoft.Web/sites/*", "Microsoft.Web/serverFarms/read", False),
    ],
)  # fmt: skip
def test_wildcards_match_as_arm_matches(pattern: str, action: str, expected: bool) -> None:
    assert rbac_enforce.action_matches(pattern, action) is expected
