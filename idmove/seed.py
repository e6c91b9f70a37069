"""``idmove seed``: the demo's sample estate into the running emulator, and the identity ids to try.

So that ``idmove up`` -> ``idmove seed`` -> ``idmove plan <id> --to northeurope`` works without
reading code. The estate is ``idmove/estate.py``'s (what ``make demo`` and the tests move): an
identity attached to a web app, a VM, container instances and a storage account, with role
assignments at several scopes, federated credentials (GitHub, AKS), Entra groups and an app role;
``--data-plane`` adds the Key Vault policies, Cosmos DB, PostgreSQL/SQL admins and app settings.
Each run seeds a fresh identity (``app-id``, then ``app-id-2`` ...), so it can be run again.

Example::

    idmove seed --emulator http://127.0.0.1:7070 --output json
"""

from __future__ import annotations

import json
from typing import Any

from azure.core.exceptions import ResourceNotFoundError

from idmove.estate import REGION, SUB, TARGET_REGION, clients_for, seed, seed_data_plane


def free_name(clients: Any, base: str = "app-id") -> str:
    msi = clients.msi(SUB).user_assigned_identities
    for n in range(1, 1000):
        name = base if n == 1 else f"{base}-{n}"
        try:
            msi.get("rg-app", name)
        except ResourceNotFoundError:
            return name
    raise RuntimeError("no free identity name left in rg-app")


def run(emulator_url: str, data_plane: bool = False, output: str = "text") -> dict[str, Any]:
    clients = clients_for(emulator_url)
    estate = seed(clients, name=free_name(clients))
    if data_plane:
        seed_data_plane(clients, estate)
    result = {
        "identityId": estate.identity_id,
        "principalId": estate.principal_id,
        "clientId": estate.client_id,
        "sourceRegion": REGION,
        "targetRegion": TARGET_REGION,
        "attachedTo": estate.attached_ids,
        "roleAssignments": len(estate.role_assignment_ids),
        "federatedCredentials": len(estate.credential_names),
        "groups": len(estate.group_ids),
    }
    if output == "json":
        print(json.dumps(result, indent=2))
    else:
        print(f"seeded identity {estate.identity_name} in {REGION} into {emulator_url}")
        print(f"  id:        {estate.identity_id}")
        print(f"  principal: {estate.principal_id}   client: {estate.client_id}")
        print(
            f"  {result['roleAssignments']} role assignments, {result['federatedCredentials']} federated "
            f"credentials, {result['groups']} groups, attached to {len(estate.attached_ids)} resources"
        )
        print("try:")
        print(f"  idmove plan {estate.identity_id} --to {TARGET_REGION}")
        print(f"  idmove move {estate.identity_id} --to {TARGET_REGION} --commit")
    return result
