"""Seed a realistic estate into an emulator through the ordinary APIs (the real SDK clients + Graph).

What a user would have built in Azure around one user-assigned identity in ``westeurope``:

* subscription ``SUB`` with resource groups ``rg-app`` and ``rg-data`` (westeurope) and a management
  group ``mg-platform`` above it;
* the identity ``app-id`` (tags ``team=payments``);
* role assignments: Reader on the subscription, Contributor on ``rg-app``, Storage Blob Data Reader
  on a storage account WITH an ABAC condition + conditionVersion + description, Key Vault Secrets
  User on a key vault, Reader on the management group;
* 3 federated credentials; 2 Entra groups it is a member of; 1 app role (Microsoft Graph
  ``User.Read.All``) granted to its service principal;
* resources using it: a web app (``SystemAssigned,UserAssigned``, ``keyVaultReferenceIdentity`` = the
  id, an app setting holding the clientId), a VM, a container group (PATCH refused -> GET+PUT), a
  storage account whose encryption identity names it; plus a key vault whose access policy names
  its principal (a plan warning).

Example::

    estate = seed(clients_for(url))   # as the estate owner
    estate.identity_id
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from azure.core.rest import HttpRequest
from azure.mgmt.authorization.v2022_04_01.models import RoleAssignmentCreateParameters
from azure.mgmt.msi.models import FederatedIdentityCredential, Identity
from azure.mgmt.resource.resources.models import ResourceGroup

from shared.azure_clients import AzureClients, StaticTokenCredential, subscription_of
from shared.settings import Settings

SUB = "2f7c2b4e-1d3a-4c5b-9e8f-0a1b2c3d4e5f"
REGION = "westeurope"
TARGET_REGION = "northeurope"
MG = "mg-platform"
ROLES = {  # built-in role definition GUIDs (the same in every tenant)
    "Reader": "acdd72a7-3385-48ef-bd42-f606fba81ae7",
    "Contributor": "b24988ac-6180-42a0-ab88-20f7382dd24c",
    "Storage Blob Data Reader": "2a2b9908-6ea1-4ae2-8e65-a410df84e7d1",
    "Key Vault Secrets User": "4633458b-17de-408a-b874-0445c86b69e6",
    "Owner": "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
}
ABAC_CONDITION = (
    "((!(ActionMatches{'Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read'})) OR "
    "(@Resource[Microsoft.Storage/storageAccounts/blobServices/containers:name] StringEquals 'invoices'))"
)
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
USER_READ_ALL = "df021288-bdef-4463-88db-98f22de89214"


@dataclass
class Estate:
    subscription_id: str
    identity_id: str
    identity_name: str
    resource_group: str
    principal_id: str
    client_id: str
    role_assignment_ids: list[str] = field(default_factory=list)
    credential_names: list[str] = field(default_factory=list)
    group_ids: list[str] = field(default_factory=list)
    app_role_assignment_ids: list[str] = field(default_factory=list)
    resources: dict[str, str] = field(default_factory=dict)  # short name -> resource id

    @property
    def attached_ids(self) -> list[str]:
        return [self.resources[k] for k in ("web", "vm", "containers", "storage")]


ESTATE_OWNER_TOKEN = "estate-owner"  # not a JWT: the emulator's unrestricted estate owner (CONTRACT.md)


def clients_for(base_url: str) -> AzureClients:
    """Clients acting as the estate owner (a non-JWT token), never as the mover: the estate is built,
    and inspected by tests, as the user who owns it; the mover's own principal may be restricted."""
    base = base_url.rstrip("/")
    return AzureClients(
        Settings(arm_endpoint=base, graph_endpoint=f"{base}/graph/v1.0", credential="emulator"),
        credential=StaticTokenCredential(ESTATE_OWNER_TOKEN),
    )


def rid(sub: str, group: str, provider: str, name: str) -> str:
    return f"/subscriptions/{sub}/resourceGroups/{group}/providers/{provider}/{name}"


def seed(clients: AzureClients, *, name: str = "app-id", sub: str = SUB) -> Estate:
    res = clients.resources(sub)
    for group in ("rg-app", "rg-data"):
        res.resource_groups.create_or_update(group, ResourceGroup(location=REGION))
    identity = clients.msi(sub).user_assigned_identities.create_or_update(
        "rg-app", name, Identity(location=REGION, tags={"team": "payments"})
    )
    estate = Estate(
        sub, str(identity.id), name, "rg-app", str(identity.principal_id), str(identity.client_id)
    )
    _resources(clients, estate)
    _role_assignments(clients, estate)
    for n, (issuer, subject) in enumerate(
        [
            ("https://token.actions.githubusercontent.com", "repo:contoso/payments:ref:refs/heads/main"),
            ("https://token.actions.githubusercontent.com", "repo:contoso/payments:environment:prod"),
            (
                "https://westeurope.oic.prod-aks.azure.com/tenant/cluster/",
                "system:serviceaccount:payments:api",
            ),
        ]
    ):
        cred_name = f"fic-{n}"
        clients.msi(sub).federated_identity_credentials.create_or_update(
            "rg-app",
            name,
            cred_name,
            FederatedIdentityCredential(
                issuer=issuer, subject=subject, audiences=["api://AzureADTokenExchange"]
            ),
        )
        estate.credential_names.append(cred_name)
    _graph(clients, estate)
    return estate


def _put(clients: AzureClients, resource_id: str, body: dict[str, Any]) -> None:
    client = clients.resources(subscription_of(resource_id))
    client.resources.begin_create_or_update_by_id(
        resource_id, body, api_version=clients.api_version_for(resource_id)
    ).result()


def _resources(clients: AzureClients, e: Estate) -> None:
    sub = e.subscription_id
    uai: dict[str, Any] = {e.identity_id: {}}
    e.resources["storage"] = rid(sub, "rg-data", "Microsoft.Storage/storageAccounts", "stpayments01")
    _put(clients, e.resources["storage"], {
        "location": REGION, "kind": "StorageV2", "sku": {"name": "Standard_LRS"},
        "identity": {"type": "UserAssigned", "userAssignedIdentities": uai},
        "properties": {"encryption": {"keySource": "Microsoft.Keyvault", "identity": {"userAssignedIdentity": e.identity_id},
                                      "keyvaultproperties": {"keyname": "cmk", "keyvaulturi": "https://kv-payments01.vault.azure.net/"}}},
    })  # fmt: skip
    e.resources["vault"] = rid(sub, "rg-data", "Microsoft.KeyVault/vaults", "kv-payments01")
    _put(clients, e.resources["vault"], {
        "location": REGION,
        "properties": {"tenantId": "72f988bf-86f1-41af-91ab-2d7cd011db47", "sku": {"family": "A", "name": "standard"},
                       "enableRbacAuthorization": False,
                       "accessPolicies": [{"tenantId": "72f988bf-86f1-41af-91ab-2d7cd011db47", "objectId": e.principal_id,
                                           "permissions": {"secrets": ["get", "list"]}}]},
    })  # fmt: skip
    e.resources["web"] = rid(sub, "rg-app", "Microsoft.Web/sites", "web-payments01")
    _put(clients, e.resources["web"], {
        "location": REGION, "kind": "app",
        "identity": {"type": "SystemAssigned,UserAssigned", "userAssignedIdentities": uai},
        "properties": {"keyVaultReferenceIdentity": e.identity_id, "httpsOnly": True,
                       "siteConfig": {"appSettings": [{"name": "AZURE_CLIENT_ID", "value": e.client_id},
                                                      {"name": "WEBSITE_RUN_FROM_PACKAGE", "value": "1"}]}},
    })  # fmt: skip
    e.resources["vm"] = rid(sub, "rg-app", "Microsoft.Compute/virtualMachines", "vm-payments01")
    _put(clients, e.resources["vm"], {
        "location": REGION, "identity": {"type": "UserAssigned", "userAssignedIdentities": uai},
        "properties": {"hardwareProfile": {"vmSize": "Standard_D2s_v5"}, "osProfile": {"computerName": "vm-payments01"}},
    })  # fmt: skip
    e.resources["containers"] = rid(
        sub, "rg-app", "Microsoft.ContainerInstance/containerGroups", "cg-payments01"
    )
    _put(clients, e.resources["containers"], {
        "location": REGION, "identity": {"type": "UserAssigned", "userAssignedIdentities": uai},
        "properties": {"osType": "Linux", "containers": [{"name": "worker", "properties": {
            "image": "contoso.azurecr.io/payments-worker:1.4", "resources": {"requests": {"cpu": 1, "memoryInGB": 1.5}},
            "environmentVariables": [{"name": "AZURE_CLIENT_ID", "value": e.client_id}]}}]},
    })  # fmt: skip


def _role_assignments(clients: AzureClients, e: Estate) -> None:
    sub = e.subscription_id
    res = clients.resources(sub)
    # management groups have no SDK in our set: raw REST through the same authenticated pipeline
    mg_url = f"{clients.settings.arm_endpoint}/providers/Microsoft.Management/managementGroups/{MG}?api-version=2021-04-01"
    res.send_request(
        HttpRequest("PUT", mg_url, json={"properties": {"displayName": "Platform"}})
    ).raise_for_status()
    sub_url = f"{clients.settings.arm_endpoint}/providers/Microsoft.Management/managementGroups/{MG}/subscriptions/{sub}?api-version=2021-04-01"
    res.send_request(HttpRequest("PUT", sub_url, json={})).raise_for_status()
    grants: list[tuple[str, str, dict[str, Any]]] = [
        (f"/subscriptions/{sub}", "Reader", {}),
        (f"/subscriptions/{sub}/resourceGroups/rg-app", "Contributor", {}),
        (
            e.resources["storage"],
            "Storage Blob Data Reader",
            {
                "condition": ABAC_CONDITION,
                "condition_version": "2.0",
                "description": "invoices container only",
            },
        ),
        (e.resources["vault"], "Key Vault Secrets User", {"description": "payment API secrets"}),
        (f"/providers/Microsoft.Management/managementGroups/{MG}", "Reader", {}),
    ]
    for scope, role, extra in grants:
        name = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{scope}|{role}|{e.principal_id}"))
        created = clients.authorization(sub).role_assignments.create(
            scope,
            name,
            RoleAssignmentCreateParameters(
                role_definition_id=f"/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/{ROLES[role]}",
                principal_id=e.principal_id,
                principal_type="ServicePrincipal",
                **extra,
            ),
        )
        e.role_assignment_ids.append(str(created.id))


def _graph(clients: AzureClients, e: Estate) -> None:
    graph = clients.graph
    for display in ("sg-payments-readers", "sg-prod-workloads"):
        group = graph.post(
            "/groups",
            {"displayName": display, "mailEnabled": False, "mailNickname": display, "securityEnabled": True},
        )
        graph.post(
            f"/groups/{group['id']}/members/$ref",
            {"@odata.id": f"{graph.endpoint}/directoryObjects/{e.principal_id}"},
        )
        e.group_ids.append(group["id"])
    graph_sp = graph.get(f"/servicePrincipals?$filter=appId eq '{GRAPH_APP_ID}'")["value"][0]
    grant = graph.post(
        f"/servicePrincipals/{e.principal_id}/appRoleAssignments",
        {"principalId": e.principal_id, "resourceId": graph_sp["id"], "appRoleId": USER_READ_ALL},
    )
    e.app_role_assignment_ids.append(grant["id"])


# --- access that lives outside Azure RBAC (issue 8) ------------------------------------------------

OTHER_PRINCIPAL = "5b0c1e0a-7d7e-4e57-9d5a-3c1f0e2b9a44"  # someone else's grants: must stay as they are
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
KV_API, COSMOS_API, PG_API, SQL_API, WEB_API, AKS_API = (
    "2023-07-01", "2024-11-15", "2024-08-01", "2023-08-01", "2023-12-01", "2024-09-01",
)  # fmt: skip


@dataclass
class DataPlane:
    """Where ``seed_data_plane`` put each grant and consumer (resource ids)."""

    vault: str
    rbac_vault: str
    cosmos: str
    postgres: str
    sql: str
    cluster: str
    slot: str
    issuer: str = ""


def seed_data_plane(clients: AzureClients, e: Estate) -> DataPlane:
    """Next to ``seed``'s estate, what a workload reaches its data through outside Azure RBAC.

    * ``kv-payments01`` (access policies): the identity's policy (from ``seed``) plus another principal's;
      ``kv-rbac01`` with ``enableRbacAuthorization`` and a stale policy naming the identity (ignored);
    * Cosmos DB ``cosmos-payments01``: Data Contributor at ``/dbs/orders`` for the identity, Data Reader
      for another principal;
    * PostgreSQL flexible server ``pg-payments01``: the identity and a person as Entra administrators;
    * Azure SQL ``sql-payments01`` whose Entra administrator is the identity (sid = clientId);
    * AKS ``aks-payments01`` with an OIDC issuer, and a federated credential of the identity for its
      service account ``payments/worker``;
    * the web app's settings: ``AZURE_CLIENT_ID`` (from ``seed``), ``Storage__clientId``,
      ``Storage__managedIdentityResourceId``, an unrelated setting, a SQL connection string naming the
      clientId and an unrelated one; a ``staging`` slot with the identity attached and its own setting.
    """
    sub, data = e.subscription_id, "rg-data"
    vault = e.resources["vault"]
    clients.arm("PUT", f"{vault}/accessPolicies/add", KV_API, {"properties": {"accessPolicies": [
        {"tenantId": TENANT, "objectId": OTHER_PRINCIPAL, "permissions": {"keys": ["get"], "secrets": ["get"]}}]}})  # fmt: skip
    rbac_vault = rid(sub, data, "Microsoft.KeyVault/vaults", "kv-rbac01")
    _put(clients, rbac_vault, {"location": REGION, "properties": {
        "tenantId": TENANT, "sku": {"family": "A", "name": "standard"}, "enableRbacAuthorization": True,
        "accessPolicies": [{"tenantId": TENANT, "objectId": e.principal_id, "permissions": {"secrets": ["get"]}}]}})  # fmt: skip
    cosmos = rid(sub, data, "Microsoft.DocumentDB/databaseAccounts", "cosmos-payments01")
    clients.arm("PUT", cosmos, COSMOS_API, {"location": REGION, "kind": "GlobalDocumentDB",
                "properties": {"databaseAccountOfferType": "Standard"}}, wait=True)  # fmt: skip
    for name, principal, role, scope in (
        ("6e5a1c2d-0000-4000-8000-000000000001", e.principal_id, "00000000-0000-0000-0000-000000000002", f"{cosmos}/dbs/orders"),
        ("6e5a1c2d-0000-4000-8000-000000000002", OTHER_PRINCIPAL, "00000000-0000-0000-0000-000000000001", cosmos),
    ):  # fmt: skip
        body = {"properties": {"roleDefinitionId": f"{cosmos}/sqlRoleDefinitions/{role}", "scope": scope,
                               "principalId": principal}}  # fmt: skip
        clients.arm("PUT", f"{cosmos}/sqlRoleAssignments/{name}", COSMOS_API, body, wait=True)
    postgres = rid(sub, data, "Microsoft.DBforPostgreSQL/flexibleServers", "pg-payments01")
    clients.arm("PUT", postgres, PG_API, {"location": REGION, "properties": {}}, wait=True)
    for principal, kind, name in ((e.principal_id, "ServicePrincipal", e.identity_name),
                                  (OTHER_PRINCIPAL, "User", "dba@contoso.com")):  # fmt: skip
        clients.arm("PUT", f"{postgres}/administrators/{principal}", PG_API, {"properties": {
            "principalType": kind, "principalName": name, "tenantId": TENANT}}, wait=True)  # fmt: skip
    sql = rid(sub, data, "Microsoft.Sql/servers", "sql-payments01")
    clients.arm("PUT", sql, SQL_API, {"location": REGION, "properties": {}}, wait=True)
    clients.arm("PUT", f"{sql}/administrators/ActiveDirectory", SQL_API, {"properties": {
        "administratorType": "ActiveDirectory", "login": e.identity_name, "sid": e.client_id, "tenantId": TENANT}},
        wait=True)  # fmt: skip
    cluster = rid(sub, "rg-app", "Microsoft.ContainerService/managedClusters", "aks-payments01")
    _, created = clients.arm("PUT", cluster, AKS_API, {"location": REGION, "properties": {
        "oidcIssuerProfile": {"enabled": True}}}, wait=True)  # fmt: skip
    issuer = str(
        ((created or {}).get("properties") or {}).get("oidcIssuerProfile", {}).get("issuerURL") or ""
    )
    if not issuer:
        _, got = clients.arm("GET", cluster, AKS_API)
        issuer = str(got["properties"]["oidcIssuerProfile"]["issuerURL"])
    clients.msi(sub).federated_identity_credentials.create_or_update(
        "rg-app", e.identity_name, "fic-aks",
        FederatedIdentityCredential(issuer=issuer, subject="system:serviceaccount:payments:worker",
                                    audiences=["api://AzureADTokenExchange"]),
    )  # fmt: skip
    e.credential_names.append("fic-aks")
    web = e.resources["web"]
    _, listed = clients.arm("POST", f"{web}/config/appsettings/list", WEB_API)
    settings = {**(listed or {}).get("properties", {}), "Storage__clientId": e.client_id,
                "Storage__managedIdentityResourceId": e.identity_id, "FEATURE_FLAGS": "payments-v2"}  # fmt: skip
    clients.arm("PUT", f"{web}/config/appsettings", WEB_API, {"properties": settings})
    clients.arm("PUT", f"{web}/config/connectionstrings", WEB_API, {"properties": {
        "Orders": {"value": "Server=tcp:sql-payments01.database.windows.net;Database=orders;"
                            f"Authentication=Active Directory Managed Identity;User Id={e.client_id}", "type": "SQLAzure"},
        "Cache": {"value": "cache-payments01.redis.cache.windows.net:6380,ssl=True", "type": "Custom"}}})  # fmt: skip
    slot = f"{web}/slots/staging"
    _put(clients, slot, {"location": REGION, "identity": {"type": "UserAssigned", "userAssignedIdentities": {e.identity_id: {}}},
                         "properties": {"siteConfig": {"appSettings": [{"name": "AZURE_CLIENT_ID", "value": e.client_id}]}}})  # fmt: skip
    e.resources["slot"] = slot
    return DataPlane(vault, rbac_vault, cosmos, postgres, sql, cluster, slot, issuer)
