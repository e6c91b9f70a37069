"""Cosmos DB data-plane RBAC as ARM exposes it (``SqlResources_*SqlRoleAssignment*`` /
``*SqlRoleDefinition*``, api 2024-11-15; examples ``CosmosDBSqlRoleAssignmentCreateUpdate.json``,
``CosmosDBSqlRoleAssignmentDelete.json``).

- ``{account}/sqlRoleDefinitions``: the built-in ``00000000-0000-0000-0000-000000000001`` (Cosmos DB Built-in
  Data Reader) and ``…0002`` (Data Contributor) exist on every account; GET one, list (``{"value": [...]}``);
  custom roles are PUT and DELETEd asynchronously like the assignments.
- ``{account}/sqlRoleAssignments/{guid}``: ``{"properties": {"roleDefinitionId", "scope", "principalId"}}``.
  PUT and DELETE are asynchronous (``async_ops.py``): **202**, no body, ``Azure-AsyncOperation`` and
  ``Location`` both ``/subscriptions/{s}/providers/Microsoft.DocumentDB/locations/{account location}/
  operationsStatus/{op}`` (as the delete example shows); the assignment appears (or disappears) when the
  operation completes. GET 200 / 404 ``NotFound``; list ``{"value": [...]}``; DELETE of an absent one 204.
- Validation (400 ``BadRequest``): the name and ``principalId`` are GUIDs; ``roleDefinitionId`` (a full id or
  a bare GUID) names a definition of this account; ``scope`` is the account or a path inside it
  (``/dbs/{db}[/colls/{c}]``; a bare ``/`` or ``/dbs/...`` is taken relative to the account, as the CLI does).
  The account missing: 404 ``ResourceNotFound``. Not indexed by Resource Graph.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from emulator import async_ops
from emulator.arm_resources import require_group
from emulator.errors import ArmError, bad_request, not_found
from emulator.ids import is_guid, key
from emulator.state import State
from emulator.wire import Request, Response

ACCOUNT_TYPE = "Microsoft.DocumentDB/databaseAccounts"
ASSIGNMENT_TYPE = "Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments"
DEFINITION_TYPE = "Microsoft.DocumentDB/databaseAccounts/sqlRoleDefinitions"
READER = "00000000-0000-0000-0000-000000000001"
CONTRIBUTOR = "00000000-0000-0000-0000-000000000002"
_BUILTIN = {
    READER: ("Cosmos DB Built-in Data Reader", [
        "Microsoft.DocumentDB/databaseAccounts/readMetadata",
        "Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers/executeQuery",
        "Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers/readChangeFeed",
        "Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers/items/read"]),
    CONTRIBUTOR: ("Cosmos DB Built-in Data Contributor", [
        "Microsoft.DocumentDB/databaseAccounts/readMetadata",
        "Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers/*",
        "Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers/items/*"]),
}  # fmt: skip


def _account(state: State, sub: str, group: str, name: str) -> dict[str, Any]:
    stored_group = require_group(state, sub, group)
    account = state.resources.get(key(f"{stored_group['id']}/providers/{ACCOUNT_TYPE}/{name}"))
    if account is None or account["type"].lower() != ACCOUNT_TYPE.lower():
        raise not_found(ACCOUNT_TYPE, [name], group)
    return account


def _builtin(account: dict[str, Any], guid: str) -> dict[str, Any]:
    role_name, actions = _BUILTIN[guid]
    return {
        "id": f"{account['id']}/sqlRoleDefinitions/{guid}",
        "name": guid,
        "type": DEFINITION_TYPE,
        "properties": {
            "roleName": role_name,
            "type": "BuiltInRole",
            "assignableScopes": [account["id"]],
            "permissions": [{"dataActions": list(actions), "notDataActions": []}],
        },
    }


def _definitions(state: State, account: dict[str, Any]) -> list[dict[str, Any]]:
    prefix = key(account["id"]) + "/sqlroledefinitions/"
    custom = [copy.deepcopy(r) for k, r in sorted(state.resources.items()) if k.startswith(prefix)]
    return [_builtin(account, READER), _builtin(account, CONTRIBUTOR), *custom]


def _assignments(state: State, account: dict[str, Any]) -> list[dict[str, Any]]:
    prefix = key(account["id"]) + "/sqlroleassignments/"
    return [copy.deepcopy(r) for k, r in sorted(state.resources.items()) if k.startswith(prefix)]


def _accepted(
    state: State,
    req: Request,
    sub: str,
    account: dict[str, Any],
    apply: Callable[[], dict[str, Any] | None],
    is_delete: bool = False,
) -> Response:
    """202 with the operation URLs ``…/Microsoft.DocumentDB/locations/{account location}/operationsStatus/{op}``
    (both of them, as the delete example shows); ``apply`` does the write when the operation completes."""
    return async_ops.accept(
        state,
        req,
        sub,
        "Microsoft.DocumentDB",
        account["location"],
        "operationsStatus",
        "operationsStatus",
        apply,
        is_delete=is_delete,
    )


def _put_later(
    state: State,
    req: Request,
    sub: str,
    account: dict[str, Any],
    resource: dict[str, Any],
    check: Callable[[], None] | None = None,
) -> Response:
    """Asynchronous PUT of a custom definition or an assignment: ``resource`` is stored when the operation
    completes, after ``check`` (which fails the operation by raising an ``ArmError``)."""

    def apply() -> dict[str, Any]:
        if check is not None:
            check()
        state.put_resource(resource["id"], copy.deepcopy(resource))
        return copy.deepcopy(resource)

    return _accepted(state, req, sub, account, apply)


def _delete_later(
    state: State, req: Request, sub: str, account: dict[str, Any], resource_id: str
) -> Response:
    """Asynchronous DELETE of a custom definition or an assignment; an absent one: 204."""
    if key(resource_id) not in state.resources:
        return Response(204)

    def apply() -> None:
        state.remove_resource(resource_id)

    return _accepted(state, req, sub, account, apply, is_delete=True)


def list_definitions(state: State, req: Request, sub: str, group: str, name: str) -> Response:
    with state.lock:
        return Response(200, {"value": _definitions(state, _account(state, sub, group, name))})


def get_definition(state: State, req: Request, sub: str, group: str, name: str, guid: str) -> Response:
    with state.lock:
        account = _account(state, sub, group, name)
        found = next((d for d in _definitions(state, account) if d["name"].lower() == guid.lower()), None)
        if found is None:
            raise ArmError(404, "NotFound", f"The Sql Role Definition with Id [{guid}] was not found.")
        return Response(200, found)


def put_definition(state: State, req: Request, sub: str, group: str, name: str, guid: str) -> Response:
    """A custom data-plane role (asynchronous like the assignments); built-in ones cannot be changed."""
    props = req.json_object().get("properties")
    if not isinstance(props, dict) or not isinstance(props.get("roleName"), str):
        raise bad_request("The request body must carry 'properties.roleName'.", target="properties.roleName")
    if not is_guid(guid) or guid.lower() in _BUILTIN:
        raise bad_request(
            f"The Sql Role Definition Id [{guid}] is not valid for a custom role.", target="roleDefinitionId"
        )
    with state.lock:
        account = _account(state, sub, group, name)
        definition: dict[str, Any] = {
            "id": f"{account['id']}/sqlRoleDefinitions/{guid}",
            "name": guid,
            "type": DEFINITION_TYPE,
            "properties": {
                "roleName": props["roleName"],
                "type": "CustomRole",
                "assignableScopes": copy.deepcopy(props.get("assignableScopes") or [account["id"]]),
                "permissions": copy.deepcopy(props.get("permissions") or []),
            },
        }
        return _put_later(state, req, sub, account, definition)


def delete_definition(state: State, req: Request, sub: str, group: str, name: str, guid: str) -> Response:
    """Deleting a custom role (asynchronous); built-in roles cannot be deleted; absent: 204."""
    if guid.lower() in _BUILTIN:
        raise bad_request(
            f"The built-in Sql Role Definition [{guid}] cannot be deleted.", target="roleDefinitionId"
        )
    with state.lock:
        account = _account(state, sub, group, name)
        return _delete_later(state, req, sub, account, f"{account['id']}/sqlRoleDefinitions/{guid}")


def list_assignments(state: State, req: Request, sub: str, group: str, name: str) -> Response:
    with state.lock:
        return Response(200, {"value": _assignments(state, _account(state, sub, group, name))})


def get_assignment(state: State, req: Request, sub: str, group: str, name: str, guid: str) -> Response:
    with state.lock:
        account = _account(state, sub, group, name)
        found = state.resources.get(key(f"{account['id']}/sqlRoleAssignments/{guid}"))
        if found is None:
            raise ArmError(404, "NotFound", f"The Sql Role Assignment with Id [{guid}] was not found.")
        return Response(200, copy.deepcopy(found))


def _resolve_definition(state: State, account: dict[str, Any], value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise bad_request("The roleDefinitionId is required.", target="properties.roleDefinitionId")
    guid = value.rstrip("/").rsplit("/", 1)[-1]
    if "/" in value.strip("/") and not key(value).startswith(key(account["id"]) + "/sqlroledefinitions/"):
        raise bad_request(
            f"The provided Sql Role Definition Id [{value}] is not a valid role definition of this account.",
            target="properties.roleDefinitionId",
        )
    found = next((d for d in _definitions(state, account) if d["name"].lower() == guid.lower()), None)
    if found is None:
        raise bad_request(
            f"The provided Sql Role Definition Id [{guid}] does not exist.",
            target="properties.roleDefinitionId",
        )
    return str(found["id"])


def _resolve_scope(account: dict[str, Any], value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise bad_request("The scope is required.", target="properties.scope")
    scope = value.rstrip("/") or "/"
    if scope == "/" or scope.lower().startswith("/dbs/"):
        scope = account["id"] + ("" if scope == "/" else scope)
    k, account_key = key(scope), key(account["id"])
    if k != account_key and not (k.startswith(account_key + "/dbs/") and len(k.split("/")) in (11, 13)):
        raise bad_request(
            f"The provided scope [{value}] is not a valid scope within the database account "
            f"[{account['name']}]: it must be the account, a database (/dbs/{{db}}) or a container "
            "(/dbs/{db}/colls/{container}).",
            target="properties.scope",
        )
    return scope


def put_assignment(state: State, req: Request, sub: str, group: str, name: str, guid: str) -> Response:
    body = req.json_object()
    props = body.get("properties")
    if not isinstance(props, dict):
        raise bad_request("The request body must carry 'properties'.", target="properties")
    if not is_guid(guid):
        raise bad_request(
            f"The Sql Role Assignment Id [{guid}] is not a valid GUID.", target="roleAssignmentId"
        )
    principal = props.get("principalId")
    if not isinstance(principal, str) or not is_guid(principal):
        raise bad_request("The principalId must be a GUID.", target="properties.principalId")
    with state.lock:
        account = _account(state, sub, group, name)
        definition = _resolve_definition(state, account, props.get("roleDefinitionId"))
        scope = _resolve_scope(account, props.get("scope"))
        assignment: dict[str, Any] = {
            "id": f"{account['id']}/sqlRoleAssignments/{guid}",
            "name": guid,
            "type": ASSIGNMENT_TYPE,
            "properties": {"roleDefinitionId": definition, "scope": scope, "principalId": principal},
        }

        def account_still_there() -> None:
            if key(account["id"]) not in state.resources:
                raise not_found(ACCOUNT_TYPE, [name], group)

        return _put_later(state, req, sub, account, assignment, check=account_still_there)


def delete_assignment(state: State, req: Request, sub: str, group: str, name: str, guid: str) -> Response:
    with state.lock:
        account = _account(state, sub, group, name)
        return _delete_later(state, req, sub, account, f"{account['id']}/sqlRoleAssignments/{guid}")
