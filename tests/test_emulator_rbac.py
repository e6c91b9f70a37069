"""Microsoft.Authorization 2022-04-01: role definitions and role assignments
(FACTS.md "Microsoft.Authorization")."""

from __future__ import annotations

import uuid

import httpx

from emulator.state import CALLER_ID, TENANT_ID
from tests.plugins.emulator import (
    RBAC_API,
    SUBSCRIPTION,
    configure,
    identity_path,
    put_group,
    put_identity,
    rg_path,
)
from tests.waiting import wait_until

RA = "providers/Microsoft.Authorization/roleAssignments"
READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
OWNER = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"
CONTRIBUTOR = "b24988ac-6180-42a0-ab88-20f7382dd24c"
SUB = f"/subscriptions/{SUBSCRIPTION}"


def role_id(guid: str) -> str:
    return f"{SUB}/providers/Microsoft.Authorization/roleDefinitions/{guid}"


def assign(
    client: httpx.Client,
    scope: str,
    principal: str,
    role: str = READER,
    name: str | None = None,
    **props: object,
) -> httpx.Response:
    body = {
        "properties": {
            "roleDefinitionId": role_id(role),
            "principalId": principal,
            "principalType": "ServicePrincipal",
            **props,
        }
    }
    return client.put(f"{scope}/{RA}/{name or uuid.uuid4()}", params=RBAC_API, json=body)


def names(response: httpx.Response) -> set[str]:
    assert response.status_code == 200, response.text
    return {a["properties"]["scope"] for a in response.json()["value"]}


def test_builtin_roles_have_real_ids_and_permissions(emulator_arm: httpx.Client) -> None:
    owner = emulator_arm.get(
        f"/providers/Microsoft.Authorization/roleDefinitions/{OWNER}", params=RBAC_API
    ).json()
    assert owner["properties"]["roleName"] == "Owner" and owner["properties"]["permissions"][0][
        "actions"
    ] == ["*"]
    contributor = emulator_arm.get(
        f"{SUB}/providers/Microsoft.Authorization/roleDefinitions/{CONTRIBUTOR}", params=RBAC_API
    ).json()
    assert contributor["id"] == role_id(CONTRIBUTOR)
    assert {"Microsoft.Authorization/*/Write", "Microsoft.Authorization/*/Delete"} <= set(
        contributor["properties"]["permissions"][0]["notActions"]
    )
    found = emulator_arm.get(
        f"{SUB}/providers/Microsoft.Authorization/roleDefinitions",
        params={**RBAC_API, "$filter": "roleName eq 'User Access Administrator'"},
    ).json()["value"]
    assert [r["name"] for r in found] == ["18d7d88d-d35e-4fb5-a5c3-7773c20a72d9"]
    assert found[0]["properties"]["permissions"][0]["actions"] == [
        "*/read",
        "Microsoft.Authorization/*",
        "Microsoft.Support/*",
    ]
    builtins = emulator_arm.get(
        f"{SUB}/providers/Microsoft.Authorization/roleDefinitions",
        params={**RBAC_API, "$filter": "type eq 'BuiltInRole'"},
    ).json()["value"]
    ids = {r["name"] for r in builtins}
    assert {
        "f58310d9-a9f6-439a-9e8d-f62e7b41a168",
        "e40ec5ca-96e0-45a2-b4ff-59039f2c2b59",
        "f1a07417-d97a-45cb-824c-7a7467783830",
        READER,
    } <= ids
    missing = emulator_arm.get(
        f"/providers/Microsoft.Authorization/roleDefinitions/{uuid.uuid4()}", params=RBAC_API
    )
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "RoleDefinitionDoesNotExist"


def test_custom_roles(emulator_arm: httpx.Client) -> None:
    guid = str(uuid.uuid4())
    body = {"properties": {"roleName": "Access granter", "description": "can grant", "assignableScopes": [SUB],
                           "permissions": [{"actions": ["Microsoft.Authorization/roleAssignments/write"]}]}}  # fmt: skip
    created = emulator_arm.put(
        f"{SUB}/providers/Microsoft.Authorization/roleDefinitions/{guid}", params=RBAC_API, json=body
    )
    assert created.status_code == 201 and created.json()["properties"]["type"] == "CustomRole"
    same_name = emulator_arm.put(
        f"{SUB}/providers/Microsoft.Authorization/roleDefinitions/{uuid.uuid4()}", params=RBAC_API, json=body
    )
    assert same_name.status_code == 409
    put_group(emulator_arm, "rg1")
    sp = str(uuid.uuid4())
    assert assign(emulator_arm, rg_path("rg1"), sp, role=guid).status_code == 201
    busy = emulator_arm.delete(
        f"{SUB}/providers/Microsoft.Authorization/roleDefinitions/{guid}", params=RBAC_API
    )
    assert busy.status_code == 409 and busy.json()["error"]["code"] == "RoleDefinitionHasAssignments"
    other_sub = assign(emulator_arm, "/subscriptions/11111111-1111-1111-1111-111111111111", sp, role=guid)
    assert other_sub.json()["error"]["code"] == "RoleDefinitionDoesNotExist"
    got = emulator_arm.get(f"{SUB}/providers/Microsoft.Authorization/roleDefinitions/{guid}", params=RBAC_API)
    assert got.status_code == 200 and got.json()["properties"]["roleName"] == "Access granter"
    for a in emulator_arm.get(f"{rg_path('rg1')}/{RA}", params=RBAC_API).json()["value"]:
        assert emulator_arm.delete(a["id"], params=RBAC_API).status_code == 200
    rd = f"{SUB}/providers/Microsoft.Authorization/roleDefinitions/{guid}"
    deleted = emulator_arm.delete(rd, params=RBAC_API)
    assert deleted.status_code == 200 and deleted.json()["name"] == guid
    assert emulator_arm.delete(rd, params=RBAC_API).status_code == 204
    assert emulator_arm.get(rd, params=RBAC_API).status_code == 404


def test_create_is_201_then_200_and_name_must_be_a_guid(emulator_arm: httpx.Client) -> None:
    sp = str(uuid.uuid4())
    name = str(uuid.uuid4())
    first = assign(emulator_arm, SUB, sp, name=name, description="why")
    assert first.status_code == 201
    props = first.json()["properties"]
    assert (
        props["principalType"] == "ServicePrincipal" and props["description"] == "why" and props["createdOn"]
    )
    assert props["roleDefinitionId"] == role_id(READER) and props["condition"] is None
    assert assign(emulator_arm, SUB, sp, name=name, description="why").status_code == 200
    changed = assign(emulator_arm, SUB, str(uuid.uuid4()), name=name)
    # 400: Microsoft's RBAC troubleshooting page lists it under "role assignment returns BadRequest status"
    assert changed.status_code == 400 and changed.json()["error"] == {
        "code": "RoleAssignmentUpdateNotPermitted",
        "message": "Tenant ID, application ID, principal ID, and scope are not allowed to be updated.",
    }
    bad = assign(emulator_arm, SUB, sp, name="not-a-guid")
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "InvalidRoleAssignmentId"
    exists = assign(emulator_arm, SUB, sp)
    assert exists.status_code == 409 and exists.json()["error"]["code"] == "RoleAssignmentExists"
    nope = assign(emulator_arm, SUB, sp, role=str(uuid.uuid4()))
    assert nope.status_code == 400 and nope.json()["error"]["code"] == "RoleDefinitionDoesNotExist"


def test_principal_type_defaults_to_user_and_unknown_principals_fail(emulator_arm: httpx.Client) -> None:
    unknown = str(uuid.uuid4())
    body = {"properties": {"roleDefinitionId": role_id(READER), "principalId": unknown}}
    r = emulator_arm.put(f"{SUB}/{RA}/{uuid.uuid4()}", params=RBAC_API, json=body)
    assert r.status_code == 400 and r.json()["error"]["code"] == "PrincipalNotFound"
    # ARM's wording (public azure-search-openai-demo / avdaccelerator threads): id without dashes
    assert r.json()["error"]["message"] == (
        f"Principal {unknown.replace('-', '')} does not exist in the directory {TENANT_ID}. Check that you have the "
        "correct principal ID. If you are creating this principal and then immediately assigning a role, this error "
        "might be related to a replication delay. In this case, set the role assignment principalType property to a "
        "value, such as ServicePrincipal, User, or Group.  See https://aka.ms/docs-principaltype"
    )
    # Azure cannot validate a service principal it has not seen yet and accepts it
    assert assign(emulator_arm, SUB, unknown).status_code == 201
    ident = put_identity(emulator_arm, "rg1", "id1")
    user_typed = emulator_arm.put(
        f"{SUB}/{RA}/{uuid.uuid4()}",
        params=RBAC_API,
        json={
            "properties": {
                "roleDefinitionId": role_id(OWNER),
                "principalId": ident["properties"]["principalId"],
                "principalType": "User",
            }
        },
    )
    assert user_typed.status_code == 400 and user_typed.json()["error"]["code"] == "UnmatchedPrincipalType"
    defaulted = emulator_arm.put(
        f"{SUB}/{RA}/{uuid.uuid4()}",
        params=RBAC_API,
        json={
            "properties": {
                "roleDefinitionId": role_id(OWNER),
                "principalId": ident["properties"]["principalId"],
            }
        },
    )
    # principalType omitted: ARM looks the principal up and records its real type (recorded Azure traffic,
    # tests/conformance/recordings/role-assignments; test_emulator_recordings.py)
    assert defaulted.status_code == 201, defaulted.text
    assert defaulted.json()["properties"]["principalType"] == "ServicePrincipal"


def test_new_identity_hits_principal_not_found_unless_service_principal(emulator_arm: httpx.Client) -> None:
    configure(emulator_arm, replicationDelaySeconds=3)  # wide enough for a busy machine's first look
    ident = put_identity(emulator_arm, "rg1", "id1")
    pid = ident["properties"]["principalId"]
    body = {"properties": {"roleDefinitionId": role_id(READER), "principalId": pid, "principalType": "Group"}}
    early = emulator_arm.put(f"{SUB}/{RA}/{uuid.uuid4()}", params=RBAC_API, json=body)
    assert early.status_code == 400 and early.json()["error"]["code"] == "PrincipalNotFound"
    assert assign(emulator_arm, SUB, pid).status_code == 201
    sp = f"/graph/v1.0/servicePrincipals/{pid}"
    wait_until(lambda: emulator_arm.get(sp).status_code == 200, timeout=30, what="replicated")
    late = emulator_arm.put(
        f"{rg_path('rg1')}/{RA}/{uuid.uuid4()}",
        params=RBAC_API,
        json={"properties": {**body["properties"], "principalType": "ServicePrincipal"}},
    )
    assert late.status_code == 201


def test_condition_needs_version_2(emulator_arm: httpx.Client) -> None:
    cond = "((!(ActionMatches{'Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read'})))"
    bad = assign(emulator_arm, SUB, str(uuid.uuid4()), condition=cond, conditionVersion="1.0")
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "InvalidConditionVersion"
    good = assign(emulator_arm, SUB, str(uuid.uuid4()), condition=cond, conditionVersion="2.0")
    assert good.status_code == 201 and good.json()["properties"]["condition"] == cond


def test_limit_per_subscription(emulator_arm: httpx.Client) -> None:
    configure(emulator_arm, roleAssignmentLimit=3)
    for _ in range(3):
        assert assign(emulator_arm, SUB, str(uuid.uuid4())).status_code == 201
    over = assign(emulator_arm, SUB, str(uuid.uuid4()))
    assert over.status_code == 400 and over.json()["error"]["code"] == "RoleAssignmentLimitExceeded"
    # the words Microsoft's RBAC troubleshooting page quotes
    assert over.json()["error"]["message"].startswith("No more role assignments can be created.")
    assert (
        assign(
            emulator_arm, "/subscriptions/22222222-2222-2222-2222-222222222222", str(uuid.uuid4())
        ).status_code
        == 201
    )


def test_filters_at_above_and_below(emulator_arm: httpx.Client) -> None:
    emulator_arm.put(
        "/providers/Microsoft.Management/managementGroups/root-mg",
        params={"api-version": "2021-04-01"},
        json={},
    )
    emulator_arm.put(
        "/providers/Microsoft.Management/managementGroups/mg1",
        params={"api-version": "2021-04-01"},
        json={
            "properties": {
                "details": {"parent": {"id": "/providers/Microsoft.Management/managementGroups/root-mg"}}
            }
        },
    )
    emulator_arm.put(
        f"/providers/Microsoft.Management/managementGroups/mg1/subscriptions/{SUBSCRIPTION}",
        params={"api-version": "2021-04-01"},
    )
    ident = put_identity(emulator_arm, "rg1", "id1")
    put_group(emulator_arm, "rg2")
    p, other = ident["properties"]["principalId"], str(uuid.uuid4())
    mg = "/providers/Microsoft.Management/managementGroups/root-mg"
    for scope in (mg, SUB, rg_path("rg1"), identity_path("rg1", "id1"), rg_path("rg2")):
        assert assign(emulator_arm, scope, p).status_code == 201, scope
    assert assign(emulator_arm, rg_path("rg1"), other).status_code == 201

    def listed(scope: str, flt: str | None = None) -> set[str]:
        params = {**RBAC_API, "$filter": flt} if flt else RBAC_API
        return names(emulator_arm.get(f"{scope}/{RA}", params=params))

    by_principal = f"principalId eq '{p}'"
    assert listed(rg_path("rg1"), by_principal) == {mg, SUB, rg_path("rg1"), identity_path("rg1", "id1")}
    assert listed(rg_path("rg1"), f"atScope() and {by_principal}") == {mg, SUB, rg_path("rg1")}
    assert listed(rg_path("rg1"), "atScope()") == {mg, SUB, rg_path("rg1")}
    assert listed(SUB, by_principal) == {mg, SUB, rg_path("rg1"), identity_path("rg1", "id1"), rg_path("rg2")}
    assert listed(mg, "atScope()") == {mg}
    assert listed(identity_path("rg1", "id1")) == {mg, SUB, rg_path("rg1"), identity_path("rg1", "id1")}
    assert (
        emulator_arm.get(f"{SUB}/{RA}", params={**RBAC_API, "$filter": "roleName eq 'x'"}).status_code == 400
    )


def test_assigned_to_includes_group_memberships(emulator_arm: httpx.Client) -> None:
    ident = put_identity(emulator_arm, "rg1", "id1")
    p = ident["properties"]["principalId"]
    group = emulator_arm.post(
        "/graph/v1.0/groups",
        json={"displayName": "g", "mailEnabled": False, "mailNickname": "g", "securityEnabled": True},
    ).json()
    emulator_arm.post(
        f"/graph/v1.0/groups/{group['id']}/members/$ref",
        json={"@odata.id": f"https://graph.microsoft.com/v1.0/directoryObjects/{p}"},
    )
    body = {
        "properties": {
            "roleDefinitionId": role_id(READER),
            "principalId": group["id"],
            "principalType": "Group",
        }
    }
    assert (
        emulator_arm.put(f"{rg_path('rg1')}/{RA}/{uuid.uuid4()}", params=RBAC_API, json=body).status_code
        == 201
    )
    assert assign(emulator_arm, SUB, p).status_code == 201
    got = emulator_arm.get(f"{SUB}/{RA}", params={**RBAC_API, "$filter": f"assignedTo('{p}')"}).json()[
        "value"
    ]
    assert {a["properties"]["principalId"] for a in got} == {p, group["id"]}


def test_management_group_put_is_a_long_running_operation(emulator_arm: httpx.Client) -> None:
    """Spec 2021-04-01 ``PutManagementGroup.json``: 202 ``NotStarted`` + Azure-AsyncOperation, then Succeeded."""
    mg = "/providers/Microsoft.Management/managementGroups/mg2"
    body = {"properties": {"displayName": "MG 2"}}
    accepted = emulator_arm.put(mg, params={"api-version": "2021-04-01"}, json=body)
    assert accepted.status_code == 202
    assert accepted.json() == {
        "id": mg,
        "type": "Microsoft.Management/managementGroups",
        "name": "mg2",
        "status": "NotStarted",
    }
    operation = accepted.headers["Azure-AsyncOperation"]
    assert accepted.headers["Location"] == operation
    assert "/providers/Microsoft.Management/operationResults/create/managementGroups/mg2" in operation
    done = emulator_arm.get(operation)
    assert done.status_code == 200 and done.json()["status"] == "Succeeded"
    assert done.json()["properties"]["displayName"] == "MG 2"
    got = emulator_arm.get(mg, params={"api-version": "2021-04-01"}).json()
    assert got["properties"]["details"]["version"] == 1 and got["properties"]["details"]["parent"] is None
    updated = emulator_arm.put(
        mg, params={"api-version": "2021-04-01"}, json={"properties": {"displayName": "Two"}}
    )
    assert updated.status_code == 200 and updated.json()["properties"]["details"]["version"] == 2


def test_permissions_of_the_caller(emulator_arm: httpx.Client) -> None:
    """``Permissions_ListForResourceGroup`` / ``_ListForResource``: the implicit Owner grant, then the
    caller's own assignments at or above the scope."""
    put_group(emulator_arm, "rg1")
    site = f"{rg_path('rg1')}/providers/Microsoft.Web/sites/app"
    assert (
        emulator_arm.put(
            site, params={"api-version": "2023-01-01"}, json={"location": "westeurope"}
        ).status_code
        == 201
    )
    perms = f"{rg_path('rg1')}/providers/Microsoft.Authorization/permissions"
    first = emulator_arm.get(perms, params=RBAC_API)
    assert first.status_code == 200
    assert first.json()["value"] == [
        {"actions": ["*"], "notActions": [], "dataActions": [], "notDataActions": []}
    ]
    assert assign(emulator_arm, rg_path("rg1"), CALLER_ID, role=READER).status_code == 201
    on_site = emulator_arm.get(
        f"{site}/providers/Microsoft.Authorization/permissions", params=RBAC_API
    ).json()
    assert [p["actions"] for p in on_site["value"]] == [["*"], ["*/read"]]
    elsewhere = emulator_arm.get(
        f"{SUB}/resourceGroups/rg2/providers/Microsoft.Authorization/permissions", params=RBAC_API
    )
    assert elsewhere.status_code == 404 and elsewhere.json()["error"]["code"] == "ResourceGroupNotFound"


def test_management_group_scope_and_limit(emulator_arm: httpx.Client) -> None:
    mg = "/providers/Microsoft.Management/managementGroups/mg1"
    assert assign(emulator_arm, mg, str(uuid.uuid4())).json()["error"]["code"] == "ManagementGroupNotFound"
    emulator_arm.put(mg, params={"api-version": "2021-04-01"}, json={"properties": {"displayName": "MG 1"}})
    configure(emulator_arm, managementGroupRoleAssignmentLimit=1)
    r = assign(emulator_arm, mg, str(uuid.uuid4()))
    assert r.status_code == 201 and r.json()["id"].startswith(mg)
    assert (
        r.json()["properties"]["roleDefinitionId"]
        == f"/providers/Microsoft.Authorization/roleDefinitions/{READER}"
    )
    assert (
        assign(emulator_arm, mg, str(uuid.uuid4())).json()["error"]["code"] == "RoleAssignmentLimitExceeded"
    )


def test_get_and_delete_by_id_and_paging(emulator_arm: httpx.Client) -> None:
    created = [assign(emulator_arm, SUB, str(uuid.uuid4())).json() for _ in range(5)]
    configure(emulator_arm, pageSize=2)
    url: str | None = f"{SUB}/{RA}?api-version=2022-04-01"
    seen = []
    while url:
        page = emulator_arm.get(url).json()
        seen += [a["id"] for a in page["value"]]
        url = page.get("nextLink")
    assert sorted(seen) == sorted(a["id"] for a in created)
    target = created[0]["id"]
    assert emulator_arm.get(target, params=RBAC_API).json()["id"] == target
    deleted = emulator_arm.delete(target, params=RBAC_API)
    assert deleted.status_code == 200 and deleted.json()["id"] == target
    assert emulator_arm.delete(target, params=RBAC_API).status_code == 204
    assert emulator_arm.get(target, params=RBAC_API).status_code == 404


def test_assignments_outlive_their_principal_but_not_their_scope(emulator_arm: httpx.Client) -> None:
    ident = put_identity(emulator_arm, "rg1", "id1")
    put_group(emulator_arm, "rg2")
    site = f"{rg_path('rg2')}/providers/Microsoft.Web/sites/app"
    emulator_arm.put(site, params={"api-version": "2023-01-01"}, json={"location": "westeurope"})
    p = ident["properties"]["principalId"]
    assert assign(emulator_arm, SUB, p).status_code == 201
    assert assign(emulator_arm, site, p).status_code == 201
    emulator_arm.delete(identity_path("rg1", "id1"), params={"api-version": "2024-11-30"})
    emulator_arm.delete(site, params={"api-version": "2023-01-01"})
    left = emulator_arm.get(f"{SUB}/{RA}", params={**RBAC_API, "$filter": f"principalId eq '{p}'"}).json()[
        "value"
    ]
    assert [a["properties"]["scope"] for a in left] == [SUB]
