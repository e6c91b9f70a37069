"""Replay every spec example in ``tests/conformance/examples`` against the emulator.

For each example: create what it presupposes (resource group, identity, role definition, principal,
...) through the ordinary APIs, send the example's request (path from its parameters, body from its
body parameter), and check that the status is one the example lists and that the body has the same
shape: the same keys recursively, equal values except volatile ones (ids, GUIDs, principal/client/
tenant ids, timestamps, continuation tokens). Keys Azure documents but the example omits are allowed
where listed (``EXTRA_KEYS``); ``nextLink`` / ``$skipToken`` are optional, as the specs say.

Substitutions (the examples use placeholders a real service would refuse):
- Role assignments: the principal ``ce2ce14e-...`` is replaced by a user created with Graph
  ``POST /users`` (principalType ``User`` needs a principal that exists); the role definition
  ``0b5fe924-...`` is created first as a custom role at the subscription. ``roleDefinitionId`` is
  compared by GUID: ARM returns it subscription-qualified, the examples show the tenant form.
- Role definitions: ``scope``/``roleId``/``roleDefinitionId`` placeholders become the subscription
  ``subId`` and a custom role created with the example's own properties; ``properties.type``
  (``roletype`` in the example) is ``CustomRole``. ``GetRoleDefinitionAtScope`` lists with
  ``$filter=type eq 'CustomRole'`` so the built-ins do not swamp the one-item example list.
- Identities: response ``name`` differs from the request's ``resourceName`` in the examples, so
  names are compared with the request's.
- ``SystemAssignedIdentityGet``: the example's scope ends in ``/identities/default``; the resource
  scope before it is used. ``location`` (``cus``) and ``type`` (``ResourceProvider``) are placeholders.
- Resource Graph: ``totalRecords`` is volatile; the next-page example is replayed with the
  ``$skipToken`` the first page returned (tokens are opaque); the two pages together must return
  exactly the resources the two examples show that match the query (the next-page example also lists
  ``second_OsDisk_...``, whose name does not contain 'test': that row is the example's slip).
- ``VirtualMachine_Create_WithEncryptionIdentity``: ARM's generic resource layer is emulated, not
  Compute, so VM defaults the Compute RP adds (vmId, osType, windowsConfiguration, dataDisks,
  ``provisioningState: Creating``) are absent; the replay checks the request's properties and
  identity block come back (with principalId/clientId filled in) under the example's keys.

The examples of the access outside Azure RBAC (Key Vault, Cosmos DB, database administrators, App
Service settings, Container Apps secrets; issue 8) are replayed by ``test_emulator_conformance_dataplane.py``;
the check below that every example is replayed counts its table too.

Not replayed:
- ``PublishEventsToEventGridTopicAsCustomSchemaEvents``: a real topic is created with ONE input schema.
  The contract's sink is a CloudEvents / Event Grid schema topic (what the mover publishes to); such a
  topic answers a custom-schema batch 400, and so does the sink. A custom-input-schema topic accepts any
  JSON, so emulating one would check nothing the mover sends. Decision: not supported (``NOT_REPLAYED``).

Operation coverage (bottom of this file, rendered to ``emulator/COVERAGE.md``): every operationId of
``ManagedIdentity.json``, ``authorization-RoleAssignmentsCalls.json``,
``authorization-RoleDefinitionsCalls.json`` and ``EventGrid.json`` is in ``COVERED`` (with the tests
that exercise it) or ``NOT_COVERED`` (with why). Served: all 12 MSI operations but ``Operations_List``,
all 10 role-assignment operations, ``Permissions_ListForResourceGroup``/``_ListForResource`` and the 4
role-definition operations, and Event Grid ``PublishEvents``. Not served: ``Operations_List`` (the
provider's operation catalogue; the mover never calls it). Issue 8 adds Cosmos DB ``rbac.json``, PostgreSQL
``Administrators.json``, MySQL ``AzureADAdministrator.json`` and SQL ``ServerAzureADAdministrators.json``
(all 20 operations served); Key Vault (``keyvault.json`` 2023-07-01 is not in the stored index) and App
Service (``WebApps.json``, hundreds of operations) are covered by replayed examples only.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

EXAMPLES = Path(__file__).parent / "conformance" / "examples"
RA = "Microsoft.Authorization/roleAssignments"
EXAMPLE_ROLE = "0b5fe924-9a61-425c-96af-cfe6e287ca2d"
EXAMPLE_PRINCIPAL = "ce2ce14e-85d7-4629-bdbc-454d0519d987"
VOLATILE = {"id", "principalId", "clientId", "tenantId", "createdOn", "updatedOn", "createdBy", "updatedBy",
            "nextLink", "$skipToken", "totalRecords", "clientSecretUrl"}  # fmt: skip
OPTIONAL = {"nextLink", "$skipToken"}
RA_EXTRA = {"condition", "conditionVersion", "createdOn", "updatedOn", "createdBy", "updatedBy",
            "delegatedManagedIdentityResourceId", "description"}  # fmt: skip
RD_EXTRA = {"createdOn", "updatedOn", "createdBy", "updatedBy"}


def load(relative: str) -> dict[str, Any]:
    return json.loads((EXAMPLES / relative).read_text())


def assert_same_shape(
    expected: Any,
    actual: Any,
    where: str = "$",
    volatile: frozenset[str] = frozenset(),
    extra: frozenset[str] = frozenset(),
) -> None:
    if isinstance(expected, dict):
        assert isinstance(actual, dict), f"{where}: expected an object, got {actual!r}"
        missing = set(expected) - set(actual) - OPTIONAL
        assert not missing, f"{where}: missing keys {sorted(missing)}"
        unexpected = set(actual) - set(expected) - extra - OPTIONAL
        assert not unexpected, f"{where}: unexpected keys {sorted(unexpected)}"
        for k, v in expected.items():
            if k not in actual:
                continue
            path = f"{where}.{k}"
            if k == "roleDefinitionId":
                assert str(actual[k]).lower().endswith("/" + str(v).rsplit("/", 1)[-1].lower()), (
                    f"{path}: {actual[k]} vs {v}"
                )
            elif k in VOLATILE or path in volatile or k in volatile:
                assert type(actual[k]) is type(v) or (isinstance(v, str) and isinstance(actual[k], str)), (
                    f"{path}: type"
                )
            else:
                assert_same_shape(v, actual[k], path, volatile, extra)
    elif isinstance(expected, list):
        assert isinstance(actual, list), f"{where}: expected a list, got {actual!r}"
        assert len(actual) == len(expected), f"{where}: {len(actual)} items, example has {len(expected)}"
        for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
            assert_same_shape(e, a, f"{where}[{i}]", volatile, extra)
    else:
        assert actual == expected, f"{where}: {actual!r} != {expected!r}"


def check(example: dict[str, Any], response: httpx.Response, status: int, **kw: Any) -> None:
    assert str(response.status_code) in example["responses"], (
        f"{response.status_code} not in {list(example['responses'])}: {response.text}"
    )
    assert response.status_code == status, response.text
    body = example["responses"][str(status)].get("body")
    if body is None:
        assert not response.content, response.text
    else:
        assert_same_shape(body, response.json(), **kw)


# --- prerequisites -----------------------------------------------------------------------
def group(arm: httpx.Client, sub: str, name: str, location: str = "eastus") -> None:
    r = arm.put(
        f"/subscriptions/{sub}/resourcegroups/{name}",
        params={"api-version": "2021-04-01"},
        json={"location": location},
    )
    assert r.status_code in (200, 201), r.text


def identity_path(sub: str, rg: str, name: str) -> str:
    return f"/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}"


def identity(
    arm: httpx.Client, sub: str, rg: str, name: str, body: dict[str, Any] | None = None
) -> dict[str, Any]:
    group(arm, sub, rg)
    r = arm.put(
        identity_path(sub, rg, name),
        params={"api-version": "2026-05-31"},
        json=body or {"location": "eastus", "tags": {"key1": "value1", "key2": "value2"}},
    )
    assert r.status_code in (200, 201), r.text
    return dict(r.json())


def fic(arm: httpx.Client, sub: str, rg: str, name: str, fic_name: str, props: dict[str, Any]) -> None:
    r = arm.put(
        f"{identity_path(sub, rg, name)}/federatedIdentityCredentials/{fic_name}",
        params={"api-version": "2026-05-31"},
        json={"properties": props},
    )
    assert r.status_code in (200, 201), r.text


def user(arm: httpx.Client) -> str:
    r = arm.post(
        "/graph/v1.0/users",
        json={
            "displayName": "Example User",
            "userPrincipalName": "example@contoso.test",
            "accountEnabled": True,
            "mailNickname": "example",
        },
    )
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


def custom_role(arm: httpx.Client, sub: str, guid: str, props: dict[str, Any] | None = None) -> None:
    props = props or {"roleName": "Example role", "description": "example", "assignableScopes": [f"/subscriptions/{sub}"],
                      "permissions": [{"actions": ["*/read"], "notActions": [], "dataActions": [], "notDataActions": []}]}  # fmt: skip
    r = arm.put(
        f"/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/{guid}",
        params={"api-version": "2022-04-01"},
        json={"properties": props},
    )
    assert r.status_code == 201, r.text


def ensure_scope(arm: httpx.Client, scope: str) -> None:
    """Create the resource group / resource a scope names."""
    segs = scope.strip("/").split("/")
    if len(segs) >= 4:
        group(arm, segs[1], segs[3])
    if len(segs) >= 8:
        r = arm.put("/" + "/".join(segs), params={"api-version": "2024-01-01"}, json={"location": "eastus"})
        assert r.status_code in (200, 201), r.text


def assignment(
    arm: httpx.Client,
    scope: str,
    name: str,
    principal: str,
    role: str = EXAMPLE_ROLE,
    principal_type: str = "User",
) -> httpx.Response:
    scope = scope.strip("/")
    sub = scope.split("/")[1]
    ensure_scope(arm, scope)
    return arm.put(
        f"/{scope}/providers/{RA}/{name}",
        params={"api-version": "2022-04-01"},
        json={
            "properties": {
                "roleDefinitionId": f"/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/{role}",
                "principalId": principal,
                "principalType": principal_type,
            }
        },
    )


def with_principal(body: Any, principal: str) -> Any:
    return json.loads(json.dumps(body).replace(EXAMPLE_PRINCIPAL, principal))


# --- replays -----------------------------------------------------------------------------
MSI = "Microsoft.ManagedIdentity/2026-05-31/"
AUTH = "Microsoft.Authorization/2022-04-01/"


def replay_identity_create(arm: httpx.Client) -> None:
    ex = load(MSI + "IdentityCreate.json")
    p = ex["parameters"]
    group(arm, p["subscriptionId"], p["resourceGroupName"])
    path = identity_path(p["subscriptionId"], p["resourceGroupName"], p["resourceName"])
    check(
        ex,
        arm.put(path, params={"api-version": p["api-version"]}, json=p["parameters"]),
        201,
        volatile=frozenset({"$.name"}),
    )
    check(
        ex,
        arm.put(path, params={"api-version": p["api-version"]}, json=p["parameters"]),
        200,
        volatile=frozenset({"$.name"}),
    )


def replay_identity_get(arm: httpx.Client) -> None:
    ex = load(MSI + "IdentityGet.json")
    p = ex["parameters"]
    identity(arm, p["subscriptionId"], p["resourceGroupName"], p["resourceName"])
    r = arm.get(
        identity_path(p["subscriptionId"], p["resourceGroupName"], p["resourceName"]),
        params={"api-version": p["api-version"]},
    )
    check(ex, r, 200, volatile=frozenset({"$.name"}))
    assert r.json()["name"] == p["resourceName"]


def replay_identity_update(arm: httpx.Client) -> None:
    ex = load(MSI + "IdentityUpdate.json")
    p = ex["parameters"]
    identity(arm, p["subscriptionId"], p["resourceGroupName"], p["resourceName"])
    r = arm.patch(
        identity_path(p["subscriptionId"], p["resourceGroupName"], p["resourceName"]),
        params={"api-version": p["api-version"]},
        json=p["parameters"],
    )
    check(ex, r, 200, volatile=frozenset({"$.name"}))


def replay_identity_delete(arm: httpx.Client) -> None:
    ex = load(MSI + "IdentityDelete.json")
    p = ex["parameters"]
    identity(arm, p["subscriptionId"], p["resourceGroupName"], p["resourceName"])
    path = identity_path(p["subscriptionId"], p["resourceGroupName"], p["resourceName"])
    check(ex, arm.delete(path, params={"api-version": p["api-version"]}), 200)
    check(ex, arm.delete(path, params={"api-version": p["api-version"]}), 204)


def _replay_identity_list(arm: httpx.Client, file: str, by_group: bool) -> None:
    ex = load(MSI + file)
    p = ex["parameters"]
    expected = ex["responses"]["200"]["body"]["value"][0]
    body = {
        "location": expected["location"],
        "tags": expected["tags"],
        "properties": {k: expected["properties"][k] for k in ("isolationScope", "assignmentRestrictions")},
    }
    identity(arm, p["subscriptionId"], "rgName", "identityName", body)
    path = (
        f"/subscriptions/{p['subscriptionId']}"
        + ("/resourceGroups/rgName" if by_group else "")
        + "/providers/Microsoft.ManagedIdentity/userAssignedIdentities"
    )
    check(ex, arm.get(path, params={"api-version": p["api-version"]}), 200)


def replay_identity_list_by_group(arm: httpx.Client) -> None:
    _replay_identity_list(arm, "IdentityListByResourceGroup.json", True)


def replay_identity_list_by_subscription(arm: httpx.Client) -> None:
    _replay_identity_list(arm, "IdentityListBySubscription.json", False)


def _fic_path(p: dict[str, Any], name: str | None = None) -> str:
    base = (
        identity_path(p["subscriptionId"], p["resourceGroupName"], p["resourceName"])
        + "/federatedIdentityCredentials"
    )
    return f"{base}/{name}" if name else base


FIC_PROPS = {
    "issuer": "https://oidc.prod-aks.azure.com/TenantGUID/IssuerGUID",
    "subject": "system:serviceaccount:ns:svcaccount",
    "audiences": ["api://AzureADTokenExchange"],
}


def replay_fic_create(arm: httpx.Client) -> None:
    ex = load(MSI + "FederatedIdentityCredentialCreate.json")
    p = ex["parameters"]
    identity(arm, p["subscriptionId"], p["resourceGroupName"], p["resourceName"])
    path = _fic_path(p, p["federatedIdentityCredentialResourceName"])
    check(ex, arm.put(path, params={"api-version": p["api-version"]}, json=p["parameters"]), 201)
    check(ex, arm.put(path, params={"api-version": p["api-version"]}, json=p["parameters"]), 200)


def replay_fic_get(arm: httpx.Client) -> None:
    ex = load(MSI + "FederatedIdentityCredentialGet.json")
    p = ex["parameters"]
    identity(arm, p["subscriptionId"], p["resourceGroupName"], p["resourceName"])
    fic(
        arm,
        p["subscriptionId"],
        p["resourceGroupName"],
        p["resourceName"],
        p["federatedIdentityCredentialResourceName"],
        FIC_PROPS,
    )
    check(
        ex,
        arm.get(
            _fic_path(p, p["federatedIdentityCredentialResourceName"]),
            params={"api-version": p["api-version"]},
        ),
        200,
    )


def replay_fic_delete(arm: httpx.Client) -> None:
    ex = load(MSI + "FederatedIdentityCredentialDelete.json")
    p = ex["parameters"]
    identity(arm, p["subscriptionId"], p["resourceGroupName"], p["resourceName"])
    fic(
        arm,
        p["subscriptionId"],
        p["resourceGroupName"],
        p["resourceName"],
        p["federatedIdentityCredentialResourceName"],
        FIC_PROPS,
    )
    path = _fic_path(p, p["federatedIdentityCredentialResourceName"])
    check(ex, arm.delete(path, params={"api-version": p["api-version"]}), 200)
    check(ex, arm.delete(path, params={"api-version": p["api-version"]}), 204)


def replay_fic_list(arm: httpx.Client) -> None:
    ex = load(MSI + "FederatedIdentityCredentialList.json")
    p = ex["parameters"]
    identity(arm, p["subscriptionId"], p["resourceGroupName"], p["resourceName"])
    fic(arm, p["subscriptionId"], p["resourceGroupName"], p["resourceName"], "ficResourceName", FIC_PROPS)
    check(ex, arm.get(_fic_path(p), params={"api-version": p["api-version"], "$top": p["top"]}), 200)


def replay_system_assigned_get(arm: httpx.Client) -> None:
    ex = load(MSI + "SystemAssignedIdentityGet.json")
    p = ex["parameters"]
    scope = p["scope"].removesuffix("/identities/default")
    ensure_scope(arm, "/".join(scope.split("/")[:4]))
    r = arm.put(
        "/" + scope,
        params={"api-version": "2024-01-01"},
        json={"location": "centralus", "identity": {"type": "SystemAssigned"}},
    )
    assert r.status_code in (200, 201), r.text
    got = arm.get(
        f"/{scope}/providers/Microsoft.ManagedIdentity/identities/default",
        params={"api-version": p["api-version"]},
    )
    check(ex, got, 200, volatile=frozenset({"$.location", "$.type"}), extra=frozenset({"tags"}))
    assert got.json()["properties"]["principalId"] == r.json()["identity"]["principalId"]


def _ra_setup(arm: httpx.Client, sub: str) -> str:
    custom_role(arm, sub, EXAMPLE_ROLE)
    return user(arm)


def _replay_ra_create(arm: httpx.Client, file: str) -> None:
    ex = load(AUTH + file)
    p = ex["parameters"]
    if "roleAssignmentId" in p:
        scope, name = p["roleAssignmentId"].split(f"/providers/{RA}/")
        path = "/" + p["roleAssignmentId"]
    else:
        scope, name = p["scope"], p["roleAssignmentName"]
        path = f"/{scope}/providers/{RA}/{name}"
    principal = _ra_setup(arm, scope.split("/")[1])
    ensure_scope(arm, scope)
    body = with_principal(p["parameters"], principal)
    expected = with_principal(ex, principal)
    check(
        expected,
        arm.put(path, params={"api-version": p["api-version"]}, json=body),
        201,
        extra=frozenset(RA_EXTRA),
    )
    check(
        expected,
        arm.put(path, params={"api-version": p["api-version"]}, json=body),
        200,
        extra=frozenset(RA_EXTRA),
    )


def replay_ra_create_subscription(arm: httpx.Client) -> None:
    _replay_ra_create(arm, "RoleAssignments_CreateForSubscription.json")


def replay_ra_create_group(arm: httpx.Client) -> None:
    _replay_ra_create(arm, "RoleAssignments_CreateForResourceGroup.json")


def replay_ra_create_resource(arm: httpx.Client) -> None:
    _replay_ra_create(arm, "RoleAssignments_CreateForResource.json")


def replay_ra_create_by_id(arm: httpx.Client) -> None:
    _replay_ra_create(arm, "RoleAssignments_CreateById.json")


def _replay_ra_single(arm: httpx.Client, file: str, method: str) -> None:
    ex = load(AUTH + file)
    p = ex["parameters"]
    if "roleAssignmentId" in p:
        scope, name = p["roleAssignmentId"].split(f"/providers/{RA}/")
        path = "/" + p["roleAssignmentId"]
    else:
        scope, name = p["scope"], p["roleAssignmentName"]
        path = f"/{scope}/providers/{RA}/{name}"
    principal = _ra_setup(arm, scope.split("/")[1])
    created = assignment(arm, scope, name, principal)
    assert created.status_code == 201, created.text
    expected = with_principal(ex, principal)
    check(
        expected,
        arm.request(method, path, params={"api-version": p["api-version"]}),
        200,
        extra=frozenset(RA_EXTRA),
    )
    if method == "DELETE":
        check(expected, arm.request(method, path, params={"api-version": p["api-version"]}), 204)


def replay_ra_get(arm: httpx.Client) -> None:
    _replay_ra_single(arm, "RoleAssignments_Get.json", "GET")


def replay_ra_get_by_id(arm: httpx.Client) -> None:
    _replay_ra_single(arm, "RoleAssignments_GetById.json", "GET")


def replay_ra_delete(arm: httpx.Client) -> None:
    _replay_ra_single(arm, "RoleAssignments_Delete.json", "DELETE")


def replay_ra_delete_by_id(arm: httpx.Client) -> None:
    _replay_ra_single(arm, "RoleAssignments_DeleteById.json", "DELETE")


def _replay_ra_list(arm: httpx.Client, file: str, path: str) -> None:
    ex = load(AUTH + file)
    p = ex["parameters"]
    items = ex["responses"]["200"]["body"]["value"]
    principal = _ra_setup(arm, items[0]["properties"]["scope"].split("/")[2])
    for item in items:
        assert assignment(arm, item["properties"]["scope"], item["name"], principal).status_code == 201
    expected = with_principal(ex, principal)
    expected["responses"]["200"]["body"]["value"].sort(key=lambda a: a["id"].lower())
    check(expected, arm.get(path, params={"api-version": p["api-version"]}), 200, extra=frozenset(RA_EXTRA))


def replay_ra_list_subscription(arm: httpx.Client) -> None:
    p = load(AUTH + "RoleAssignments_ListForSubscription.json")["parameters"]
    _replay_ra_list(
        arm,
        "RoleAssignments_ListForSubscription.json",
        f"/subscriptions/{p['subscriptionId']}/providers/{RA}",
    )


def replay_ra_list_group(arm: httpx.Client) -> None:
    p = load(AUTH + "RoleAssignments_ListForResourceGroup.json")["parameters"]
    _replay_ra_list(
        arm,
        "RoleAssignments_ListForResourceGroup.json",
        f"/subscriptions/{p['subscriptionId']}/resourceGroups/{p['resourceGroupName']}/providers/{RA}",
    )


def replay_ra_list_resource(arm: httpx.Client) -> None:
    p = load(AUTH + "RoleAssignments_ListForResource.json")["parameters"]
    path = (f"/subscriptions/{p['subscriptionId']}/resourceGroups/{p['resourceGroupName']}/providers/{p['resourceProviderNamespace']}"
            f"/{p['resourceType']}/{p['resourceName']}/providers/{RA}")  # fmt: skip
    _replay_ra_list(arm, "RoleAssignments_ListForResource.json", path)


def replay_ra_list_scope(arm: httpx.Client) -> None:
    p = load(AUTH + "RoleAssignments_ListForScope.json")["parameters"]
    _replay_ra_list(arm, "RoleAssignments_ListForScope.json", f"/{p['scope']}/providers/{RA}")


def _example_role(arm: httpx.Client, ex: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    body = ex["responses"]["200"]["body"]
    item = body["value"][0] if "value" in body else body
    guid = "5c0e1f8a-2b3c-4d5e-8f90-a1b2c3d4e5f6"
    props = {k: v for k, v in item["properties"].items() if k != "type"}
    custom_role(arm, "subId", guid, props)
    return guid, ex


RD_VOLATILE = frozenset({"$.properties.type", "$.name", "$.value[0].properties.type", "$.value[0].name"})


def replay_rd_get_by_name(arm: httpx.Client) -> None:
    guid, ex = _example_role(arm, load(AUTH + "GetRoleDefinitionByName.json"))
    r = arm.get(
        f"/subscriptions/subId/providers/Microsoft.Authorization/roleDefinitions/{guid}",
        params={"api-version": "2022-04-01"},
    )
    check(ex, r, 200, volatile=RD_VOLATILE, extra=frozenset(RD_EXTRA))


def replay_rd_get_by_id(arm: httpx.Client) -> None:
    guid, ex = _example_role(arm, load(AUTH + "GetRoleDefinitionById.json"))
    r = arm.get(
        f"/providers/Microsoft.Authorization/roleDefinitions/{guid}", params={"api-version": "2022-04-01"}
    )
    check(ex, r, 200, volatile=RD_VOLATILE, extra=frozenset(RD_EXTRA))


def replay_rd_list_at_scope(arm: httpx.Client) -> None:
    _guid, ex = _example_role(arm, load(AUTH + "GetRoleDefinitionAtScope.json"))
    r = arm.get(
        "/subscriptions/subId/providers/Microsoft.Authorization/roleDefinitions",
        params={"api-version": "2022-04-01", "$filter": "type eq 'CustomRole'"},
    )
    check(ex, r, 200, volatile=RD_VOLATILE, extra=frozenset(RD_EXTRA))


def replay_resource_graph_pages(arm: httpx.Client) -> None:
    first = load("Microsoft.ResourceGraph/2022-10-01/ResourcesFirstPageQuery.json")
    second = load("Microsoft.ResourceGraph/2022-10-01/ResourcesNextPageQuery.json")
    rows = first["responses"]["200"]["body"]["data"] + second["responses"]["200"]["body"]["data"]
    for row in sorted(rows, key=lambda r: r["id"].count("/")):  # parents before children
        ensure_scope(arm, "/".join(row["id"].split("/")[:5]))
        r = arm.put(row["id"], params={"api-version": "2024-01-01"}, json={"location": row["location"]})
        assert r.status_code == 201, r.text
    # The next-page example lists 'second_OsDisk_...', which does not contain 'test': a real answer to
    # this query would not hold it, and neither does the emulator's.
    matching = [r for r in rows if "test" in r["name"].lower()]
    q = first["parameters"]
    anything = frozenset({f"$.data[{i}].{k}" for i in range(3) for k in ("id", "name", "type", "location")})
    page1 = arm.post(
        "/providers/Microsoft.ResourceGraph/resources",
        params={"api-version": q["api-version"]},
        json=q["query"],
    )
    check(first, page1, 200, volatile=anything)
    query2 = dict(second["parameters"]["query"], options={"$skipToken": page1.json()["$skipToken"]})
    page2 = arm.post(
        "/providers/Microsoft.ResourceGraph/resources", params={"api-version": q["api-version"]}, json=query2
    )
    expected2 = json.loads(json.dumps(second))
    expected2["responses"]["200"]["body"]["data"] = expected2["responses"]["200"]["body"]["data"][1:]
    expected2["responses"]["200"]["body"]["count"] = 2
    check(expected2, page2, 200, volatile=anything)
    got = page1.json()["data"] + page2.json()["data"]
    assert sorted(json.dumps(r, sort_keys=True) for r in got) == sorted(
        json.dumps(r, sort_keys=True) for r in matching
    )
    assert page1.json()["totalRecords"] == len(matching) == 5


def replay_event_grid_cloud_events(arm: httpx.Client) -> None:
    ex = load("Microsoft.EventGrid/2018-01-01/PublishEventsToEventGridTopicAsCloudEvents.json")
    p = ex["parameters"]
    r = arm.post("/eventgrid/api/events", params={"api-version": p["api-version"]}, json=p["events"],
                 headers={"Authorization": "", "aeg-sas-key": "key", "Content-Type": "application/cloudevents-batch+json; charset=utf-8"})  # fmt: skip
    check(ex, r, 200)
    assert arm.get("/_emulator/events").json() == p["events"]


def replay_vm_with_encryption_identity(arm: httpx.Client) -> None:
    ex = load("Microsoft.Compute/2024-11-01/VirtualMachine_Create_WithEncryptionIdentity.json")
    sub = "4f1c2d3e-0000-4000-8000-00000000c0de"
    p = json.loads(json.dumps(ex["parameters"]).replace("{subscription-id}", sub))
    expected = json.loads(json.dumps(ex["responses"]["201"]["body"]).replace("{subscription-id}", sub))
    created = identity(arm, sub, p["resourceGroupName"], "myIdentity", {"location": "westus"})
    path = f"/subscriptions/{sub}/resourceGroups/{p['resourceGroupName']}/providers/Microsoft.Compute/virtualMachines/{quote(p['vmName'])}"
    r = arm.put(path, params={"api-version": p["api-version"]}, json=p["parameters"])
    assert str(r.status_code) in ex["responses"] and r.status_code == 201, r.text
    got = r.json()
    for k in ("name", "type", "id", "location"):
        assert got[k] == expected[k]
    entry = next(iter(got["identity"]["userAssignedIdentities"].values()))
    assert got["identity"]["type"] == expected["identity"]["type"]
    assert list(got["identity"]["userAssignedIdentities"]) == list(
        expected["identity"]["userAssignedIdentities"]
    )
    assert entry == {
        "principalId": created["properties"]["principalId"],
        "clientId": created["properties"]["clientId"],
    }
    for k, v in p["parameters"]["properties"].items():
        assert got["properties"][k] == v
    assert set(got["properties"]) - {"provisioningState"} <= set(expected["properties"])


REPLAYS: dict[str, Callable[[httpx.Client], None]] = {
    MSI + "IdentityCreate.json": replay_identity_create,
    MSI + "IdentityGet.json": replay_identity_get,
    MSI + "IdentityUpdate.json": replay_identity_update,
    MSI + "IdentityDelete.json": replay_identity_delete,
    MSI + "IdentityListByResourceGroup.json": replay_identity_list_by_group,
    MSI + "IdentityListBySubscription.json": replay_identity_list_by_subscription,
    MSI + "FederatedIdentityCredentialCreate.json": replay_fic_create,
    MSI + "FederatedIdentityCredentialGet.json": replay_fic_get,
    MSI + "FederatedIdentityCredentialDelete.json": replay_fic_delete,
    MSI + "FederatedIdentityCredentialList.json": replay_fic_list,
    MSI + "SystemAssignedIdentityGet.json": replay_system_assigned_get,
    AUTH + "RoleAssignments_CreateForSubscription.json": replay_ra_create_subscription,
    AUTH + "RoleAssignments_CreateForResourceGroup.json": replay_ra_create_group,
    AUTH + "RoleAssignments_CreateForResource.json": replay_ra_create_resource,
    AUTH + "RoleAssignments_CreateById.json": replay_ra_create_by_id,
    AUTH + "RoleAssignments_Get.json": replay_ra_get,
    AUTH + "RoleAssignments_GetById.json": replay_ra_get_by_id,
    AUTH + "RoleAssignments_Delete.json": replay_ra_delete,
    AUTH + "RoleAssignments_DeleteById.json": replay_ra_delete_by_id,
    AUTH + "RoleAssignments_ListForSubscription.json": replay_ra_list_subscription,
    AUTH + "RoleAssignments_ListForResourceGroup.json": replay_ra_list_group,
    AUTH + "RoleAssignments_ListForResource.json": replay_ra_list_resource,
    AUTH + "RoleAssignments_ListForScope.json": replay_ra_list_scope,
    AUTH + "GetRoleDefinitionByName.json": replay_rd_get_by_name,
    AUTH + "GetRoleDefinitionById.json": replay_rd_get_by_id,
    AUTH + "GetRoleDefinitionAtScope.json": replay_rd_list_at_scope,
    "Microsoft.ResourceGraph/2022-10-01/ResourcesFirstPageQuery.json": replay_resource_graph_pages,
    "Microsoft.ResourceGraph/2022-10-01/ResourcesNextPageQuery.json": replay_resource_graph_pages,
    "Microsoft.EventGrid/2018-01-01/PublishEventsToEventGridTopicAsCloudEvents.json": replay_event_grid_cloud_events,
    "Microsoft.Compute/2024-11-01/VirtualMachine_Create_WithEncryptionIdentity.json": replay_vm_with_encryption_identity,
}
NOT_REPLAYED = {
    "Microsoft.EventGrid/2018-01-01/PublishEventsToEventGridTopicAsCustomSchemaEvents.json": (
        "A real topic has exactly one input schema. The contract's sink is a CloudEvents / Event Grid schema "
        "topic (what the mover publishes to), and such a topic answers a custom-schema batch 400; a custom-schema "
        "topic accepts any JSON and would tell the mover nothing. test_emulator_eventgrid.py checks the 400."
    ),
}


def test_every_example_is_replayed_or_excused() -> None:
    from tests.test_emulator_conformance_dataplane import REPLAYS as DATAPLANE  # it imports this module

    files = {str(p.relative_to(EXAMPLES)) for p in EXAMPLES.rglob("*.json")}
    assert files == set(REPLAYS) | set(NOT_REPLAYED) | set(DATAPLANE)


@pytest.mark.parametrize("example", sorted(REPLAYS))
def test_replay(example: str, emulator_arm: httpx.Client) -> None:
    REPLAYS[example](emulator_arm)


# --- operation coverage ------------------------------------------------------------------
# Every operationId of the spec files in ``conformance/specs`` (copies of ``../shared/reference/
# arm-specs``) is either COVERED (served, with the tests that exercise it) or NOT_COVERED (with why).
# ``emulator/COVERAGE.md`` is generated from these tables; the tests below fail when a spec operation is
# missing from both, when a named test does not exist, when a covered operation has no route (or an
# uncovered one gained one), or when COVERAGE.md is stale. Regenerate it with
# ``.venv/bin/python -m tests.test_emulator_conformance``.
SPECS = Path(__file__).parent / "conformance" / "specs"
REFERENCE_SPEC_FILES = (  # copies of ../shared/reference/arm-specs
    "Microsoft.ManagedIdentity/2026-05-31/ManagedIdentity.json",
    "Microsoft.Authorization/2022-04-01/authorization-RoleAssignmentsCalls.json",
    "Microsoft.Authorization/2022-04-01/authorization-RoleDefinitionsCalls.json",
    "Microsoft.EventGrid/2018-01-01/EventGrid.json",
)
SPEC_FILES = (
    *REFERENCE_SPEC_FILES,
    # issue 8: read from Azure/azure-rest-api-specs (conformance/SOURCES.md)
    "Microsoft.DocumentDB/2024-11-15/rbac.json",
    "Microsoft.DBforPostgreSQL/2024-08-01/Administrators.json",
    "Microsoft.DBforMySQL/2023-12-30/AzureADAdministrator.json",
    "Microsoft.Sql/2023-08-01/ServerAzureADAdministrators.json",
)
COVERAGE_MD = Path(__file__).parent.parent / "emulator" / "COVERAGE.md"
CONF = "tests/test_emulator_conformance.py::test_replay"


def _replay(example: str) -> str:
    return f"{CONF}[{example}]"


MSI_T = "tests/test_emulator_msi.py::"
RBAC_T = "tests/test_emulator_rbac.py::"
SDK_T = "tests/test_emulator_sdk.py::"
COVERED: dict[str, tuple[str, ...]] = {
    "SystemAssignedIdentities_GetByScope": (_replay(MSI + "SystemAssignedIdentityGet.json"),
                                            MSI_T + "test_system_assigned_identity_of_a_resource_without_one_is_404"),
    "UserAssignedIdentities_ListBySubscription": (_replay(MSI + "IdentityListBySubscription.json"),
                                                  MSI_T + "test_identity_lists_page_with_skiptoken"),
    "UserAssignedIdentities_ListByResourceGroup": (_replay(MSI + "IdentityListByResourceGroup.json"),
                                                   MSI_T + "test_identity_lists_page_with_skiptoken",
                                                   SDK_T + "test_identities_and_federated_credentials"),
    "UserAssignedIdentities_Get": (_replay(MSI + "IdentityGet.json"), MSI_T + "test_identity_lifecycle"),
    "UserAssignedIdentities_CreateOrUpdate": (_replay(MSI + "IdentityCreate.json"), MSI_T + "test_identity_lifecycle",
                                              MSI_T + "test_identity_validation",
                                              MSI_T + "test_isolation_scope_depends_on_api_version"),
    "UserAssignedIdentities_Update": (_replay(MSI + "IdentityUpdate.json"),
                                      MSI_T + "test_isolation_scope_depends_on_api_version"),
    "UserAssignedIdentities_Delete": (_replay(MSI + "IdentityDelete.json"), MSI_T + "test_identity_lifecycle"),
    "FederatedIdentityCredentials_List": (_replay(MSI + "FederatedIdentityCredentialList.json"),
                                          MSI_T + "test_federated_credentials"),
    "FederatedIdentityCredentials_Get": (_replay(MSI + "FederatedIdentityCredentialGet.json"),
                                         MSI_T + "test_federated_credentials"),
    "FederatedIdentityCredentials_CreateOrUpdate": (_replay(MSI + "FederatedIdentityCredentialCreate.json"),
                                                    MSI_T + "test_federated_credentials",
                                                    MSI_T + "test_at_most_twenty_federated_credentials",
                                                    MSI_T + "test_concurrent_credential_writes_on_one_identity_conflict"),
    "FederatedIdentityCredentials_Delete": (_replay(MSI + "FederatedIdentityCredentialDelete.json"),
                                            MSI_T + "test_federated_credentials"),
    "RoleAssignments_ListForSubscription": (_replay(AUTH + "RoleAssignments_ListForSubscription.json"),
                                            RBAC_T + "test_filters_at_above_and_below"),
    "RoleAssignments_ListForResourceGroup": (_replay(AUTH + "RoleAssignments_ListForResourceGroup.json"),
                                             RBAC_T + "test_filters_at_above_and_below"),
    "RoleAssignments_ListForResource": (_replay(AUTH + "RoleAssignments_ListForResource.json"),),
    "RoleAssignments_Get": (_replay(AUTH + "RoleAssignments_Get.json"), RBAC_T + "test_get_and_delete_by_id_and_paging"),
    "RoleAssignments_Create": (_replay(AUTH + "RoleAssignments_CreateForSubscription.json"),
                               _replay(AUTH + "RoleAssignments_CreateForResourceGroup.json"),
                               _replay(AUTH + "RoleAssignments_CreateForResource.json"),
                               RBAC_T + "test_create_is_201_then_200_and_name_must_be_a_guid",
                               RBAC_T + "test_principal_type_defaults_to_user_and_unknown_principals_fail",
                               RBAC_T + "test_new_identity_hits_principal_not_found_unless_service_principal",
                               RBAC_T + "test_limit_per_subscription", RBAC_T + "test_management_group_scope_and_limit",
                               SDK_T + "test_role_assignments"),
    "RoleAssignments_Delete": (_replay(AUTH + "RoleAssignments_Delete.json"),),
    "RoleAssignments_ListForScope": (_replay(AUTH + "RoleAssignments_ListForScope.json"),
                                     RBAC_T + "test_filters_at_above_and_below",
                                     RBAC_T + "test_assigned_to_includes_group_memberships"),
    "RoleAssignments_GetById": (_replay(AUTH + "RoleAssignments_GetById.json"),
                                RBAC_T + "test_get_and_delete_by_id_and_paging"),
    "RoleAssignments_CreateById": (_replay(AUTH + "RoleAssignments_CreateById.json"),),
    "RoleAssignments_DeleteById": (_replay(AUTH + "RoleAssignments_DeleteById.json"),
                                   RBAC_T + "test_get_and_delete_by_id_and_paging"),
    "Permissions_ListForResourceGroup": (RBAC_T + "test_permissions_of_the_caller",),
    "Permissions_ListForResource": (RBAC_T + "test_permissions_of_the_caller",),
    "RoleDefinitions_Delete": (RBAC_T + "test_custom_roles",),
    "RoleDefinitions_Get": (_replay(AUTH + "GetRoleDefinitionByName.json"), _replay(AUTH + "GetRoleDefinitionById.json"),
                            RBAC_T + "test_builtin_roles_have_real_ids_and_permissions"),
    "RoleDefinitions_CreateOrUpdate": (RBAC_T + "test_custom_roles",),
    "RoleDefinitions_List": (_replay(AUTH + "GetRoleDefinitionAtScope.json"),
                             RBAC_T + "test_builtin_roles_have_real_ids_and_permissions"),
    "PublishEvents": (_replay("Microsoft.EventGrid/2018-01-01/PublishEventsToEventGridTopicAsCloudEvents.json"),
                      "tests/test_emulator_eventgrid.py::test_accepts_both_schemas_and_keeps_events",
                      "tests/test_emulator_eventgrid.py::test_rejects_malformed_batches"),
}  # fmt: skip
DP_T = "tests/test_emulator_dataplane.py::"


def _dp(example: str) -> str:
    return f"tests/test_emulator_conformance_dataplane.py::test_replay_dataplane[{example}]"


COSMOS_EX, PG_EX, MYSQL_EX, SQL_EX = (
    "Microsoft.DocumentDB/2024-11-15/", "Microsoft.DBforPostgreSQL/", "Microsoft.DBforMySQL/2023-12-30/",
    "Microsoft.Sql/2023-08-01/",
)  # fmt: skip
COVERED.update({
    "SqlResources_GetSqlRoleDefinition": (_dp(COSMOS_EX + "CosmosDBSqlRoleDefinitionGet.json"),
                                          DP_T + "test_sql_role_definitions_and_assignment_validation"),
    "SqlResources_CreateUpdateSqlRoleDefinition": (_dp(COSMOS_EX + "CosmosDBSqlRoleDefinitionGet.json"),
                                                   DP_T + "test_custom_sql_role_definitions"),
    "SqlResources_DeleteSqlRoleDefinition": (DP_T + "test_custom_sql_role_definitions",),
    "SqlResources_ListSqlRoleDefinitions": (DP_T + "test_sql_role_definitions_and_assignment_validation",),
    "SqlResources_GetSqlRoleAssignment": (DP_T + "test_sql_role_assignments_are_asynchronous",
                                          _dp(COSMOS_EX + "CosmosDBSqlRoleAssignmentCreateUpdate.json")),
    "SqlResources_CreateUpdateSqlRoleAssignment": (_dp(COSMOS_EX + "CosmosDBSqlRoleAssignmentCreateUpdate.json"),
                                                   DP_T + "test_sql_role_assignments_are_asynchronous",
                                                   DP_T + "test_an_accepted_operation_completes_without_being_polled",
                                                   DP_T + "test_sql_role_definitions_and_assignment_validation"),
    "SqlResources_DeleteSqlRoleAssignment": (_dp(COSMOS_EX + "CosmosDBSqlRoleAssignmentDelete.json"),
                                             DP_T + "test_sql_role_assignments_are_asynchronous"),
    "SqlResources_ListSqlRoleAssignments": (_dp("Microsoft.DocumentDB/2024-08-15/CosmosDBSqlRoleAssignmentList.json"),
                                            DP_T + "test_sql_role_assignments_are_asynchronous"),
    "Administrators_Create": (_dp(PG_EX + "2024-08-01/AdministratorAdd.json"),
                              _dp(PG_EX + "2025-06-01-preview/AdministratorsMicrosoftEntraAdd.json"),
                              DP_T + "test_postgres_administrators_coexist"),
    "Administrators_Delete": (_dp(PG_EX + "2025-06-01-preview/AdministratorsMicrosoftEntraDelete.json"),
                              DP_T + "test_postgres_administrators_coexist"),
    "Administrators_Get": (_dp(PG_EX + "2025-06-01-preview/AdministratorsMicrosoftEntraGet.json"),
                           DP_T + "test_postgres_administrators_coexist"),
    "Administrators_ListByServer": (_dp(PG_EX + "2025-06-01-preview/AdministratorsMicrosoftEntraListByServer.json"),
                                    DP_T + "test_postgres_administrators_coexist"),
    "AzureADAdministrators_CreateOrUpdate": (_dp(MYSQL_EX + "AzureADAdministratorCreate.json"),
                                             DP_T + "test_mysql_has_one_active_directory_administrator"),
    "AzureADAdministrators_Delete": (DP_T + "test_mysql_has_one_active_directory_administrator",),
    "AzureADAdministrators_Get": (_dp(MYSQL_EX + "AzureADAdministratorGet.json"),
                                  DP_T + "test_mysql_has_one_active_directory_administrator"),
    "AzureADAdministrators_ListByServer": (DP_T + "test_mysql_has_one_active_directory_administrator",),
    "ServerAzureADAdministrators_ListByServer": (_dp(SQL_EX + "AdministratorList.json"),
                                                 DP_T + "test_sql_server_administrator"),
    "ServerAzureADAdministrators_Get": (_dp(SQL_EX + "AdministratorGet.json"), DP_T + "test_sql_server_administrator"),
    "ServerAzureADAdministrators_CreateOrUpdate": (_dp(SQL_EX + "AdministratorCreateOrUpdate.json"),
                                                   DP_T + "test_sql_server_administrator"),
    "ServerAzureADAdministrators_Delete": (_dp(SQL_EX + "AdministratorDelete.json"),
                                           DP_T + "test_sql_server_administrator"),
})  # fmt: skip
NOT_COVERED: dict[str, str] = {
    "Operations_List": "GET /providers/Microsoft.ManagedIdentity/operations lists the provider's REST "
    "operations for portals and policy tooling; the mover never calls it.",
}
ROUTE_MISSING = {"NotFound", "InvalidResourceType", "MethodNotAllowed"}
SAMPLE = {
    "subscriptionId": "0c0c0c0c-0000-4000-8000-00000000c0de",
    "resourceGroupName": "rg-coverage",
    "resourceName": "name-coverage",
    "federatedIdentityCredentialResourceName": "fic-coverage",
    "roleAssignmentName": "5a3f6c1e-0d2b-4c7e-9f10-2a3b4c5d6e7f",
    "roleDefinitionId": "acdd72a7-3385-48ef-bd42-f606fba81ae7",
    "resourceProviderNamespace": "Microsoft.Web",
    "parentResourcePath": "",
    "resourceType": "sites",
    "scope": "subscriptions/0c0c0c0c-0000-4000-8000-00000000c0de/resourceGroups/rg-coverage",
    "roleAssignmentId": "subscriptions/0c0c0c0c-0000-4000-8000-00000000c0de/providers/Microsoft.Authorization/"
    "roleAssignments/5a3f6c1e-0d2b-4c7e-9f10-2a3b4c5d6e7f",
    "accountName": "account-coverage",
    "serverName": "server-coverage",
    "administratorName": "ActiveDirectory",
    "objectId": "5a3f6c1e-0d2b-4c7e-9f10-2a3b4c5d6e7f",
}
SPEC_SAMPLES = {
    "rbac.json": {"roleAssignmentId": "5a3f6c1e-0d2b-4c7e-9f10-2a3b4c5d6e7f"}
}  # a bare GUID there


def spec_operations() -> list[tuple[str, str, str, str, str]]:
    """(spec file, api-version, operationId, METHOD, path) of every operation in the spec files."""
    ops = []
    for spec in SPEC_FILES:
        doc = json.loads((SPECS / spec).read_text())
        for path, item in doc["paths"].items():
            for method, op in item.items():
                if isinstance(op, dict) and "operationId" in op:
                    ops.append((spec, doc["info"]["version"], op["operationId"], method.upper(), path))
    return ops


def _ref_exists(ref: str) -> bool:
    module_path, _, name = ref.partition("::")
    if name.startswith("test_replay["):
        return name[len("test_replay[") : -1] in REPLAYS
    if name.startswith("test_replay_dataplane["):
        from tests.test_emulator_conformance_dataplane import REPLAYS as DATAPLANE

        return name[len("test_replay_dataplane[") : -1] in DATAPLANE
    module = __import__(module_path.removesuffix(".py").replace("/", "."), fromlist=[name])
    return callable(getattr(module, name, None))


def coverage_markdown() -> str:
    lines = [
        "# Spec operations the emulator serves",
        "",
        "Generated from `COVERED` / `NOT_COVERED` in `tests/test_emulator_conformance.py` over the spec files",
        "in `tests/conformance/specs/` (copies of `../shared/reference/arm-specs/`, and for issue 8 of",
        "`Azure/azure-rest-api-specs`: `tests/conformance/SOURCES.md`). Do not edit by hand:",
        "`.venv/bin/python -m tests.test_emulator_conformance` rewrites it, and a test fails while it is stale.",
        "",
        "| spec | operationId | request | served | tested by / why not |",
        "|---|---|---|---|---|",
    ]
    for spec, _version, op_id, method, path in spec_operations():
        if op_id in COVERED:
            served, why = "yes", "<br>".join(f"`{t}`" for t in COVERED[op_id])
        else:
            served, why = "no", NOT_COVERED.get(op_id, "?")
        lines.append(f"| `{spec.rsplit('/', 1)[-1]}` | `{op_id}` | `{method} {path}` | {served} | {why} |")
    covered = sum(1 for op in spec_operations() if op[2] in COVERED)
    lines += ["", f"{covered} of {len(spec_operations())} operations served.", ""]
    return "\n".join(lines)


def test_spec_copies_match_the_reference() -> None:
    reference = Path(__file__).parent.parent.parent / "shared" / "reference" / "arm-specs"
    if not reference.is_dir():
        pytest.skip("../shared/reference/arm-specs is not next to this checkout")
    for spec in REFERENCE_SPEC_FILES:
        assert (SPECS / spec).read_bytes() == (reference / spec).read_bytes(), spec


def test_every_spec_operation_is_covered_or_excused() -> None:
    ids = [op[2] for op in spec_operations()]
    assert len(ids) == len(set(ids))
    assert not set(COVERED) & set(NOT_COVERED)
    assert set(ids) == set(COVERED) | set(NOT_COVERED), set(ids) ^ (set(COVERED) | set(NOT_COVERED))
    missing = [ref for refs in COVERED.values() for ref in refs if not _ref_exists(ref)]
    assert not missing, f"named tests that do not exist: {missing}"


def test_coverage_table_is_current() -> None:
    assert COVERAGE_MD.read_text() == coverage_markdown(), (
        "emulator/COVERAGE.md is stale: run .venv/bin/python -m tests.test_emulator_conformance"
    )


@pytest.mark.parametrize("operation", spec_operations(), ids=lambda op: op[2])
def test_covered_operations_have_a_route(
    operation: tuple[str, str, str, str, str], emulator_arm: httpx.Client
) -> None:
    """A covered operation reaches a handler (any answer but 'no such route'); an uncovered one does not,
    so implementing it forces the table to be updated."""
    spec, version, op_id, method, path = operation
    url = path
    for name, value in {**SAMPLE, **SPEC_SAMPLES.get(spec.rsplit("/", 1)[-1], {})}.items():
        url = url.replace("{" + name + "}", value)
    url = "/" + "/".join(s for s in url.split("/") if s)
    if op_id == "PublishEvents":
        url = "/eventgrid" + url
    body = [] if op_id == "PublishEvents" else {}
    r = emulator_arm.request(
        method,
        url,
        params={"api-version": version},
        json=body if method in ("PUT", "PATCH", "POST") else None,
        headers={"aeg-sas-key": "key"},
    )
    code = r.json()["error"]["code"] if r.status_code >= 400 and r.content else ""
    if op_id in COVERED:
        assert code not in ROUTE_MISSING, f"{method} {url}: {r.status_code} {r.text}"
    else:
        assert r.status_code in (404, 405) and code in ROUTE_MISSING, f"{op_id} is served now: update COVERED"


if __name__ == "__main__":
    COVERAGE_MD.write_text(coverage_markdown())
    print(f"wrote {COVERAGE_MD}")
