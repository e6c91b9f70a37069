"""Phase 1, snapshot: record everything the identity has and is used by, and plan the move.

Needs: the source identity id and the request. Changes in Azure: NOTHING (reads only; the Resource
Graph query is a POST read) -- a dry run stops here. Idempotency: a pure read; running it again
replaces the stored snapshot. The engine persists the snapshot before anything else happens.

Reads: the identity; Resource Graph twice -- resources that use it (query in DESIGN.md) and ONE
query for the candidates of every kind of access (``Access.candidates``: vaults whose policies name
the principal, Cosmos DB accounts, flexible and SQL servers, AKS clusters with their OIDC issuer);
a direct GET of each resource that uses it (Resource Graph lags); then each kind of access in
``activities/access`` discovers its own entries (role assignments per subscription in scope with
their role definitions, federated credentials, Graph memberships and app roles, access policies,
Cosmos DB ``sqlRoleAssignments`` per account, server administrators, site settings) and names the
steps a person must take (``plan.actionsRequired``; ``plan.discovery`` counts what was read); the
target name and resource group; the assignment count of each subscription the copies land in (4,000
limit: a paged list, the plan's most expensive read, shared by moves for a short while through
``ctx.cache``, see ``_check_headroom``). A step throttled part-way keeps its own discovery's reads
for its re-run (``_Progress``); a move of a region decommission takes them from its fleet's.

Example::

    result = run(ctx)          # ctx: shared.context.PhaseContext
    result.plan["blocking"]    # [{"code": "PrivilegedRole", "message": ..., "target": <assignment id>}]
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from azure.core.exceptions import HttpResponseError
from azure.mgmt.resourcegraph.models import QueryRequest, QueryRequestOptions

from activities import fleet, preflight
from activities._azure import (
    classify,
    get_resource,
    identity_refs,
    same_id,
    user_identities,
)
from activities.access import KINDS, Found
from activities.access.base import ENTRY_RESOURCE_FIELDS
from shared.azure_clients import AzureClients, GraphError, resource_type, subscription_of
from shared.context import PhaseContext
from shared.errors import PermanentError, TransientError
from shared.side_by_side import side_by_side

MANAGEMENT_GROUP_LIMIT = 500
MG_PREFIX = "/providers/microsoft.management/managementgroups/"
MAX_CREDENTIALS = 20
VM_TYPES = {"microsoft.compute/virtualmachines", "microsoft.compute/virtualmachinescalesets"}
ARG_QUERY = (
    "Resources | where tostring(identity) contains '{id}' or tostring(properties) contains '{id}' "
    "or tostring(properties) contains '{client_id}' | project id, name, type, location, resourceGroup, "
    "subscriptionId | order by id asc"
)
# one query for the candidates of every kind of access (``Access.candidates``); the AKS issuer is
# projected so that only clusters a federated credential names are read
ARG_CANDIDATES = (
    "Resources | where {predicates} | project id, name, type, location, resourceGroup, subscriptionId, "
    "issuer = tostring(properties.oidcIssuerProfile.issuerURL) | order by id asc"
)


@dataclass
class SnapshotResult:
    snapshot: dict[str, Any]
    source: dict[str, Any]
    target: dict[str, Any]
    plan: dict[str, Any]


def run(ctx: PhaseContext) -> SnapshotResult:
    """A read Azure refuses (403, even of the identity itself) ends as a plan with a ``MissingPermission``
    blocker, not a failed step; the permission preflight runs after the plan (``activities/preflight.py``)."""
    result: SnapshotResult = preflight.guarded(_run, _refused)(ctx)
    if result.target:  # discovery went through: may the mover do what the plan says? (not in ``discover``)
        missing, unchecked = preflight.check(ctx, result.snapshot, result.target)
        result.plan["blocking"] = preflight.dedupe([*result.plan["blocking"], *missing])
        result.plan["warnings"] += unchecked
    return result


def _refused(ctx: PhaseContext, blocker: dict[str, Any]) -> SnapshotResult:
    ref = ctx.request.identity
    source = {
        "id": ref.id,
        "name": ref.name,
        "resourceGroup": ref.resource_group,
        "subscriptionId": ref.subscription_id,
    }
    plan = {"blocking": [blocker], "warnings": [], "actionsRequired": []}
    return SnapshotResult({"identity": source}, source, {}, plan)


def _run(ctx: PhaseContext, fresh: bool = False) -> SnapshotResult:
    """Discovery and the plan. ``fresh`` (cleanup's re-read): nothing remembered is used -- no resumed
    progress, the visible subscriptions listed again -- and the target's checks are left out."""
    ref = ctx.request.identity
    progress = _Progress(ctx, enabled=not fresh)
    try:
        # a move of a region decommission shares its fleet's discovery (read after this step began);
        # cleanup knows the identity already: it reads it once, when its share is ready
        known = ctx.snapshot.get("identity") if fresh else None
        if known:
            shared = fleet.lookup(ctx, known, "cleanup")
            source = _identity(ctx)
            if shared is not None and not same_id(source["principalId"], known["principalId"]):
                shared = None  # not the identity the snapshot knew (deleted and made again)
        else:
            source = _identity(ctx)
            progress.principal = source["principalId"]
            shared = fleet.lookup(ctx, source, "cleanup" if fresh else "snapshot")
        assignments: list[dict[str, Any]] | None = None
        if shared is not None:
            subs, rows, candidates = shared["subscriptions"], shared["rows"], shared["candidates"]
            assignments = shared["assignments"]
            if shared.get("counts"):  # the run's listings counted them: headroom reads no cache
                ctx = dataclasses.replace(ctx, cache=fleet.Known(ctx.cache, shared["counts"]))
        else:
            subs = progress.step("subscriptions", lambda: _subscriptions(ctx, fresh))
            # Resource Graph first: its quota (15 / 5 s) throttles most, and a throttled query ends this
            # step (re-run after Retry-After, resuming from ``progress``)
            query = ARG_QUERY.format(id=source["id"], client_id=source["clientId"])
            rows = progress.step("rows", lambda: _query(ctx.clients, subs, query))
            candidates = progress.step(
                "candidates", lambda: _query(ctx.clients, subs, _candidates_query(source))
            )
        attachments = _attachments(ctx.clients, rows, source, ctx.settings.step_width)
        found = Found(source, subs, rows=candidates, attachments=attachments, assignments=assignments)
        # each kind reads apart from the others: side by side; reads Azure refused are plan
        # blockers, not a crash, kept per kind so that their order is the kinds' order
        refusals: list[list[dict[str, Any]]] = [[] for _ in KINDS]
        entries = side_by_side(
            [
                partial(preflight.discover, ctx, kind, found, no)
                for kind, no in zip(KINDS, refusals, strict=True)
            ],
            ctx.settings.step_width,
        )
        discovered = {kind.key: e for kind, e in zip(KINDS, entries, strict=True)}
        refused = [blocker for no in refusals for blocker in no]
        found.target = _target(ctx, source, attachments)
        actions = [a for kind in KINDS for a in kind.actions(ctx, discovered[kind.key], found)]
    except (HttpResponseError, GraphError) as exc:
        progress.keep()
        raise classify(exc, ref.id) from exc
    except TransientError as exc:
        if exc.code != "FleetDiscoveryRunning":  # a wait for the fleet's run is not a throttle: the
            progress.keep()  # share comes from the run, and nothing of this step's own is worth keeping
        raise
    snapshot = {
        "identity": source,
        **discovered,
        "attachments": attachments,
        "subscriptions": subs,
    }
    target = found.target
    snapshot["target"] = target
    plan = _plan(ctx, snapshot, target, fresh)
    plan["blocking"] = preflight.dedupe([*refused, *plan["blocking"]])
    plan["actionsRequired"] = actions
    plan["discovery"] = dict(sorted(found.counts.items()))
    progress.clear()
    return SnapshotResult(snapshot, {k: source[k] for k in source if k != "tags"}, target, plan)


PROGRESS_MAX_AGE = 900.0  # a resumed snapshot uses reads of its own earlier runs up to this old


class _Progress:
    """What a throttled snapshot step already read of its own discovery (the subscriptions, each
    Resource Graph answer), kept in ``ctx.cache`` under the move's id and round so that its re-run
    (after Retry-After) resumes instead of reading it all again. Written only when Azure throttled
    the step, not when it waits for its fleet's discovery; read only when the step comes to its
    first such read, so a move whose share of a fleet discovery is ready reads nothing (a
    decommission's moves: no storage at all); cleared when the snapshot is made, only if it was
    there. The identity is read again at every visit (one ARM read): what was kept for another
    principal (the identity deleted and made again) is not used. Never used by cleanup's re-read
    (``fresh``), whose data must be read after the commit."""

    def __init__(self, ctx: PhaseContext, enabled: bool) -> None:
        self.ctx, self.enabled = ctx, enabled
        self.key = f"snapshotProgress|{ctx.move_id}|{ctx.epoch}"
        self.principal = ""  # the identity's, read at this visit
        self.done: dict[str, Any] = {}
        self.loaded = False
        self.resumed = False
        self.new = False

    def step(self, name: str, read: Callable[[], Any]) -> Any:
        if self.enabled and not self.loaded:
            self.loaded = True
            kept = self.ctx.cache.get(self.key, PROGRESS_MAX_AGE)
            if isinstance(kept, dict):
                self.resumed = True  # something is there to clear, used or not
                if kept.get("principalId") == self.principal:
                    self.done = {k: v for k, v in kept.items() if k != "principalId"}
        if name not in self.done:
            self.done[name] = read()
            self.new = True
        return self.done[name]

    def keep(self) -> None:
        if self.enabled and self.new:
            self.ctx.cache.put(self.key, {**self.done, "principalId": self.principal})

    def clear(self) -> None:
        if self.enabled and self.resumed:
            self.ctx.cache.put(self.key, None)


def _identity(ctx: PhaseContext) -> dict[str, Any]:
    ref = ctx.request.identity
    try:
        identity = ctx.clients.msi(ref.subscription_id).user_assigned_identities.get(
            ref.resource_group, ref.name
        )
    except HttpResponseError as exc:
        if exc.status_code == 404:
            raise PermanentError("IdentityNotFound", f"{ref.id} does not exist", "sourceIdentityId") from exc
        raise classify(exc, ref.id) from exc
    return {
        "id": str(identity.id),
        "name": str(identity.name),
        "resourceGroup": ref.resource_group,
        "subscriptionId": ref.subscription_id,
        "location": str(identity.location).replace(" ", "").lower(),
        "principalId": str(identity.principal_id),
        "clientId": str(identity.client_id),
        "tenantId": str(identity.tenant_id),
        "tags": dict(identity.tags or {}),
        "isolationScope": str(identity.isolation_scope or "None"),
    }


def _candidates_query(source: dict[str, Any]) -> str:
    fields = {"principal_id": source["principalId"], "client_id": source["clientId"], "id": source["id"]}
    predicates = " or ".join(f"({kind.candidates.format(**fields)})" for kind in KINDS if kind.candidates)
    return ARG_CANDIDATES.format(predicates=predicates)


SUBSCRIPTIONS_MAX_AGE = 300.0


def _subscriptions(ctx: PhaseContext, fresh: bool = False) -> list[str]:
    """Where to look: every subscription the mover can see, plus the source's and the resourceMap's.

    Discovery reads beyond ``IDMOVE_ALLOWED_SUBSCRIPTIONS`` on purpose: a role assignment or a
    resource using the identity in a subscription outside it must block the plan (the move may not
    write there), not be missed -- cleanup would delete an identity that is still in use.

    The visible list (tenant-level ``GET /subscriptions``) is the same for every move: a snapshot uses
    the one this process read in the last ``SUBSCRIPTIONS_MAX_AGE`` seconds. A subscription created
    since that already grants the identity something is then left out of the plan, and found by
    cleanup's re-read (``fresh``: listed again), which copies it before anything is deleted.
    """
    request = ctx.request
    mapped = [subscription_of(i) for i in [*request.resource_map, *request.resource_map.values()]]
    extra = [request.identity.subscription_id.lower(), *(s for s in mapped if s)]
    try:
        visible: list[str] | None = ctx.clients.subscription_ids(
            request.identity.subscription_id, 0 if fresh else SUBSCRIPTIONS_MAX_AGE
        )
    except HttpResponseError as exc:
        if exc.status_code not in (401, 403):
            raise
        visible = None
    return subscriptions_from(ctx, extra, visible)


def subscriptions_from(ctx: PhaseContext, extra: list[str], visible: list[str] | None) -> list[str]:
    """``_subscriptions`` from the visible list (``None``: the mover may not list them, so the
    allow-list is all it knows) and the move's own (source, resourceMap)."""
    seen = sorted(ctx.settings.allowed_subscriptions) if visible is None else visible
    return sorted({*(s.lower() for s in extra), *seen})


def _query(clients: AzureClients, subs: list[str], query: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    skip_token: str | None = None
    while True:
        options = QueryRequestOptions(skip_token=skip_token, top=1000)
        response = clients.resource_graph().resources(
            QueryRequest(subscriptions=subs, query=query, options=options)
        )
        data = response.data
        rows += data if isinstance(data, list) else []
        skip_token = response.skip_token
        if not skip_token:
            return rows


def _attachments(
    clients: AzureClients, rows: list[dict[str, Any]], source: dict[str, Any], width: int
) -> list[dict[str, Any]]:
    """Confirm each resource Resource Graph found (``ARG_QUERY`` rows) with a direct GET (it lags
    ARM), the GETs side by side."""
    found = []
    ids = [str(row["id"]) for row in rows if not same_id(str(row["id"]), source["id"])]
    resources = side_by_side([partial(get_resource, clients, resource_id) for resource_id in ids], width)
    for resource_id, resource in zip(ids, resources, strict=True):
        if resource is None:
            continue  # deleted since Resource Graph indexed it
        attached = any(same_id(k, source["id"]) for k in user_identities(resource))
        refs = identity_refs(resource, source)
        if not attached and not refs:
            continue
        identity_block = resource.get("identity") or {}
        found.append(
            {
                "id": str(resource.get("id") or resource_id),
                "type": resource_type(resource_id),
                "location": str(resource.get("location", "")).replace(" ", "").lower(),
                "attached": attached,
                "identityType": identity_block.get("type"),
                "userAssignedIdentities": sorted(user_identities(resource)),
                "refs": refs,
            }
        )
    return found


def _target(ctx: PhaseContext, source: dict[str, Any], attachments: list[dict[str, Any]]) -> dict[str, Any]:
    request = ctx.request
    region = request.target_region
    group = request.target_resource_group or source["resourceGroup"]
    vm = any(a["type"].lower() in VM_TYPES for a in attachments)
    if request.target_name:
        name = request.target_name
    elif group.lower() != source["resourceGroup"].lower():
        name = source["name"]
    else:
        limit = 24 if vm else 128
        suffix = f"-{region}"
        name = source["name"][: max(3, limit - len(suffix))] + suffix
    sub = source["subscriptionId"]
    scope = source["isolationScope"] if request.isolation_scope == "Inherit" else request.isolation_scope
    return {
        "id": f"/subscriptions/{sub}/resourceGroups/{group}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}",
        "name": name,
        "resourceGroup": group,
        "subscriptionId": sub,
        "location": region,
        "isolationScope": scope,
    }


def _plan(
    ctx: PhaseContext, snapshot: dict[str, Any], target: dict[str, Any], fresh: bool = False
) -> dict[str, Any]:
    """The plan's rules. ``fresh`` (cleanup's re-read, which keeps only ``RECHECKED_RULES``): the
    target's name and resource group and the assignment headroom are not checked (the target exists
    by then, and the copies were made)."""
    blocking: list[dict[str, Any]] = []
    warnings: list[dict[str, Any]] = []
    source, clients, request = snapshot["identity"], ctx.clients, ctx.request

    def block(code: str, message: str, target_: str | None) -> None:
        blocking.append({"code": code, "message": message, "target": target_})

    def warn(code: str, message: str, target_: str | None) -> None:
        warnings.append({"code": code, "message": message, "target": target_})

    if target["location"] == source["location"]:
        block("TargetRegionIsSource", f"the identity is already in {source['location']}", "targetRegion")
    if not fresh:
        _check_target_name(ctx, target, block)
    if len(snapshot["federatedCredentials"]) > MAX_CREDENTIALS:
        block(
            "TooManyCredentials", f"more than {MAX_CREDENTIALS} federated credentials", "federatedCredentials"
        )
    for assignment in snapshot["roleAssignments"]:
        if assignment["privileged"] and not request.allow_privileged_roles:
            block(
                "PrivilegedRole",
                f"{assignment['roleName']} at {assignment['scope']} can grant access; set allowPrivilegedRoles",
                assignment["id"],
            )
        sub = subscription_of(assignment["scope"])
        if sub and not ctx.settings.subscription_allowed(sub):
            block(
                "SubscriptionNotAllowed", f"{assignment['scope']} is outside the allow-list", assignment["id"]
            )
    resource_map = {k.lower(): v for k, v in request.resource_map.items()}
    vm_attached = False
    for attachment in snapshot["attachments"]:
        counterpart = resource_map.get(attachment["id"].lower(), attachment["id"])
        for touched in dict.fromkeys([attachment["id"], counterpart]):  # cleanup writes the first
            if not ctx.settings.subscription_allowed(subscription_of(touched)):
                block("SubscriptionNotAllowed", f"{touched} is outside the allow-list", attachment["id"])
        vm_attached |= attachment["type"].lower() in VM_TYPES
        if target["isolationScope"] == "Regional" and attachment["attached"]:
            location = attachment["location"]
            if counterpart != attachment["id"]:
                mapped = get_resource(clients, counterpart)
                location = str((mapped or {}).get("location", "")).replace(" ", "").lower()
            if location != target["location"]:
                block(
                    "CrossRegionAttachment",
                    f"a Regional identity in {target['location']} cannot be assigned to {counterpart} in "
                    f"{location or 'an unknown region'}; map it to a resource in the target region (resourceMap)",
                    attachment["id"],
                )
    if vm_attached and len(target["name"]) > 24:
        warn(
            "NameTooLongForVm",
            "names over 24 characters break assignment to VMs / VM scale sets",
            "targetName",
        )
    for kind in KINDS:
        if not kind.copy_kind:
            continue
        for entry in snapshot.get(kind.key) or []:
            touched = next((entry[f] for f in ENTRY_RESOURCE_FIELDS if entry.get(f)), None)
            if (
                touched
                and not entry.get("reportOnly")
                and not ctx.settings.subscription_allowed(subscription_of(touched))
            ):
                block(
                    "SubscriptionNotAllowed", f"{touched} is outside the allow-list ({kind.title})", touched
                )
    # a refused count (no read at a management group) is a blocker; the rest of the plan still shows
    if not fresh:
        preflight.reading(block, _check_headroom, ctx, snapshot["roleAssignments"], block)
    return {"blocking": blocking, "warnings": warnings}


def _check_target_name(ctx: PhaseContext, target: dict[str, Any], block: Any) -> None:
    clients = ctx.clients
    msi = clients.msi(target["subscriptionId"])
    try:
        existing = msi.user_assigned_identities.get(target["resourceGroup"], target["name"])
    except HttpResponseError as exc:
        if exc.status_code != 404:
            raise classify(exc, target["id"]) from exc
        existing = None
    if existing is not None and (existing.tags or {}).get("idmove-move") != ctx.move_id:
        block("TargetNameTaken", f"{target['id']} already exists", "targetName")
    try:
        exists = clients.resources(target["subscriptionId"]).resource_groups.check_existence(
            target["resourceGroup"]
        )
    except HttpResponseError as exc:
        raise classify(exc, target["resourceGroup"]) from exc
    if not exists:
        block(
            "TargetResourceGroupNotFound",
            f"resource group {target['resourceGroup']} does not exist",
            "targetResourceGroup",
        )


def _check_headroom(ctx: PhaseContext, assignments: list[dict[str, Any]], block: Any) -> None:
    """Room for the copies: ``IDMOVE_ROLE_ASSIGNMENT_LIMIT`` (4,000) per subscription, 500 per management group.

    The copies land at the source assignments' scopes, so only the subscriptions (and management
    groups) that gain assignments are counted, each for the number it gains (the old ones are
    deleted only at cleanup, so both exist at once). Cost: ARM has no count, so counting is a paged
    list of every assignment in the subscription -- the plan's most expensive read, and O(N) per
    move in a fan-out of N moves. So a complete count is kept in ``ctx.cache`` for
    ``IDMOVE_ROLE_ASSIGNMENT_COUNT_TTL_SECONDS`` (120 s) for every move and instance. A cached count
    is an estimate: it only ever lets a move PASS, and only when the copies fit with ``HEADROOM_MARGIN``
    (10% of the limit) to spare; closer than that, or over, the count is taken live, and a blocker
    always rests on a live count. Moves granting meanwhile are not in the estimate: ARM still refuses
    (``RoleAssignmentLimitExceeded``, the grant fails) if the margin was not enough. The live count
    stops as soon as the limit is proven exceeded; proving there IS room needs the whole list. A move
    with no assignments reads nothing.
    """
    by_sub: Counter[str] = Counter()
    by_group: Counter[str] = Counter()
    for assignment in assignments:
        sub = subscription_of(assignment["scope"])
        if sub:
            by_sub[sub] += 1
        elif assignment["scope"].lower().startswith(MG_PREFIX):
            by_group[assignment["scope"].rstrip("/")] += 1
    limit = ctx.settings.role_assignment_limit
    for sub, adding in sorted(by_sub.items()):
        if not ctx.settings.subscription_allowed(sub):
            continue  # already blocked; never read outside the allow-list
        count = _over_limit(
            ctx,
            f"roleAssignmentCount|{sub}",
            adding,
            limit,
            partial(_count_subscription, ctx, sub, adding, limit),
        )
        if count is not None:
            block(
                "RoleAssignmentLimit",
                f"subscription {sub} has at least {count} role assignments; {adding} more exceed {limit}",
                f"/subscriptions/{sub}",
            )
    for group, adding in sorted(by_group.items()):
        count = _over_limit(
            ctx,
            f"roleAssignmentCount|{group.lower()}",
            adding,
            MANAGEMENT_GROUP_LIMIT,
            partial(_count_group, ctx, group),
        )
        if count is not None:
            block(
                "RoleAssignmentLimit",
                f"management group {group} has {count} role assignments; {adding} more exceed {MANAGEMENT_GROUP_LIMIT}",
                group,
            )


HEADROOM_MARGIN = 0.10


def _over_limit(
    ctx: PhaseContext, key: str, adding: int, limit: int, count_live: Callable[[], tuple[int, bool]]
) -> int | None:
    """The (live) count when ``adding`` more exceed ``limit``, else ``None``; see ``_check_headroom``."""
    cached = ctx.cache.get(key, ctx.settings.role_assignment_count_ttl)
    if isinstance(cached, int) and cached + adding <= limit * (1 - HEADROOM_MARGIN):
        return None
    count, complete = count_live()
    if complete:
        ctx.cache.put(key, count)
    return count if count + adding > limit else None


def _count_subscription(ctx: PhaseContext, sub: str, adding: int, limit: int) -> tuple[int, bool]:
    """Assignments made in ``sub`` (not the inherited management-group ones): (count, complete).
    Stops early, incomplete, once ``adding`` more are proven to exceed ``limit``."""
    count = 0
    for ra in ctx.clients.authorization(sub).role_assignments.list_for_subscription():
        count += subscription_of(str(ra.scope)) == sub
        if count + adding > limit:
            return count, False
    return count, True


def _count_group(ctx: PhaseContext, group: str) -> tuple[int, bool]:
    """Assignments made at the management group itself: (count, complete)."""
    auth = ctx.clients.authorization(ctx.request.identity.subscription_id)
    listed = auth.role_assignments.list_for_scope(group, filter="atScope()")
    return sum(1 for ra in listed if same_id(ra.scope, group)), True


def discover(ctx: PhaseContext) -> SnapshotResult:
    """The source's access as it is now: the snapshot and the plan ``run`` would make of it (cleanup
    re-reads it before it deletes anything: ``activities/cleanup.py`` ``reconcile``). Reads only. A
    read Azure refused is an error here, not an empty kind: reconcile must not take "could not
    read" for "nothing new"."""
    result = _run(ctx, fresh=True)
    refused = [b for b in result.plan["blocking"] if b["code"] == preflight.CODE]
    if refused:
        raise PermanentError(preflight.CODE, refused[0]["message"], refused[0]["target"])
    return result
