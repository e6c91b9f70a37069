"""Microsoft Graph v1.0 (``/graph/v1.0``): the directory objects the mover reads and writes.

Reproduces (FACTS.md "Microsoft Graph"; Graph v1.0 reference):
- ``GET /servicePrincipals/{id}``; 404 ``Request_ResourceNotFound`` for unknown ids and for a managed
  identity's principal younger than ``replicationDelaySeconds``. ``GET /servicePrincipals?$filter=``
  with ``appId eq``, ``displayName eq``, ``servicePrincipalType eq``, ``startswith(displayName,'x')``.
  ``POST /servicePrincipals`` (an application's service principal, e.g. an API with ``appRoles``).
  Microsoft Graph's own service principal (appId 00000003-0000-0000-c000-000000000000) with its
  application permissions as app roles (real ids, ``graph_permissions.py``) exists in every tenant and
  survives reset. With ``{"rbac": {"enforce": true}}`` callers with an ``oid`` need those permissions
  granted (``graph_permissions.py``), else 403 ``Authorization_RequestDenied``.
- ``GET /servicePrincipals/{id}/memberOf`` (and ``transitiveMemberOf``), paged by ``@odata.nextLink``.
- ``GET|POST /servicePrincipals/{id}/appRoleAssignments``, ``DELETE .../appRoleAssignments/{id}`` (204);
  the same from the resource's side: ``GET|POST /servicePrincipals/{resource}/appRoleAssignedTo``,
  ``DELETE .../appRoleAssignedTo/{id}`` (how ``infra/scripts/grant-graph-permissions.sh`` grants).
- Groups: ``POST /groups`` (201), ``GET /groups/{id}``, ``GET /groups?$filter=displayName eq``,
  ``GET /groups/{id}/members``, ``POST /groups/{id}/members/$ref`` (204; 400 when already a member),
  ``DELETE /groups/{id}/members/{memberId}/$ref`` (204; 404 when not a member).
- Users: ``POST /users`` (201), ``GET /users/{id}``; ``GET /directoryObjects/{id}``,
  ``POST /directoryObjects/getByIds``.
Error shape: ``{"error": {"code", "message", "innerError": {...}}}``.
"""

from __future__ import annotations

import base64
import copy
import re
import struct
import uuid
from typing import Any

from emulator.errors import ArmError, graph_bad_request, graph_not_found
from emulator.graph_permissions import GRAPH_APP_ID, GRAPH_APP_ROLES
from emulator.ids import is_guid, new_guid
from emulator.paging import decode_token, encode_token
from emulator.state import TENANT_ID, State, now_iso
from emulator.wire import Request, Response

META = "https://graph.microsoft.com/v1.0/$metadata"
# Microsoft Graph's application permissions (app roles, real ids): graph_permissions.GRAPH_APP_ROLES.
DEFAULT_ACCESS_ROLE = "00000000-0000-0000-0000-000000000000"


def seed_first_party(state: State) -> None:
    """Objects every tenant has: Microsoft Graph's service principal with its app roles."""
    sp_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"https://identity-mover.local/{TENANT_ID}/graph-sp"))
    state.add_directory_object(
        _service_principal(
            sp_id,
            GRAPH_APP_ID,
            "Microsoft Graph",
            "Application",
            [
                {
                    "allowedMemberTypes": ["Application"],
                    "description": f"Allows the app to {label.lower()} without a signed-in user.",
                    "displayName": label,
                    "id": role_id,
                    "isEnabled": True,
                    "origin": "Application",
                    "value": value,
                }
                for role_id, value, label in GRAPH_APP_ROLES
            ],
            appOwnerOrganizationId="f8cdef31-a31e-4b4a-93e4-5f571e91255a",
        )
    )


def _service_principal(
    object_id: str, app_id: str, name: str, sp_type: str, app_roles: list[dict[str, Any]], **extra: Any
) -> dict[str, Any]:
    body = {
        "@odata.type": "#microsoft.graph.servicePrincipal",
        "id": object_id,
        "deletedDateTime": None,
        "accountEnabled": True,
        "alternativeNames": [],
        "appDisplayName": name,
        "appId": app_id,
        "appRoleAssignmentRequired": False,
        "appRoles": app_roles,
        "displayName": name,
        "servicePrincipalNames": [app_id],
        "servicePrincipalType": sp_type,
        "tags": [],
    }
    body.update(extra)
    return body


# Properties Graph returns for a user only when $select names them: recorded answers (POST /users, group
# members) show the default view without them (tests/conformance/recordings/graph).
_USER_SELECT_ONLY = ("accountEnabled", "mailNickname")


def _view(obj: dict[str, Any]) -> dict[str, Any]:
    """A copy of the object as Graph's default view shows it (``@odata.type`` kept)."""
    out = copy.deepcopy(obj)
    if out.get("@odata.type") == "#microsoft.graph.user":
        for name in _USER_SELECT_ONLY:
            out.pop(name, None)
    return out


def _plain(obj: dict[str, Any]) -> dict[str, Any]:
    out = _view(obj)
    out.pop("@odata.type", None)
    return out


def _created_at(object_id: str, kind: str) -> dict[str, str]:
    """Graph's Location for a created directory object (as recorded: the v2 directoryObjects URL)."""
    return {
        "Location": f"https://graph.microsoft.com/v2/{TENANT_ID}/directoryObjects/{object_id}/Microsoft.DirectoryServices.{kind}"
    }


def _security_identifier(object_id: str) -> str:
    """Entra ID's SID of a cloud object: S-1-12-1- and the GUID's bytes as four little-endian integers."""
    return "S-1-12-1-" + "-".join(str(n) for n in struct.unpack("<4I", uuid.UUID(object_id).bytes_le))


def _kind(obj: dict[str, Any]) -> str:
    return str(obj.get("@odata.type", "")).rsplit(".", 1)[-1]


def _require(state: State, object_id: str, kind: str | None = None) -> dict[str, Any]:
    obj = state.visible_object(object_id)
    if obj is None or (kind is not None and _kind(obj) != kind):
        raise graph_not_found(object_id)
    return obj


def _list(req: Request, state: State, entity: str, items: list[dict[str, Any]]) -> Response:
    token = req.query.get("$skiptoken")
    offset = decode_token(token) if token else 0
    top = req.query.get("$top")
    size = int(top) if top and top.isdigit() and int(top) > 0 else int(state.config["pageSize"])
    body: dict[str, Any] = {"@odata.context": f"{META}#{entity}", "value": items[offset : offset + size]}
    if offset + size < len(items):
        body["@odata.nextLink"] = req.next_link("$skiptoken", encode_token(offset + size))
    return Response(200, body)


_EQ = re.compile(
    r"^\s*(appId|displayName|servicePrincipalType|id|mailNickname)\s+eq\s+'([^']*)'\s*$", re.IGNORECASE
)
_STARTS = re.compile(r"^\s*startswith\(\s*displayName\s*,\s*'([^']*)'\s*\)\s*$", re.IGNORECASE)


def _filter(expression: str) -> Any:
    if not expression.strip():
        return lambda o: True
    clauses = []
    for clause in re.split(r"\s+and\s+", expression, flags=re.IGNORECASE):
        if m := _EQ.match(clause):
            field = {"appid": "appId", "displayname": "displayName", "serviceprincipaltype": "servicePrincipalType",
                     "id": "id", "mailnickname": "mailNickname"}[m.group(1).lower()]  # fmt: skip
            clauses.append((field, m.group(2), False))
        elif m := _STARTS.match(clause):
            clauses.append(("displayName", m.group(1), True))
        else:
            raise ArmError(
                400,
                "Request_UnsupportedQuery",
                f"Unsupported or invalid query filter clause specified: '{clause}'.",
            )

    def predicate(o: dict[str, Any]) -> bool:
        for field, value, prefix in clauses:
            actual = str(o.get(field, ""))
            if prefix and not actual.lower().startswith(value.lower()):
                return False
            if not prefix and actual.lower() != value.lower():
                return False
        return True

    return predicate


# --- dispatch ----------------------------------------------------------------------------
def handle(state: State, req: Request, segs: list[str]) -> Response:
    """``segs``: path segments after ``/graph/v1.0``."""
    low = [s.lower() for s in segs]
    m, n = req.method, len(segs)
    if low[:1] == ["serviceprincipals"]:
        if n == 1 and m == "GET":
            return _list_objects(state, req, "servicePrincipal", "servicePrincipals")
        if n == 1 and m == "POST":
            return _create_service_principal(state, req)
        if n == 2 and m == "GET":
            with state.lock:
                return Response(
                    200,
                    {
                        "@odata.context": f"{META}#servicePrincipals/$entity",
                        **_plain(_require(state, segs[1], "servicePrincipal")),
                    },
                )
        if n == 3 and low[2] in ("memberof", "transitivememberof") and m == "GET":
            return _member_of(state, req, segs[1], transitive=low[2] == "transitivememberof")
        if n == 3 and low[2] == "approleassignments":
            if m == "GET":
                return _list_app_role_assignments(state, req, segs[1])
            if m == "POST":
                return _grant_app_role(state, req, segs[1])
        if n == 4 and low[2] == "approleassignments" and m == "DELETE":
            return _revoke_app_role(state, segs[1], segs[3])
        if n == 3 and low[2] == "approleassignedto":
            if m == "GET":
                return _list_app_role_assigned_to(state, req, segs[1])
            if m == "POST":
                return _grant_app_role_to(state, req, segs[1])
        if n == 4 and low[2] == "approleassignedto" and m == "DELETE":
            return _revoke_app_role(state, segs[1], segs[3], by_resource=True)
    if low[:1] == ["groups"]:
        if n == 1 and m == "POST":
            return _create_group(state, req)
        if n == 1 and m == "GET":
            return _list_objects(state, req, "group", "groups")
        if n == 2 and m == "GET":
            with state.lock:
                return Response(
                    200,
                    {"@odata.context": f"{META}#groups/$entity", **_plain(_require(state, segs[1], "group"))},
                )
        if n == 2 and m == "DELETE":
            with state.lock:
                _require(state, segs[1], "group")
                state.remove_directory_object(segs[1].lower())
            return Response(204)
        if n == 3 and low[2] == "members" and m == "GET":
            return _members(state, req, segs[1])
        if n == 4 and low[2:] == ["members", "$ref"] and m == "POST":
            return _add_member(state, req, segs[1])
        if n == 5 and low[2] == "members" and low[4] == "$ref" and m == "DELETE":
            return _remove_member(state, segs[1], segs[3])
    if low[:1] == ["users"]:
        if n == 1 and m == "POST":
            return _create_user(state, req)
        if n == 2 and m == "GET":
            with state.lock:
                return Response(
                    200,
                    {"@odata.context": f"{META}#users/$entity", **_plain(_require(state, segs[1], "user"))},
                )
    if low[:1] == ["directoryobjects"]:
        if n == 2 and low[1] == "getbyids" and m == "POST":
            return _get_by_ids(state, req)
        if n == 2 and m == "GET":
            with state.lock:
                return Response(200, _view(_require(state, segs[1])))
    raise ArmError(400, "BadRequest", f"Resource not found for the segment '{segs[0] if segs else ''}'.")


def _list_objects(state: State, req: Request, kind: str, entity: str) -> Response:
    predicate = _filter(req.query.get("$filter", ""))
    with state.lock:
        items = [
            _plain(o)
            for oid, o in sorted(state.directory.items())
            if _kind(o) == kind and state.visible_object(oid) is not None and predicate(o)
        ]
    return _list(req, state, entity, items)


def _create_service_principal(state: State, req: Request) -> Response:
    body = req.json_object()
    app_id = body.get("appId")
    if not isinstance(app_id, str) or not is_guid(app_id):
        raise graph_bad_request("The appId property is required and must be a GUID.")
    roles = body.get("appRoles") or []
    if not isinstance(roles, list) or not all(
        isinstance(r, dict) and is_guid(str(r.get("id", ""))) for r in roles
    ):
        raise graph_bad_request("Each app role needs an 'id' that is a GUID.")
    with state.lock:
        if any(
            o.get("appId", "").lower() == app_id.lower()
            for o in state.directory.values()
            if _kind(o) == "servicePrincipal"
        ):
            raise ArmError(
                409,
                "Request_MultipleObjectsWithSameKeyValue",
                "The service principal cannot be created, updated, or restored because "
                "the service principal name is already in use.",
            )
        sp = _service_principal(
            new_guid(),
            app_id.lower(),
            str(body.get("displayName") or app_id),
            "Application",
            [
                {
                    "allowedMemberTypes": ["Application"],
                    "isEnabled": True,
                    "origin": "Application",
                    "description": None,
                    "displayName": None,
                    "value": None,
                    **r,
                }
                for r in roles
            ],
        )
        state.add_directory_object(sp)
        return Response(201, {"@odata.context": f"{META}#servicePrincipals/$entity", **_plain(sp)})


def _groups_of(state: State, object_id: str) -> list[str]:
    return sorted(
        g for g, members in state.group_members.items() if object_id in members and g in state.directory
    )


def _member_of(state: State, req: Request, sp_id: str, transitive: bool) -> Response:
    with state.lock:
        sp = _require(state, sp_id, "servicePrincipal")
        found = _groups_of(state, sp["id"])
        if transitive:
            queue, seen = list(found), set(found)
            while queue:
                for parent in _groups_of(state, queue.pop()):
                    if parent not in seen:
                        seen.add(parent)
                        queue.append(parent)
            found = sorted(seen)
        items = [copy.deepcopy(state.directory[g]) for g in found]
    return _list(req, state, "directoryObjects", items)


def _list_app_role_assignments(state: State, req: Request, sp_id: str) -> Response:
    with state.lock:
        sp = _require(state, sp_id, "servicePrincipal")
        items = [
            copy.deepcopy(a)
            for _, a in sorted(state.app_role_assignments.items())
            if a["principalId"] == sp["id"]
        ]
    return _list(req, state, f"servicePrincipals('{sp_id}')/appRoleAssignments", items)


def _grant_app_role(state: State, req: Request, sp_id: str) -> Response:
    body = req.json_object()
    principal_id = str(body.get("principalId", "")).lower()
    resource_id = str(body.get("resourceId", "")).lower()
    app_role_id = str(body.get("appRoleId", "")).lower()
    if not (is_guid(principal_id) and is_guid(resource_id) and is_guid(app_role_id)):
        raise graph_bad_request("principalId, resourceId and appRoleId are required and must be GUIDs.")
    with state.lock:
        sp = _require(state, sp_id, "servicePrincipal")
        if principal_id != sp["id"]:
            raise graph_bad_request(
                "The principalId in the body must be the service principal in the request URL."
            )
        resource = _require(state, resource_id, "servicePrincipal")
        role_ids = {str(r.get("id", "")).lower() for r in resource.get("appRoles", [])}
        if app_role_id != DEFAULT_ACCESS_ROLE and app_role_id not in role_ids:
            raise graph_bad_request(
                f"Permission being assigned was not found on application '{resource['appId']}'."
            )
        for a in state.app_role_assignments.values():
            if (a["principalId"], a["resourceId"], a["appRoleId"]) == (
                principal_id,
                resource_id,
                app_role_id,
            ):
                raise graph_bad_request("Permission being assigned already exists on the object")
        assignment_id = (
            base64.urlsafe_b64encode(uuid.uuid4().bytes + uuid.uuid4().bytes[:8]).decode().rstrip("=")
        )
        assignment = {
            "id": assignment_id,
            "deletedDateTime": None,
            "appRoleId": app_role_id,
            "createdDateTime": now_iso()[:19] + "Z",
            "principalDisplayName": sp["displayName"],
            "principalId": principal_id,
            "principalType": "ServicePrincipal",
            "resourceDisplayName": resource["displayName"],
            "resourceId": resource_id,
        }
        state.app_role_assignments[assignment_id] = assignment
        return Response(
            201,
            {
                "@odata.context": f"{META}#servicePrincipals('{sp_id}')/appRoleAssignments/$entity",
                **assignment,
            },
        )


def _grant_app_role_to(state: State, req: Request, resource_sp_id: str) -> Response:
    """``POST /servicePrincipals/{resource}/appRoleAssignedTo``: how an administrator grants an app role
    (e.g. a Microsoft Graph application permission) to a client service principal."""
    body = req.json_object()
    if str(body.get("resourceId", "")).lower() != resource_sp_id.lower():
        raise graph_bad_request(
            "The resourceId in the body must be the service principal in the request URL."
        )
    created = _grant_app_role(state, req, str(body.get("principalId", "")))
    created.body["@odata.context"] = f"{META}#servicePrincipals('{resource_sp_id}')/appRoleAssignedTo/$entity"
    return created


def _list_app_role_assigned_to(state: State, req: Request, resource_sp_id: str) -> Response:
    with state.lock:
        sp = _require(state, resource_sp_id, "servicePrincipal")
        items = [
            copy.deepcopy(a)
            for _, a in sorted(state.app_role_assignments.items())
            if a["resourceId"] == sp["id"]
        ]
    return _list(req, state, f"servicePrincipals('{resource_sp_id}')/appRoleAssignedTo", items)


def _revoke_app_role(state: State, sp_id: str, assignment_id: str, by_resource: bool = False) -> Response:
    with state.lock:
        sp = _require(state, sp_id, "servicePrincipal")
        found = state.app_role_assignments.get(assignment_id)
        if found is None or found["resourceId" if by_resource else "principalId"] != sp["id"]:
            raise graph_not_found(assignment_id)
        del state.app_role_assignments[assignment_id]
    return Response(204)


def _create_group(state: State, req: Request) -> Response:
    body = req.json_object()
    missing = [f for f in ("displayName", "mailEnabled", "mailNickname", "securityEnabled") if f not in body]
    if missing:
        raise graph_bad_request(f"Invalid value specified for property '{missing[0]}' of resource 'Group'.")
    group_id = new_guid()
    created = now_iso()[:19] + "Z"
    # every property of Graph's default view, as the recorded answers carry them
    group = {
        "@odata.type": "#microsoft.graph.group",
        "id": group_id,
        "deletedDateTime": None,
        "classification": body.get("classification"),
        "createdDateTime": created,
        "creationOptions": [],
        "description": body.get("description"),
        "displayName": body["displayName"],
        "expirationDateTime": None,
        "groupTypes": list(body.get("groupTypes") or []),
        "isAssignableToRole": body.get("isAssignableToRole"),
        "mail": None,
        "mailEnabled": bool(body["mailEnabled"]),
        "mailNickname": body["mailNickname"],
        "membershipRule": None,
        "membershipRuleProcessingState": None,
        "onPremisesDomainName": None,
        "onPremisesLastSyncDateTime": None,
        "onPremisesNetBiosName": None,
        "onPremisesSamAccountName": None,
        "onPremisesSecurityIdentifier": None,
        "onPremisesSyncEnabled": None,
        "preferredDataLocation": None,
        "preferredLanguage": None,
        "proxyAddresses": [],
        "renewedDateTime": created,
        "resourceBehaviorOptions": [],
        "resourceProvisioningOptions": [],
        "securityEnabled": bool(body["securityEnabled"]),
        "securityIdentifier": _security_identifier(group_id),
        "theme": None,
        "visibility": body.get("visibility"),
        "onPremisesProvisioningErrors": [],
    }
    with state.lock:
        state.add_directory_object(group)
        state.group_members[group["id"]] = []
    return Response(
        201, {"@odata.context": f"{META}#groups/$entity", **_plain(group)}, _created_at(group_id, "Group")
    )


def _members(state: State, req: Request, group_id: str) -> Response:
    with state.lock:
        group = _require(state, group_id, "group")
        items = [
            _view(state.directory[m])
            for m in state.group_members.get(group["id"], [])
            if m in state.directory
        ]
    return _list(req, state, "directoryObjects", items)


_REF = re.compile(r"/(directoryObjects|servicePrincipals|users|groups)/([0-9a-fA-F-]{36})/?$", re.IGNORECASE)


def _add_member(state: State, req: Request, group_id: str) -> Response:
    body = req.json_object()
    ref = body.get("@odata.id")
    match = _REF.search(str(ref or ""))
    if not match:
        raise graph_bad_request(f"Invalid object identifier '{ref}'.")
    member_id = match.group(2).lower()
    with state.lock:
        group = _require(state, group_id, "group")
        _require(state, member_id)
        members = state.group_members.setdefault(group["id"], [])
        if member_id in members:
            raise graph_bad_request(
                "One or more added object references already exist for the following modified properties: 'members'."
            )
        members.append(member_id)
    return Response(204)


def _remove_member(state: State, group_id: str, member_id: str) -> Response:
    with state.lock:
        group = _require(state, group_id, "group")
        members = state.group_members.get(group["id"], [])
        if member_id.lower() not in members:
            raise graph_not_found(member_id)
        members.remove(member_id.lower())
    return Response(204)


def _create_user(state: State, req: Request) -> Response:
    body = req.json_object()
    for field in ("displayName", "userPrincipalName"):
        if not body.get(field):
            raise graph_bad_request(f"Invalid value specified for property '{field}' of resource 'User'.")
    user = {
        "@odata.type": "#microsoft.graph.user",
        "id": new_guid(),
        "businessPhones": list(body.get("businessPhones") or []),
        "displayName": body["displayName"],
        "givenName": body.get("givenName"),
        "jobTitle": body.get("jobTitle"),
        "mail": None,
        "mobilePhone": body.get("mobilePhone"),
        "officeLocation": body.get("officeLocation"),
        "preferredLanguage": body.get("preferredLanguage"),
        "surname": body.get("surname"),
        "userPrincipalName": body["userPrincipalName"],
        "mailNickname": body.get("mailNickname"),  # $select only (_USER_SELECT_ONLY)
        "accountEnabled": bool(body.get("accountEnabled", True)),  # $select only
    }
    with state.lock:
        state.add_directory_object(user)
    return Response(
        201, {"@odata.context": f"{META}#users/$entity", **_plain(user)}, _created_at(user["id"], "User")
    )


def _get_by_ids(state: State, req: Request) -> Response:
    body = req.json_object()
    ids = body.get("ids")
    if not isinstance(ids, list):
        raise graph_bad_request("The 'ids' property is required.")
    with state.lock:
        items = [_view(o) for i in ids if (o := state.visible_object(str(i))) is not None]
    return Response(200, {"@odata.context": f"{META}#directoryObjects", "value": items})
