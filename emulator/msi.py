"""Microsoft.ManagedIdentity (``arm-specs/Microsoft.ManagedIdentity/2026-05-31/ManagedIdentity.json``).

User-assigned identities (api-versions 2023-01-31, 2024-11-30, 2026-05-31 and older/preview ones):
- PUT 201 created / 200 updated with the same body; PATCH 200; GET 200; DELETE 200 / 204 absent.
- List by resource group and by subscription, paged by ``nextLink`` with ``$skiptoken``.
- ``id`` spells the group segment ``resourcegroups`` (lower case), as the service does (see examples).
- ``properties.tenantId/principalId/clientId`` generated once; ``isolationScope`` (``None`` default,
  ``Regional``) is returned from 2024-11-30 and refused on 2023-01-31; ``assignmentRestrictions``
  from 2026-05-31. Names: 3-128 chars, letters, digits, ``-``, ``_``, starting with a letter or digit.
- Each identity has a Graph service principal (``servicePrincipalType: ManagedIdentity``) that is
  invisible for ``replicationDelaySeconds`` and removed when the identity is deleted. Deleting an
  identity leaves resources that reference it and role assignments naming it untouched (FACTS.md).
Federated identity credentials: PUT 201/200, GET, DELETE 200/204, list paged; at most ``ficLimit``
(20) per identity; issuer+subject unique per identity; a write while another write to the same
identity is in flight (``ficWriteWindowMs``) fails 409
``ConcurrentFederatedIdentityCredentialsWritesForSingleManagedIdentity`` (FACTS.md: create them one by one).
Status codes and messages of the credential errors follow the "Errors" table of Microsoft's
"Important considerations and restrictions for federated identity credentials" page: 400 "Issuer and
subject combination already exists for this Managed Identity.", 400 "Federated identity credentials
must have exactly one audience.", 400 "Federated Identity Credential name '{name}' is invalid.", 409
for concurrent writes. The page names no error code: ``BadRequest`` is the code the service uses for
its other 400s. The 21st credential's code (``FederatedIdentityCredentialLimitExceeded``, 400) is not
confirmed by any public source found.
System-assigned identity of any resource: ``GET {scope}/providers/Microsoft.ManagedIdentity/identities/default``.
"""

from __future__ import annotations

import copy
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from emulator.arm_resources import check_location, remove_resource_tree, require_group
from emulator.errors import ArmError, not_found
from emulator.ids import key, new_guid
from emulator.paging import page
from emulator.state import TENANT_ID, ResourceMeta, State
from emulator.wire import Request, Response

API_VERSIONS = frozenset(
    {
        "2015-08-31-preview",
        "2018-11-30",
        "2021-09-30-preview",
        "2022-01-31-preview",
        "2023-01-31",
        "2023-07-31-preview",
        "2024-11-30",
        "2025-01-31-preview",
        "2025-05-31-preview",
        "2026-05-31",
    }
)
IDENTITY_TYPE = "Microsoft.ManagedIdentity/userAssignedIdentities"
FIC_TYPE = "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials"
_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_-]{2,127}$")
_FIC_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_-]{2,119}$")


def check_api_version(req: Request, resource_type: str = IDENTITY_TYPE) -> str:
    version = req.query.get("api-version", "")
    if version not in API_VERSIONS:
        raise ArmError(
            400,
            "NoRegisteredProviderFound",
            f"No registered resource provider found for location 'global' and API version '{version}' for type "
            f"'{resource_type.split('/', 1)[1]}'. The supported api-versions are '{', '.join(sorted(API_VERSIONS))}'.",
        )
    return version


def identity_id(subscription_id: str, group: str, name: str) -> str:
    return f"/subscriptions/{subscription_id}/resourcegroups/{group}/providers/{IDENTITY_TYPE}/{name}"


def render(body: dict[str, Any], api_version: str) -> dict[str, Any]:
    """The identity as the requested api-version shows it."""
    out = copy.deepcopy(body)
    props = out["properties"]
    if api_version[:10] < "2024-11-30":
        props.pop("isolationScope", None)
    if api_version[:10] < "2025-05-31":
        props.pop("assignmentRestrictions", None)
    return out


def _validate_properties(props: Any, api_version: str) -> dict[str, Any]:
    if props is None:
        return {}
    if not isinstance(props, dict):
        raise ArmError(
            400, "InvalidRequestContent", "'properties' must be a JSON object.", target="properties"
        )
    result: dict[str, Any] = {}
    if "isolationScope" in props and props["isolationScope"] is not None:
        scope = props["isolationScope"]
        if api_version[:10] < "2024-11-30":
            raise ArmError(
                400,
                "BadRequest",
                f"The property 'isolationScope' is not supported in api-version '{api_version}'; use 2024-11-30 or later.",
                target="properties.isolationScope",
            )
        if scope not in ("None", "Regional"):
            raise ArmError(
                400,
                "BadRequest",
                f"Invalid isolationScope '{scope}'. Allowed values: 'None', 'Regional'.",
                target="properties.isolationScope",
            )
        result["isolationScope"] = scope
    if "assignmentRestrictions" in props and props["assignmentRestrictions"] is not None:
        restrictions = props["assignmentRestrictions"]
        if api_version[:10] < "2025-05-31":
            raise ArmError(
                400,
                "BadRequest",
                f"The property 'assignmentRestrictions' is not supported in api-version '{api_version}'.",
                target="properties.assignmentRestrictions",
            )
        providers = restrictions.get("providers", []) if isinstance(restrictions, dict) else None
        if not isinstance(providers, list) or not all(isinstance(p, str) for p in providers):
            raise ArmError(
                400,
                "BadRequest",
                "'assignmentRestrictions.providers' must be a list of strings.",
                target="properties.assignmentRestrictions",
            )
        result["assignmentRestrictions"] = {"providers": list(providers)}
    return result


def _check_name(name: str) -> None:
    if not _NAME.match(name):
        raise ArmError(
            400,
            "InvalidResourceName",
            f"Resource name '{name}' is invalid. The name can contain only letters, numbers, underscores and hyphens, "
            "must start with a letter or number and be between 3 and 128 characters long.",
        )


def _find(state: State, subscription_id: str, group: str, name: str) -> dict[str, Any] | None:
    return state.resources.get(key(identity_id(subscription_id, group, name)))


def _require(state: State, subscription_id: str, group: str, name: str) -> dict[str, Any]:
    require_group(state, subscription_id, group)
    found = _find(state, subscription_id, group, name)
    if found is None:
        raise not_found(IDENTITY_TYPE, [name], group)
    return found


def put_identity(state: State, req: Request, subscription_id: str, group: str, name: str) -> Response:
    api = check_api_version(req)
    body = req.json_object()
    _check_name(name)
    location = check_location(body.get("location"))
    props = _validate_properties(body.get("properties"), api)
    with state.lock:
        sub = state.touch_subscription(subscription_id)
        stored_group = require_group(state, sub, group)
        existing = _find(state, sub, group, name)
        if existing is not None:
            if existing["location"] != location:
                raise ArmError(
                    400,
                    "InvalidResourceLocation",
                    f"The resource '{existing['name']}' already exists in location '{existing['location']}' in resource "
                    f"group '{stored_group['name']}'. A resource with the same name cannot be created in location "
                    f"'{location}'. Please select a new resource name.",
                )
            updated = copy.deepcopy(existing)
            updated["tags"] = copy.deepcopy(body.get("tags") or {})
            updated["properties"].update(props)
            state.put_resource(updated["id"], updated)
            return Response(200, render(updated, api))
        principal_id, client_id = new_guid(), new_guid()
        rid = identity_id(sub, stored_group["name"], name)
        created: dict[str, Any] = {
            "id": rid,
            "name": name,
            "type": IDENTITY_TYPE,
            "location": location,
            "tags": copy.deepcopy(body.get("tags") or {}),
            "properties": {
                "tenantId": TENANT_ID,
                "principalId": principal_id,
                "clientId": client_id,
                "isolationScope": props.get("isolationScope", "None"),
                "assignmentRestrictions": props.get("assignmentRestrictions", {"providers": []}),
            },
        }
        state.put_resource(rid, created)
        state.resource_meta[key(rid)] = ResourceMeta(created=time.monotonic())
        state.add_directory_object(
            {
                "@odata.type": "#microsoft.graph.servicePrincipal",
                "id": principal_id,
                "appId": client_id,
                "displayName": name,
                "servicePrincipalType": "ManagedIdentity",
                "alternativeNames": ["isExplicit=True", rid],
                "servicePrincipalNames": [client_id, f"https://identity.azure.net/{new_guid()}"],
                "accountEnabled": True,
                "appRoles": [],
                "tags": [],
            },
            replicates=True,
        )
        # Azure answers a create with Location: the new identity's id (recorded traffic, tests/conformance/recordings)
        return Response(201, render(created, api), {"Location": rid})


def patch_identity(state: State, req: Request, subscription_id: str, group: str, name: str) -> Response:
    api = check_api_version(req)
    body = req.json_object()
    props = _validate_properties(body.get("properties"), api)
    with state.lock:
        existing = _require(state, subscription_id, group, name)
        if body.get("location") and check_location(body["location"]) != existing["location"]:
            raise ArmError(
                400,
                "LocationNotUpdatable",
                "The location of an identity cannot be changed.",
                target="location",
            )
        updated = copy.deepcopy(existing)
        if "tags" in body:
            updated["tags"] = copy.deepcopy(body["tags"] or {})
        updated["properties"].update(props)
        state.put_resource(updated["id"], updated)
        return Response(200, render(updated, api))


def get_identity(state: State, req: Request, subscription_id: str, group: str, name: str) -> Response:
    api = check_api_version(req)
    with state.lock:
        return Response(200, render(_require(state, subscription_id, group, name), api))


def delete_identity(state: State, req: Request, subscription_id: str, group: str, name: str) -> Response:
    check_api_version(req)
    with state.lock:
        require_group(state, subscription_id, group)
        existing = _find(state, subscription_id, group, name)
        if existing is None:
            return Response(204)
        remove_resource_tree(state, existing["id"])
    return Response(200)


def list_identities(state: State, req: Request, subscription_id: str, group: str | None) -> Response:
    api = check_api_version(req)
    with state.lock:
        sub = state.touch_subscription(subscription_id)
        if group is not None:
            stored = require_group(state, sub, group)
            prefix = key(stored["id"]) + "/"
        else:
            prefix = key(f"/subscriptions/{sub}") + "/"
        items = [
            render(r, api)
            for k, r in sorted(state.resources.items())
            if k.startswith(prefix) and r["type"] == IDENTITY_TYPE
        ]
    return Response(200, page(req, items, int(state.config["pageSize"])))


# --- federated identity credentials ------------------------------------------------------
def _fic_body(identity: dict[str, Any], name: str, props: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": f"{identity['id']}/federatedIdentityCredentials/{name}",
        "name": name,
        "type": FIC_TYPE,
        "properties": {
            "issuer": props["issuer"],
            "subject": props["subject"],
            "audiences": list(props["audiences"]),
        },
    }


def _validate_fic(body: dict[str, Any]) -> dict[str, Any]:
    props = body.get("properties")
    if not isinstance(props, dict):
        raise ArmError(
            400,
            "BadRequest",
            "Federated Identity Credential from HTTP body has empty properties",
            target="properties",
        )
    for field in ("issuer", "subject"):
        if not isinstance(props.get(field), str) or not props[field]:
            raise ArmError(
                400, "BadRequest", f"The property '{field}' is required.", target=f"properties.{field}"
            )
    if not props["issuer"].startswith("https://"):
        raise ArmError(400, "BadRequest", "The issuer must be a valid https URL.", target="properties.issuer")
    audiences = props.get("audiences")
    if (
        not isinstance(audiences, list)
        or len(audiences) != 1
        or not all(isinstance(a, str) and a for a in audiences)
    ):
        raise ArmError(
            400,
            "BadRequest",
            "Federated identity credentials must have exactly one audience.",
            target="properties.audiences",
        )
    return props


def put_fic(
    state: State, req: Request, subscription_id: str, group: str, name: str, fic_name: str
) -> Response:
    api = check_api_version(req, FIC_TYPE)
    del api
    body = req.json_object()
    props = _validate_fic(body)
    if not _FIC_NAME.match(fic_name):
        raise ArmError(
            400,
            "InvalidResourceName",
            f"Federated Identity Credential name '{fic_name}' is invalid.",
        )
    with _fic_write(state, subscription_id, group, name) as identity:
        ikey = key(identity["id"])
        with state.lock:
            if ikey not in state.resources:
                raise not_found(IDENTITY_TYPE, [name], group)
            fics = state.fics.setdefault(ikey, {})
            existing = fics.get(fic_name.lower())
            for other_name, other in fics.items():
                same = (
                    other["properties"]["issuer"] == props["issuer"]
                    and other["properties"]["subject"] == props["subject"]
                )
                if same and other_name != fic_name.lower():
                    raise ArmError(
                        400,
                        "BadRequest",
                        "Issuer and subject combination already exists for this Managed Identity.",
                    )
            if existing is None and len(fics) >= int(state.config["ficLimit"]):
                raise ArmError(
                    400,
                    "FederatedIdentityCredentialLimitExceeded",
                    f"The identity already has the maximum of {state.config['ficLimit']} federated identity credentials.",
                )
            stored = _fic_body(identity, existing["name"] if existing else fic_name, props)
            fics[fic_name.lower()] = stored
            if existing:
                return Response(200, copy.deepcopy(stored))
            # a create carries Location: the credential's id (recorded traffic, tests/conformance/recordings)
            return Response(201, copy.deepcopy(stored), {"Location": stored["id"]})


@contextmanager
def _fic_write(state: State, subscription_id: str, group: str, name: str) -> Iterator[dict[str, Any]]:
    """A credential write holds its identity for ``ficWriteWindowMs`` (slept outside the state lock);
    an overlapping write to the same identity is refused with 409, as Azure does (FACTS.md)."""
    with state.lock:
        identity = _require(state, subscription_id, group, name)
        ikey = key(identity["id"])
        if ikey in state.fic_inflight:
            raise _concurrent(identity["name"])
        state.fic_inflight.add(ikey)
    try:
        time.sleep(float(state.config["ficWriteWindowMs"]) / 1000.0)
        yield identity
    finally:
        with state.lock:
            state.fic_inflight.discard(ikey)


def _concurrent(identity_name: str) -> ArmError:
    return ArmError(
        409,
        "ConcurrentFederatedIdentityCredentialsWritesForSingleManagedIdentity",
        f"Too many Federated Identity Credentials are written concurrently for the managed identity '{identity_name}'. "
        "Concurrent Federated Identity Credentials writes under the same managed identity are not supported.",
    )


def get_fic(
    state: State, req: Request, subscription_id: str, group: str, name: str, fic_name: str
) -> Response:
    check_api_version(req, FIC_TYPE)
    with state.lock:
        identity = _require(state, subscription_id, group, name)
        found = state.fics.get(key(identity["id"]), {}).get(fic_name.lower())
        if found is None:
            raise not_found(FIC_TYPE, [name, fic_name], group)
        return Response(200, copy.deepcopy(found))


def delete_fic(
    state: State, req: Request, subscription_id: str, group: str, name: str, fic_name: str
) -> Response:
    check_api_version(req, FIC_TYPE)
    with _fic_write(state, subscription_id, group, name) as identity, state.lock:
        removed = state.fics.get(key(identity["id"]), {}).pop(fic_name.lower(), None)
    return Response(200 if removed is not None else 204)


def list_fics(state: State, req: Request, subscription_id: str, group: str, name: str) -> Response:
    check_api_version(req, FIC_TYPE)
    with state.lock:
        identity = _require(state, subscription_id, group, name)
        items = [copy.deepcopy(f) for _, f in sorted(state.fics.get(key(identity["id"]), {}).items())]
    return Response(200, page(req, items, int(state.config["pageSize"])))


# --- system-assigned identity of any resource --------------------------------------------
def get_system_assigned(state: State, req: Request, scope: str) -> Response:
    """``SystemAssignedIdentities_GetByScope``: the resource's system-assigned identity, 404 if it has none."""
    check_api_version(req, "Microsoft.ManagedIdentity/identities")
    with state.lock:
        k = key(scope)
        resource = state.resources.get(k)
        meta = state.resource_meta.get(k)
        if resource is None or meta is None or meta.system_principal is None:
            raise ArmError(
                404,
                "ResourceNotFound",
                f"The Resource 'Microsoft.ManagedIdentity/identities/default' under scope '{scope}' was not found.",
            )
        principal = meta.system_principal
        return Response(
            200,
            {
                "id": f"{resource['id']}/providers/Microsoft.ManagedIdentity/identities/default",
                "name": resource["name"],
                "type": "Microsoft.ManagedIdentity/identities",
                "location": resource["location"],
                "tags": copy.deepcopy(resource.get("tags") or {}),
                "properties": {
                    "tenantId": principal["tenantId"],
                    "principalId": principal["principalId"],
                    "clientId": principal["clientId"],
                    "clientSecretUrl": (
                        f"https://control-{resource['location']}.identity.azure.net{resource['id']}"
                        f"/credentials/v2/identities?tid={principal['tenantId']}&oid={principal['principalId']}"
                        f"&aid={principal['clientId']}"
                    ),
                },
            },
        )
