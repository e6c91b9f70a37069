"""Microsoft Graph application permissions, enforced with ``{"rbac": {"enforce": true}}``.

Microsoft Graph's service principal (appId ``00000003-0000-0000-c000-000000000000``, in every tenant,
surviving reset) offers the application permissions below as app roles, with their real ids (the
same in every tenant; Microsoft Graph permissions reference). An administrator grants one the way
it is done in Entra ID: ``POST /servicePrincipals/{client}/appRoleAssignments`` with
``{"principalId": client, "resourceId": <Graph's service principal id>, "appRoleId": <id>}``.

A caller with an ``oid`` (``callers.py``) then needs, for each Graph operation the emulator serves,
app role assignments of Microsoft Graph to its own service principal (``oid``; app roles are never
inherited through groups for app-only tokens) that satisfy the operation's row in :data:`REQUIRED`
(the least-privileged permission or one of the higher ones the reference lists; a row with two sets
needs one of each). Otherwise 403 ``Authorization_RequestDenied`` "Insufficient privileges to
complete the operation." A service principal may always read itself (``GET /servicePrincipals/{own
id}``), as Graph allows. The estate owner is never restricted.

| operation | needs (any of) |
|---|---|
| ``GET /servicePrincipals[/{id}]`` | Application.Read.All, Application.ReadWrite.OwnedBy, Application.ReadWrite.All, Directory.Read.All, Directory.ReadWrite.All |
| ``POST /servicePrincipals`` | Application.ReadWrite.OwnedBy, Application.ReadWrite.All, Directory.ReadWrite.All |
| ``GET /servicePrincipals/{id}/memberOf`` (and ``transitiveMemberOf``) | Application.Read.All, Application.ReadWrite.All, Application.ReadWrite.OwnedBy, Directory.Read.All, Directory.ReadWrite.All |
| ``GET /servicePrincipals/{id}/appRoleAssignments`` | Application.Read.All, Application.ReadWrite.All, AppRoleAssignment.ReadWrite.All, Directory.Read.All, Directory.ReadWrite.All |
| ``POST /servicePrincipals/{id}/appRoleAssignments`` | AppRoleAssignment.ReadWrite.All **and** one of Application.Read.All, Application.ReadWrite.All, Directory.Read.All, Directory.ReadWrite.All |
| ``DELETE /servicePrincipals/{id}/appRoleAssignments/{a}`` (or ``…/appRoleAssignedTo/{a}``) | AppRoleAssignment.ReadWrite.All |
| ``GET /servicePrincipals/{id}/appRoleAssignedTo`` | Application.Read.All, Application.ReadWrite.All, Directory.Read.All, Directory.ReadWrite.All |
| ``POST /servicePrincipals/{resource}/appRoleAssignedTo`` | as ``POST …/appRoleAssignments`` |
| ``GET /groups[/{id}]``, ``GET /groups/{id}/members`` | GroupMember.Read.All, Group.Read.All, GroupMember.ReadWrite.All, Group.ReadWrite.All, Directory.Read.All, Directory.ReadWrite.All |
| ``POST /groups`` | Group.Create, Group.ReadWrite.All, Directory.ReadWrite.All |
| ``DELETE /groups/{id}`` | Group.ReadWrite.All, Directory.ReadWrite.All |
| ``POST /groups/{id}/members/$ref`` | GroupMember.ReadWrite.All, Group.ReadWrite.All, Directory.ReadWrite.All; for a **service principal** member also Application.ReadWrite.All or Directory.ReadWrite.All (the reference's "servicePrincipal: GroupMember.ReadWrite.All and Application.ReadWrite.All") |
| ``DELETE /groups/{id}/members/{m}/$ref`` | GroupMember.ReadWrite.All, Group.ReadWrite.All, Directory.ReadWrite.All |
| ``POST /users`` | User.ReadWrite.All, Directory.ReadWrite.All |
| ``GET /users/{id}`` | User.ReadBasic.All, User.Read.All, User.ReadWrite.All, Directory.Read.All, Directory.ReadWrite.All |
| ``GET /directoryObjects/{id}``, ``POST /directoryObjects/getByIds`` | Directory.Read.All, Directory.ReadWrite.All |
"""

from __future__ import annotations

import json
import re
from typing import Any

from emulator.callers import caller_of
from emulator.errors import ArmError
from emulator.state import State
from emulator.wire import Request

GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"

# (id, value, display name): Microsoft Graph application permissions (app roles), real ids.
GRAPH_APP_ROLES: list[tuple[str, str, str]] = [
    ("df021288-bdef-4463-88db-98f22de89214", "User.Read.All", "Read all users' full profiles"),
    ("97235f07-e226-4f63-ace3-39588e11d3a1", "User.ReadBasic.All", "Read all users' basic profiles"),
    ("741f803b-c850-494e-b5df-cde7c675a1ca", "User.ReadWrite.All", "Read and write all users' full profiles"),
    ("5b567255-7703-4780-807c-7be8301ae99b", "Group.Read.All", "Read all groups"),
    ("62a82d76-70ea-41e2-9197-370581804d09", "Group.ReadWrite.All", "Read and write all groups"),
    ("bf7b1a76-6e77-406b-b258-bf5c7720e98f", "Group.Create", "Create groups"),
    ("98830695-27a2-44f7-8c18-0c3ebc9698f6", "GroupMember.Read.All", "Read all group memberships"),
    ("dbaae8cf-10b5-4b86-a4a1-f871c94c6695", "GroupMember.ReadWrite.All", "Read and write all group memberships"),
    ("7ab1d382-f21e-4acd-a863-ba3e13f7da61", "Directory.Read.All", "Read directory data"),
    ("19dbc75e-c2e2-444c-a770-ec69d8559fc7", "Directory.ReadWrite.All", "Read and write directory data"),
    ("9a5d68dd-52b0-4cc2-bd40-abcf44ac3a30", "Application.Read.All", "Read all applications"),
    ("1bfefb4e-e0b5-418b-a88f-73c46d2cc8e9", "Application.ReadWrite.All", "Read and write all applications"),
    ("18a4783c-866b-4cc7-a460-3d5e5662c884", "Application.ReadWrite.OwnedBy",
     "Manage apps that this app creates or owns"),
    ("06b708a9-e830-4db3-a914-8e69da51d44f", "AppRoleAssignment.ReadWrite.All", "Manage app permission grants and app role assignments"),
    ("9e3f62cf-ca93-4989-b6ce-bf83c28f9fe8", "RoleManagement.ReadWrite.Directory",
     "Read and write all directory RBAC settings"),
    ("b633e1c5-b582-4048-a93e-9f11b44c7e96", "Mail.Send", "Send mail as any user"),
]  # fmt: skip
ROLE_IDS = {value: role_id for role_id, value, _ in GRAPH_APP_ROLES}

_SP_READ = frozenset({"Application.Read.All", "Application.ReadWrite.OwnedBy", "Application.ReadWrite.All",
                      "Directory.Read.All", "Directory.ReadWrite.All"})  # fmt: skip
_GROUP_READ = frozenset({"GroupMember.Read.All", "Group.Read.All", "GroupMember.ReadWrite.All",
                         "Group.ReadWrite.All", "Directory.Read.All", "Directory.ReadWrite.All"})  # fmt: skip
_MEMBER_WRITE = frozenset({"GroupMember.ReadWrite.All", "Group.ReadWrite.All", "Directory.ReadWrite.All"})
_DIR_READ = frozenset({"Directory.Read.All", "Directory.ReadWrite.All"})

# (method, path pattern after /graph/v1.0, lower-cased) -> every set must be met by one granted role.
REQUIRED: list[tuple[str, re.Pattern[str], list[frozenset[str]]]] = [
    ("GET", re.compile(r"^serviceprincipals(/[^/]+)?$"), [_SP_READ]),
    ("POST", re.compile(r"^serviceprincipals$"),
     [frozenset({"Application.ReadWrite.OwnedBy", "Application.ReadWrite.All", "Directory.ReadWrite.All"})]),
    ("GET", re.compile(r"^serviceprincipals/[^/]+/(transitive)?memberof$"), [_SP_READ]),
    ("GET", re.compile(r"^serviceprincipals/[^/]+/approleassignments$"),
     [frozenset({"Application.Read.All", "Application.ReadWrite.All", "AppRoleAssignment.ReadWrite.All",
                 "Directory.Read.All", "Directory.ReadWrite.All"})]),
    ("POST", re.compile(r"^serviceprincipals/[^/]+/approleassignments$"),
     [frozenset({"AppRoleAssignment.ReadWrite.All"}),
      frozenset({"Application.Read.All", "Application.ReadWrite.All", "Directory.Read.All",
                 "Directory.ReadWrite.All"})]),
    ("GET", re.compile(r"^serviceprincipals/[^/]+/approleassignedto$"),
     [frozenset({"Application.Read.All", "Application.ReadWrite.All", "Directory.Read.All",
                 "Directory.ReadWrite.All"})]),
    ("POST", re.compile(r"^serviceprincipals/[^/]+/approleassignedto$"),
     [frozenset({"AppRoleAssignment.ReadWrite.All"}),
      frozenset({"Application.Read.All", "Application.ReadWrite.All", "Directory.Read.All",
                 "Directory.ReadWrite.All"})]),
    ("DELETE", re.compile(r"^serviceprincipals/[^/]+/approle(assignments|assignedto)/[^/]+$"),
     [frozenset({"AppRoleAssignment.ReadWrite.All"})]),
    ("GET", re.compile(r"^groups(/[^/]+)?$"), [_GROUP_READ]),
    ("GET", re.compile(r"^groups/[^/]+/members$"), [_GROUP_READ]),
    ("POST", re.compile(r"^groups$"), [frozenset({"Group.Create", "Group.ReadWrite.All", "Directory.ReadWrite.All"})]),
    ("DELETE", re.compile(r"^groups/[^/]+$"), [frozenset({"Group.ReadWrite.All", "Directory.ReadWrite.All"})]),
    ("POST", re.compile(r"^groups/[^/]+/members/\$ref$"), [_MEMBER_WRITE]),
    ("DELETE", re.compile(r"^groups/[^/]+/members/[^/]+/\$ref$"), [_MEMBER_WRITE]),
    ("POST", re.compile(r"^users$"), [frozenset({"User.ReadWrite.All", "Directory.ReadWrite.All"})]),
    ("GET", re.compile(r"^users/[^/]+$"),
     [frozenset({"User.ReadBasic.All", "User.Read.All", "User.ReadWrite.All", "Directory.Read.All",
                 "Directory.ReadWrite.All"})]),
    ("POST", re.compile(r"^directoryobjects/getbyids$"), [_DIR_READ]),
    ("GET", re.compile(r"^directoryobjects/[^/]+$"), [_DIR_READ]),
]  # fmt: skip
_SP_MEMBER = frozenset({"Application.ReadWrite.All", "Directory.ReadWrite.All"})
_REF = re.compile(r"/(directoryObjects|servicePrincipals|users|groups)/([0-9a-fA-F-]{36})/?$", re.IGNORECASE)


def graph_service_principal(state: State) -> dict[str, Any] | None:
    for obj in state.directory.values():
        if str(obj.get("appId", "")).lower() == GRAPH_APP_ID and "servicePrincipal" in str(
            obj.get("@odata.type")
        ):
            return obj
    return None


def granted(state: State, object_id: str) -> set[str]:
    """The Microsoft Graph application permissions (values) granted to a principal (lock held)."""
    graph = graph_service_principal(state)
    if graph is None:
        return set()
    names = {str(r["id"]).lower(): str(r["value"]) for r in graph.get("appRoles", []) if isinstance(r, dict)}
    return {
        names[a["appRoleId"].lower()]
        for a in state.app_role_assignments.values()
        if a["principalId"].lower() == object_id.lower()
        and a["resourceId"].lower() == str(graph["id"]).lower()
        and a["appRoleId"].lower() in names
    }


def required(state: State, req: Request, segs: list[str]) -> list[frozenset[str]]:
    """What the Graph operation needs: every set must be met (empty: nothing)."""
    path = "/".join(s.lower() for s in segs)
    for method, pattern, needs in REQUIRED:
        if method == req.method and pattern.match(path):
            needs = list(needs)
            if method == "POST" and path.endswith("/members/$ref"):
                try:
                    ref = str((json.loads(req.body or b"{}") or {}).get("@odata.id", ""))
                except (ValueError, AttributeError):
                    ref = ""
                match = _REF.search(ref)
                member = state.directory.get(match.group(2).lower()) if match else None
                if member is not None and "servicePrincipal" in str(member.get("@odata.type")):
                    needs.append(_SP_MEMBER)
            return needs
    return []


def denied() -> ArmError:
    return ArmError(403, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")


def authorize_graph(state: State, req: Request, segs: list[str]) -> None:
    """Raise 403 unless the caller holds the application permissions this Graph request needs."""
    caller = caller_of(req)
    if caller.is_owner or not state.config["rbac"]["enforce"]:
        return
    oid = caller.object_id or ""
    low = [s.lower() for s in segs]
    if req.method == "GET" and len(low) == 2 and low[0] == "serviceprincipals" and low[1] == oid:
        return  # a service principal may always read itself
    with state.lock:
        needs = required(state, req, segs)
        have = granted(state, oid) if needs else set()
    if any(not (have & need) for need in needs):
        raise denied()
