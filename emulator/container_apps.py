"""Container Apps secrets: ``POST {containerApp}/listSecrets`` (``ContainerApps_ListSecrets``, api 2023-05-01;
example ``ContainerApps_ListSecrets.json``) → 200 ``{"value": [{"name", "value", "identity"?, "keyVaultUrl"?}]}``.

A GET of the app leaves ``configuration.secrets[].value`` out (``resource_types.present``); this is the one
way to read them. 404 ``ResourceNotFound`` for an unknown app, 405 for methods other than POST.
"""

from __future__ import annotations

import copy

from emulator.arm_resources import require_group
from emulator.errors import ArmError, not_found
from emulator.ids import key
from emulator.state import State
from emulator.wire import Request, Response

APP_TYPE = "Microsoft.App/containerApps"


def list_secrets(state: State, req: Request, sub: str, group: str, name: str) -> Response:
    if req.method != "POST":
        raise ArmError(
            405, "MethodNotAllowed", f"The requested resource does not support http method '{req.method}'."
        )
    with state.lock:
        stored_group = require_group(state, sub, group)
        app = state.resources.get(key(f"{stored_group['id']}/providers/{APP_TYPE}/{name}"))
        if app is None:
            raise not_found(APP_TYPE, [name], group)
        config = (app.get("properties") or {}).get("configuration") or {}
        secrets = [copy.deepcopy(s) for s in config.get("secrets") or [] if isinstance(s, dict)]
    return Response(200, {"value": secrets})
