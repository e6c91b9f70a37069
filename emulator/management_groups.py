"""Microsoft.Management management groups, just enough to hold role assignments above subscriptions.

``PUT /providers/Microsoft.Management/managementGroups/{mg}`` (``properties.details.parent.id``),
``GET``, ``DELETE``, and ``PUT|DELETE .../managementGroups/{mg}/subscriptions/{s}`` to place a
subscription. Creating a group is a long-running operation, as Azure runs it (spec 2021-04-01,
``PutManagementGroup.json``: 202 with ``status: NotStarted``, final state via
``Azure-AsyncOperation``): 202 with ``Azure-AsyncOperation`` and ``Location`` pointing at
``/providers/Microsoft.Management/operationResults/create/managementGroups/{mg}``, which answers
``status: Succeeded`` with the group. The group exists as soon as the 202 is sent, so a caller that
does not poll finds it too. Updating an existing group answers 200 with the group.
"""

from __future__ import annotations

from typing import Any

from emulator.errors import ArmError
from emulator.scopes import mg_scope
from emulator.state import CALLER_ID, TENANT_ID, State, now_iso
from emulator.wire import Request, Response


def _body(state: State, name: str) -> dict[str, Any]:
    group = state.management_groups[name.lower()]
    parent = state.management_groups.get(group["parent"]) if group["parent"] else None
    return {
        "id": mg_scope(group["name"]),
        "type": "Microsoft.Management/managementGroups",
        "name": group["name"],
        "properties": {
            "tenantId": TENANT_ID,
            "displayName": group["displayName"],
            "details": {
                "version": group["version"],
                "updatedTime": group["updatedTime"],
                "updatedBy": CALLER_ID,
                "parent": {
                    "id": mg_scope(parent["name"]),
                    "name": parent["name"],
                    "displayName": parent["displayName"],
                }
                if parent
                else None,
            },
        },
    }


def _operation_url(req: Request, name: str) -> str:
    api = req.query.get("api-version", "")
    return (
        f"{req.base_url}/providers/Microsoft.Management/operationResults/create/managementGroups/{name}"
        f"?api-version={api}"
    )


def put_group(state: State, req: Request, name: str) -> Response:
    body = req.json(required=False) or {}
    props = body.get("properties") or {}
    parent_id = ((props.get("details") or {}).get("parent") or {}).get("id")
    with state.lock:
        parent = None
        if parent_id:
            parent = str(parent_id).rstrip("/").rsplit("/", 1)[-1].lower()
            if parent not in state.management_groups:
                raise ArmError(404, "NotFound", f"The parent management group '{parent_id}' was not found.")
        existing = state.management_groups.get(name.lower())
        state.management_groups[name.lower()] = {
            "name": existing["name"] if existing else name,
            "displayName": props.get("displayName") or name,
            "parent": parent,
            "subscriptions": existing["subscriptions"] if existing else set(),
            "version": existing["version"] + 1 if existing else 1,
            "updatedTime": now_iso(),
        }
        if existing is not None:
            return Response(200, _body(state, name))
        url = _operation_url(req, name)
        return Response(
            202,
            {
                "id": mg_scope(name),
                "type": "Microsoft.Management/managementGroups",
                "name": name,
                "status": "NotStarted",
            },
            {"Azure-AsyncOperation": url, "Location": url, "Retry-After": "0"},
        )


def get_operation(state: State, req: Request, name: str) -> Response:
    """The create operation's status: done as soon as it was accepted."""
    with state.lock:
        if name.lower() not in state.management_groups:
            raise ArmError(404, "NotFound", f"The management group '{name}' was not found.")
        body = _body(state, name)
    return Response(
        200,
        {
            **{k: body[k] for k in ("id", "type", "name")},
            "status": "Succeeded",
            "properties": body["properties"],
        },
    )


def get_group(state: State, req: Request, name: str) -> Response:
    with state.lock:
        if name.lower() not in state.management_groups:
            raise ArmError(404, "NotFound", f"The management group '{name}' was not found.")
        return Response(200, _body(state, name))


def delete_group(state: State, req: Request, name: str) -> Response:
    with state.lock:
        if state.management_groups.pop(name.lower(), None) is None:
            return Response(204)
    return Response(200)


def put_subscription(state: State, req: Request, name: str, subscription_id: str) -> Response:
    with state.lock:
        group = state.management_groups.get(name.lower())
        if group is None:
            raise ArmError(404, "NotFound", f"The management group '{name}' was not found.")
        state.touch_subscription(subscription_id)
        for other in state.management_groups.values():
            other["subscriptions"].discard(subscription_id.lower())
        group["subscriptions"].add(subscription_id.lower())
        return Response(
            200,
            {
                "id": f"{mg_scope(group['name'])}/subscriptions/{subscription_id}",
                "type": "Microsoft.Management/managementGroups/subscriptions",
                "name": subscription_id,
                "properties": {
                    "tenant": TENANT_ID,
                    "displayName": subscription_id,
                    "parent": {"id": mg_scope(group["name"])},
                    "state": "Active",
                },
            },
        )


def delete_subscription(state: State, req: Request, name: str, subscription_id: str) -> Response:
    with state.lock:
        group = state.management_groups.get(name.lower())
        if group is not None:
            group["subscriptions"].discard(subscription_id.lower())
    return Response(200)
