"""Microsoft.Authorization 2022-04-01: role assignments and role definitions.

Specs: ``arm-specs/Microsoft.Authorization/2022-04-01/authorization-RoleAssignmentsCalls.json`` and
``authorization-RoleDefinitionsCalls.json``; behaviour from FACTS.md "Microsoft.Authorization":
- PUT ``{scope}/providers/Microsoft.Authorization/roleAssignments/{guid}`` at management-group,
  subscription, resource-group or resource scope: 201 new; 200 same name and content (description and
  condition may change); 400 ``RoleAssignmentUpdateNotPermitted`` when principal/role/scope differ
  (Microsoft's RBAC troubleshooting page files it under "role assignment returns BadRequest status");
  409 ``RoleAssignmentExists`` for the same scope+role+principal under another name; 400
  ``InvalidRoleAssignmentId`` (name not a GUID), ``RoleDefinitionDoesNotExist``, ``PrincipalNotFound``
  (unknown or still-replicating principal unless ``principalType`` is ``ServicePrincipal``),
  ``UnmatchedPrincipalType``, ``InvalidConditionVersion``, ``RoleAssignmentLimitExceeded``
  (``roleAssignmentLimit`` per subscription, 4,000; 500 per management group; the message starts
  "No more role assignments can be created" as Microsoft's troubleshooting page quotes it; the HTTP
  status, 400, is not confirmed by any public source found).
- DELETE 200 with the deleted body / 204 absent; GET; the ``/{roleAssignmentId}`` forms are the same paths.
- Lists for subscription / resource group / resource / any scope with ``$filter``: none (at, above,
  below), ``atScope()`` (at or above), ``principalId eq '{id}'`` (at, above, below), ``assignedTo('{id}')``
  (the principal and the groups it is a member of), ``atScope() and ...``; paged with nextLink.
- ``principalType`` omitted: the principal is looked up and its real type recorded (``PrincipalNotFound``
  while it is unknown or replicating), as recorded Azure traffic shows; responses carry condition, conditionVersion, description,
  createdOn/updatedOn/createdBy/updatedBy, delegatedManagedIdentityResourceId. ``roleDefinitionId`` is
  returned subscription-qualified for scopes inside a subscription, as ARM returns it.
- Deleting a principal leaves its assignments in place; deleting a scope removes those at/below it.
Permissions (``Permissions_ListForResourceGroup`` / ``Permissions_ListForResource``, also served at
subscription scope as ARM does): what the caller may do at a scope, one entry per permissions block of
each role assigned to the caller (directly or through groups) at or above the scope. The caller is the
token's ``oid`` (``callers.py``); the estate owner's own assignments are those of ``CALLER_ID``. While
the caller is unrestricted (estate owner, or ``rbac.enforce`` off) the implicit grant
``actions: ["*"]`` comes first, since that is what the emulator then lets it do.
Role definitions: built-ins (``builtin_roles.py``) everywhere; custom ones PUT (201)/GET/DELETE at a
scope with ``assignableScopes``; list with ``$filter=roleName eq '...'`` / ``type eq 'BuiltInRole'``.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from emulator import rbac_enforce, scopes
from emulator.builtin_roles import BUILTINS
from emulator.callers import caller_of
from emulator.errors import ArmError
from emulator.ids import is_guid, key
from emulator.paging import page
from emulator.state import CALLER_ID, TENANT_ID, State, now_iso
from emulator.wire import Request, Response

API_VERSIONS = frozenset(
    {"2015-07-01", "2018-01-01-preview", "2018-09-01-preview", "2020-04-01-preview", "2020-08-01-preview",
     "2020-10-01-preview", "2022-04-01", "2022-05-01-preview"}
)  # fmt: skip
RA_TYPE = "Microsoft.Authorization/roleAssignments"
RD_TYPE = "Microsoft.Authorization/roleDefinitions"
PRINCIPAL_TYPES = ("User", "Group", "ServicePrincipal", "ForeignGroup", "Device")
_RD_ID = re.compile(r"^(.*)/providers/Microsoft\.Authorization/roleDefinitions/([^/]+)$", re.IGNORECASE)
_GRAPH_KIND = {
    "#microsoft.graph.servicePrincipal": "ServicePrincipal",
    "#microsoft.graph.user": "User",
    "#microsoft.graph.group": "Group",
}


def check_api_version(req: Request) -> None:
    version = req.query.get("api-version", "")
    if version not in API_VERSIONS:
        raise ArmError(
            400,
            "NoRegisteredProviderFound",
            f"No registered resource provider found for location 'global' and API version '{version}' for type "
            f"'roleAssignments'. The supported api-versions are '{', '.join(sorted(API_VERSIONS))}'.",
        )


# --- role definitions --------------------------------------------------------------------
def definition_properties(state: State, guid: str) -> dict[str, Any] | None:
    g = guid.lower()
    return BUILTINS.get(g) or state.role_definitions.get(g)


def definition_id(scope: str, guid: str) -> str:
    return f"{scopes.subscription_prefix(scope)}/providers/{RD_TYPE}/{guid}"


def render_definition(scope: str, guid: str, props: dict[str, Any]) -> dict[str, Any]:
    return {
        "properties": copy.deepcopy(props),
        "id": definition_id(scope, guid),
        "type": RD_TYPE,
        "name": guid,
    }


def _assignable_at(state: State, props: dict[str, Any], scope: str) -> bool:
    return any(scopes.at_or_above(state, a, scope) for a in props["assignableScopes"])


def get_definition(state: State, req: Request, scope: str, guid: str) -> Response:
    check_api_version(req)
    with state.lock:
        props = definition_properties(state, guid)
        if props is None:
            raise ArmError(
                404, "RoleDefinitionDoesNotExist", f"The role definition '{guid}' could not be found."
            )
        return Response(200, render_definition(scope, guid.lower(), props))


_RD_FILTER = re.compile(r"^\s*(roleName|type)\s+eq\s+'([^']*)'\s*$", re.IGNORECASE)


def list_definitions(state: State, req: Request, scope: str) -> Response:
    check_api_version(req)
    wanted: list[tuple[str, str]] = []
    expression = req.query.get("$filter", "")
    if expression.strip():
        for clause in re.split(r"\s+and\s+", expression, flags=re.IGNORECASE):
            m = _RD_FILTER.match(clause)
            if not m:
                raise ArmError(400, "UnsupportedQuery", f"The filter '{expression}' is not supported.")
            wanted.append((m.group(1).lower(), m.group(2).lower()))
    with state.lock:
        candidates = list(BUILTINS.items()) + [
            (g, p)
            for g, p in state.role_definitions.items()
            if scope == "/"
            or any(
                scopes.at_or_above(state, a, scope) or scopes.at_or_above(state, scope, a)
                for a in p["assignableScopes"]
            )
        ]
        items = []
        for guid, props in sorted(candidates, key=lambda gp: gp[1]["roleName"].lower()):
            if all((props["roleName"] if f == "rolename" else props["type"]).lower() == v for f, v in wanted):
                items.append(render_definition(scope, guid, props))
    return Response(200, page(req, items, int(state.config["pageSize"])))


def put_definition(state: State, req: Request, scope: str, guid: str) -> Response:
    check_api_version(req)
    if not is_guid(guid):
        raise ArmError(
            400,
            "InvalidRoleDefinitionId",
            f"The role definition ID '{guid}' is not valid: it must be a GUID.",
        )
    body = req.json_object()
    props = body.get("properties")
    if not isinstance(props, dict) or not props.get("roleName"):
        raise ArmError(400, "InvalidRoleDefinition", "The role definition must have 'properties.roleName'.")
    assignable = props.get("assignableScopes")
    if not isinstance(assignable, list) or not assignable:
        raise ArmError(
            400, "MissingAssignableScopes", "The role definition must have at least one assignable scope."
        )
    permissions = props.get("permissions") or []
    if not isinstance(permissions, list):
        raise ArmError(400, "InvalidRoleDefinition", "'permissions' must be a list.")
    g = guid.lower()
    with state.lock:
        if g in BUILTINS:
            raise ArmError(
                409, "RoleDefinitionWithSameNameExists", "A built-in role definition with this ID exists."
            )
        for a in assignable:
            scopes.validate(state, str(a))
        for other_guid, other in [*BUILTINS.items(), *state.role_definitions.items()]:
            if other_guid != g and other["roleName"].lower() == str(props["roleName"]).lower():
                raise ArmError(
                    409,
                    "RoleDefinitionWithSameNameExists",
                    "A role definition cannot be updated with a name that already exists.",
                )
        existing = state.role_definitions.get(g)
        stamp = now_iso()
        stored = {
            "roleName": props["roleName"],
            "type": "CustomRole",
            "description": props.get("description"),
            "assignableScopes": [scopes.normalize(str(a)) for a in assignable],
            "permissions": [
                {
                    "actions": list(p.get("actions") or []),
                    "notActions": list(p.get("notActions") or []),
                    "dataActions": list(p.get("dataActions") or []),
                    "notDataActions": list(p.get("notDataActions") or []),
                }
                for p in permissions
            ],
            "createdOn": existing["createdOn"] if existing else stamp,
            "updatedOn": stamp,
            "createdBy": CALLER_ID,
            "updatedBy": CALLER_ID,
        }
        state.role_definitions[g] = stored
        return Response(201, render_definition(scope, g, stored))


def delete_definition(state: State, req: Request, scope: str, guid: str) -> Response:
    check_api_version(req)
    g = guid.lower()
    with state.lock:
        if g in BUILTINS:
            raise ArmError(403, "AuthorizationFailed", "Built-in role definitions cannot be deleted.")
        existing = state.role_definitions.get(g)
        if existing is None:
            return Response(204)
        if any(_definition_guid(a) == g for a in state.role_assignments.values()):
            raise ArmError(
                409,
                "RoleDefinitionHasAssignments",
                "There are existing role assignments referencing role (code: RoleDefinitionHasAssignments).",
            )
        del state.role_definitions[g]
        return Response(200, render_definition(scope, g, existing))


# --- role assignments --------------------------------------------------------------------
def _definition_guid(assignment: dict[str, Any]) -> str:
    return str(assignment["properties"]["roleDefinitionId"]).rsplit("/", 1)[-1].lower()


def assignment_id(scope: str, name: str) -> str:
    return f"{'' if scope == '/' else scope}/providers/{RA_TYPE}/{name}"


def _in_subscription(assignment: dict[str, Any], subscription_key: str) -> bool:
    s = key(assignment["properties"]["scope"])
    return s == subscription_key or s.startswith(subscription_key + "/")


def _check_principal(state: State, principal_id: str, principal_type: str | None) -> str:
    """The principal type to record. Omitted in the request, ARM looks the principal up and records its
    real type (recorded traffic: a service principal assigned without ``principalType`` comes back as
    ``ServicePrincipal``, tests/conformance/recordings/role-assignments); a principal it cannot find then
    is ``PrincipalNotFound``."""
    if not is_guid(principal_id):
        raise ArmError(
            400, "InvalidPrincipalId", f"The principal ID '{principal_id}' is not valid. It must be a GUID."
        )
    if principal_type is not None and principal_type not in PRINCIPAL_TYPES:
        raise ArmError(
            400,
            "InvalidPrincipalType",
            f"The principal type '{principal_type}' is not valid. Valid values: {', '.join(PRINCIPAL_TYPES)}.",
        )
    obj = state.visible_object(principal_id)
    if obj is None:
        if principal_type == "ServicePrincipal":
            return principal_type  # ARM cannot validate it yet and accepts it, as Azure does
        raise ArmError(
            400,
            "PrincipalNotFound",
            f"Principal {principal_id.replace('-', '')} does not exist in the directory {TENANT_ID}. Check that you have "
            "the correct principal ID. If you are creating this principal and then immediately assigning a role, this "
            "error might be related to a replication delay. In this case, set the role assignment principalType "
            "property to a value, such as ServicePrincipal, User, or Group.  See https://aka.ms/docs-principaltype",
        )
    actual = _GRAPH_KIND.get(obj.get("@odata.type", ""), "")
    if principal_type is None:
        return actual or "User"
    if actual and actual != principal_type:
        raise ArmError(
            400,
            "UnmatchedPrincipalType",
            f"The PrincipalId '{principal_id.replace('-', '')}' has type '{actual}' , which is different from specified "
            f"PrincipalType '{principal_type}'.",
        )
    return principal_type


_CONDITION_KEYS = ("condition", "conditionVersion", "delegatedManagedIdentityResourceId", "description")


def _shown(req: Request, body: dict[str, Any]) -> dict[str, Any]:
    """Role assignments as the requested api-version shows them: before 2020-04-01-preview (conditions came
    then) Azure sends no condition, conditionVersion, delegatedManagedIdentityResourceId or description
    (recorded traffic at 2018-01-01-preview and 2018-09-01-preview, tests/conformance/recordings)."""
    if req.query.get("api-version", "")[:10] >= "2020-04-01":
        return body
    shown = copy.deepcopy(body)
    for item in shown.get("value", [shown]):
        for name in _CONDITION_KEYS:
            item["properties"].pop(name, None)
    return shown


def put_assignment(state: State, req: Request, scope: str, name: str) -> Response:
    check_api_version(req)
    scope = scopes.normalize(scope)
    if not is_guid(name):
        raise ArmError(
            400,
            "InvalidRoleAssignmentId",
            f"The role assignment ID '{name}' is not valid. The role assignment ID must be a GUID.",
        )
    body = req.json_object()
    props = body.get("properties")
    if not isinstance(props, dict):
        raise ArmError(400, "InvalidRequestContent", "The request content must have 'properties'.")
    rd_match = _RD_ID.match(str(props.get("roleDefinitionId", "")))
    if not rd_match or not is_guid(rd_match.group(2)):
        raise ArmError(
            400,
            "InvalidRoleDefinitionId",
            f"The role definition ID '{props.get('roleDefinitionId')}' is not valid.",
        )
    role_guid = rd_match.group(2).lower()
    principal_id = str(props.get("principalId", "")).lower()
    principal_type: str | None = props.get("principalType") or None
    condition = props.get("condition")
    condition_version = props.get("conditionVersion")
    if condition is not None and condition_version != "2.0":
        raise ArmError(
            400,
            "InvalidConditionVersion",
            f"The condition version '{condition_version}' is not supported. Supported version: '2.0'.",
        )
    with state.lock:
        scope = scopes.validate(state, scope)
        role = definition_properties(state, role_guid)
        if role is None or not _assignable_at(state, role, scope):
            raise ArmError(
                400,
                "RoleDefinitionDoesNotExist",
                f"The specified role definition with ID '{role_guid.replace('-', '')}' does not exist.",
            )
        rid = assignment_id(scope, name)
        existing = state.role_assignments.get(key(rid))
        if existing is not None:
            old = existing["properties"]
            if (
                old["principalId"] != principal_id
                or _definition_guid(existing) != role_guid
                or key(old["scope"]) != key(scope)
            ):
                raise ArmError(
                    400,
                    "RoleAssignmentUpdateNotPermitted",
                    "Tenant ID, application ID, principal ID, and scope are not allowed to be updated.",
                )
            updated = copy.deepcopy(existing)
            changed = (old.get("description"), old.get("condition"), old.get("conditionVersion")) != (
                props.get("description"),
                condition,
                condition_version,
            )
            updated["properties"].update(
                {
                    "description": props.get("description"),
                    "condition": condition,
                    "conditionVersion": condition_version,
                }
            )
            if changed:
                updated["properties"]["updatedOn"] = now_iso()
            state.role_assignments[key(rid)] = updated
            return Response(200, _shown(req, copy.deepcopy(updated)))
        principal_type = _check_principal(state, principal_id, principal_type)
        for other in state.role_assignments.values():
            o = other["properties"]
            if (
                key(o["scope"]) == key(scope)
                and o["principalId"] == principal_id
                and _definition_guid(other) == role_guid
            ):
                raise ArmError(
                    409,
                    "RoleAssignmentExists",
                    f"The role assignment already exists. The ID of the existing role assignment is {other['name'].replace('-', '')}.",
                )
        _check_limit(state, scope)
        stamp = now_iso()
        author = caller_of(req).object_id or CALLER_ID
        created = {
            "properties": {
                "roleDefinitionId": definition_id(scope, role_guid),
                "principalId": principal_id,
                "principalType": principal_type,
                "scope": scope,
                "condition": condition,
                "conditionVersion": condition_version,
                "createdOn": stamp,
                "updatedOn": stamp,
                "createdBy": author,
                "updatedBy": author,
                "delegatedManagedIdentityResourceId": props.get("delegatedManagedIdentityResourceId"),
                "description": props.get("description"),
            },
            "id": rid,
            "type": RA_TYPE,
            "name": name.lower(),
        }
        state.role_assignments[key(rid)] = created
        return Response(201, _shown(req, copy.deepcopy(created)))


def _check_limit(state: State, scope: str) -> None:
    sub = scopes.subscription_prefix(scope)
    if sub:
        limit = int(state.config["roleAssignmentLimit"])
        count = sum(1 for a in state.role_assignments.values() if _in_subscription(a, key(sub)))
    elif key(scope).startswith(scopes.MG_PREFIX):
        limit = int(state.config["managementGroupRoleAssignmentLimit"])
        count = sum(1 for a in state.role_assignments.values() if key(a["properties"]["scope"]) == key(scope))
    else:
        return
    if count >= limit:
        raise ArmError(
            400,
            "RoleAssignmentLimitExceeded",
            f"No more role assignments can be created. The limit of {limit} role assignments at this scope has been "
            "reached. See https://aka.ms/rbac-limits",
        )


def get_assignment(state: State, req: Request, scope: str, name: str) -> Response:
    check_api_version(req)
    with state.lock:
        found = state.role_assignments.get(key(assignment_id(scopes.normalize(scope), name)))
        if found is None:
            raise ArmError(404, "RoleAssignmentNotFound", f"The role assignment '{name}' is not found.")
        return Response(200, _shown(req, copy.deepcopy(found)))


def delete_assignment(state: State, req: Request, scope: str, name: str) -> Response:
    check_api_version(req)
    with state.lock:
        removed = state.role_assignments.pop(key(assignment_id(scopes.normalize(scope), name)), None)
    return Response(200, _shown(req, removed)) if removed is not None else Response(204)


_PRINCIPAL = re.compile(r"^principalId\s+eq\s+'([^']*)'$", re.IGNORECASE)
_ASSIGNED_TO = re.compile(r"^assignedTo\('([^']*)'\)$", re.IGNORECASE)
_AT_SCOPE = re.compile(r"^atScope\(\)$", re.IGNORECASE)


def _parse_filter(expression: str) -> tuple[bool, str | None, str | None]:
    """(at_scope, principal_id, assigned_to) from a role-assignment ``$filter``."""
    at_scope, principal, assigned = False, None, None
    if not expression.strip():
        return at_scope, principal, assigned
    for clause in re.split(r"\s+and\s+", expression.strip(), flags=re.IGNORECASE):
        clause = clause.strip()
        if _AT_SCOPE.match(clause):
            at_scope = True
        elif m := _PRINCIPAL.match(clause):
            principal = m.group(1).lower()
        elif m := _ASSIGNED_TO.match(clause):
            assigned = m.group(1).lower()
        else:
            raise ArmError(
                400,
                "UnsupportedQuery",
                f"The filter '{expression}' is not supported. Supported filters are either 'atScope()' or "
                "'principalId eq '{value}' or assignedTo('{value}')'.",
            )
    return at_scope, principal, assigned


def list_assignments(state: State, req: Request, scope: str) -> Response:
    check_api_version(req)
    at_scope, principal, assigned = _parse_filter(req.query.get("$filter", ""))
    with state.lock:
        scope = scopes.validate(state, scopes.normalize(scope))
        principals: set[str] | None = None
        if principal:
            principals = {principal}
        if assigned:
            principals = {assigned} | {g for g, members in state.group_members.items() if assigned in members}
        items = []
        for _k, a in sorted(state.role_assignments.items()):
            p = a["properties"]
            if principals is not None and p["principalId"] not in principals:
                continue
            if scopes.at_or_above(state, p["scope"], scope) or (
                not at_scope and scopes.below(state, p["scope"], scope)
            ):
                items.append(copy.deepcopy(a))
    return Response(
        200, _shown(req, page(req, items, int(state.config["pageSize"]), token_name="$skipToken"))
    )


# --- permissions of the caller -------------------------------------------------------------
def list_permissions(state: State, req: Request, scope: str) -> Response:
    """``GET {scope}/providers/Microsoft.Authorization/permissions``: the caller's permissions there
    (``rbac_enforce.effective_permissions``)."""
    check_api_version(req)
    caller = caller_of(req)
    with state.lock:
        scope = scopes.validate(state, scopes.normalize(scope))
        items = rbac_enforce.effective_permissions(state, caller, CALLER_ID, scope)
    return Response(200, page(req, items, int(state.config["pageSize"])))
