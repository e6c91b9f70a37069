"""Entra administrators of database servers: child (proxy) resources, asynchronous writes, not in
Resource Graph.

- PostgreSQL flexible server (``Administrators_*`` / ``AdministratorsMicrosoftEntra_*``, api 2024-08-01;
  examples ``AdministratorAdd.json``, ``AdministratorsMicrosoftEntra{Add,Get,ListByServer,Delete}.json``):
  ``{server}/administrators/{objectId}``, body ``{"properties": {"principalType": User|Group|
  ServicePrincipal, "principalName", "tenantId"}}``; several coexist. Answers carry
  ``properties.objectId`` and, as the examples show, ``name`` = the principal name.
  Async: ``/subscriptions/{s}/providers/Microsoft.DBforPostgreSQL/locations/{l}/azureAsyncOperation/{op}``
  and ``…/operationResults/{op}``.
- MySQL flexible server (``AzureADAdministrators_*``, api 2023-12-30; ``AzureADAdministratorCreate.json``):
  one administrator, named ``ActiveDirectory``: ``{"properties": {"administratorType": "ActiveDirectory",
  "login", "sid", "tenantId", "identityResourceId"}}``. Same async URLs under ``Microsoft.DBforMySQL``.
- Azure SQL (``ServerAzureADAdministrators_*``, api 2023-08-01; ``AdministratorCreateOrUpdate.json``):
  one administrator, ``ActiveDirectory``: ``administratorType``, ``login``, ``sid`` (for a managed identity
  its clientId), ``tenantId``; answers add ``azureADOnlyAuthentication``, the server's
  ``properties.administrators.azureADOnlyAuthentication`` (false when unset). Async: ``…/Microsoft.Sql/locations/{l}/
  administratorAzureAsyncOperation/{server}/{op}`` and ``administratorOperationResults``.
PUT → **202** (create and update; the administrator appears when the operation completes), GET 200 or
404 ``ResourceNotFound``, list ``{"value": [...]}``, DELETE 202 (204 when absent). Validation: 400
``BadRequest`` for a non-GUID objectId/sid/tenantId, a missing principalName/login, an unknown
principalType, an administratorType other than ActiveDirectory, or an administrator name other than
``ActiveDirectory`` (MySQL, SQL). The server missing: 404 ``ResourceNotFound``. Azure SQL uses the codes
its spec lists instead: 400 ``InvalidServerAdministratorTypePropertyName`` (administratorType),
``InvalidResourceRequestBody`` (no properties, login or GUID sid), ``InvalidServerAzureADAdminDeleteOperation``
(DELETE while the server is Entra-only), 404 ``ServerNotInSubscriptionResourceGroup`` (no such server).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from emulator import async_ops
from emulator.arm_resources import require_group
from emulator.errors import ArmError, bad_request, not_found
from emulator.ids import is_guid, key
from emulator.state import TENANT_ID, State
from emulator.wire import Request, Response


def _guid(props: dict[str, Any], field: str, default: str | None = None) -> str:
    value = props.get(field, default)
    if not isinstance(value, str) or not is_guid(value):
        raise bad_request(f"The property '{field}' must be a GUID.", target=f"properties.{field}")
    return value


def _text(props: dict[str, Any], field: str) -> str:
    value = props.get(field)
    if not isinstance(value, str) or not value.strip():
        raise bad_request(f"The property '{field}' is required.", target=f"properties.{field}")
    return value


def _postgres(name: str, props: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    if not is_guid(name):
        raise bad_request(
            f"The administrator name '{name}' must be the principal's object id.", target="objectId"
        )
    principal_type = props.get("principalType")
    if principal_type not in ("User", "Group", "ServicePrincipal", "Unknown"):
        raise bad_request(
            "The property 'principalType' must be one of User, Group, ServicePrincipal.",
            target="properties.principalType",
        )
    principal_name = _text(props, "principalName")
    return principal_name, {
        "principalType": principal_type,
        "principalName": principal_name,
        "objectId": name,
        "tenantId": _guid(props, "tenantId", TENANT_ID),
    }


def _active_directory(name: str, props: dict[str, Any], extra: tuple[str, ...]) -> tuple[str, dict[str, Any]]:
    if name.lower() != "activedirectory":
        raise bad_request(
            f"The administrator name '{name}' is not valid: the only administrator is 'ActiveDirectory'.",
            target="administratorName",
        )
    if props.get("administratorType") != "ActiveDirectory":
        raise bad_request(
            "The property 'administratorType' must be 'ActiveDirectory'.",
            target="properties.administratorType",
        )
    body = {
        "administratorType": "ActiveDirectory",
        "login": _text(props, "login"),
        "sid": _guid(props, "sid"),
        "tenantId": _guid(props, "tenantId", TENANT_ID),
    }
    for field in extra:
        if props.get(field) is not None:
            body[field] = copy.deepcopy(props[field])
    return "ActiveDirectory", body


def _sql(name: str, props: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """Azure SQL answers with the codes its spec documents (``ServerAzureADAdministrators.json``)."""
    if props.get("administratorType") != "ActiveDirectory":
        raise ArmError(
            400,
            "InvalidServerAdministratorTypePropertyName",
            "Server active directory administrator type should be ActiveDirectory",
        )
    if (
        not isinstance(props.get("login"), str)
        or not props["login"].strip()
        or not is_guid(str(props.get("sid")))
    ):
        raise ArmError(
            400,
            "InvalidResourceRequestBody",
            "The resource or resource properties in the request body is empty or invalid.",
        )
    return _active_directory(name, props, ())


@dataclass(frozen=True)
class Flavor:
    server_type: str
    namespace: str
    status_kind: str
    result_kind: str
    validate: Callable[[str, dict[str, Any]], tuple[str, dict[str, Any]]]
    per_server_infix: bool = False

    @property
    def admin_type(self) -> str:
        return f"{self.server_type}/administrators"


POSTGRES = Flavor(
    "Microsoft.DBforPostgreSQL/flexibleServers", "Microsoft.DBforPostgreSQL", "azureAsyncOperation",
    "operationResults", _postgres,
)  # fmt: skip
MYSQL = Flavor(
    "Microsoft.DBforMySQL/flexibleServers", "Microsoft.DBforMySQL", "azureAsyncOperation", "operationResults",
    lambda n, p: _active_directory(n, p, ("identityResourceId",)),
)  # fmt: skip
SQL = Flavor(
    "Microsoft.Sql/servers", "Microsoft.Sql", "administratorAzureAsyncOperation", "administratorOperationResults",
    _sql, per_server_infix=True,
)  # fmt: skip
BY_NAMESPACE = {"microsoft.dbforpostgresql": POSTGRES, "microsoft.dbformysql": MYSQL, "microsoft.sql": SQL}


def _server(state: State, flavor: Flavor, sub: str, group: str, name: str) -> dict[str, Any]:
    stored_group = require_group(state, sub, group)
    server = state.resources.get(key(f"{stored_group['id']}/providers/{flavor.server_type}/{name}"))
    if server is None or server["type"].lower() != flavor.server_type.lower():
        if flavor is SQL:
            raise ArmError(
                404,
                "ServerNotInSubscriptionResourceGroup",
                "Specified server does not exist in the specified resource group and subscription.",
            )
        raise not_found(flavor.server_type, [name], group)
    return server


def _admin_id(server: dict[str, Any], name: str) -> str:
    return f"{server['id']}/administrators/{name}"


def list_admins(state: State, req: Request, flavor: Flavor, sub: str, group: str, server: str) -> Response:
    with state.lock:
        stored = _server(state, flavor, sub, group, server)
        prefix = key(stored["id"]) + "/administrators/"
        items = [copy.deepcopy(r) for k, r in sorted(state.resources.items()) if k.startswith(prefix)]
    return Response(200, {"value": items})


def get_admin(
    state: State, req: Request, flavor: Flavor, sub: str, group: str, server: str, name: str
) -> Response:
    with state.lock:
        stored = _server(state, flavor, sub, group, server)
        found = state.resources.get(key(_admin_id(stored, name)))
        if found is None:
            raise not_found(flavor.admin_type, [server, name], group)
        return Response(200, copy.deepcopy(found))


def put_admin(
    state: State, req: Request, flavor: Flavor, sub: str, group: str, server: str, name: str
) -> Response:
    props = req.json_object().get("properties")
    if not isinstance(props, dict):
        if flavor is SQL:
            raise ArmError(
                400,
                "InvalidResourceRequestBody",
                "The resource or resource properties in the request body is empty or invalid.",
            )
        raise bad_request("The request body must carry 'properties'.", target="properties")
    display_name, properties = flavor.validate(name, props)
    with state.lock:
        stored = _server(state, flavor, sub, group, server)
        if flavor is SQL:  # mirrors the server's Entra-only setting (properties.administrators)
            external = (stored.get("properties") or {}).get("administrators") or {}
            properties["azureADOnlyAuthentication"] = bool(external.get("azureADOnlyAuthentication", False))
        canonical = "ActiveDirectory" if flavor is not POSTGRES else name
        admin: dict[str, Any] = {
            "id": _admin_id(stored, canonical),
            "name": display_name,
            "type": flavor.admin_type,
            "properties": properties,
        }

        def apply() -> dict[str, Any]:
            if key(stored["id"]) not in state.resources:
                raise not_found(flavor.server_type, [server], group)
            state.put_resource(admin["id"], copy.deepcopy(admin))
            return copy.deepcopy(admin)

        return async_ops.accept(
            state, req, sub, flavor.namespace, stored["location"], flavor.status_kind, flavor.result_kind, apply,
            infix=stored["name"] if flavor.per_server_infix else "",
        )  # fmt: skip


def delete_admin(
    state: State, req: Request, flavor: Flavor, sub: str, group: str, server: str, name: str
) -> Response:
    with state.lock:
        stored = _server(state, flavor, sub, group, server)
        admin_id = _admin_id(stored, name)
        if key(admin_id) not in state.resources:
            return Response(204)
        external = (stored.get("properties") or {}).get("administrators") or {}
        if flavor is SQL and external.get("azureADOnlyAuthentication"):
            raise ArmError(
                400,
                "InvalidServerAzureADAdminDeleteOperation",
                "User tried to delete server Azure Active Azure admin when AzureADOnlyAuthentication is set, "
                "please use azureADOnlyAuthentications API first.",
            )

        def apply() -> None:
            state.remove_resource(admin_id)

        return async_ops.accept(
            state, req, sub, flavor.namespace, stored["location"], flavor.status_kind, flavor.result_kind, apply,
            is_delete=True, infix=stored["name"] if flavor.per_server_infix else "",
        )  # fmt: skip
