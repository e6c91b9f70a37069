"""The plan's permission preflight: may the mover do everything this move will do? (issue 9)

Called by snapshot after discovery; reads only. Nothing is written before the plan is clean, so a
missing right shows up here, in the plan (and a dry run), not as ``AuthorizationFailed`` half-way
through rebind.

What it checks, against the one list in ``shared/permissions.py``:

* **ARM actions per scope the move writes** (:func:`needs`): the target resource group, the source
  identity, each role-assignment scope, each resource to rebind (and its ``resourceMap`` counterpart),
  each data-plane grant's resource (:data:`DATA_PLANE`), each cleanup delete. One call of ARM's
  permissions API (``GET {scope}/providers/Microsoft.Authorization/permissions``, 2022-04-01) per
  distinct scope, kept for the rest of the move's plan (:class:`Rights`) and by the process for
  ``PERMISSIONS_MAX_AGE`` (every move of a fleet asks at its subscription; a kept answer is used
  only to say yes, a no is asked again). An action held over the scope's subscription is held over
  the scope (assignments are inherited and only add): the scope is then not read at all, which
  spares a fleet's snapshots ~5 reads each (``Rights.held_above``); an action is held when one
  returned entry grants it in ``actions`` and that same entry does not take it away in ``notActions``
  (ARM's wildcards, case-insensitive). Management groups have no permissions API: there the mover's
  own role assignments (``atScope() and assignedTo(me)``) and their role definitions are read instead.
* **ABAC conditions** on the mover's assignments that grant ``roleAssignments/write|delete`` (the
  infra's conditioned RBAC Administrator): the permissions API does not show them, so they are read from
  the assignments and evaluated (``activities/role_conditions.py``) for each copy and each cleanup
  delete; a privileged role the condition refuses is a blocker.
* **Microsoft Graph application permissions**: the mover's own service principal's app role
  assignments (``GET /servicePrincipals/{me}/appRoleAssignments``) against ``permissions.graph_needed``.
* **Refused reads** (:func:`refused_read`): a 403 while snapshot reads (even the identity itself)
  becomes a ``MissingPermission`` blocker naming the action and scope ARM named, not a crash.

Every finding is a plan blocker ``{"code": "MissingPermission", "message": <names action and scope>,
"target": <scope>}``. Who "me" is: the ``oid`` of the mover's own token (``AzureClients.principal_id``).

Example::

    blocking, warnings = check(ctx, snapshot, target)
    blocking[0]["message"]  # "the mover (1d0e…) may not perform 'Microsoft.Web/sites/write' over '/subscriptions/…/sites/web' (rebind: …)"
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache, partial
from typing import Any

from azure.core.exceptions import HttpResponseError
from azure.core.rest import HttpRequest

from activities._azure import classify, counterpart_of, error_code, error_message, role_definition
from activities.access import KINDS, Access, Found
from activities.role_conditions import Unreadable, allows
from shared import permissions as perms
from shared.azure_clients import GraphError, resource_type, subscription_of
from shared.context import PhaseContext
from shared.errors import PermanentError

CODE = "MissingPermission"
PERMISSIONS_MAX_AGE = 60.0  # the mover's own rights at a scope, kept by the process (``Rights.entries``)
API = "2022-04-01"
MG_PREFIX = "/providers/microsoft.management/managementgroups/"
RA_WRITE = f"{perms.RA}/write"
RA_DELETE = f"{perms.RA}/delete"
# where each kind of access that copies writes: snapshot key -> (entry field naming the resource, scope kind)
DATA_PLANE: dict[str, tuple[str, str]] = {
    "keyVaultAccessPolicies": ("vault", "keyVault"),
    "cosmosRoleAssignments": ("account", "cosmosAccount"),
    "flexibleServerAdmins": ("server", "postgresFlexibleServer"),
    "appSettings": ("site", "siteSettings"),
}
# kinds whose writes are checked elsewhere: role assignments (scopes), credentials (target group), Graph
CHECKED_ELSEWHERE = {"roleAssignments", "federatedCredentials", "groups", "appRoles"}
_REFUSAL = re.compile(r"perform action '(?P<action>[^']+)' over scope '(?P<scope>[^']+)'", re.IGNORECASE)
_LINKED = re.compile(r"perform action '(?P<action>[^']+)' on the linked scope\(s\) '(?P<scope>[^']+)'", re.I)


@dataclass(frozen=True)
class Need:
    scope: str
    action: str
    why: str


def blocker(message: str, target: str | None) -> dict[str, Any]:
    return {"code": CODE, "message": message, "target": target}


# --- what the move will do, per scope (small named rules) ----------------------------------------------
def managed_scope_needs(snapshot: dict[str, Any]) -> list[Need]:
    """A blanket read in every subscription discovery looks at: Resource Graph silently leaves out what the
    mover may not read, and a resource it cannot see is one it would not rebind."""
    return [
        Need(f"/subscriptions/{sub}", n.action, f"{n.phases}: {n.why}")
        for sub in snapshot.get("subscriptions") or []
        for n in _arm("managedScope")
    ]


def target_group_needs(target: dict[str, Any]) -> list[Need]:
    group = f"/subscriptions/{target['subscriptionId']}/resourceGroups/{target['resourceGroup']}"
    return [Need(group, n.action, f"{n.phases}: {n.why}") for n in _arm("targetResourceGroup")]


def source_identity_needs(snapshot: dict[str, Any]) -> list[Need]:
    identity = snapshot["identity"]["id"]
    attached = any(a.get("attached") for a in snapshot.get("attachments") or [])
    return [
        Need(identity, n.action, f"{n.phases}: {n.why}")
        for n in _arm("sourceIdentity")
        if attached or not n.action.endswith("/assign/action")
    ]


def role_assignment_needs(snapshot: dict[str, Any]) -> list[Need]:
    return [
        Need(a["scope"], n.action, f"{n.phases}: {n.why} ({a.get('roleName')})")
        for a in snapshot.get("roleAssignments") or []
        for n in _arm("roleAssignmentScope")
    ]


def rebind_needs(ctx: PhaseContext, snapshot: dict[str, Any]) -> list[Need]:
    """Each resource rebind writes (the counterpart) and cleanup detaches (the resource itself)."""
    found = []
    for a in snapshot.get("attachments") or []:
        counterpart = counterpart_of(ctx.request.resource_map, a["id"])
        written = [counterpart] + ([a["id"]] if a.get("attached") and counterpart != a["id"] else [])
        for resource in written:
            rtype = resource_type(resource)
            found += [Need(resource, n.action.replace("{type}", rtype), f"{n.phases}: {n.why}")
                      for n in _arm("rebindResource")]  # fmt: skip
    return found


def data_plane_needs(ctx: PhaseContext, snapshot: dict[str, Any]) -> list[Need]:
    found = []
    for key, (field, scope_kind) in DATA_PLANE.items():
        for entry in snapshot.get(key) or []:
            if entry.get("reportOnly") or not entry.get(field):
                continue
            resource = counterpart_of(ctx.request.resource_map, entry[field])
            rtype = resource_type(resource)
            found += [Need(resource, n.action.replace("{type}", rtype), f"{n.phases}: {n.why}")
                      for n in _arm(scope_kind)]  # fmt: skip
    return found


def needs(ctx: PhaseContext, snapshot: dict[str, Any], target: dict[str, Any]) -> list[Need]:
    return [
        *managed_scope_needs(snapshot),
        *target_group_needs(target),
        *source_identity_needs(snapshot),
        *role_assignment_needs(snapshot),
        *rebind_needs(ctx, snapshot),
        *data_plane_needs(ctx, snapshot),
    ]


def _arm(scope_kind: str) -> list[perms.ArmNeed]:
    return [n for n in perms.ARM if n.scope == scope_kind]


# --- what the mover holds ----------------------------------------------------------------------------
@lru_cache(maxsize=1024)
def _pattern(text: str) -> re.Pattern[str]:
    escaped = re.escape(text.strip().lower())
    return re.compile(escaped.replace(r"/\*/", "/(?:.*/)?").replace(r"\*", ".*"))


def matches(pattern: str, action: str) -> bool:
    """ARM's match of an ``actions``/``notActions`` entry: case-insensitive, ``*`` = any run of characters, and
    ``/*/`` also matches a single ``/`` (Managed Identity Operator's ``…/userAssignedIdentities/*/assign/action``
    covers ``…/userAssignedIdentities/assign/action``)."""
    return _pattern(pattern).fullmatch(action.lower()) is not None


def holds(entries: list[dict[str, Any]], action: str) -> bool:
    """One entry grants ``action`` in ``actions`` and the same entry does not take it back in ``notActions``."""
    return any(
        any(matches(p, action) for p in e.get("actions") or [])
        and not any(matches(p, action) for p in e.get("notActions") or [])
        for e in entries
    )


class Rights:
    """The mover's rights, read once per distinct scope during one plan."""

    def __init__(self, ctx: PhaseContext, me: str) -> None:
        self.ctx, self.me = ctx, me
        self._entries: dict[str, list[dict[str, Any]] | None] = {}
        self._own: dict[str, list[tuple[dict[str, Any], list[dict[str, Any]]]] | None] = {}
        self._definitions: dict[str, list[dict[str, Any]]] = {}
        self._kept: set[str] = set()
        self._unreadable: set[str] = set()  # subscriptions whose answer ``held_above`` could not read
        self.calls = 0
        self.refused: list[dict[str, Any]] = []  # reads of the mover's own rights that were refused

    def _tolerant(self, read: Callable[[str], Any], scope: str) -> Any:
        """A refused read of its own rights at one scope is a blocker for that scope; the others go on."""
        try:
            return read(scope)
        except HttpResponseError as exc:
            blocked = refused_read(exc)
            if blocked is None:
                raise
            self.refused.append(blocked)
            return None

    def entries(self, scope: str, fresh: bool = False) -> list[dict[str, Any]] | None:
        """Permission entries at ``scope`` (``None``: the scope does not exist, nothing to check).

        The permissions API's answer at a scope is the same for every move (the subscription, a
        shared resource group or vault): this process keeps it for ``PERMISSIONS_MAX_AGE`` seconds
        (``AzureClients.memo``), and uses a kept answer only to say yes -- an action it does not
        hold is asked again (``fresh``), so a right granted after a blocked plan counts at once."""
        key = scope.lower().rstrip("/")
        if fresh:
            self._entries.pop(key, None)
        if key not in self._entries:
            if key.startswith(MG_PREFIX):
                own = self._own_listed(scope)
                self._entries[key] = (
                    None if own is None else [p for _, b in own for p in b] + self.unexplained()
                )
            else:
                self._entries[key] = self._tolerant(partial(self._remembered, fresh=fresh), scope)
        return self._entries[key]

    def held_above(self, scope: str, action: str) -> bool:
        """``action`` is held over the subscription ``scope`` lies in: then it is held over ``scope``
        too, without a read of its own (role assignments are inherited and only ever add: every entry
        the subscription's answer has, a scope inside it has as well). That answer is the one every
        move of a fleet reads anyway (kept by the process, used only to say yes); a refused or absent
        answer says nothing here (and is not asked again in this plan), and the scope is read as
        before. It assumes nothing inside a subscription takes away what the subscription grants:
        role assignments cannot; a deny assignment (a managed application, a deployment stack) can,
        and whether the per-scope answer would have shown one is not established here -- such a
        write then fails with ``AuthorizationFailed`` in its phase rather than in the plan."""
        sub = subscription_of(scope)
        top = f"/subscriptions/{sub}" if sub else ""
        if not top or scope.lower().rstrip("/") == top.lower():
            return False
        key = top.lower()
        if key in self._unreadable:
            return False
        if key not in self._entries:
            try:
                self._entries[key] = self._remembered(top, fresh=False)
            except HttpResponseError:
                self._unreadable.add(key)  # asked once per plan: not again for every scope in it
                return False  # not recorded: the scope's own read reports what is refused
        entries = self._entries[key]
        return entries is not None and holds(entries, action)

    def kept(self, scope: str) -> bool:
        """The entries at ``scope`` came from an earlier plan's read (see ``entries``)."""
        return scope.lower().rstrip("/") in self._kept

    def _remembered(self, scope: str, fresh: bool) -> list[dict[str, Any]] | None:
        key = scope.lower().rstrip("/")
        read_now: list[bool] = []

        def read() -> list[dict[str, Any]] | None:
            read_now.append(True)
            return self._permissions_api(scope)

        found: list[dict[str, Any]] | None = self.ctx.clients.memo(
            f"permissions|{key}", 0 if fresh else PERMISSIONS_MAX_AGE, read
        )
        if read_now:
            self._kept.discard(key)
        else:
            self._kept.add(key)
        return found

    def _permissions_api(self, scope: str) -> list[dict[str, Any]] | None:
        client = self.ctx.clients.resources(
            subscription_of(scope) or self.ctx.request.identity.subscription_id
        )
        base = self.ctx.settings.arm_endpoint
        url: str | None = (
            f"{base}{scope.rstrip('/')}/providers/Microsoft.Authorization/permissions?api-version={API}"
        )
        found: list[dict[str, Any]] = []
        while url:
            self.calls += 1
            response = client.send_request(HttpRequest("GET", url))
            if response.status_code == 404:
                return None
            response.raise_for_status()
            page = response.json()
            found += list(page.get("value") or [])
            url = page.get("nextLink")
        return found

    def unexplained(self) -> list[dict[str, Any]]:
        """Entries the permissions API shows at the source subscription that none of the mover's own
        assignments there explain (e.g. an unrestricted caller): they come from somewhere the mover cannot
        list, so they are assumed to hold at its management groups too."""
        sub = f"/subscriptions/{self.ctx.request.identity.subscription_id}"
        left = [_shape(e) for e in self.entries(sub) or []]
        for _, blocks in self.own(sub):
            for block in blocks:
                if _shape(block) in left:
                    left.remove(_shape(block))
        return [{"actions": list(a), "notActions": list(n)} for a, n in left]

    def own(self, scope: str) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
        """The mover's role assignments at or above ``scope`` (directly or via groups), with their roles'
        permission entries: where conditions live. Empty when that read is refused (recorded)."""
        return self._own_listed(scope) or []

    def _own_listed(self, scope: str) -> list[tuple[dict[str, Any], list[dict[str, Any]]]] | None:
        key = scope.lower().rstrip("/")
        if key not in self._own:
            self._own[key] = self._tolerant(self._own_at, scope)
        return self._own[key]

    def _own_at(self, scope: str) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
        auth = self.ctx.clients.authorization(
            subscription_of(scope) or self.ctx.request.identity.subscription_id
        )
        listed = list(
            auth.role_assignments.list_for_scope(scope, filter=f"atScope() and assignedTo('{self.me}')")
        )
        self.calls += 1
        return [
            ({"condition": ra.condition, "role": str(ra.role_definition_id)},
             self._definition(str(ra.role_definition_id), scope))
            for ra in listed
        ]  # fmt: skip

    def _definition(self, definition_id: str, scope: str) -> list[dict[str, Any]]:
        key = definition_id.rsplit("/", 1)[-1].lower()
        if key not in self._definitions:
            sub = subscription_of(scope) or self.ctx.request.identity.subscription_id
            self._definitions[key] = role_definition(self.ctx.clients, sub, definition_id)["permissions"]
        return self._definitions[key]


def _shape(entry: dict[str, Any]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    return (
        tuple(sorted(a.lower() for a in entry.get("actions") or [])),
        tuple(sorted(a.lower() for a in entry.get("notActions") or [])),
    )


# --- the checks ----------------------------------------------------------------------------------------
def missing_actions(rights: Rights, wanted: list[Need]) -> Iterator[dict[str, Any]]:
    seen: set[tuple[str, str]] = set()
    for need in wanted:
        key = (need.scope.lower().rstrip("/"), need.action.lower())
        if key in seen:
            continue
        seen.add(key)
        if rights.held_above(need.scope, need.action):
            continue
        entries = rights.entries(need.scope)
        if entries is not None and not holds(entries, need.action) and rights.kept(need.scope):
            entries = rights.entries(need.scope, fresh=True)  # a kept answer only ever says yes
        if entries is not None and not holds(entries, need.action):
            yield blocker(
                f"the mover ({rights.me}) may not perform '{need.action}' over '{need.scope}' ({need.why})",
                need.scope,
            )


def refused_by_condition(rights: Rights, snapshot: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Copies (write, ``@Request``) and cleanup deletes (``@Resource``) the mover's conditioned
    role-assignment rights refuse. Only where every assignment granting the action carries a condition."""
    for a in snapshot.get("roleAssignments") or []:
        attributes = {"RoleDefinitionId": [a["roleDefinitionId"]], "PrincipalType": ["ServicePrincipal"]}
        for action in (RA_WRITE, RA_DELETE):
            if not rights.held_above(a["scope"], action):  # held above: held at the scope too
                entries = rights.entries(a["scope"])
                if entries is None or not holds(entries, action):
                    continue  # already a plain MissingPermission (or nothing to check)
            try:
                own = rights.own(a["scope"])
            except HttpResponseError as exc:
                if exc.status_code == 404:
                    continue  # the scope is gone (so is the assignment): nothing to check
                raise
            granting = [g for g, blocks in own if holds(blocks, action)]
            if not granting or any(not g["condition"] for g in granting):
                continue
            try:
                if any(allows(g["condition"], action, attributes) for g in granting):
                    continue
            except Unreadable:
                continue  # cannot tell: ARM decides at grant time
            verb = "copy" if action == RA_WRITE else "delete (cleanup)"
            yield blocker(
                f"the mover ({rights.me}) may not perform '{action}' over '{a['scope']}' for role "
                f"{a.get('roleName')}: the condition on its role-assignment rights refuses to {verb} it; "
                "a person must grant this role to the new identity",
                a["id"],
            )


def graph_missing(
    ctx: PhaseContext, snapshot: dict[str, Any], me: str, warnings: list[dict[str, Any]]
) -> Iterator[dict[str, Any]]:
    """Graph application permissions the move needs that the mover's service principal does not hold."""
    needed = perms.graph_needed(snapshot)
    try:
        assignments = ctx.clients.graph.list(f"/servicePrincipals/{me}/appRoleAssignments")
    except GraphError as exc:
        if exc.status == 404:  # no service principal behind the token (the emulator's default mover)
            note = (
                f"the mover ({me}) has no service principal in Microsoft Graph: Graph permissions not checked"
            )
            warnings.append({"code": "PermissionsUnchecked", "message": note, "target": "graph"})
            return
        if exc.status != 403:
            raise
        assignments = None
    if assignments is None:
        yield blocker(
            f"the mover ({me}) may not read its own app role assignments in Microsoft Graph: grant one of "
            f"{', '.join(perms.GRAPH[0].any_of)}",
            "graph",
        )
        return
    ids = {a.get("appRoleId", "").lower() for a in assignments}
    granted = {name for name, role_id in perms.GRAPH_PERMISSION_IDS.items() if role_id in ids}
    for need in needed:
        if not perms.graph_satisfied(need, granted):
            yield blocker(
                f"the mover ({me}) lacks the Microsoft Graph application permission "
                f"{' or '.join(need.any_of)} ({need.phases}: {need.why})",
                "graph",
            )


def check(
    ctx: PhaseContext, snapshot: dict[str, Any], target: dict[str, Any]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(blocking, warnings) of the permission preflight; see the module docstring."""
    me = ctx.clients.principal_id()
    if not me:
        note = "the mover's token names no principal (oid): its permissions were not checked"
        return [], [{"code": "PermissionsUnchecked", "message": note, "target": None}]
    rights, warnings = Rights(ctx, me), list[dict[str, Any]]()
    try:
        found = [
            *missing_actions(rights, needs(ctx, snapshot, target)),
            *refused_by_condition(rights, snapshot),
            *graph_missing(ctx, snapshot, me, warnings),
        ]
        found += rights.refused
    except (HttpResponseError, GraphError) as exc:
        refused = refused_read(exc)
        if refused is None:
            raise classify(exc, "permissions") from exc  # throttled / transient: the step is retried
        found = [*rights.refused, refused]
    return dedupe(found), warnings


def dedupe(blockers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return list({(b["code"], b["message"]): b for b in blockers}.values())


# --- refused reads -------------------------------------------------------------------------------------
def refused_read(exc: Exception) -> dict[str, Any] | None:
    """A read Azure refused (403) as a ``MissingPermission`` blocker naming the action and scope; else None."""
    if isinstance(exc, GraphError) or (
        isinstance(exc, PermanentError) and exc.code.startswith("Authorization_")
    ):
        status = exc.status if isinstance(exc, GraphError) else 403
        if status != 403:
            return None
        return blocker(
            "the mover may not read Microsoft Graph here (403 Authorization_RequestDenied): grant one of "
            f"{', '.join(perms.GRAPH[0].any_of)}",
            "graph",
        )
    if isinstance(exc, HttpResponseError):
        if exc.status_code != 403:
            return None
        code, message = error_code(exc), error_message(exc)
    elif isinstance(exc, PermanentError) and exc.code in ("AuthorizationFailed", "LinkedAuthorizationFailed"):
        code, message = exc.code, exc.message
    else:
        return None
    named = _REFUSAL.search(message) or _LINKED.search(message)
    if named is None:
        return blocker(f"Azure refused a read ({code}): {message}", None)
    return blocker(
        f"the mover may not perform '{named['action']}' over '{named['scope']}' (refused while planning: {code})",
        named["scope"],
    )


def discover(
    ctx: PhaseContext, kind: Access, found: Found, refused: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """``kind.discover``, with a refused read recorded as a blocker (the kind then has no entries) instead of
    ending the snapshot, so the plan still shows everything else."""
    try:
        return kind.discover(ctx, found)
    except (HttpResponseError, GraphError, PermanentError) as exc:
        blocked = refused_read(exc)
        if blocked is None:
            raise
        refused.append({**blocked, "message": f"{blocked['message']} [{kind.title}]"})
        return []


def reading(block: Callable[[str, str, str | None], None], read: Callable[..., Any], *args: Any) -> Any:
    """``read(*args)``; a refused read becomes ``block(code, message, target)`` instead of an exception."""
    try:
        return read(*args)
    except (HttpResponseError, GraphError, PermanentError) as exc:
        refused = refused_read(exc)
        if refused is None:
            raise
        block(refused["code"], refused["message"], refused["target"])
        return None


def guarded(
    run: Callable[[PhaseContext], Any], blocked: Callable[[PhaseContext, dict[str, Any]], Any]
) -> Any:
    """Wrap a snapshot ``run``: a refused read anywhere becomes ``blocked(ctx, blocker)`` (a plan with it)."""

    def wrapper(ctx: PhaseContext) -> Any:
        try:
            return run(ctx)
        except (HttpResponseError, GraphError, PermanentError) as exc:
            refused = refused_read(exc)
            if refused is None:
                raise
            return blocked(ctx, refused)

    return wrapper


def kinds_without_rule() -> list[str]:
    """Kinds of access that copy something but have no preflight rule (a test keeps this empty)."""
    return [
        k.key for k in KINDS if k.copy_kind and k.key not in DATA_PLANE and k.key not in CHECKED_ELSEWHERE
    ]
