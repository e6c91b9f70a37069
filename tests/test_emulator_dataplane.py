"""Access that lives outside Azure RBAC, as the emulator serves it (FACTS.md "Access that lives outside
Azure RBAC"; issue 8): Key Vault access policies, Cosmos DB data-plane role assignments, database
servers' Entra administrators, App Service settings, secrets never echoed, AKS OIDC issuers, proxy
resources without a location, and what Resource Graph does not index."""

from __future__ import annotations

import re
from typing import Any

import httpx

from tests.plugins.emulator import SUBSCRIPTION, put_group, put_identity, rg_path
from tests.waiting import wait_until

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
OLD = "11111111-1111-4111-8111-111111111111"
NEW = "22222222-2222-4222-8222-222222222222"
OTHER = "33333333-3333-4333-8333-333333333333"
KV_API = {"api-version": "2023-07-01"}
COSMOS_API = {"api-version": "2024-11-15"}
PG_API = {"api-version": "2024-08-01"}
MYSQL_API = {"api-version": "2023-12-30"}
SQL_API = {"api-version": "2023-08-01"}
WEB_API = {"api-version": "2023-01-01"}
ARG_API = {"api-version": "2022-10-01"}
READER = "00000000-0000-0000-0000-000000000001"
CONTRIBUTOR = "00000000-0000-0000-0000-000000000002"


def put(client: httpx.Client, path: str, body: dict[str, Any], params: dict[str, str]) -> dict[str, Any]:
    r = client.put(path, params=params, json=body)
    assert r.status_code in (200, 201), r.text
    return dict(r.json())


def error(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    assert r.json()["error"]["code"] == code, r.text


def query(client: httpx.Client, text: str) -> list[dict[str, Any]]:
    r = client.post(
        "/providers/Microsoft.ResourceGraph/resources",
        params=ARG_API,
        json={"subscriptions": [SUBSCRIPTION], "query": text},
    )
    assert r.status_code == 200, r.text
    return list(r.json()["data"])


def follow(client: httpx.Client, accepted: httpx.Response) -> dict[str, Any]:
    """Poll an accepted asynchronous write as an ARM client does: the Azure-AsyncOperation URL."""
    assert accepted.status_code == 202 and not accepted.content, accepted.text
    status = client.get(accepted.headers["Azure-AsyncOperation"])
    assert status.status_code == 200, status.text
    return dict(status.json())


# --- Key Vault access policies -------------------------------------------------------------
def vault_path(name: str = "kv1") -> str:
    return f"{rg_path('rg-data')}/providers/Microsoft.KeyVault/vaults/{name}"


def policy(object_id: str, **permissions: list[str]) -> dict[str, Any]:
    return {"tenantId": TENANT, "objectId": object_id, "permissions": permissions}


def make_vault(client: httpx.Client, *policies: dict[str, Any]) -> None:
    put_group(client, "rg-data")
    put(client, vault_path(), {"location": "westeurope", "properties": {
        "tenantId": TENANT, "sku": {"family": "A", "name": "standard"}, "enableRbacAuthorization": False,
        "accessPolicies": list(policies)}}, KV_API)  # fmt: skip


def policies(client: httpx.Client) -> list[dict[str, Any]]:
    r = client.get(vault_path(), params=KV_API)
    assert r.status_code == 200, r.text
    return list(r.json()["properties"]["accessPolicies"])


def edit(client: httpx.Client, kind: str, *entries: dict[str, Any]) -> httpx.Response:
    return client.put(
        f"{vault_path()}/accessPolicies/{kind}",
        params=KV_API,
        json={"properties": {"accessPolicies": list(entries)}},
    )


def test_access_policies_add_merges_and_leaves_others_alone(emulator_arm: httpx.Client) -> None:
    make_vault(emulator_arm, policy(OLD, secrets=["get", "list"]), policy(OTHER, keys=["get"]))
    r = edit(emulator_arm, "add", policy(NEW, secrets=["get", "list"], certificates=["get"]))
    assert r.status_code == 200, r.text
    assert r.json() == {
        "id": f"{vault_path()}/accessPolicies/",
        "type": "Microsoft.KeyVault/vaults/accessPolicies",
        "properties": {"accessPolicies": [policy(NEW, secrets=["get", "list"], certificates=["get"])]},
    }
    assert policies(emulator_arm) == [
        policy(OLD, secrets=["get", "list"]),
        policy(OTHER, keys=["get"]),
        policy(NEW, secrets=["get", "list"], certificates=["get"]),
    ]
    # adding again merges permissions into the existing entry (case-insensitively), never duplicates it
    assert (
        edit(emulator_arm, "add", policy(NEW.upper(), secrets=["Get", "set"], keys=["wrapKey"])).status_code
        == 200
    )
    assert policies(emulator_arm)[2] == policy(NEW, secrets=["get", "list", "set"], certificates=["get"],
                                               keys=["wrapKey"])  # fmt: skip
    # an application-qualified entry (compound identity) is a different entry
    app = {**policy(NEW, secrets=["get"]), "applicationId": OTHER}
    assert edit(emulator_arm, "add", app).status_code == 200
    assert len(policies(emulator_arm)) == 4


def test_access_policies_replace_and_remove(emulator_arm: httpx.Client) -> None:
    make_vault(emulator_arm, policy(OLD, secrets=["get", "list"], keys=["get"]), policy(OTHER, keys=["get"]))
    assert edit(emulator_arm, "replace", policy(OLD, secrets=["get"])).status_code == 200
    assert policies(emulator_arm)[0] == policy(OLD, secrets=["get"])
    # removing some permissions keeps the entry; removing the last one removes it
    assert edit(emulator_arm, "add", policy(OLD, keys=["get"])).status_code == 200
    assert edit(emulator_arm, "remove", policy(OLD, secrets=["get"])).status_code == 200
    assert policies(emulator_arm)[0] == policy(OLD, secrets=[], keys=["get"])
    assert edit(emulator_arm, "remove", policy(OLD, keys=["get"])).status_code == 200
    assert policies(emulator_arm) == [policy(OTHER, keys=["get"])]
    # removing an entry that is not there changes nothing; naming it without permissions removes it
    assert edit(emulator_arm, "remove", policy(NEW, secrets=["get"])).status_code == 200
    assert edit(emulator_arm, "remove", policy(OTHER)).status_code == 200
    assert policies(emulator_arm) == []
    # the vault rows of Resource Graph follow (top-level resources are indexed)
    rows = query(emulator_arm, "Resources | where type =~ 'microsoft.keyvault/vaults'")
    assert [r["properties"]["accessPolicies"] for r in rows] == [[]]


def test_access_policy_errors(emulator_arm: httpx.Client) -> None:
    r = emulator_arm.put(
        f"{rg_path('nowhere')}/providers/Microsoft.KeyVault/vaults/kv1/accessPolicies/add",
        params=KV_API,
        json={"properties": {"accessPolicies": [policy(NEW, secrets=["get"])]}},
    )
    error(r, 404, "ResourceGroupNotFound")
    make_vault(emulator_arm)
    r = emulator_arm.put(
        f"{vault_path('missing')}/accessPolicies/add",
        params=KV_API,
        json={"properties": {"accessPolicies": [policy(NEW, secrets=["get"])]}},
    )
    error(r, 404, "ResourceNotFound")
    assert "Microsoft.KeyVault/vaults/missing" in r.json()["error"]["message"]
    error(emulator_arm.put(f"{vault_path()}/accessPolicies/add", params=KV_API, json={"accessPolicies": []}),
          400, "BadRequest")  # fmt: skip
    error(edit(emulator_arm, "add", policy("not-a-guid", secrets=["get"])), 400, "BadRequest")
    error(edit(emulator_arm, "add", policy(NEW, secrets=["fly"])), 400, "BadRequest")
    error(edit(emulator_arm, "add", {"tenantId": TENANT, "objectId": NEW}), 400, "BadRequest")
    error(edit(emulator_arm, "merge", policy(NEW, secrets=["get"])), 400, "BadRequest")
    error(emulator_arm.get(f"{vault_path()}/accessPolicies/add", params=KV_API), 405, "MethodNotAllowed")
    bad = emulator_arm.put(f"{vault_path()}/accessPolicies/add", params=KV_API, content=b"{nope")
    error(bad, 400, "InvalidRequestContent")
    assert policies(emulator_arm) == []
    # the vault itself still goes through the generic store: PATCH merges properties
    r = emulator_arm.patch(
        vault_path(), params=KV_API, json={"properties": {"enableRbacAuthorization": True}}
    )
    assert r.status_code == 200 and r.json()["properties"]["enableRbacAuthorization"] is True


# --- Cosmos DB data-plane role assignments ---------------------------------------------------
def account_path(name: str = "cosmos1") -> str:
    return f"{rg_path('rg-data')}/providers/Microsoft.DocumentDB/databaseAccounts/{name}"


def make_account(client: httpx.Client) -> None:
    put_group(client, "rg-data")
    put(client, account_path(), {"location": "westeurope", "kind": "GlobalDocumentDB",
                                 "properties": {"databaseAccountOfferType": "Standard"}}, COSMOS_API)  # fmt: skip


def assignment_body(role: str = READER, scope: str | None = None, principal: str = OLD) -> dict[str, Any]:
    return {"properties": {"roleDefinitionId": f"{account_path()}/sqlRoleDefinitions/{role}",
                           "scope": scope or account_path(), "principalId": principal}}  # fmt: skip


def test_sql_role_assignments_are_asynchronous(emulator_arm: httpx.Client) -> None:
    make_account(emulator_arm)
    path = f"{account_path()}/sqlRoleAssignments/{NEW}"
    accepted = emulator_arm.put(path, params=COSMOS_API, json=assignment_body())
    assert accepted.status_code == 202 and not accepted.content
    status_url = accepted.headers["Azure-AsyncOperation"]
    assert re.search(
        rf"/subscriptions/{SUBSCRIPTION}/providers/Microsoft\.DocumentDB/locations/westeurope/operationsStatus/"
        r"[0-9a-f-]{36}\?api-version=2024-11-15$",
        status_url,
    ), status_url
    assert accepted.headers["Location"] == status_url  # Cosmos DB points both at the operation status
    # not visible until the operation completes
    error(emulator_arm.get(path, params=COSMOS_API), 404, "NotFound")
    status = follow(emulator_arm, accepted)
    assert status["status"] == "Succeeded" and status["name"] in status_url and status["endTime"]
    expected = {
        "id": path,
        "name": NEW,
        "type": "Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments",
        "properties": {
            "roleDefinitionId": f"{account_path()}/sqlRoleDefinitions/{READER}",
            "scope": account_path(),
            "principalId": OLD,
        },
    }
    assert emulator_arm.get(path, params=COSMOS_API).json() == expected
    # a bare GUID role and a container scope are accepted, as the CLI sends them
    second = emulator_arm.put(
        f"{account_path()}/sqlRoleAssignments/{OTHER}",
        params=COSMOS_API,
        json={
            "properties": {
                "roleDefinitionId": CONTRIBUTOR,
                "scope": "/dbs/orders/colls/lines",
                "principalId": OLD,
            }
        },
    )
    assert follow(emulator_arm, second)["status"] == "Succeeded"
    listed = emulator_arm.get(f"{account_path()}/sqlRoleAssignments", params=COSMOS_API).json()["value"]
    assert [a["name"] for a in listed] == [NEW, OTHER]
    assert listed[1]["properties"]["scope"] == f"{account_path()}/dbs/orders/colls/lines"
    # delete is asynchronous too; deleting what is gone is 204
    deleting = emulator_arm.delete(path, params=COSMOS_API)
    assert deleting.status_code == 202 and emulator_arm.get(path, params=COSMOS_API).status_code == 200
    assert follow(emulator_arm, deleting)["status"] == "Succeeded"
    assert emulator_arm.get(deleting.headers["Location"]).json()["status"] == "Succeeded"
    error(emulator_arm.get(path, params=COSMOS_API), 404, "NotFound")
    assert emulator_arm.delete(path, params=COSMOS_API).status_code == 204
    # Resource Graph indexes the account, never its data-plane role assignments
    assert [r["type"] for r in query(emulator_arm, "Resources | where id contains 'cosmos1'")] == [
        "microsoft.documentdb/databaseaccounts"
    ]
    assert query(emulator_arm, f"Resources | where tostring(properties) contains '{OLD}'") == []


def test_an_accepted_operation_completes_without_being_polled(emulator_arm: httpx.Client) -> None:
    make_account(emulator_arm)
    path = f"{account_path()}/sqlRoleAssignments/{NEW}"
    assert emulator_arm.put(path, params=COSMOS_API, json=assignment_body()).status_code == 202

    def completed() -> dict[str, Any]:
        r = emulator_arm.get(path, params=COSMOS_API)
        return dict(r.json()) if r.status_code == 200 else {}

    got = wait_until(completed, timeout=10, what="the accepted write completes by itself")
    assert got["properties"]["principalId"] == OLD


def test_sql_role_definitions_and_assignment_validation(emulator_arm: httpx.Client) -> None:
    r = emulator_arm.get(f"{account_path()}/sqlRoleDefinitions", params=COSMOS_API)
    error(r, 404, "ResourceGroupNotFound")
    make_account(emulator_arm)
    defs = emulator_arm.get(f"{account_path()}/sqlRoleDefinitions", params=COSMOS_API).json()["value"]
    assert [(d["name"], d["properties"]["roleName"], d["properties"]["type"]) for d in defs] == [
        (READER, "Cosmos DB Built-in Data Reader", "BuiltInRole"),
        (CONTRIBUTOR, "Cosmos DB Built-in Data Contributor", "BuiltInRole"),
    ]
    one = emulator_arm.get(f"{account_path()}/sqlRoleDefinitions/{CONTRIBUTOR}", params=COSMOS_API)
    assert one.status_code == 200 and one.json()["id"] == f"{account_path()}/sqlRoleDefinitions/{CONTRIBUTOR}"
    path = f"{account_path()}/sqlRoleAssignments/{NEW}"
    error(emulator_arm.put(path, params=COSMOS_API, json=assignment_body(role=OTHER)), 400, "BadRequest")
    foreign = assignment_body()
    foreign["properties"]["roleDefinitionId"] = foreign["properties"]["roleDefinitionId"].replace(
        "cosmos1", "other"
    )
    error(emulator_arm.put(path, params=COSMOS_API, json=foreign), 400, "BadRequest")
    outside = assignment_body(
        scope=f"{rg_path('rg-data')}/providers/Microsoft.DocumentDB/databaseAccounts/other"
    )
    error(emulator_arm.put(path, params=COSMOS_API, json=outside), 400, "BadRequest")
    error(emulator_arm.put(path, params=COSMOS_API, json=assignment_body(principal="bob")), 400, "BadRequest")
    error(emulator_arm.put(f"{account_path()}/sqlRoleAssignments/not-a-guid", params=COSMOS_API,
                           json=assignment_body()), 400, "BadRequest")  # fmt: skip
    error(emulator_arm.put(path, params=COSMOS_API, json={"roleDefinitionId": READER}), 400, "BadRequest")
    missing = emulator_arm.put(
        f"{account_path('nope')}/sqlRoleAssignments/{NEW}", params=COSMOS_API, json=assignment_body()
    )
    error(missing, 404, "ResourceNotFound")
    error(emulator_arm.post(path, params=COSMOS_API, json={}), 405, "MethodNotAllowed")
    assert emulator_arm.get(f"{account_path()}/sqlRoleAssignments", params=COSMOS_API).json() == {"value": []}
    # deleting the account removes its assignments with it
    accepted = emulator_arm.put(path, params=COSMOS_API, json=assignment_body())
    assert follow(emulator_arm, accepted)["status"] == "Succeeded"
    assert emulator_arm.delete(account_path(), params=COSMOS_API).status_code == 200
    make_account(emulator_arm)
    assert emulator_arm.get(f"{account_path()}/sqlRoleAssignments", params=COSMOS_API).json() == {"value": []}
    error(emulator_arm.get(accepted.headers["Azure-AsyncOperation"].replace(accepted.headers[
        "Azure-AsyncOperation"].split("/")[-1].split("?")[0], NEW)), 404, "OperationNotFound")  # fmt: skip


def test_custom_sql_role_definitions(emulator_arm: httpx.Client) -> None:
    make_account(emulator_arm)
    path = f"{account_path()}/sqlRoleDefinitions/{NEW}"
    props = {"roleName": "orders-writer", "type": "CustomRole", "assignableScopes": [account_path()],
             "permissions": [{"dataActions": ["Microsoft.DocumentDB/databaseAccounts/readMetadata"]}]}  # fmt: skip
    accepted = emulator_arm.put(path, params=COSMOS_API, json={"properties": props})
    error(emulator_arm.get(path, params=COSMOS_API), 404, "NotFound")
    assert follow(emulator_arm, accepted)["status"] == "Succeeded"
    got = emulator_arm.get(path, params=COSMOS_API).json()
    assert got["name"] == NEW and got["properties"]["roleName"] == "orders-writer"
    listed = emulator_arm.get(f"{account_path()}/sqlRoleDefinitions", params=COSMOS_API).json()["value"]
    assert [d["name"] for d in listed] == [READER, CONTRIBUTOR, NEW]
    # an assignment may use it
    assigned = emulator_arm.put(f"{account_path()}/sqlRoleAssignments/{OTHER}", params=COSMOS_API,
                                json=assignment_body(role=NEW))  # fmt: skip
    assert follow(emulator_arm, assigned)["status"] == "Succeeded"
    # built-in roles can be neither replaced nor deleted
    error(emulator_arm.put(f"{account_path()}/sqlRoleDefinitions/{READER}", params=COSMOS_API,
                           json={"properties": props}), 400, "BadRequest")  # fmt: skip
    error(
        emulator_arm.delete(f"{account_path()}/sqlRoleDefinitions/{READER}", params=COSMOS_API),
        400,
        "BadRequest",
    )
    deleting = emulator_arm.delete(path, params=COSMOS_API)
    assert deleting.status_code == 202 and follow(emulator_arm, deleting)["status"] == "Succeeded"
    error(emulator_arm.get(path, params=COSMOS_API), 404, "NotFound")
    assert emulator_arm.delete(path, params=COSMOS_API).status_code == 204


# --- database servers' Entra administrators --------------------------------------------------
def server_path(kind: str, name: str = "db1") -> str:
    return f"{rg_path('rg-data')}/providers/{kind}/{name}"


PG = "Microsoft.DBforPostgreSQL/flexibleServers"
MYSQL = "Microsoft.DBforMySQL/flexibleServers"
SQL = "Microsoft.Sql/servers"


def make_server(client: httpx.Client, kind: str, params: dict[str, str]) -> None:
    put_group(client, "rg-data")
    put(client, server_path(kind), {"location": "westeurope", "properties": {}}, params)


def test_postgres_administrators_coexist(emulator_arm: httpx.Client) -> None:
    make_server(emulator_arm, PG, PG_API)
    admins = f"{server_path(PG)}/administrators"
    body = {
        "properties": {
            "principalType": "ServicePrincipal",
            "principalName": "id-payments",
            "tenantId": TENANT,
        }
    }
    accepted = emulator_arm.put(f"{admins}/{OLD}", params=PG_API, json=body)
    assert (
        "/providers/Microsoft.DBforPostgreSQL/locations/westeurope/azureAsyncOperation/"
        in accepted.headers["Azure-AsyncOperation"]
    )
    assert (
        "/providers/Microsoft.DBforPostgreSQL/locations/westeurope/operationResults/"
        in accepted.headers["Location"]
    )
    error(emulator_arm.get(f"{admins}/{OLD}", params=PG_API), 404, "ResourceNotFound")
    assert follow(emulator_arm, accepted)["status"] == "Succeeded"
    group = {"properties": {"principalType": "Group", "principalName": "dbas", "tenantId": TENANT}}
    assert follow(emulator_arm, emulator_arm.put(f"{admins}/{OTHER}", params=PG_API, json=group))[
        "status"
    ] == ("Succeeded")
    got = emulator_arm.get(f"{admins}/{OLD}", params=PG_API)
    assert got.json() == {
        "id": f"{admins}/{OLD}",
        "name": "id-payments",
        "type": "Microsoft.DBforPostgreSQL/flexibleServers/administrators",
        "properties": {"principalType": "ServicePrincipal", "principalName": "id-payments", "objectId": OLD,
                       "tenantId": TENANT},
    }  # fmt: skip
    listed = emulator_arm.get(admins, params=PG_API).json()["value"]
    assert sorted(a["properties"]["objectId"] for a in listed) == sorted([OLD, OTHER])
    assert (
        follow(emulator_arm, emulator_arm.delete(f"{admins}/{OLD}", params=PG_API))["status"] == "Succeeded"
    )
    assert [a["properties"]["objectId"] for a in emulator_arm.get(admins, params=PG_API).json()["value"]] == [
        OTHER
    ]
    assert emulator_arm.delete(f"{admins}/{OLD}", params=PG_API).status_code == 204
    bad = {"properties": {"principalType": "Robot", "principalName": "x", "tenantId": TENANT}}
    error(emulator_arm.put(f"{admins}/{NEW}", params=PG_API, json=bad), 400, "BadRequest")
    error(emulator_arm.put(f"{admins}/bob", params=PG_API, json=body), 400, "BadRequest")
    error(emulator_arm.put(f"{server_path(PG, 'nope')}/administrators/{NEW}", params=PG_API, json=body),
          404, "ResourceNotFound")  # fmt: skip
    assert query(emulator_arm, "Resources | where type contains 'administrators'") == []


def ad_admin(sid: str, **extra: Any) -> dict[str, Any]:
    return {"properties": {"administratorType": "ActiveDirectory", "login": "id-payments", "sid": sid,
                           "tenantId": TENANT, **extra}}  # fmt: skip


def test_mysql_has_one_active_directory_administrator(emulator_arm: httpx.Client) -> None:
    make_server(emulator_arm, MYSQL, MYSQL_API)
    path = f"{server_path(MYSQL)}/administrators/ActiveDirectory"
    uami = f"{rg_path('rg-data')}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/id-mysql"
    accepted = emulator_arm.put(path, params=MYSQL_API, json=ad_admin(OLD, identityResourceId=uami))
    assert (
        "/Microsoft.DBforMySQL/locations/westeurope/azureAsyncOperation/"
        in accepted.headers["Azure-AsyncOperation"]
    )
    assert follow(emulator_arm, accepted)["status"] == "Succeeded"
    assert emulator_arm.get(path, params=MYSQL_API).json() == {
        "id": path, "name": "ActiveDirectory", "type": "Microsoft.DBforMySQL/flexibleServers/administrators",
        "properties": {"administratorType": "ActiveDirectory", "login": "id-payments", "sid": OLD, "tenantId": TENANT,
                       "identityResourceId": uami},
    }  # fmt: skip
    # a second PUT replaces the one administrator
    assert (
        follow(emulator_arm, emulator_arm.put(path, params=MYSQL_API, json=ad_admin(NEW)))["status"]
        == "Succeeded"
    )
    listed = emulator_arm.get(f"{server_path(MYSQL)}/administrators", params=MYSQL_API).json()["value"]
    assert [a["properties"]["sid"] for a in listed] == [NEW]
    error(emulator_arm.put(f"{server_path(MYSQL)}/administrators/{NEW}", params=MYSQL_API, json=ad_admin(NEW)),
          400, "BadRequest")  # fmt: skip
    error(emulator_arm.put(path, params=MYSQL_API, json=ad_admin("bob")), 400, "BadRequest")
    deleting = emulator_arm.delete(path, params=MYSQL_API)
    assert deleting.status_code == 202 and follow(emulator_arm, deleting)["status"] == "Succeeded"
    assert emulator_arm.get(f"{server_path(MYSQL)}/administrators", params=MYSQL_API).json() == {"value": []}
    assert emulator_arm.delete(path, params=MYSQL_API).status_code == 204


def test_sql_server_administrator(emulator_arm: httpx.Client) -> None:
    make_server(emulator_arm, SQL, SQL_API)
    path = f"{server_path(SQL)}/administrators/ActiveDirectory"
    accepted = emulator_arm.put(path, params=SQL_API, json=ad_admin(OLD))
    assert re.search(r"/providers/Microsoft\.Sql/locations/westeurope/administratorAzureAsyncOperation/db1/[0-9a-f-]{36}",
                     accepted.headers["Azure-AsyncOperation"])  # fmt: skip
    assert "/administratorOperationResults/db1/" in accepted.headers["Location"]
    assert follow(emulator_arm, accepted)["status"] == "Succeeded"
    got = emulator_arm.get(path, params=SQL_API).json()
    assert got["name"] == "ActiveDirectory" and got["type"] == "Microsoft.Sql/servers/administrators"
    assert got["properties"] == {"administratorType": "ActiveDirectory", "login": "id-payments", "sid": OLD,
                                 "tenantId": TENANT, "azureADOnlyAuthentication": False}  # fmt: skip
    assert emulator_arm.get(accepted.headers["Location"]).json() == got
    listed = emulator_arm.get(f"{server_path(SQL)}/administrators", params=SQL_API).json()
    assert listed == {"value": [got]}
    # Resource Graph shows the server, never the administrator or its sid
    assert query(emulator_arm, f"Resources | where tostring(properties) contains '{OLD}'") == []
    assert [r["type"] for r in query(emulator_arm, "Resources | where name == 'db1'")] == [
        "microsoft.sql/servers"
    ]
    error(emulator_arm.put(path, params=SQL_API, json={"properties": {**ad_admin(OLD)["properties"],
          "administratorType": "Other"}}), 400, "InvalidServerAdministratorTypePropertyName")  # fmt: skip
    error(emulator_arm.put(path, params=SQL_API, json={"properties": {"administratorType": "ActiveDirectory",
          "sid": OLD}}), 400, "InvalidResourceRequestBody")  # fmt: skip
    error(emulator_arm.put(path, params=SQL_API, json={}), 400, "InvalidResourceRequestBody")
    error(emulator_arm.put(f"{server_path(SQL, 'nope')}/administrators/ActiveDirectory", params=SQL_API,
                           json=ad_admin(OLD)), 404, "ServerNotInSubscriptionResourceGroup")  # fmt: skip
    deleting = emulator_arm.delete(path, params=SQL_API)
    assert follow(emulator_arm, deleting)["status"] == "Succeeded"
    error(emulator_arm.get(path, params=SQL_API), 404, "ResourceNotFound")
    # an Entra-only server keeps its administrator: DELETE is refused
    put(emulator_arm, server_path(SQL, "db2"), {"location": "westeurope", "properties": {
        "administrators": {"azureADOnlyAuthentication": True}}}, SQL_API)  # fmt: skip
    admin2 = f"{server_path(SQL, 'db2')}/administrators/ActiveDirectory"
    assert (
        follow(emulator_arm, emulator_arm.put(admin2, params=SQL_API, json=ad_admin(OLD)))["status"]
        == "Succeeded"
    )
    assert emulator_arm.get(admin2, params=SQL_API).json()["properties"]["azureADOnlyAuthentication"] is True
    error(emulator_arm.delete(admin2, params=SQL_API), 400, "InvalidServerAzureADAdminDeleteOperation")


# --- App Service settings --------------------------------------------------------------------
def site_path(name: str = "web1") -> str:
    return f"{rg_path('rg-app')}/providers/Microsoft.Web/sites/{name}"


def test_app_settings_are_a_sub_resource(emulator_arm: httpx.Client) -> None:
    ident = put_identity(emulator_arm, "rg-app", "id-payments")
    client_id = ident["properties"]["clientId"]
    created = put(emulator_arm, site_path(), {"location": "westeurope", "kind": "functionapp", "properties": {
        "siteConfig": {"appSettings": [{"name": "AZURE_CLIENT_ID", "value": client_id},
                                       {"name": "WEBSITE_RUN_FROM_PACKAGE", "value": "1"}],
                       "connectionStrings": [{"name": "db", "connectionString": "Server=x", "type": "SQLAzure"}]}}},
        WEB_API)  # fmt: skip
    # neither the PUT's answer nor a GET of the site carries the values
    assert created["properties"]["siteConfig"]["appSettings"] is None
    site = emulator_arm.get(site_path(), params=WEB_API).json()
    assert site["properties"]["siteConfig"] == {"appSettings": None, "connectionStrings": None}
    assert client_id not in str(site)
    listed = emulator_arm.post(f"{site_path()}/config/appsettings/list", params=WEB_API)
    assert listed.status_code == 200
    assert listed.json() == {
        "id": f"{site_path()}/config/appsettings", "name": "appsettings", "type": "Microsoft.Web/sites/config",
        "kind": "functionapp", "properties": {"AZURE_CLIENT_ID": client_id, "WEBSITE_RUN_FROM_PACKAGE": "1"},
    }  # fmt: skip
    conn = emulator_arm.post(f"{site_path()}/config/connectionstrings/list", params=WEB_API).json()
    assert conn["name"] == "connectionstrings"
    assert conn["properties"] == {"db": {"value": "Server=x", "type": "SQLAzure"}}
    # PUT replaces the whole set
    replaced = emulator_arm.put(f"{site_path()}/config/appsettings", params=WEB_API,
                                json={"properties": {"AZURE_CLIENT_ID": "new-client"}})  # fmt: skip
    assert replaced.status_code == 200 and replaced.json()["properties"] == {"AZURE_CLIENT_ID": "new-client"}
    assert emulator_arm.post(f"{site_path()}/config/appsettings/list", params=WEB_API).json()[
        "properties"
    ] == {"AZURE_CLIENT_ID": "new-client"}
    r = emulator_arm.put(f"{site_path()}/config/connectionstrings", params=WEB_API,
                         json={"properties": {"cache": {"value": "redis://x", "type": "RedisCache"}}})  # fmt: skip
    assert r.status_code == 200 and r.json()["properties"] == {
        "cache": {"value": "redis://x", "type": "RedisCache"}
    }
    # a site PUT without siteConfig.appSettings leaves the settings alone
    put(
        emulator_arm,
        site_path(),
        {"location": "westeurope", "kind": "functionapp", "properties": {}},
        WEB_API,
    )
    assert emulator_arm.post(f"{site_path()}/config/appsettings/list", params=WEB_API).json()[
        "properties"
    ] == {"AZURE_CLIENT_ID": "new-client"}
    # Resource Graph does not index setting values: the discovery query does not find the site by clientId
    put(
        emulator_arm,
        f"{site_path()}/config/appsettings",
        {"properties": {"AZURE_CLIENT_ID": client_id}},
        WEB_API,
    )
    found = query(
        emulator_arm, f"Resources | where tostring(properties) contains '{client_id}' | project name"
    )
    assert found == [{"name": "id-payments"}]
    assert [r["name"] for r in query(emulator_arm, "Resources | where type =~ 'microsoft.web/sites'")] == [
        "web1"
    ]
    # deleting the site deletes its settings
    assert emulator_arm.delete(site_path(), params=WEB_API).status_code == 200
    put(emulator_arm, site_path(), {"location": "westeurope"}, WEB_API)
    assert (
        emulator_arm.post(f"{site_path()}/config/appsettings/list", params=WEB_API).json()["properties"] == {}
    )


def test_slots_have_their_own_settings_and_errors(emulator_arm: httpx.Client) -> None:
    put_group(emulator_arm, "rg-app")
    put(emulator_arm, site_path(), {"location": "westeurope", "kind": "app"}, WEB_API)
    slot = f"{site_path()}/slots/staging"
    put(emulator_arm, slot, {"location": "westeurope", "properties": {
        "siteConfig": {"appSettings": [{"name": "AZURE_CLIENT_ID", "value": "slot-client"}]}}}, WEB_API)  # fmt: skip
    listed = emulator_arm.post(f"{slot}/config/appsettings/list", params=WEB_API).json()
    assert (
        listed["type"] == "Microsoft.Web/sites/slots/config" and listed["id"] == f"{slot}/config/appsettings"
    )
    assert listed["properties"] == {"AZURE_CLIENT_ID": "slot-client"}
    assert (
        emulator_arm.post(f"{site_path()}/config/appsettings/list", params=WEB_API).json()["properties"] == {}
    )
    # slots are tracked resources (with a location): indexed
    assert sorted(r["type"] for r in query(emulator_arm, "Resources | where id contains 'web1'")) == [
        "microsoft.web/sites", "microsoft.web/sites/slots"]  # fmt: skip
    missing = emulator_arm.post(f"{site_path('nope')}/config/appsettings/list", params=WEB_API)
    error(missing, 404, "ResourceNotFound")
    error(emulator_arm.post(f"{site_path()}/slots/nope/config/appsettings/list", params=WEB_API),
          404, "ResourceNotFound")  # fmt: skip
    error(emulator_arm.put(f"{site_path()}/config/appsettings", params=WEB_API, json={"AZURE_CLIENT_ID": "x"}),
          400, "BadRequest")  # fmt: skip
    error(emulator_arm.put(f"{site_path()}/config/appsettings", params=WEB_API, json={"properties": {"A": 1}}),
          400, "BadRequest")  # fmt: skip
    error(emulator_arm.put(f"{site_path()}/config/connectionstrings", params=WEB_API,
                           json={"properties": {"db": {"value": "x", "type": "Oracle"}}}), 400, "BadRequest")  # fmt: skip
    error(emulator_arm.get(f"{site_path()}/config/appsettings", params=WEB_API), 405, "MethodNotAllowed")
    error(emulator_arm.get(f"{site_path()}/config/appsettings/list", params=WEB_API), 405, "MethodNotAllowed")


# --- secrets are never echoed ----------------------------------------------------------------
def test_container_instance_secure_values_are_not_echoed(emulator_arm: httpx.Client) -> None:
    put_group(emulator_arm, "rg-app")
    path = f"{rg_path('rg-app')}/providers/Microsoft.ContainerInstance/containerGroups/cg1"
    env = [{"name": "AZURE_CLIENT_ID", "value": "visible"}, {"name": "PASSWORD", "secureValue": "s3cret"}]
    body = {"location": "westeurope", "properties": {"osType": "Linux", "containers": [
        {"name": "worker", "properties": {"image": "x", "environmentVariables": env}}]}}  # fmt: skip
    created = put(emulator_arm, path, body, {"api-version": "2023-05-01"})
    got = emulator_arm.get(path, params={"api-version": "2023-05-01"}).json()
    listed = emulator_arm.get(f"{rg_path('rg-app')}/providers/Microsoft.ContainerInstance/containerGroups",
                              params={"api-version": "2023-05-01"}).json()["value"]  # fmt: skip
    for answer in (created, got, listed[0]):
        variables = answer["properties"]["containers"][0]["properties"]["environmentVariables"]
        assert variables == [{"name": "AZURE_CLIENT_ID", "value": "visible"}, {"name": "PASSWORD"}]
    assert query(emulator_arm, "Resources | where tostring(properties) contains 's3cret'") == []


def test_container_app_secrets_only_through_list_secrets(emulator_arm: httpx.Client) -> None:
    put_group(emulator_arm, "rg-app")
    path = f"{rg_path('rg-app')}/providers/Microsoft.App/containerApps/app1"
    api = {"api-version": "2023-05-01"}
    secrets = [{"name": "db-password", "value": "s3cret"},
               {"name": "kv-ref", "keyVaultUrl": "https://kv1.vault.azure.net/secrets/x", "identity": "system"}]  # fmt: skip
    created = put(emulator_arm, path, {"location": "westeurope", "properties": {"configuration": {"secrets": secrets}}},
                  api)  # fmt: skip
    got = emulator_arm.get(path, params=api).json()
    for answer in (created, got):
        assert answer["properties"]["configuration"]["secrets"] == [
            {"name": "db-password"},
            {"name": "kv-ref", "keyVaultUrl": "https://kv1.vault.azure.net/secrets/x", "identity": "system"},
        ]
    listed = emulator_arm.post(f"{path}/listSecrets", params=api)
    assert listed.status_code == 200 and listed.json() == {"value": secrets}
    error(emulator_arm.get(f"{path}/listSecrets", params=api), 405, "MethodNotAllowed")
    error(
        emulator_arm.post(path.replace("app1", "nope") + "/listSecrets", params=api), 404, "ResourceNotFound"
    )
    assert query(emulator_arm, "Resources | where tostring(properties) contains 's3cret'") == []


# --- AKS OIDC issuer -------------------------------------------------------------------------
def test_aks_oidc_issuer_url_is_filled_like_azure(emulator_arm: httpx.Client) -> None:
    put_group(emulator_arm, "rg-aks")
    path = f"{rg_path('rg-aks')}/providers/Microsoft.ContainerService/managedClusters/aks1"
    api = {"api-version": "2024-05-01"}
    created = put(emulator_arm, path, {"location": "westeurope", "properties": {
        "oidcIssuerProfile": {"enabled": True, "issuerURL": "https://evil.example/"}}}, api)  # fmt: skip
    issuer = created["properties"]["oidcIssuerProfile"]["issuerURL"]
    tenant = emulator_arm.get(f"/subscriptions/{SUBSCRIPTION}", params={"api-version": "2022-12-01"}).json()[
        "tenantId"
    ]
    assert re.fullmatch(
        rf"https://westeurope\.oic\.prod-aks\.azure\.com/{tenant}/[0-9a-f-]{{36}}/", issuer
    ), issuer
    # stable across updates; a PATCH that leaves it alone keeps it
    again = put(emulator_arm, path, {"location": "westeurope", "properties": {"oidcIssuerProfile": {"enabled": True}}},
                api)  # fmt: skip
    assert again["properties"]["oidcIssuerProfile"] == {"enabled": True, "issuerURL": issuer}
    patched = emulator_arm.patch(path, params=api, json={"tags": {"env": "prod"}}).json()
    assert patched["properties"]["oidcIssuerProfile"]["issuerURL"] == issuer
    rows = query(emulator_arm, "Resources | where type =~ 'microsoft.containerservice/managedclusters'")
    assert rows[0]["properties"]["oidcIssuerProfile"]["issuerURL"] == issuer
    other = put(emulator_arm, path.replace("aks1", "aks2"), {"location": "westeurope", "properties": {
        "oidcIssuerProfile": {"enabled": False}}}, api)  # fmt: skip
    assert other["properties"]["oidcIssuerProfile"] == {"enabled": False}


# --- child (proxy) resources -----------------------------------------------------------------
def test_child_resources_take_no_location(emulator_arm: httpx.Client) -> None:
    put_group(emulator_arm, "rg-data")
    account = f"{rg_path('rg-data')}/providers/Microsoft.Storage/storageAccounts/st1"
    api = {"api-version": "2023-05-01"}
    put(emulator_arm, account, {"location": "westeurope", "kind": "StorageV2"}, api)
    r = emulator_arm.put(
        f"{account}/blobServices/default", params=api, json={"properties": {"isVersioningEnabled": True}}
    )
    assert r.status_code == 201, r.text
    assert "location" not in r.json() and r.json()["type"] == "Microsoft.Storage/storageAccounts/blobServices"
    assert (
        emulator_arm.put(f"{account}/blobServices/default", params=api, json={"properties": {}}).status_code
        == 200
    )
    assert emulator_arm.get(f"{account}/blobServices/default", params=api).status_code == 200
    # a top-level resource still needs one; proxies are neither in Resource Graph nor in /resources
    error(emulator_arm.put(account.replace("st1", "st2"), params=api, json={}), 400, "LocationRequired")
    assert [r["type"] for r in query(emulator_arm, "Resources | where id contains 'st1'")] == [
        "microsoft.storage/storageaccounts"
    ]
    listed = emulator_arm.get(f"{rg_path('rg-data')}/resources", params={"api-version": "2021-04-01"}).json()
    assert [r["name"] for r in listed["value"]] == ["st1"]
