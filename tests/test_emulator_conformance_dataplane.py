"""Replay the spec examples of the access that lives outside Azure RBAC (issue 8) against the emulator:
Key Vault ``accessPolicies/add``, Cosmos DB ``sqlRoleAssignments``/``sqlRoleDefinitions``, PostgreSQL and
MySQL flexible-server administrators, ``Microsoft.Sql/servers/administrators``, App Service
``config/appsettings`` and Container Apps ``listSecrets`` (provenance: ``conformance/SOURCES.md``).

Same checks as ``test_emulator_conformance.py`` (status one the example lists, body of the same shape,
volatile values by type only). For the asynchronous operations the replay sends the example's request,
checks the 202 (no body; ``Azure-AsyncOperation``/``Location`` with the provider's operation path, as
the examples that show headers have it), polls the operation to ``Succeeded``, then compares the
example's 200 body with the resource's GET (or the list) — a 200/201 body is what the resource is once
the operation has finished.

Substitutions (placeholders a real service refuses, as in the main replay file):
- Cosmos DB: ``mySubscriptionId``, ``myRoleDefinitionId``, ``myRoleAssignmentId``, ``myPrincipalId`` become
  GUIDs; the custom role ``myRoleDefinitionId`` is created first (async PUT of ``sqlRoleDefinitions``) with
  the properties of ``CosmosDBSqlRoleDefinitionGet.json``.
- PostgreSQL: the object id ``oooooooo-…``/``gggggggg-…`` and tenant ``tttttttt-…`` are not GUIDs: GUIDs
  replace them. The server is created in ``eastus``, the region the 202 headers of the example name.
- Azure SQL: the example's server has Entra-only authentication on (``azureADOnlyAuthentication: true``
  in every answer); the replay creates the server with ``properties.administrators.
  azureADOnlyAuthentication: true``, which the administrator mirrors (the delete replay uses a server that is
  not Entra-only: SQL refuses, with ``InvalidServerAzureADAdminDeleteOperation``, to delete the administrator
  of an Entra-only server).
- Container Apps ``ContainerApps_ListSecrets``: the example lists names only; the spec's
  ``ContainerAppSecret`` carries ``value`` too (that is the point of the call), so ``value`` is an allowed
  extra key.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.test_emulator_conformance import EXAMPLES, assert_same_shape, check, group

GUIDS = {
    "mySubscriptionId": "5c6a3f2e-0d1b-4c8e-9f00-1a2b3c4d5e6f",
    "myRoleDefinitionId": "7d3e5c1a-2b4f-4a6d-8e9f-0a1b2c3d4e5f",
    "myRoleAssignmentId": "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d",
    "myPrincipalId": "3f2e1d0c-9b8a-4766-8544-33221100ffee",
    "oooooooo-oooo-oooo-oooo-oooooooooooo": "0a0a0a0a-0000-4000-8000-00000000000a",
    "gggggggg-gggg-gggg-gggg-gggggggggggg": "0b0b0b0b-0000-4000-8000-00000000000b",
    "tttttttt-tttt-tttt-tttt-tttttttttttt": "0c0c0c0c-0000-4000-8000-00000000000c",
}


def load(relative: str) -> dict[str, Any]:
    text = (EXAMPLES / relative).read_text()
    for placeholder, guid in GUIDS.items():
        text = text.replace(placeholder, guid)
    return dict(json.loads(text))


def resource_group(arm: httpx.Client, p: dict[str, Any], location: str = "eastus") -> str:
    group(arm, p["subscriptionId"], p["resourceGroupName"], location)
    return f"/subscriptions/{p['subscriptionId']}/resourceGroups/{p['resourceGroupName']}"


def put_resource(arm: httpx.Client, path: str, body: dict[str, Any], api: str) -> None:
    r = arm.put(path, params={"api-version": api}, json=body)
    assert r.status_code in (200, 201), r.text


def completed(arm: httpx.Client, accepted: httpx.Response, operation: str) -> None:
    """The 202 of an asynchronous write: no body, the provider's operation URLs; poll to Succeeded."""
    assert accepted.status_code == 202 and not accepted.content, accepted.text
    for header in ("Azure-AsyncOperation", "Location"):
        assert re.search(operation, accepted.headers[header]), (header, accepted.headers[header])
    status = arm.get(accepted.headers["Azure-AsyncOperation"])
    assert status.status_code == 200 and status.json()["status"] == "Succeeded", status.text


def same_headers(expected: dict[str, str], actual: httpx.Headers) -> None:
    """Operation URLs equal up to host, region, GUIDs and api-version."""

    def shape(url: str) -> str:
        path = re.sub(
            r"/locations/[^/]+/", "/locations/{location}/", re.sub(r"^https?://[^/]+", "", url).split("?")[0]
        )
        return re.sub(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "{guid}", path.lower())

    for name, url in expected.items():
        assert shape(actual[name]) == shape(url), (name, actual[name], url)


# --- Key Vault ------------------------------------------------------------------------------
KV = "Microsoft.KeyVault/2026-03-01-preview/"


def replay_kv_access_policies_add(arm: httpx.Client) -> None:
    ex = load(KV + "updateAccessPoliciesAdd.json")
    p = ex["parameters"]
    vault = f"{resource_group(arm, p)}/providers/Microsoft.KeyVault/vaults/{p['vaultName']}"
    put_resource(arm, vault, {"location": "eastus", "properties": {
        "tenantId": p["subscriptionId"], "sku": {"family": "A", "name": "standard"}, "accessPolicies": []}},
        p["api-version"])  # fmt: skip
    r = arm.put(f"{vault}/accessPolicies/{p['operationKind']}", params={"api-version": p["api-version"]},
                json=p["parameters"])  # fmt: skip
    check(ex, r, 200)
    policies = arm.get(vault, params={"api-version": p["api-version"]}).json()["properties"]["accessPolicies"]
    assert policies == p["parameters"]["properties"]["accessPolicies"]


# --- Cosmos DB --------------------------------------------------------------------------------
COSMOS = "Microsoft.DocumentDB/2024-11-15/"
COSMOS_OP = r"/providers/Microsoft\.DocumentDB/locations/eastus/operationsStatus/[0-9a-f-]{36}\?api-version="


def cosmos_account(arm: httpx.Client, p: dict[str, Any], with_role: bool = True) -> str:
    account = f"{resource_group(arm, p)}/providers/Microsoft.DocumentDB/databaseAccounts/{p['accountName']}"
    put_resource(arm, account, {"location": "eastus", "properties": {"databaseAccountOfferType": "Standard"}},
                 p["api-version"])  # fmt: skip
    if with_role:
        role = load(COSMOS + "CosmosDBSqlRoleDefinitionGet.json")["responses"]["200"]["body"]
        accepted = arm.put(f"{account}/sqlRoleDefinitions/{role['name']}", params={"api-version": p["api-version"]},
                           json={"properties": role["properties"]})  # fmt: skip
        completed(arm, accepted, COSMOS_OP)
    return account


def cosmos_assignment(arm: httpx.Client, account: str, p: dict[str, Any], body: dict[str, Any]) -> None:
    accepted = arm.put(f"{account}/sqlRoleAssignments/{GUIDS['myRoleAssignmentId']}",
                       params={"api-version": p["api-version"]}, json={"properties": body["properties"]})  # fmt: skip
    completed(arm, accepted, COSMOS_OP)


def replay_cosmos_role_assignment_create(arm: httpx.Client) -> None:
    ex = load(COSMOS + "CosmosDBSqlRoleAssignmentCreateUpdate.json")
    p = ex["parameters"]
    account = cosmos_account(arm, p)
    path = f"{account}/sqlRoleAssignments/{p['roleAssignmentId']}"
    accepted = arm.put(
        path, params={"api-version": p["api-version"]}, json=p["createUpdateSqlRoleAssignmentParameters"]
    )
    check(ex, accepted, 202)
    completed(arm, accepted, COSMOS_OP)
    assert_same_shape(
        ex["responses"]["200"]["body"], arm.get(path, params={"api-version": p["api-version"]}).json()
    )
    # an update is asynchronous too
    again = arm.put(
        path, params={"api-version": p["api-version"]}, json=p["createUpdateSqlRoleAssignmentParameters"]
    )
    check(ex, again, 202)


def replay_cosmos_role_assignment_delete(arm: httpx.Client) -> None:
    ex = load(COSMOS + "CosmosDBSqlRoleAssignmentDelete.json")
    p = ex["parameters"]
    account = cosmos_account(arm, p)
    created = load(COSMOS + "CosmosDBSqlRoleAssignmentCreateUpdate.json")["parameters"]
    cosmos_assignment(arm, account, p, created["createUpdateSqlRoleAssignmentParameters"])
    path = f"{account}/sqlRoleAssignments/{p['roleAssignmentId']}"
    accepted = arm.delete(path, params={"api-version": p["api-version"]})
    check(ex, accepted, 202)
    same_headers(ex["responses"]["202"]["headers"], accepted.headers)
    completed(arm, accepted, COSMOS_OP)
    check(ex, arm.delete(path, params={"api-version": p["api-version"]}), 204)


def replay_cosmos_role_assignment_list(arm: httpx.Client) -> None:
    ex = load("Microsoft.DocumentDB/2024-08-15/CosmosDBSqlRoleAssignmentList.json")
    p = ex["parameters"]
    account = cosmos_account(arm, p)
    cosmos_assignment(arm, account, p, ex["responses"]["200"]["body"]["value"][0])
    check(ex, arm.get(f"{account}/sqlRoleAssignments", params={"api-version": p["api-version"]}), 200)


def replay_cosmos_role_definition_get(arm: httpx.Client) -> None:
    ex = load(COSMOS + "CosmosDBSqlRoleDefinitionGet.json")
    p = ex["parameters"]
    account = cosmos_account(arm, p)
    r = arm.get(
        f"{account}/sqlRoleDefinitions/{p['roleDefinitionId']}", params={"api-version": p["api-version"]}
    )
    check(ex, r, 200)


# --- PostgreSQL flexible server -----------------------------------------------------------------
PG_OP = r"/providers/Microsoft\.DBforPostgreSQL/locations/eastus/(azureAsyncOperation|operationResults)/"


def pg_server(arm: httpx.Client, p: dict[str, Any]) -> str:
    server = f"{resource_group(arm, p)}/providers/Microsoft.DBforPostgreSQL/flexibleServers/{p['serverName']}"
    put_resource(arm, server, {"location": "eastus", "properties": {"version": "16"}}, p["api-version"])
    return server


def pg_admin(arm: httpx.Client, server: str, api: str, admin: dict[str, Any]) -> None:
    props = {k: admin["properties"][k] for k in ("principalType", "principalName", "tenantId")}
    accepted = arm.put(f"{server}/administrators/{admin['properties']['objectId']}", params={"api-version": api},
                       json={"properties": props})  # fmt: skip
    completed(arm, accepted, PG_OP)


def replay_pg_administrator_add(arm: httpx.Client) -> None:
    ex = load("Microsoft.DBforPostgreSQL/2024-08-01/AdministratorAdd.json")
    p = ex["parameters"]
    path = f"{pg_server(arm, p)}/administrators/{p['objectId']}"
    accepted = arm.put(path, params={"api-version": p["api-version"]}, json=p["parameters"])
    check(ex, accepted, 202)
    completed(arm, accepted, PG_OP)
    assert_same_shape(
        ex["responses"]["200"]["body"], arm.get(path, params={"api-version": p["api-version"]}).json()
    )


PG = "Microsoft.DBforPostgreSQL/2025-06-01-preview/"


def replay_pg_entra_add(arm: httpx.Client) -> None:
    ex = load(PG + "AdministratorsMicrosoftEntraAdd.json")
    p = ex["parameters"]
    accepted = arm.put(f"{pg_server(arm, p)}/administrators/{p['objectId']}", params={"api-version": p["api-version"]},
                       json=p["parameters"])  # fmt: skip
    check(ex, accepted, 202)
    same_headers(ex["responses"]["202"]["headers"], accepted.headers)
    completed(arm, accepted, PG_OP)


def replay_pg_entra_get(arm: httpx.Client) -> None:
    ex = load(PG + "AdministratorsMicrosoftEntraGet.json")
    p = ex["parameters"]
    server = pg_server(arm, p)
    pg_admin(arm, server, p["api-version"], ex["responses"]["200"]["body"])
    check(
        ex, arm.get(f"{server}/administrators/{p['objectId']}", params={"api-version": p["api-version"]}), 200
    )


def replay_pg_entra_list(arm: httpx.Client) -> None:
    ex = load(PG + "AdministratorsMicrosoftEntraListByServer.json")
    p = ex["parameters"]
    server = pg_server(arm, p)
    for admin in ex["responses"]["200"]["body"]["value"]:
        pg_admin(arm, server, p["api-version"], admin)
    # the list example leaves out ``name`` (the Get example shows it: the principal name)
    check(ex, arm.get(f"{server}/administrators", params={"api-version": p["api-version"]}), 200,
          extra=frozenset({"name"}))  # fmt: skip


def replay_pg_entra_delete(arm: httpx.Client) -> None:
    ex = load(PG + "AdministratorsMicrosoftEntraDelete.json")
    p = ex["parameters"]
    server = pg_server(arm, p)
    admin = load(PG + "AdministratorsMicrosoftEntraGet.json")["responses"]["200"]["body"]
    pg_admin(arm, server, p["api-version"], admin)
    path = f"{server}/administrators/{p['objectId']}"
    accepted = arm.delete(path, params={"api-version": p["api-version"]})
    check(ex, accepted, 202)
    same_headers(ex["responses"]["202"]["headers"], accepted.headers)
    completed(arm, accepted, PG_OP)
    check(ex, arm.delete(path, params={"api-version": p["api-version"]}), 204)


# --- MySQL flexible server and Azure SQL ---------------------------------------------------------
MYSQL = "Microsoft.DBforMySQL/2023-12-30/"
MYSQL_OP = r"/providers/Microsoft\.DBforMySQL/locations/eastus/(azureAsyncOperation|operationResults)/"
SQL = "Microsoft.Sql/2023-08-01/"
SQL_OP = r"/providers/Microsoft\.Sql/locations/eastus/administrator(AzureAsyncOperation|OperationResults)/"


def db_server(arm: httpx.Client, p: dict[str, Any], server_type: str, properties: dict[str, Any]) -> str:
    server = f"{resource_group(arm, p)}/providers/{server_type}/{p['serverName']}"
    put_resource(arm, server, {"location": "eastus", "properties": properties}, p["api-version"])
    return server


def sql_server(arm: httpx.Client, p: dict[str, Any]) -> str:
    return db_server(arm, p, "Microsoft.Sql/servers", {"administrators": {"azureADOnlyAuthentication": True}})


def _replay_ad_admin_create(arm: httpx.Client, ex: dict[str, Any], server: str, operation: str) -> None:
    p = ex["parameters"]
    path = f"{server}/administrators/{p['administratorName']}"
    accepted = arm.put(path, params={"api-version": p["api-version"]}, json=p["parameters"])
    check(ex, accepted, 202)
    completed(arm, accepted, operation)
    assert_same_shape(
        ex["responses"]["200"]["body"], arm.get(path, params={"api-version": p["api-version"]}).json()
    )


def _ad_admin(arm: httpx.Client, server: str, api: str, body: dict[str, Any], operation: str) -> None:
    props = {k: v for k, v in body["properties"].items() if k != "azureADOnlyAuthentication"}
    accepted = arm.put(f"{server}/administrators/ActiveDirectory", params={"api-version": api},
                       json={"properties": props})  # fmt: skip
    completed(arm, accepted, operation)


def replay_mysql_admin_create(arm: httpx.Client) -> None:
    ex = load(MYSQL + "AzureADAdministratorCreate.json")
    _replay_ad_admin_create(arm, ex, db_server(arm, ex["parameters"], "Microsoft.DBforMySQL/flexibleServers", {}),
                            MYSQL_OP)  # fmt: skip


def replay_mysql_admin_get(arm: httpx.Client) -> None:
    ex = load(MYSQL + "AzureADAdministratorGet.json")
    p = ex["parameters"]
    server = db_server(arm, p, "Microsoft.DBforMySQL/flexibleServers", {})
    _ad_admin(arm, server, p["api-version"], ex["responses"]["200"]["body"], MYSQL_OP)
    check(ex, arm.get(f"{server}/administrators/{p['administratorName']}", params={"api-version": p["api-version"]}),
          200)  # fmt: skip


def replay_sql_admin_create(arm: httpx.Client) -> None:
    ex = load(SQL + "AdministratorCreateOrUpdate.json")
    _replay_ad_admin_create(arm, ex, sql_server(arm, ex["parameters"]), SQL_OP)


def replay_sql_admin_get(arm: httpx.Client) -> None:
    ex = load(SQL + "AdministratorGet.json")
    p = ex["parameters"]
    server = sql_server(arm, p)
    _ad_admin(arm, server, p["api-version"], ex["responses"]["200"]["body"], SQL_OP)
    check(ex, arm.get(f"{server}/administrators/{p['administratorName']}", params={"api-version": p["api-version"]}),
          200)  # fmt: skip


def replay_sql_admin_list(arm: httpx.Client) -> None:
    ex = load(SQL + "AdministratorList.json")
    p = ex["parameters"]
    server = sql_server(arm, p)
    _ad_admin(arm, server, p["api-version"], ex["responses"]["200"]["body"]["value"][0], SQL_OP)
    check(ex, arm.get(f"{server}/administrators", params={"api-version": p["api-version"]}), 200)


def replay_sql_admin_delete(arm: httpx.Client) -> None:
    ex = load(SQL + "AdministratorDelete.json")
    p = ex["parameters"]
    # not Entra-only: SQL refuses to delete the administrator of an Entra-only server
    server = db_server(arm, p, "Microsoft.Sql/servers", {})
    _ad_admin(
        arm, server, p["api-version"], load(SQL + "AdministratorGet.json")["responses"]["200"]["body"], SQL_OP
    )
    path = f"{server}/administrators/{p['administratorName']}"
    accepted = arm.delete(path, params={"api-version": p["api-version"]})
    check(ex, accepted, 202)
    completed(arm, accepted, SQL_OP)
    check(ex, arm.delete(path, params={"api-version": p["api-version"]}), 204)


# --- App Service and Container Apps ------------------------------------------------------------
WEB = "Microsoft.Web/2023-01-01/"


def site(arm: httpx.Client, p: dict[str, Any]) -> str:
    path = f"{resource_group(arm, p)}/providers/Microsoft.Web/sites/{p['name']}"
    put_resource(arm, path, {"location": "eastus", "kind": "app", "properties": {}}, p["api-version"])
    return path


def replay_web_update_app_settings(arm: httpx.Client) -> None:
    ex = load(WEB + "UpdateAppSettings.json")
    p = ex["parameters"]
    r = arm.put(
        f"{site(arm, p)}/config/appsettings", params={"api-version": p["api-version"]}, json=p["appSettings"]
    )
    check(ex, r, 200)


def replay_web_list_app_settings(arm: httpx.Client) -> None:
    ex = load(WEB + "ListAppSettings.json")
    p = ex["parameters"]
    path = site(arm, p)
    put_resource(arm, f"{path}/config/appsettings", {"properties": ex["responses"]["200"]["body"]["properties"]},
                 p["api-version"])  # fmt: skip
    check(ex, arm.post(f"{path}/config/appsettings/list", params={"api-version": p["api-version"]}), 200)


def replay_container_app_list_secrets(arm: httpx.Client) -> None:
    ex = load("Microsoft.App/2023-05-01/ContainerApps_ListSecrets.json")
    p = ex["parameters"]
    path = f"{resource_group(arm, p)}/providers/Microsoft.App/containerApps/{p['containerAppName']}"
    secrets = [
        {"name": s["name"], "value": f"value-of-{s['name']}"} for s in ex["responses"]["200"]["body"]["value"]
    ]
    put_resource(arm, path, {"location": "eastus", "properties": {"configuration": {"secrets": secrets}}},
                 p["api-version"])  # fmt: skip
    r = arm.post(f"{path}/listSecrets", params={"api-version": p["api-version"]})
    check(ex, r, 200, extra=frozenset({"value"}))
    assert r.json()["value"] == secrets


REPLAYS: dict[str, Callable[[httpx.Client], None]] = {
    KV + "updateAccessPoliciesAdd.json": replay_kv_access_policies_add,
    COSMOS + "CosmosDBSqlRoleAssignmentCreateUpdate.json": replay_cosmos_role_assignment_create,
    COSMOS + "CosmosDBSqlRoleAssignmentDelete.json": replay_cosmos_role_assignment_delete,
    COSMOS + "CosmosDBSqlRoleDefinitionGet.json": replay_cosmos_role_definition_get,
    "Microsoft.DocumentDB/2024-08-15/CosmosDBSqlRoleAssignmentList.json": replay_cosmos_role_assignment_list,
    "Microsoft.DBforPostgreSQL/2024-08-01/AdministratorAdd.json": replay_pg_administrator_add,
    PG + "AdministratorsMicrosoftEntraAdd.json": replay_pg_entra_add,
    PG + "AdministratorsMicrosoftEntraGet.json": replay_pg_entra_get,
    PG + "AdministratorsMicrosoftEntraListByServer.json": replay_pg_entra_list,
    PG + "AdministratorsMicrosoftEntraDelete.json": replay_pg_entra_delete,
    MYSQL + "AzureADAdministratorCreate.json": replay_mysql_admin_create,
    MYSQL + "AzureADAdministratorGet.json": replay_mysql_admin_get,
    SQL + "AdministratorCreateOrUpdate.json": replay_sql_admin_create,
    SQL + "AdministratorGet.json": replay_sql_admin_get,
    SQL + "AdministratorList.json": replay_sql_admin_list,
    SQL + "AdministratorDelete.json": replay_sql_admin_delete,
    WEB + "UpdateAppSettings.json": replay_web_update_app_settings,
    WEB + "ListAppSettings.json": replay_web_list_app_settings,
    "Microsoft.App/2023-05-01/ContainerApps_ListSecrets.json": replay_container_app_list_secrets,
}


@pytest.mark.parametrize("example", sorted(REPLAYS))
def test_replay_dataplane(example: str, emulator_arm: httpx.Client) -> None:
    REPLAYS[example](emulator_arm)
