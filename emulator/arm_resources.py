"""Microsoft.Resources: subscriptions, locations, resource groups and generic resources by id.

Reproduces ARM as the SDK's ``ResourceManagementClient`` and a raw REST caller see it:
- Subscriptions exist on first use (``GET /subscriptions/{s}`` answers a subscription object).
- Resource groups: PUT 201 created / 200 updated (409 ``InvalidResourceGroupLocation`` on a location
  change), GET, HEAD 204/404, list with paging, DELETE 202 + ``Location`` (the group, everything in
  it, and role assignments scoped inside it are removed; ``operationresults`` then answers 200).
- Any resource type by id (``/subscriptions/{s}/resourceGroups/{rg}/providers/{ns}/{type}/{name}``,
  nested types too): PUT 201/200 (``LocationRequired``, ``ResourceGroupNotFound``,
  ``InvalidResourceLocation``), GET, PATCH (JSON merge patch; 405 for ``patchUnsupportedTypes``),
  DELETE 200/204; collection GETs per resource group / subscription / parent.
- Lists ``/subscriptions/{s}/resources`` and ``/resourceGroups/{rg}/resources`` with ``$filter`` on
  ``resourceType``/``name``/``location`` and nextLink paging; like ARM they return each resource's
  ``identity`` block but not its ``properties``.
Identity blocks follow ``identity_block.py``; Microsoft.ManagedIdentity itself is in ``msi.py``.
"""

from __future__ import annotations

import copy
import re
import time
from typing import Any

from emulator import identity_block, locations, rbac_enforce, resource_types
from emulator.callers import caller_of
from emulator.errors import ArmError, bad_request, not_found, resource_group_not_found
from emulator.ids import ResourceId, key, new_guid
from emulator.paging import page
from emulator.state import TENANT_ID, ResourceMeta, State
from emulator.wire import Request, Response

RG_TYPE = "Microsoft.Resources/resourceGroups"
_LIST_FIELDS = (
    "id",
    "name",
    "type",
    "kind",
    "location",
    "managedBy",
    "sku",
    "plan",
    "tags",
    "identity",
    "zones",
    "extendedLocation",
)


# --- subscriptions -----------------------------------------------------------------------
def subscription_body(state: State, subscription_id: str) -> dict[str, Any]:
    sub = state.touch_subscription(subscription_id)
    return {
        "id": f"/subscriptions/{sub}",
        "authorizationSource": "RoleBased",
        "managedByTenants": [],
        "subscriptionId": sub,
        "tenantId": TENANT_ID,
        "displayName": f"Emulated subscription {sub}",
        "state": "Enabled",
        "subscriptionPolicies": {
            "locationPlacementId": "Public_2014-09-01",
            "quotaId": "PayAsYouGo_2014-09-01",
            "spendingLimit": "Off",
        },
    }


def get_subscription(state: State, req: Request, subscription_id: str) -> Response:
    with state.lock:
        return Response(200, subscription_body(state, subscription_id))


def list_subscriptions(state: State, req: Request) -> Response:
    who = caller_of(req)  # with RBAC enforced, only the subscriptions the caller has access to
    with state.lock:
        subs = [
            subscription_body(state, s)
            for s in sorted(state.subscriptions.values())
            if rbac_enforce.sees_subscription(state, who, s)
        ]
    return Response(200, page(req, subs, int(state.config["pageSize"])))


def list_locations(state: State, req: Request, subscription_id: str) -> Response:
    with state.lock:
        sub = state.touch_subscription(subscription_id)
    return Response(200, {"value": locations.locations(sub)})


def check_location(value: Any, target: str = "location") -> str:
    if not isinstance(value, str) or not value.strip():
        raise ArmError(
            400, "LocationRequired", "The location property is required for this definition.", target=target
        )
    normalized = locations.normalize(value)
    if normalized not in locations.NAMES:
        raise ArmError(
            400,
            "LocationNotAvailableForResourceType",
            f"The provided location '{value}' is not available for resource type. List of available regions: "
            f"'{','.join(sorted(locations.NAMES))}'.",
            target=target,
        )
    return normalized


# --- resource groups ---------------------------------------------------------------------
def rg_id(subscription_id: str, name: str) -> str:
    return f"/subscriptions/{subscription_id}/resourceGroups/{name}"


def find_group(state: State, subscription_id: str, name: str) -> dict[str, Any] | None:
    return state.resource_groups.get(key(rg_id(subscription_id, name)))


def require_group(state: State, subscription_id: str, name: str) -> dict[str, Any]:
    group = find_group(state, subscription_id, name)
    if group is None:
        raise resource_group_not_found(name)
    return group


_RG_NAME = re.compile(r"^[-\w._()]{1,90}$")


def put_group(state: State, req: Request, subscription_id: str, name: str) -> Response:
    body = req.json_object()
    if not _RG_NAME.match(name) or name.endswith("."):
        raise ArmError(
            400,
            "InvalidResourceGroupName",
            f"The resource group name '{name}' is invalid: up to 90 letters, digits, underscores, parentheses, "
            "hyphens and periods, not ending in a period.",
        )
    location = check_location(body.get("location"))
    with state.lock:
        sub = state.touch_subscription(subscription_id)
        existing = find_group(state, sub, name)
        if existing is not None and existing["location"] != location:
            raise ArmError(
                409,
                "InvalidResourceGroupLocation",
                f"Invalid resource group location '{location}'. The Resource group already exists in location "
                f"'{existing['location']}'.",
            )
        stored_name = existing["name"] if existing else name
        group: dict[str, Any] = {
            "id": rg_id(sub, stored_name),
            "name": stored_name,
            "type": RG_TYPE,
            "location": location,
            "properties": {"provisioningState": "Succeeded"},
        }
        if body.get("tags") is not None:
            group["tags"] = body["tags"]
        if body.get("managedBy"):
            group["managedBy"] = body["managedBy"]
        state.resource_groups[key(group["id"])] = group
        return Response(200 if existing else 201, copy.deepcopy(group))


def patch_group(state: State, req: Request, subscription_id: str, name: str) -> Response:
    body = req.json_object()
    with state.lock:
        group = require_group(state, subscription_id, name)
        if "tags" in body:
            group["tags"] = body["tags"] or {}
        return Response(200, copy.deepcopy(group))


def get_group(state: State, req: Request, subscription_id: str, name: str) -> Response:
    with state.lock:
        group = require_group(state, subscription_id, name)
        if req.method == "HEAD":
            return Response(204)
        return Response(200, copy.deepcopy(group))


def head_group(state: State, req: Request, subscription_id: str, name: str) -> Response:
    with state.lock:
        return Response(204 if find_group(state, subscription_id, name) else 404)


def list_groups(state: State, req: Request, subscription_id: str) -> Response:
    with state.lock:
        sub = state.touch_subscription(subscription_id)
        prefix = key(f"/subscriptions/{sub}") + "/"
        groups = [copy.deepcopy(g) for k, g in sorted(state.resource_groups.items()) if k.startswith(prefix)]
    return Response(200, page(req, groups, int(state.config["pageSize"])))


def delete_group(state: State, req: Request, subscription_id: str, name: str) -> Response:
    with state.lock:
        group = require_group(state, subscription_id, name)
        prefix = key(group["id"]) + "/"
        for k in [k for k in state.resources if k.startswith(prefix)]:
            if k in state.resources:
                remove_resource_tree(state, state.resources[k]["id"])
        remove_assignments_under(state, group["id"])
        del state.resource_groups[key(group["id"])]
    token = new_guid()
    api = req.query.get("api-version", "")
    location = f"{req.base_url}/subscriptions/{subscription_id}/operationresults/{token}?api-version={api}"
    return Response(202, None, {"Location": location, "Retry-After": "1"})


def operation_result(state: State, req: Request, subscription_id: str, token: str) -> Response:
    """Async-operation results of resource group deletes: finished immediately, so 200."""
    return Response(200)


# --- generic resources -------------------------------------------------------------------
def remove_assignments_under(state: State, scope: str) -> None:
    """ARM removes role assignments scoped at or inside a deleted resource or group."""
    prefix = key(scope)
    for k in [
        k
        for k, a in state.role_assignments.items()
        if key(a["properties"]["scope"]) == prefix or key(a["properties"]["scope"]).startswith(prefix + "/")
    ]:
        del state.role_assignments[k]


def remove_resource_tree(state: State, resource_id: str) -> dict[str, Any] | None:
    """Delete a resource, its child resources, their principals and the role assignments scoped on them."""
    k = key(resource_id)
    for child in [c for c in state.resources if c.startswith(k + "/")]:
        if child in state.resources:
            remove_resource_tree(state, state.resources[child]["id"])
    meta = state.resource_meta.get(k)
    body = state.remove_resource(resource_id)
    if body is None:
        return None
    if meta is not None and meta.system_principal is not None:
        state.remove_directory_object(meta.system_principal["principalId"])
    if body["type"].lower() == identity_block.IDENTITY_TYPE:
        state.remove_directory_object(body["properties"]["principalId"])
        state.fics.pop(k, None)
    remove_assignments_under(state, resource_id)
    return body


def _merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            result.pop(k, None)
        else:
            result[k] = _merge_patch(result.get(k), v)
    return result


def _not_found(rid: ResourceId) -> ArmError:
    return not_found(rid.type, list(rid.names), rid.resource_group)


def _require_parent(state: State, rid: ResourceId) -> None:
    parent = rid.parent_id
    if parent is not None and key(parent) not in state.resources:
        raise ArmError(
            404,
            "ParentResourceNotFound",
            f"Can not perform requested operation on nested resource. Parent resource '{'/'.join(rid.names[:-1])}' not found.",
        )


def put_resource(state: State, req: Request, rid: ResourceId) -> Response:
    body = req.json_object()
    # Child (proxy) resources such as config, administrators or sqlRoleAssignments take no location.
    proxy = len(rid.types) > 1 and not body.get("location")
    location = None if proxy else check_location(body.get("location"))
    with state.lock:
        sub = state.touch_subscription(rid.subscription)
        group = require_group(state, sub, rid.resource_group)
        _require_parent(state, rid)
        k = key(rid.with_group_name(group["name"]))
        existing = state.resources.get(k)
        if existing is not None and existing.get("location") != location and not proxy:
            raise ArmError(
                400,
                "InvalidResourceLocation",
                f"The resource '{rid.name}' already exists in location '{existing['location']}' in resource group "
                f"'{group['name']}'. A resource with the same name cannot be created in location '{location}'. "
                "Please select a new resource name.",
            )
        resource_id = existing["id"] if existing else rid.with_group_name(group["name"])
        rtype = existing["type"] if existing else rid.type
        meta = state.resource_meta.get(k) or ResourceMeta(created=time.monotonic())
        identity = identity_block.apply_put(
            state,
            body.get("identity"),
            (existing or {}).get("identity"),
            resource_id,
            rtype,
            location or "",
            meta,
        )
        stored: dict[str, Any] = {"id": resource_id, "name": resource_id.rsplit("/", 1)[-1], "type": rtype}
        if location is not None:
            stored["location"] = location
        for field in ("kind", "sku", "plan", "managedBy", "zones", "extendedLocation"):
            if body.get(field) is not None:
                stored[field] = copy.deepcopy(body[field])
        stored["tags"] = copy.deepcopy(body.get("tags") or {})
        if identity is not None:
            stored["identity"] = identity
        properties = copy.deepcopy(body.get("properties") or {})
        if not isinstance(properties, dict):
            raise bad_request("'properties' must be a JSON object.", "InvalidRequestContent", "properties")
        properties["provisioningState"] = "Succeeded"
        stored["properties"] = properties
        resource_types.prepare(state, stored, existing)
        state.resource_meta[k] = meta
        state.put_resource(resource_id, stored)
        return Response(200 if existing else 201, resource_types.present(copy.deepcopy(stored)))


def patch_resource(state: State, req: Request, rid: ResourceId) -> Response:
    body = req.json_object()
    with state.lock:
        require_group(state, rid.subscription, rid.resource_group)
        k = key(rid.with_group_name(rid.resource_group))
        existing = state.resources.get(k)
        if existing is None:
            raise _not_found(rid)
        refusing = {t.lower() for t in state.config["patchUnsupportedTypes"]}
        if existing["type"].lower() in refusing:
            raise ArmError(
                405, "MethodNotAllowed", "The requested resource does not support http method 'PATCH'."
            )
        if (
            "location" in body
            and body["location"]
            and locations.normalize(str(body["location"])) != existing.get("location")
        ):
            raise ArmError(
                400,
                "LocationNotUpdatable",
                "The location of a resource cannot be changed.",
                target="location",
            )
        meta = state.resource_meta.setdefault(k, ResourceMeta(created=time.monotonic()))
        updated = copy.deepcopy(existing)
        if "identity" in body:
            identity = identity_block.apply_patch(
                state,
                body["identity"],
                existing.get("identity"),
                existing["id"],
                existing["type"],
                existing.get("location", ""),
                meta,
            )
            if identity is None or identity.get("type") == "None":
                updated.pop("identity", None)
                if identity is not None:
                    updated["identity"] = identity
            else:
                updated["identity"] = identity
        if "tags" in body:
            updated["tags"] = copy.deepcopy(body["tags"] or {})
        if "properties" in body:
            updated["properties"] = _merge_patch(existing.get("properties") or {}, body["properties"] or {})
            updated["properties"]["provisioningState"] = "Succeeded"
        for field in ("kind", "sku", "plan"):
            if field in body:
                updated[field] = copy.deepcopy(body[field])
        resource_types.prepare(state, updated, existing)
        state.put_resource(existing["id"], updated)
        return Response(200, resource_types.present(copy.deepcopy(updated)))


def get_resource(state: State, req: Request, rid: ResourceId) -> Response:
    with state.lock:
        require_group(state, rid.subscription, rid.resource_group)
        existing = state.resources.get(key(rid.with_group_name(rid.resource_group)))
        if existing is None:
            raise _not_found(rid)
        return Response(200, resource_types.present(copy.deepcopy(existing)))


def delete_resource(state: State, req: Request, rid: ResourceId) -> Response:
    with state.lock:
        require_group(state, rid.subscription, rid.resource_group)
        removed = remove_resource_tree(state, rid.with_group_name(rid.resource_group))
    return Response(200 if removed is not None else 204)


def list_collection(
    state: State,
    req: Request,
    collection_path: str,
    resource_type: str,
    subscription_id: str,
    group: str | None,
) -> Response:
    """GET on a collection path (``.../providers/{ns}/{type}``): the RP's own list, with properties."""
    with state.lock:
        state.touch_subscription(subscription_id)
        if group is not None:
            require_group(state, subscription_id, group)
        wanted_type = resource_type.lower()
        if group is not None:
            prefix = key(collection_path.rsplit("/", 1)[0]) + "/"
            items = [
                resource_types.present(copy.deepcopy(r))
                for k, r in sorted(state.resources.items())
                if k.startswith(prefix) and r["type"].lower() == wanted_type
            ]
        else:
            prefix = key(f"/subscriptions/{subscription_id}") + "/"
            items = [
                resource_types.present(copy.deepcopy(r))
                for k, r in sorted(state.resources.items())
                if k.startswith(prefix) and r["type"].lower() == wanted_type
            ]
    return Response(200, page(req, items, int(state.config["pageSize"])))


# --- resource lists with $filter ---------------------------------------------------------
_CLAUSE = re.compile(r"^\s*(resourceType|name|location|resourceGroup)\s+eq\s+'([^']*)'\s*$", re.IGNORECASE)
_SUBSTRINGOF = re.compile(r"^\s*substringof\(\s*'([^']*)'\s*,\s*name\s*\)\s*$", re.IGNORECASE)


def _filter_predicate(expression: str) -> Any:
    """``$filter`` of the resource lists: ``field eq 'value'`` clauses joined by ``and``/``or``."""
    if not expression.strip():
        return lambda r: True
    alternatives = []
    for alternative in re.split(r"\s+or\s+", expression, flags=re.IGNORECASE):
        clauses = []
        for clause in re.split(r"\s+and\s+", alternative, flags=re.IGNORECASE):
            m = _CLAUSE.match(clause)
            s = _SUBSTRINGOF.match(clause)
            if m:
                clauses.append((m.group(1).lower(), m.group(2).lower()))
            elif s:
                clauses.append(("substringof", s.group(1).lower()))
            else:
                raise ArmError(
                    400,
                    "InvalidFilterInQueryString",
                    f"Invalid $filter '{expression}' specified in the query string.",
                )
        alternatives.append(clauses)

    def field_value(r: dict[str, Any], f: str) -> str:
        if f == "resourcetype":
            return str(r["type"]).lower()
        if f == "resourcegroup":
            return str(r["id"]).split("/")[4].lower()
        return str(r.get(f, "")).lower()

    def predicate(r: dict[str, Any]) -> bool:
        return any(
            all(
                (v in str(r["name"]).lower()) if f == "substringof" else field_value(r, f) == v
                for f, v in clauses
            )
            for clauses in alternatives
        )

    return predicate


def list_resources(state: State, req: Request, subscription_id: str, group: str | None) -> Response:
    predicate = _filter_predicate(req.query.get("$filter", ""))
    with state.lock:
        sub = state.touch_subscription(subscription_id)
        if group is not None:
            stored = require_group(state, sub, group)
            prefix = key(stored["id"]) + "/"
        else:
            prefix = key(f"/subscriptions/{sub}") + "/"
        items = []
        for k, r in sorted(state.resources.items()):
            if k.startswith(prefix) and resource_types.indexed(r) and predicate(r):
                items.append({f: copy.deepcopy(r[f]) for f in _LIST_FIELDS if f in r})
    return Response(200, page(req, items, int(state.config["pageSize"])))


def get_provider(state: State, req: Request, subscription_id: str, namespace: str) -> Response:
    """``GET /subscriptions/{s}/providers/{ns}``: registered, with the resource types seen so far."""
    from emulator import msi  # local: msi imports this module

    with state.lock:
        sub = state.touch_subscription(subscription_id)
        prefix = namespace.lower() + "/"
        types = sorted(
            {
                r["type"].split("/", 1)[1]
                for r in state.resources.values()
                if r["type"].lower().startswith(prefix)
            }
        )
    if namespace.lower() == "microsoft.managedidentity":
        versions = sorted(msi.API_VERSIONS, reverse=True)
        types = [
            "userAssignedIdentities",
            "userAssignedIdentities/federatedIdentityCredentials",
            "identities",
        ]
    else:
        versions = ["2024-11-01", "2024-03-01", "2023-01-01", "2022-09-01"]
    return Response(
        200,
        {
            "id": f"/subscriptions/{sub}/providers/{namespace}",
            "namespace": namespace,
            "registrationState": "Registered",
            "registrationPolicy": "RegistrationRequired",
            "resourceTypes": [
                {
                    "resourceType": t,
                    "locations": sorted(locations.NAMES - {"global"}),
                    "apiVersions": versions,
                }
                for t in types
            ],
        },
    )
