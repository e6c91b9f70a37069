"""Phase 5, verify: prove through the control plane that the new identity has everything.

Needs: the snapshot and the target. Changes in Azure: nothing (direct GETs and lists only, never
Resource Graph, which lags). Compares role assignments (role + scope + condition), federated
credentials (issuer/subject/audiences), group memberships, app role assignments, attachments (the
new id in each resource's identity block) and property references (no string still names the old
id/clientId). Anything missing is first taken for replication lag (Entra ID memberships and service
principals, ARM's eventual consistency): ``TransientError`` ``VerificationFailed`` listing every gap,
target = the first, so the engine retries with the verify phase's backoff, bounded by its
``max_attempts`` in ``shared/phases.py``; when those run out the move fails permanently with the same
code, the full list and target. Idempotency: a pure read.

Example::

    run(ctx).checked   # {"roleAssignments": 5, "federatedCredentials": 3, ...}
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from azure.core.exceptions import HttpResponseError

from activities._azure import (
    assignment_subscriptions,
    classify,
    get_resource,
    has_identity,
    identity_refs,
    same_id,
)
from activities.rebind import counterpart
from shared.azure_clients import GraphError
from shared.context import PhaseContext
from shared.errors import TransientError


@dataclass
class VerifyResult:
    checked: dict[str, int]


def run(ctx: PhaseContext) -> VerifyResult:
    snap, target = ctx.snapshot, ctx.target
    missing: list[tuple[str, str]] = []  # (what, target)
    try:
        _assignments(ctx, missing)
        creds = {
            (c.issuer, c.subject, tuple(sorted(c.audiences or [])))
            for c in ctx.clients.msi(target["subscriptionId"]).federated_identity_credentials.list(
                target["resourceGroup"], target["name"]
            )
        }
        for c in snap["federatedCredentials"]:
            if (c["issuer"], c["subject"], tuple(sorted(c["audiences"]))) not in creds:
                missing.append((f"federated credential {c['name']}", c["name"]))
        graph = ctx.clients.graph
        member_of = {
            g["id"].lower() for g in graph.list(f"/servicePrincipals/{target['principalId']}/memberOf")
        }
        for g in snap["groups"]:
            if g["id"].lower() not in member_of:
                missing.append((f"membership of group {g.get('displayName') or g['id']}", g["id"]))
        granted = graph.list(f"/servicePrincipals/{target['principalId']}/appRoleAssignments")
        for a in snap["appRoles"]:
            if not any(
                same_id(e.get("resourceId"), a["resourceId"]) and same_id(e.get("appRoleId"), a["appRoleId"])
                for e in granted
            ):
                missing.append((f"app role {a['appRoleId']} on {a['resourceId']}", a["id"]))
        _attachments(ctx, missing)
    except (HttpResponseError, GraphError) as exc:
        raise classify(exc, target["id"]) from exc
    if missing:
        listing = "; ".join(what for what, _ in missing)
        raise TransientError(
            "VerificationFailed", f"{len(missing)} missing on the new identity: {listing}", missing[0][1]
        )
    return VerifyResult(
        {
            "roleAssignments": len(snap["roleAssignments"]),
            "federatedCredentials": len(snap["federatedCredentials"]),
            "groups": len(snap["groups"]),
            "appRoles": len(snap["appRoles"]),
            "attachments": len(snap["attachments"]),
        }
    )


def _assignments(ctx: PhaseContext, missing: list[tuple[str, str]]) -> None:
    principal = ctx.target["principalId"]
    have: set[tuple[str, str, str]] = set()
    for sub in assignment_subscriptions(ctx.snapshot):
        for ra in ctx.clients.authorization(sub).role_assignments.list_for_subscription(
            filter=f"principalId eq '{principal}'"
        ):
            if same_id(ra.principal_id, principal):
                have.add(_assignment_key(str(ra.scope), str(ra.role_definition_id), ra.condition))
    for a in ctx.snapshot["roleAssignments"]:
        if _assignment_key(a["scope"], a["roleDefinitionId"], a.get("condition")) not in have:
            missing.append((f"role {a['roleName']} at {a['scope']}", a["id"]))


def _assignment_key(scope: str, role: str, condition: Any) -> tuple[str, str, str]:
    return (scope.lower().rstrip("/"), role.rsplit("/", 1)[-1].lower(), str(condition or ""))


def _attachments(ctx: PhaseContext, missing: list[tuple[str, str]]) -> None:
    old, new = ctx.snapshot["identity"], ctx.target
    for a in ctx.snapshot["attachments"]:
        resource_id = counterpart(ctx, a["id"])
        resource = get_resource(ctx.clients, resource_id)
        if resource is None:
            missing.append((f"resource {resource_id}", resource_id))
            continue
        if a["attached"] and not has_identity(resource, new["id"]):
            missing.append((f"attachment to {resource_id}", resource_id))
        stale = identity_refs(resource, old)
        for ref in stale:
            path = ".".join(str(p) for p in ref["path"])
            missing.append((f"reference {path} of {resource_id} still names the old identity", resource_id))
