"""Microsoft.Management management groups, just enough to hold role assignments above subscriptions.

``PUT /providers/Microsoft.Management/managementGroups/{mg}`` (``properties.details.parent.id``),
``GET``, ``DELETE``, and ``PUT|DELETE .../managementGroups/{mg}/subscriptions/{s}`` to place a
subscription. Azure answers the group PUT as a long-running operation (202); here it completes at
once and answers 200 with the group, which is what the poller would end with.
"""

from __future__ import annotations

from typing import Any

from emulator.errors import ArmError
from emulator.scopes import mg_scope
from emulator.state import TENANT_ID, State
from emulator.wire import Request, Response


def _body(state: State, name: str) -> dict[str, Any]:
    group = state.management_groups[name.lower()]
    parent = group["parent"]
    return {
        "id": mg_scope(group["name"]),
        "type": "Microsoft.Management/managementGroups",
        "name": group["name"],
        "properties": {
            "tenantId": TENANT_ID,
            "displayName": group["displayName"],
            "details": {
                "parent": {"id": mg_scope(state.management_groups[parent]["name"])} if parent else None,
            },
        },
    }


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
        }
        return Response(200, _body(state, name))


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
