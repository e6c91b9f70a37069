"""A light, realistic estate for many identities, built through the emulator's ordinary APIs.

``idmove/estate.py`` seeds one rich identity (5 role assignments, 3 credentials, 4 attached
resources ...); a fan-out needs many small ones. The identities are spread round robin over S
subscriptions (``subscription_ids(S)``: ``SUB`` first, then fixed uuid5 ids; the emulator creates a
subscription on first use), each subscription with its own resource groups and vault. Per identity
``fan-{nnn}`` in ``REGION`` of subscription ``n % S``:

* role assignments at three scopes: Reader on the subscription, Contributor on ``rg-fanout-apps``,
  Key Vault Secrets User on the shared vault ``kv-fanout01`` (all ``principalType: ServicePrincipal``);
* 1 federated credential (2 for every other identity), created one at a time as Azure requires;
* 1 attached resource: web app ``web-fanout-{nnn}`` with the identity in its ``identity`` block and
  an app setting holding its client id (a property reference the move rewrites);
* membership of the shared Entra group ``sg-fanout-workloads``.

Seeding runs with throttling off and is not measured. Example::

    identities = seed_fanout(clients, 40)     # clients: AzureClients with a free-running limiter
    identities = seed_fanout(clients, 300, subscription_ids(10))
"""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from azure.mgmt.authorization.v2022_04_01.models import RoleAssignmentCreateParameters
from azure.mgmt.msi.models import FederatedIdentityCredential, Identity
from azure.mgmt.resource.resources.models import ResourceGroup

from shared.azure_clients import AzureClients

SUB = "7d2f4b1a-6c3e-4f5a-8b9c-1e2d3f4a5b6c"
REGION = "westeurope"
TARGET_REGION = "northeurope"
IDENTITY_GROUP = "rg-fanout"
APPS_GROUP = "rg-fanout-apps"
VAULT = "kv-fanout01"
GROUP_NAME = "sg-fanout-workloads"
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
ROLES = {  # built-in role definition GUIDs (the same in every tenant)
    "Reader": "acdd72a7-3385-48ef-bd42-f606fba81ae7",
    "Contributor": "b24988ac-6180-42a0-ab88-20f7382dd24c",
    "Key Vault Secrets User": "4633458b-17de-408a-b874-0445c86b69e6",
}


@dataclass(frozen=True)
class SeedShape:
    """What one identity's estate holds (the benchmark reports it next to the numbers)."""

    role_assignments: int = 3
    federated_credentials: str = "1-2"
    attached_resources: int = 1
    group_memberships: int = 1


def rid(group: str, provider: str, name: str, sub: str = SUB) -> str:
    return f"/subscriptions/{sub}/resourceGroups/{group}/providers/{provider}/{name}"


def subscription_ids(count: int) -> list[str]:
    """``count`` subscription ids: ``SUB``, then ids derived from their index (stable across runs)."""
    return [SUB] + [
        str(uuid.uuid5(uuid.NAMESPACE_URL, f"idmove-bench-subscription-{i}")) for i in range(1, count)
    ]


def _put(clients: AzureClients, resource_id: str, body: dict[str, Any]) -> None:
    sub = resource_id.split("/")[2]
    clients.resources(sub).resources.begin_create_or_update_by_id(
        resource_id, body, api_version=clients.api_version_for(resource_id)
    ).result()


def seed_fanout(
    clients: AzureClients, count: int, subscriptions: list[str] | None = None, parallel: int = 8
) -> list[str]:
    """Seed ``count`` identities with their estates, identity n in ``subscriptions[n % S]`` (default
    ``[SUB]``); returns the identity ids in order."""
    subs = subscriptions or [SUB]
    for sub in subs:
        res = clients.resources(sub)
        for group in (IDENTITY_GROUP, APPS_GROUP):
            res.resource_groups.create_or_update(group, ResourceGroup(location=REGION))
        _put(clients, rid(APPS_GROUP, "Microsoft.KeyVault/vaults", VAULT, sub), {
            "location": REGION,
            "properties": {"tenantId": TENANT, "sku": {"family": "A", "name": "standard"}, "enableRbacAuthorization": True},
        })  # fmt: skip
    group = clients.graph.post(
        "/groups",
        {
            "displayName": GROUP_NAME,
            "mailEnabled": False,
            "mailNickname": GROUP_NAME,
            "securityEnabled": True,
        },
    )
    with ThreadPoolExecutor(parallel) as pool:
        return list(
            pool.map(lambda n: _seed_one(clients, n, str(group["id"]), subs[n % len(subs)]), range(count))
        )


def _seed_one(clients: AzureClients, n: int, group_id: str, sub: str) -> str:
    name = f"fan-{n:03d}"
    identity = clients.msi(sub).user_assigned_identities.create_or_update(
        IDENTITY_GROUP, name, Identity(location=REGION, tags={"workload": name})
    )
    identity_id, principal_id = str(identity.id), str(identity.principal_id)
    _put(clients, rid(APPS_GROUP, "Microsoft.Web/sites", f"web-{name}", sub), {
        "location": REGION, "kind": "app",
        "identity": {"type": "UserAssigned", "userAssignedIdentities": {identity_id: {}}},
        "properties": {"httpsOnly": True,
                       "siteConfig": {"appSettings": [{"name": "AZURE_CLIENT_ID", "value": str(identity.client_id)}]}},
    })  # fmt: skip
    scopes = [
        (f"/subscriptions/{sub}", "Reader"),
        (f"/subscriptions/{sub}/resourceGroups/{APPS_GROUP}", "Contributor"),
        (rid(APPS_GROUP, "Microsoft.KeyVault/vaults", VAULT, sub), "Key Vault Secrets User"),
    ]
    for scope, role in scopes:
        clients.authorization(sub).role_assignments.create(
            scope,
            str(uuid.uuid5(uuid.NAMESPACE_URL, f"{scope}|{role}|{principal_id}")),
            RoleAssignmentCreateParameters(
                role_definition_id=f"/subscriptions/{sub}/providers/Microsoft.Authorization/roleDefinitions/{ROLES[role]}",
                principal_id=principal_id,
                principal_type="ServicePrincipal",
            ),
        )
    for k in range(1 + n % 2):  # one at a time: concurrent credential writes on one identity get 409
        clients.msi(sub).federated_identity_credentials.create_or_update(
            IDENTITY_GROUP,
            name,
            f"fic-{k}",
            FederatedIdentityCredential(
                issuer="https://token.actions.githubusercontent.com",
                subject=f"repo:contoso/{name}:environment:{('prod', 'staging')[k]}",
                audiences=["api://AzureADTokenExchange"],
            ),
        )
    clients.graph.post(
        f"/groups/{group_id}/members/$ref",
        {"@odata.id": f"{clients.graph.endpoint}/directoryObjects/{principal_id}"},
    )
    return identity_id
