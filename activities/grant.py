"""Phase 3, grant: give the new identity everything the old one had. One item per grant.

Needs: the snapshot and the created target (principalId). Changes in Azure:
- role assignments: PUT ``{scope}/providers/Microsoft.Authorization/roleAssignments/{uuid5(move id +
  source assignment id)}`` with ``principalType: ServicePrincipal`` (no PrincipalNotFound while Entra
  replicates) and the source's condition/conditionVersion/description. ``RoleAssignmentExists`` (409)
  = done, after confirming with a ``$filter=principalId eq`` list;
- federated credentials: PUT under the new identity, ONE AT A TIME (all in one serial batch; a 409
  concurrent-write conflict is transient);
- group memberships: ``POST /groups/{id}/members/$ref`` ("already exist" 400 = done);
- app role assignments: ``POST /servicePrincipals/{id}/appRoleAssignments`` (a duplicate = done after
  confirming by list). Graph 404 for a fresh service principal is transient (retried with backoff).
Idempotency key: the item key (deterministic names in Azure too).

Example::

    items(ctx)        # [ItemSpec("role", "role-<uuid>", {...}), ItemSpec("credential", ..., serial="credentials"), ...]
    run_item(ItemInput(ctx, "role", key, data)).outcome   # "created" | "existed"
"""

from __future__ import annotations

import uuid
from typing import Any

from azure.core.exceptions import HttpResponseError
from azure.mgmt.authorization.v2022_04_01.models import RoleAssignmentCreateParameters
from azure.mgmt.msi.models import FederatedIdentityCredential

from activities._azure import classify, same_id
from shared.azure_clients import GraphError, subscription_of
from shared.context import ItemInput, ItemResult, ItemSpec, PhaseContext
from shared.errors import TransientError


def assignment_name(move_id: str, source_assignment_id: str) -> str:
    return str(
        uuid.uuid5(
            uuid.UUID(move_id) if _is_uuid(move_id) else uuid.NAMESPACE_URL,
            f"{move_id}|{source_assignment_id.lower()}",
        )
    )


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def items(ctx: PhaseContext) -> list[ItemSpec]:
    snap = ctx.snapshot
    specs = [
        ItemSpec("role", f"role-{assignment_name(ctx.move_id, a['id'])}", a) for a in snap["roleAssignments"]
    ]
    specs += [
        ItemSpec("credential", f"cred-{c['name']}", c, serial="credentials")
        for c in snap["federatedCredentials"]
    ]
    specs += [ItemSpec("group", f"group-{g['id']}", g) for g in snap["groups"]]
    specs += [ItemSpec("approle", f"approle-{a['id']}", a) for a in snap["appRoles"]]
    return specs


def run_item(item: ItemInput) -> ItemResult:
    handlers = {"role": _role, "credential": _credential, "group": _group, "approle": _app_role}
    return handlers[item.kind](item.ctx, item.data)


def _role(ctx: PhaseContext, a: dict[str, Any]) -> ItemResult:
    principal = ctx.target["principalId"]
    name = assignment_name(ctx.move_id, a["id"])
    auth = ctx.clients.authorization(subscription_of(a["scope"]) or ctx.target["subscriptionId"])
    params = RoleAssignmentCreateParameters(
        role_definition_id=a["roleDefinitionId"],
        principal_id=principal,
        principal_type="ServicePrincipal",
        condition=a.get("condition"),
        condition_version=a.get("conditionVersion"),
        description=a.get("description"),
    )
    try:
        auth.role_assignments.create(a["scope"], name, params)
    except HttpResponseError as exc:
        if exc.status_code == 409 and "RoleAssignmentExists" in str(exc):
            if _assignment_exists(ctx, a):
                return ItemResult("existed", {"scope": a["scope"]})
            raise TransientError(
                "RoleAssignmentExists", "exists per ARM but not listed yet", a["id"]
            ) from exc
        raise classify(exc, a["id"]) from exc
    return ItemResult("created", {"name": name, "scope": a["scope"]})


def _assignment_exists(ctx: PhaseContext, a: dict[str, Any]) -> bool:
    principal = ctx.target["principalId"]
    auth = ctx.clients.authorization(subscription_of(a["scope"]) or ctx.target["subscriptionId"])
    role_guid = a["roleDefinitionId"].rsplit("/", 1)[-1].lower()
    return any(
        same_id(ra.scope, a["scope"]) and str(ra.role_definition_id).rsplit("/", 1)[-1].lower() == role_guid
        for ra in auth.role_assignments.list_for_scope(a["scope"], filter=f"principalId eq '{principal}'")
    )


def _credential(ctx: PhaseContext, c: dict[str, Any]) -> ItemResult:
    t = ctx.target
    body = FederatedIdentityCredential(issuer=c["issuer"], subject=c["subject"], audiences=c["audiences"])
    try:
        ctx.clients.msi(t["subscriptionId"]).federated_identity_credentials.create_or_update(
            t["resourceGroup"], t["name"], c["name"], body
        )
    except HttpResponseError as exc:
        # 409 ConcurrentFederatedIdentityCredentialsWritesForSingleManagedIdentity: transient (classify);
        # any other 409 (e.g. the same issuer+subject under another name) is permanent, never retried
        raise classify(exc, c["name"]) from exc
    return ItemResult("created", {"name": c["name"]})


def _group(ctx: PhaseContext, g: dict[str, Any]) -> ItemResult:
    principal = ctx.target["principalId"]
    graph = ctx.clients.graph
    try:
        graph.post(
            f"/groups/{g['id']}/members/$ref", {"@odata.id": f"{graph.endpoint}/directoryObjects/{principal}"}
        )
    except GraphError as exc:
        if exc.status == 400 and "already exist" in exc.message.lower():
            return ItemResult("existed", {"group": g["id"]})
        raise classify(exc, g["id"]) from exc
    return ItemResult("created", {"group": g["id"]})


def _app_role(ctx: PhaseContext, a: dict[str, Any]) -> ItemResult:
    principal = ctx.target["principalId"]
    graph = ctx.clients.graph
    body = {"principalId": principal, "resourceId": a["resourceId"], "appRoleId": a["appRoleId"]}
    try:
        created = graph.post(f"/servicePrincipals/{principal}/appRoleAssignments", body)
    except GraphError as exc:
        if exc.status in (400, 409) and _app_role_exists(ctx, a):
            return ItemResult("existed", {"resourceId": a["resourceId"], "appRoleId": a["appRoleId"]})
        raise classify(exc, a["id"]) from exc
    return ItemResult("created", {"id": (created or {}).get("id")})


def _app_role_exists(ctx: PhaseContext, a: dict[str, Any]) -> bool:
    principal = ctx.target["principalId"]
    try:
        existing = ctx.clients.graph.list(f"/servicePrincipals/{principal}/appRoleAssignments")
    except GraphError:
        return False
    return any(
        same_id(e.get("resourceId"), a["resourceId"]) and same_id(e.get("appRoleId"), a["appRoleId"])
        for e in existing
    )
