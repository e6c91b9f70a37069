"""App Service app settings and connection strings (``WebApps_ListApplicationSettings``,
``WebApps_UpdateApplicationSettings``, ``WebApps_ListConnectionStrings``, ``WebApps_UpdateConnectionStrings``
and their ``…Slot`` forms; api 2023-01-01; examples ``ListAppSettings.json``, ``UpdateAppSettings.json``).

- ``POST {site}/config/appsettings/list`` → 200 ``{"id": "{site}/config/appsettings", "name": "appsettings",
  "type": "Microsoft.Web/sites/config", "kind"?: <the site's kind>, "properties": {name: value}}``.
- ``PUT {site}/config/appsettings`` with ``{"properties": {name: value}}`` replaces the whole set; answers
  like the list. Values are strings (or null).
- ``POST {site}/config/connectionstrings/list`` / ``PUT {site}/config/connectionstrings``: the same with
  ``properties: {name: {"value", "type"}}``, ``type`` one of ``ConnectionStringType``.
- Slots: the same under ``sites/{s}/slots/{slot}`` (``type`` ``Microsoft.Web/sites/slots/config``).
- A GET of the site never carries the values (``siteConfig.appSettings`` is null); a site PUT with
  ``siteConfig.appSettings`` files them here (``resource_types.py``). GET of ``config/appsettings`` is
  not an operation of the spec: 405.
Errors: 404 ``ResourceNotFound`` (site or slot), 400 ``BadRequest`` (body not of that shape).
"""

from __future__ import annotations

from typing import Any

from emulator import site_settings
from emulator.arm_resources import require_group
from emulator.errors import ArmError, bad_request, not_found
from emulator.ids import key
from emulator.state import State
from emulator.wire import Request, Response

CONNECTION_TYPES = {"MySql", "SQLServer", "SQLAzure", "Custom", "NotificationHub", "ServiceBus", "EventHub",
                    "ApiHub", "DocDb", "RedisCache", "PostgreSQL"}  # fmt: skip


def _site(state: State, sub: str, group: str, names: list[str]) -> dict[str, Any]:
    stored_group = require_group(state, sub, group)
    path = f"{stored_group['id']}/providers/Microsoft.Web/sites/{names[0]}"
    rtype = "Microsoft.Web/sites"
    if len(names) == 2:
        path += f"/slots/{names[1]}"
        rtype += "/slots"
    site = state.resources.get(key(path))
    if site is None:
        raise not_found(rtype, names, group)
    return site


def _validate(kind: str, body: dict[str, Any]) -> dict[str, Any]:
    props = body.get("properties")
    if not isinstance(props, dict):
        raise bad_request('The request body must be {"properties": {...}}.', target="properties")
    for name, value in props.items():
        if kind == "appsettings":
            if value is not None and not isinstance(value, str):
                raise bad_request(
                    f"The value of app setting '{name}' must be a string.", target=f"properties.{name}"
                )
        elif not isinstance(value, dict) or value.get("type", "Custom") not in CONNECTION_TYPES:
            raise bad_request(
                f'Connection string \'{name}\' must be {{"value", "type"}} with type one of '
                f"{', '.join(sorted(CONNECTION_TYPES))}.",
                target=f"properties.{name}",
            )
    if kind == "connectionstrings":
        return {n: {"value": v.get("value"), "type": v.get("type", "Custom")} for n, v in props.items()}
    return dict(props)


def handle(
    state: State, req: Request, sub: str, group: str, names: list[str], kind: str, action: str
) -> Response:
    """``kind`` is ``appsettings`` or ``connectionstrings``; ``action`` is ``list`` or ``""``."""
    if action == "list":
        if req.method != "POST":
            raise ArmError(
                405,
                "MethodNotAllowed",
                f"The requested resource does not support http method '{req.method}'.",
            )
        with state.lock:
            return Response(200, site_settings.read(state, _site(state, sub, group, names), kind))
    if req.method != "PUT":
        raise ArmError(
            405, "MethodNotAllowed", f"The requested resource does not support http method '{req.method}'."
        )
    properties = _validate(kind, req.json_object())
    with state.lock:
        return Response(200, site_settings.write(state, _site(state, sub, group, names), kind, properties))
