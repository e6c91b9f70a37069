"""ARM's authorization, enforced when ``PUT /_emulator/config {"rbac": {"enforce": true}}`` is set
(default off; ``POST /_emulator/reset`` turns it off again). The estate owner (a token that is not a
JWT, or has no ``oid``: see ``callers.py``) is never restricted; the Event Grid sink and ``/_emulator``
are outside RBAC.

For a caller with an ``oid``, every ARM request is authorized before it reaches a handler, as ARM does
(so a refused request for something that does not exist is 403, not 404):

1. The request's action and scope come from ``arm_actions.derive``.
2. The caller's principals are its ``oid`` and every Entra group it is a member of, transitively.
3. A role assignment of one of those principals at the scope or any scope above it (resource → parent
   resources → resource group → subscription → management groups → tenant root ``/``) grants the
   action when one ``permissions`` entry of its role definition (built-in or custom, ``PUT
   …/roleDefinitions/{id}``) matches it in ``actions`` and not in ``notActions``. Matching is ARM's:
   case-insensitive, ``*`` matches any run of characters, and ``/*/`` also matches a single ``/``
   (so Managed Identity Operator's ``…/userAssignedIdentities/*/assign/action`` covers
   ``…/userAssignedIdentities/assign/action``). Deny assignments are not emulated.
4. For ``Microsoft.Authorization/roleAssignments/write|delete`` an assignment carrying an ABAC
   ``condition`` grants only when the condition holds (``conditions.py``): writes are checked on the
   request body (``@Request``: role definition, principal id, principal type), deletes on the stored
   assignment (``@Resource``; deleting an assignment that does not exist skips the condition and ends
   in the handler's 204). Conditions on other actions are not evaluated (ARM only evaluates them for
   the data actions and role-assignment actions that support them).
5. Refused: 403 ``AuthorizationFailed``, worded as ARM words it::

       The client '{upn or oid}' with object id '{oid}' does not have authorization to perform action
       '{action}' over scope '{scope}' or the scope is invalid. If access was recently granted, please
       refresh your credentials.

   and, for role-assignment writes and deletes, "does not have authorization or an ABAC condition not
   fulfilled to perform action" (the wording ARM uses there since conditions exist).
6. Linked authorization: a ``PUT``/``PATCH`` of a resource whose body names user-assigned identities
   (``identity.userAssignedIdentities`` keys with a non-null value: every one named, not only the new
   ones, as ARM checks the whole request) also needs
   ``Microsoft.ManagedIdentity/userAssignedIdentities/assign/action`` on each identity, else 403
   ``LinkedAuthorizationFailed``: "The client '…' with object id '…' has permission to perform action
   '{ns}/{type}/write' on scope '{resource}'; however, it does not have permission to perform action
   'Microsoft.ManagedIdentity/userAssignedIdentities/assign/action' on the linked scope(s) '{ids}' or
   the linked scope(s) are invalid."

``effective_permissions`` answers ``GET {scope}/providers/Microsoft.Authorization/permissions``: one
entry per permissions block of each role assigned to the caller (directly or via groups) at or above
the scope. While the caller is unrestricted (the estate owner, or enforcement off) the list starts with
the implicit ``actions: ["*"]`` grant, because that is what the emulator then lets it do.

Resource Graph checks no action; with enforcement on, ``readable`` keeps only the rows whose
``{type}/read`` the caller holds, as ARG answers only what the caller may read. ``GET /subscriptions``
likewise lists only the subscriptions where the caller holds some role assignment (at, above or below).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from emulator import arm_actions, conditions, scopes
from emulator.builtin_roles import BUILTINS
from emulator.callers import Caller, caller_of
from emulator.errors import ArmError
from emulator.ids import key, parse_resource_id
from emulator.state import State
from emulator.wire import Request

ASSIGN_ACTION = "Microsoft.ManagedIdentity/userAssignedIdentities/assign/action"
RA_WRITE = "microsoft.authorization/roleassignments/write"
RA_DELETE = "microsoft.authorization/roleassignments/delete"
_RA_PREFIX = "microsoft.authorization/roleassignments:"


# --- matching ------------------------------------------------------------------------------
@functools.lru_cache(maxsize=4096)
def _compiled(pattern: str) -> re.Pattern[str]:
    escaped = re.escape(pattern.strip().lower())
    escaped = escaped.replace("/\\*/", "/(?:.*/)?").replace("\\*", ".*")
    return re.compile(escaped)


def action_matches(pattern: str, action: str) -> bool:
    """ARM's wildcard match of a role's ``actions``/``notActions`` entry against an action."""
    return _compiled(pattern).fullmatch(action.strip().lower()) is not None


def permits(permission: Mapping[str, Any], action: str) -> bool:
    """One permissions block: ``actions`` minus ``notActions``."""
    allowed = any(action_matches(a, action) for a in permission.get("actions") or [])
    return allowed and not any(action_matches(n, action) for n in permission.get("notActions") or [])


# --- who and what ----------------------------------------------------------------------------
def enforcing(state: State, caller: Caller) -> bool:
    return bool(state.config["rbac"]["enforce"]) and not caller.is_owner


def principals_of(state: State, object_id: str) -> set[str]:
    """The principal and every group it is a member of, transitively (call with the lock held)."""
    found = {object_id.lower()}
    queue = [object_id.lower()]
    while queue:
        member = queue.pop()
        for group, members in state.group_members.items():
            if member in members and group not in found:
                found.add(group)
                queue.append(group)
    return found


def role_of(state: State, assignment: Mapping[str, Any]) -> dict[str, Any] | None:
    guid = str(assignment["properties"]["roleDefinitionId"]).rsplit("/", 1)[-1].lower()
    return BUILTINS.get(guid) or state.role_definitions.get(guid)


def grants(state: State, object_id: str, scope: str) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(assignment, role definition) of the principal and its groups at or above ``scope``."""
    principals = principals_of(state, object_id)
    above = set(scopes.chain(state, scope))
    found = []
    for _k, assignment in sorted(state.role_assignments.items()):
        props = assignment["properties"]
        if props["principalId"].lower() in principals and key(props["scope"]) in above:
            role = role_of(state, assignment)
            if role is not None:
                found.append((assignment, role))
    return found


def is_allowed(
    state: State,
    object_id: str,
    action: str,
    scope: str,
    request: Mapping[str, Sequence[str]] | None = None,
    resource: Mapping[str, Sequence[str]] | None = None,
    check_conditions: bool = True,
) -> bool:
    """Whether the principal may perform ``action`` over ``scope`` (call with the lock held)."""
    conditional = action.lower() in (RA_WRITE, RA_DELETE) and check_conditions
    for assignment, role in grants(state, object_id, scope):
        if not any(permits(p, action) for p in role["permissions"]):
            continue
        condition = assignment["properties"].get("condition")
        if conditional and condition:
            try:
                if not conditions.evaluate(condition, action, request, resource, action_matches):
                    continue
            except conditions.ConditionError:
                continue  # a condition ARM could not read grants nothing
        return True
    return False


# --- the gate ----------------------------------------------------------------------------------
def _refused(caller: Caller, action: str, scope: str) -> ArmError:
    abac = action.lower() in (RA_WRITE, RA_DELETE)
    what = (
        "does not have authorization or an ABAC condition not fulfilled"
        if abac
        else "does not have authorization"
    )
    return ArmError(
        403,
        "AuthorizationFailed",
        f"The client '{caller.client}' with object id '{caller.object_id}' {what} to perform action '{action}' "
        f"over scope '{scope}' or the scope is invalid. If access was recently granted, please refresh your "
        "credentials.",
    )


def _assignment_attributes(
    state: State, req: Request, check: arm_actions.Check
) -> tuple[dict[str, list[str]] | None, dict[str, list[str]] | None, bool]:
    """(@Request attributes, @Resource attributes, evaluate conditions?) for a role-assignment action."""
    action = check.action.lower()
    if action == RA_WRITE:
        try:
            body = json.loads(req.body or b"{}")
        except ValueError:
            body = {}
        props = body.get("properties") if isinstance(body, dict) else None
        props = props if isinstance(props, dict) else {}
        principal = str(props.get("principalId", "")).lower()
        kind = props.get("principalType")
        if not kind:
            obj = state.visible_object(principal) if principal else None
            kind = str((obj or {}).get("@odata.type", "#microsoft.graph.user")).rsplit(".", 1)[-1]
            kind = {"serviceprincipal": "ServicePrincipal", "group": "Group"}.get(kind.lower(), "User")
        request = {
            _RA_PREFIX + "roledefinitionid": [str(props.get("roleDefinitionId", ""))],
            _RA_PREFIX + "principalid": [principal],
            _RA_PREFIX + "principaltype": [str(kind)],
        }
        return request, None, True
    if action == RA_DELETE:
        existing = state.role_assignments.get(key(check.message_scope))
        if existing is None:
            return None, None, False
        p = existing["properties"]
        resource = {
            _RA_PREFIX + "roledefinitionid": [str(p["roleDefinitionId"])],
            _RA_PREFIX + "principalid": [str(p["principalId"])],
            _RA_PREFIX + "principaltype": [str(p.get("principalType") or "User")],
        }
        return None, resource, True
    return None, None, True


def _linked_identities(req: Request) -> list[str]:
    """User-assigned identity ids a resource PUT/PATCH body attaches (non-null entries)."""
    try:
        body = json.loads(req.body or b"{}")
    except ValueError:
        return []
    identity = body.get("identity") if isinstance(body, dict) else None
    entries = identity.get("userAssignedIdentities") if isinstance(identity, dict) else None
    if not isinstance(entries, dict):
        return []
    return [str(k) for k, v in entries.items() if v is not None]


def authorize_arm(state: State, req: Request) -> None:
    """Raise 403 unless the caller may perform this ARM request (no-op for unrestricted callers)."""
    caller = caller_of(req)
    if not enforcing(state, caller):
        return
    check = arm_actions.derive(req.method, req.path)
    if check is None:
        return
    oid = caller.object_id or ""
    with state.lock:
        request_attrs, resource_attrs, evaluate = _assignment_attributes(state, req, check)
        if not is_allowed(state, oid, check.action, check.scope, request_attrs, resource_attrs, evaluate):
            raise _refused(caller, check.action, check.message_scope)
        if req.method not in ("PUT", "PATCH") or parse_resource_id(req.path) is None:
            return
        linked = _linked_identities(req)
        missing = [i for i in linked if not is_allowed(state, oid, ASSIGN_ACTION, i)]
    if missing:
        raise ArmError(
            403,
            "LinkedAuthorizationFailed",
            f"The client '{caller.client}' with object id '{caller.object_id}' has permission to perform action "
            f"'{check.action}' on scope '{check.message_scope}'; however, it does not have permission to perform "
            f"action '{ASSIGN_ACTION}' on the linked scope(s) '{','.join(missing)}' or the linked scope(s) are "
            "invalid.",
        )


# --- effective permissions and filtered reads --------------------------------------------------
IMPLICIT_ALL = {"actions": ["*"], "notActions": [], "dataActions": [], "notDataActions": []}


def _entries(role: Mapping[str, Any]) -> Iterable[dict[str, list[str]]]:
    for p in role["permissions"]:
        yield {k: list(p.get(k) or []) for k in ("actions", "notActions", "dataActions", "notDataActions")}


def effective_permissions(
    state: State, caller: Caller, owner_id: str, scope: str
) -> list[dict[str, list[str]]]:
    """The caller's permissions at ``scope`` (call with the lock held); ``owner_id`` is the principal
    the estate owner's own assignments are recorded under."""
    items: list[dict[str, list[str]]] = []
    if not enforcing(state, caller):
        items.append(dict(IMPLICIT_ALL))
    for _assignment, role in grants(state, caller.object_id or owner_id, scope):
        items.extend(_entries(role))
    return items


def readable(state: State, caller: Caller, resource_id: str, resource_type: str) -> bool:
    """Whether the caller may read this resource (True for unrestricted callers; lock held)."""
    if not enforcing(state, caller):
        return True
    return is_allowed(state, caller.object_id or "", f"{resource_type}/read", resource_id)


def sees_subscription(state: State, caller: Caller, subscription_id: str) -> bool:
    """Whether ``GET /subscriptions`` lists this subscription to the caller: it holds some role
    assignment at, above or below it (True for unrestricted callers; lock held)."""
    if not enforcing(state, caller):
        return True
    sub = key(f"/subscriptions/{subscription_id}")
    above = set(scopes.chain(state, sub))
    principals = principals_of(state, caller.object_id or "")
    for assignment in state.role_assignments.values():
        props = assignment["properties"]
        scope = key(props["scope"])
        if props["principalId"].lower() in principals and (scope in above or scope.startswith(sub + "/")):
            return True
    return False
