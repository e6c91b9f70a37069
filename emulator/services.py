"""Routes of the service-specific APIs that are not plain resources (checked before the generic store).

Paths below ``/subscriptions/{s}/resourceGroups/{rg}/providers/``:
- ``Microsoft.KeyVault/vaults/{v}/accessPolicies/{add|replace|remove}`` → ``keyvault.py``
- ``Microsoft.DocumentDB/databaseAccounts/{a}/sqlRoleAssignments[/{guid}]``,
  ``…/sqlRoleDefinitions[/{guid}]`` → ``cosmos.py``
- ``Microsoft.DBforPostgreSQL/flexibleServers/{s}/administrators[/{objectId}]``,
  ``Microsoft.DBforMySQL/flexibleServers/{s}/administrators[/ActiveDirectory]``,
  ``Microsoft.Sql/servers/{s}/administrators[/ActiveDirectory]`` → ``db_admins.py``
- ``Microsoft.Web/sites/{s}[/slots/{x}]/config/{appsettings|connectionstrings}[/list]`` → ``web_config.py``
- ``Microsoft.App/containerApps/{c}/listSecrets`` → ``container_apps.py``
and the operation status/result URLs of asynchronous writes (``async_ops.py``), at
``/subscriptions/{s}[/resourceGroups/{rg}]/providers/{ns}/locations/{l}/…``.
Anything else: ``None`` (the generic routes decide).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from emulator import async_ops, container_apps, cosmos, db_admins, keyvault, web_config
from emulator.errors import ArmError
from emulator.state import State
from emulator.wire import Request, Response

Handler = Callable[[], Response]
_API_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}(-(preview|beta|alpha|privatepreview))?$", re.IGNORECASE)


def _method_not_allowed(req: Request) -> ArmError:
    return ArmError(
        405, "MethodNotAllowed", f"The requested resource does not support http method '{req.method}'."
    )


def _check_api_version(req: Request) -> None:
    version = req.query.get("api-version", "")
    if not _API_VERSION.match(version):
        raise ArmError(400, "InvalidApiVersionParameter", f"The api-version '{version}' is invalid.")


def route(state: State, req: Request, segs: list[str], low: list[str]) -> Response | None:
    """``segs``/``low``: the path segments (``low`` lower-cased), starting at ``subscriptions``."""
    if async_ops.is_operation_path(low):
        _check_api_version(req)
        return async_ops.get(state, req, segs, low)
    if len(segs) < 9 or low[2] != "resourcegroups" or low[4] != "providers":
        return None
    handler = _resource_route(state, req, segs, low)
    if handler is None:
        return None
    _check_api_version(req)
    with state.lock:
        async_ops.settle(state)
    return handler()


def _resource_route(state: State, req: Request, segs: list[str], low: list[str]) -> Handler | None:
    sub, group, ns = segs[1], segs[3], low[5]
    rest, rest_low = segs[6:], low[6:]
    n = len(rest)
    if ns == "microsoft.keyvault" and n == 4 and rest_low[0] == "vaults" and rest_low[2] == "accesspolicies":
        return lambda: keyvault.update_access_policy(state, req, sub, group, rest[1], rest[3])
    if ns == "microsoft.documentdb" and rest_low[0] == "databaseaccounts" and n in (3, 4):
        return _cosmos(state, req, sub, group, rest, rest_low)
    flavor = db_admins.BY_NAMESPACE.get(ns)
    if flavor is not None and n in (3, 4) and rest_low[2] == "administrators":
        if rest_low[0] != flavor.server_type.split("/")[1].lower():
            return None
        server = rest[1]
        if n == 3:
            if req.method != "GET":
                raise _method_not_allowed(req)
            return lambda: db_admins.list_admins(state, req, flavor, sub, group, server)
        name = rest[3]
        handlers: dict[str, Handler] = {
            "GET": lambda: db_admins.get_admin(state, req, flavor, sub, group, server, name),
            "PUT": lambda: db_admins.put_admin(state, req, flavor, sub, group, server, name),
            "DELETE": lambda: db_admins.delete_admin(state, req, flavor, sub, group, server, name),
        }
        if req.method not in handlers:
            raise _method_not_allowed(req)
        return handlers[req.method]
    if ns == "microsoft.web" and rest_low[0] == "sites":
        site_part = 4 if n >= 4 and rest_low[2] == "slots" else 2
        names = [rest[1], rest[3]] if site_part == 4 else [rest[1]]
        tail = rest_low[site_part:]
        if len(tail) in (2, 3) and tail[0] == "config" and tail[1] in ("appsettings", "connectionstrings"):
            action = tail[2] if len(tail) == 3 else ""
            if action not in ("", "list"):
                return None
            return lambda: web_config.handle(state, req, sub, group, names, tail[1], action)
    if ns == "microsoft.app" and n == 3 and rest_low[0] == "containerapps" and rest_low[2] == "listsecrets":
        return lambda: container_apps.list_secrets(state, req, sub, group, rest[1])
    return None


def _cosmos(
    state: State, req: Request, sub: str, group: str, rest: list[str], rest_low: list[str]
) -> Handler | None:
    account, kind = rest[1], rest_low[2]
    if kind == "sqlroleassignments":
        if len(rest) == 3:
            if req.method != "GET":
                raise _method_not_allowed(req)
            return lambda: cosmos.list_assignments(state, req, sub, group, account)
        guid = rest[3]
        handlers: dict[str, Handler] = {
            "GET": lambda: cosmos.get_assignment(state, req, sub, group, account, guid),
            "PUT": lambda: cosmos.put_assignment(state, req, sub, group, account, guid),
            "DELETE": lambda: cosmos.delete_assignment(state, req, sub, group, account, guid),
        }
    elif kind == "sqlroledefinitions":
        if len(rest) == 3:
            if req.method != "GET":
                raise _method_not_allowed(req)
            return lambda: cosmos.list_definitions(state, req, sub, group, account)
        guid = rest[3]
        handlers = {
            "GET": lambda: cosmos.get_definition(state, req, sub, group, account, guid),
            "PUT": lambda: cosmos.put_definition(state, req, sub, group, account, guid),
            "DELETE": lambda: cosmos.delete_definition(state, req, sub, group, account, guid),
        }
    else:
        return None
    if req.method not in handlers:
        raise _method_not_allowed(req)
    return handlers[req.method]
