"""The ``identity`` block every ARM resource type may carry (``common-types/v5/managedidentity.json``).

Reproduces (FACTS.md "Azure Resource Manager" and "Microsoft.ManagedIdentity"):
- ``type`` is ``None``, ``SystemAssigned``, ``UserAssigned`` or ``SystemAssigned,UserAssigned``
  (also spelled ``SystemAssigned, UserAssigned``); the caller's spelling is echoed.
- Every ``userAssignedIdentities`` key must name an existing identity, else 400
  ``FailedIdentityOperation`` wrapping the identity service's ``BadRequest`` "Resource '{id}' was not
  found." (the wording seen in public terraform-provider-azurerm / Azure Policy threads); a
  non-UserAssigned type with entries gets the same wrapper around "The request format was unexpected,
  a non-UserAssigned identity type should not contain: userAssignedIdentities". The code for a
  Regional identity attached in another region is not documented publicly: the same wrapper is used.
  The RP records the identity's ``principalId``/``clientId`` at assignment; the entry stays (with
  those values) after the identity is deleted — deleting an identity does not detach it.
- An identity with ``isolationScope: Regional`` only attaches to resources in its own region;
  ``assignmentRestrictions.providers`` (2026-05-31) limits which resource types may use it.
- ``SystemAssigned`` gets a principal (and a Graph service principal) that stays stable across
  updates while system-assigned stays on; turning it off deletes that principal.
- PATCH merges ``userAssignedIdentities``: an entry set to ``null`` is removed; with no user-assigned
  identity left and no explicit ``type``, the type drops to ``SystemAssigned`` or ``None``.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from emulator.errors import ArmError
from emulator.ids import key, new_guid, parse_resource_id
from emulator.state import TENANT_ID, ResourceMeta, State

IDENTITY_TYPE = "microsoft.managedidentity/userassignedidentities"


def _parse_type(value: Any) -> tuple[bool, bool]:
    if not isinstance(value, str):
        raise ArmError(
            400, "InvalidIdentity", "The identity 'type' must be a string.", target="identity.type"
        )
    parts = {p.strip().lower() for p in value.split(",") if p.strip()}
    allowed = {"none", "systemassigned", "userassigned"}
    if not parts or not parts <= allowed or ("none" in parts and len(parts) > 1):
        raise ArmError(
            400,
            "InvalidIdentity",
            f"The identity type '{value}' is not supported. Supported types: 'None', 'SystemAssigned', "
            "'UserAssigned', 'SystemAssigned,UserAssigned'.",
            target="identity.type",
        )
    return "systemassigned" in parts, "userassigned" in parts


def _type_name(system: bool, user: bool) -> str:
    if system and user:
        return "SystemAssigned,UserAssigned"
    return "SystemAssigned" if system else "UserAssigned" if user else "None"


def failed_identity_operation(resource_id: str, inner_message: str) -> ArmError:
    """The 400 a resource provider relays when the identity service refuses the identity block, in the
    wording seen from real providers (e.g. terraform-provider-azurerm and Azure Policy threads):
    ``FailedIdentityOperation`` wrapping the identity service's own ``BadRequest`` answer.
    """
    inner = json.dumps({"error": {"code": "BadRequest", "message": inner_message}}, separators=(",", ":"))
    return ArmError(
        400,
        "FailedIdentityOperation",
        f"Identity operation for resource '{resource_id}' failed with error 'Failed to perform resource identity "
        f"operation. Status: 'BadRequest'. Response: '{inner}'.'.",
        target="identity.userAssignedIdentities",
    )


def _resolve_user_identity(
    state: State, identity_id: str, resource_id: str, resource_type: str, location: str
) -> dict[str, str]:
    parsed = parse_resource_id(identity_id)
    if parsed is None or parsed.type.lower() != IDENTITY_TYPE:
        raise ArmError(
            400,
            "InvalidIdentity",
            f"The user-assigned identity id '{identity_id}' is not a valid resource id of type "
            "'Microsoft.ManagedIdentity/userAssignedIdentities'.",
            target="identity.userAssignedIdentities",
        )
    identity = state.resources.get(key(identity_id))
    if identity is None:
        raise failed_identity_operation(resource_id, f"Resource '{identity_id}' was not found.")
    props = identity["properties"]
    if props.get("isolationScope") == "Regional" and identity["location"].lower() != location.lower():
        raise failed_identity_operation(
            resource_id,
            f"The user-assigned identity '{identity_id}' has isolationScope 'Regional' in location "
            f"'{identity['location']}' and cannot be assigned to a resource in location '{location}'.",
        )
    providers = (props.get("assignmentRestrictions") or {}).get("providers") or []
    if providers:
        rtype = resource_type.lower()
        if not any(rtype == p.lower() or rtype.startswith(p.lower().rstrip("/") + "/") for p in providers):
            raise failed_identity_operation(
                resource_id,
                f"The user-assigned identity '{identity_id}' may only be assigned to resources of {providers}; "
                f"'{resource_type}' is not one of them.",
            )
    return {"principalId": props["principalId"], "clientId": props["clientId"]}


def _system_principal(state: State, resource_id: str, name: str, meta: ResourceMeta, enabled: bool) -> None:
    if enabled and meta.system_principal is None:
        principal = {"principalId": new_guid(), "tenantId": TENANT_ID, "clientId": new_guid()}
        meta.system_principal = principal
        state.add_directory_object(
            {
                "@odata.type": "#microsoft.graph.servicePrincipal",
                "id": principal["principalId"],
                "appId": principal["clientId"],
                "displayName": name,
                "servicePrincipalType": "ManagedIdentity",
                "alternativeNames": ["isExplicit=False", resource_id],
                "servicePrincipalNames": [principal["clientId"], f"https://identity.azure.net/{new_guid()}"],
                "accountEnabled": True,
                "appRoles": [],
                "tags": [],
            },
            replicates=True,
        )
    elif not enabled and meta.system_principal is not None:
        state.remove_directory_object(meta.system_principal["principalId"])
        meta.system_principal = None


def _render(
    type_text: str, system: bool, users: dict[str, dict[str, str]], meta: ResourceMeta
) -> dict[str, Any]:
    block: dict[str, Any] = {"type": type_text}
    if system and meta.system_principal is not None:
        block["principalId"] = meta.system_principal["principalId"]
        block["tenantId"] = meta.system_principal["tenantId"]
    if users:
        block["userAssignedIdentities"] = copy.deepcopy(users)
    return block


def apply_put(
    state: State,
    requested: Any,
    existing: dict[str, Any] | None,
    resource_id: str,
    resource_type: str,
    location: str,
    meta: ResourceMeta,
) -> dict[str, Any] | None:
    """The identity block after a PUT (``requested`` replaces the old one wholesale)."""
    if requested is None:
        _system_principal(state, resource_id, resource_id.rsplit("/", 1)[-1], meta, False)
        return None
    if not isinstance(requested, dict) or "type" not in requested:
        raise ArmError(
            400,
            "InvalidIdentity",
            "The 'identity' property must be an object with a 'type'.",
            target="identity",
        )
    system, user = _parse_type(requested["type"])
    entries = requested.get("userAssignedIdentities") or {}
    if not isinstance(entries, dict):
        raise ArmError(
            400,
            "InvalidIdentity",
            "'userAssignedIdentities' must be an object.",
            target="identity.userAssignedIdentities",
        )
    if user and not entries:
        raise ArmError(
            400,
            "InvalidIdentity",
            f"The identity type '{requested['type']}' requires at least one entry in 'userAssignedIdentities'.",
            target="identity.userAssignedIdentities",
        )
    if entries and not user:
        raise failed_identity_operation(
            resource_id,
            "The request format was unexpected, a non-UserAssigned identity type should not contain: "
            "userAssignedIdentities",
        )
    previous = (existing or {}).get("userAssignedIdentities") or {}
    previous_keys = {key(k): v for k, v in previous.items()}
    users: dict[str, dict[str, str]] = {}
    for identity_id in entries:
        kept = previous_keys.get(key(identity_id))
        # An identity already attached keeps the ids recorded at assignment, even if since deleted.
        users[identity_id] = (
            dict(kept)
            if kept
            else _resolve_user_identity(state, identity_id, resource_id, resource_type, location)
        )
    _system_principal(state, resource_id, resource_id.rsplit("/", 1)[-1], meta, system)
    return _render(requested["type"] if (system or user) else "None", system, users, meta)


def apply_patch(
    state: State,
    patch: Any,
    existing: dict[str, Any] | None,
    resource_id: str,
    resource_type: str,
    location: str,
    meta: ResourceMeta,
) -> dict[str, Any] | None:
    """The identity block after a PATCH: merge-patch of ``userAssignedIdentities``, ``null`` removes."""
    if patch is None:
        return existing
    if not isinstance(patch, dict):
        raise ArmError(
            400, "InvalidIdentity", "The 'identity' property must be an object.", target="identity"
        )
    old_system, old_user = _parse_type(existing["type"]) if existing else (False, False)
    merged: dict[str, Any] = dict((existing or {}).get("userAssignedIdentities") or {})
    changes = patch.get("userAssignedIdentities") or {}
    if not isinstance(changes, dict):
        raise ArmError(
            400,
            "InvalidIdentity",
            "'userAssignedIdentities' must be an object.",
            target="identity.userAssignedIdentities",
        )
    for identity_id, value in changes.items():
        match = next((k for k in merged if key(k) == key(identity_id)), None)
        if value is None:
            if match is not None:
                del merged[match]
        elif match is None:
            merged[identity_id] = {}
    if "type" in patch:
        system, user = _parse_type(patch["type"])
        type_text = patch["type"]
        if not user:
            merged = {} if not changes else merged
    else:
        system, user = old_system, bool(merged) or (old_user and not changes)
        if old_user and not merged:
            user = False
        type_text = _type_name(system, user)
    if not user and merged:
        raise failed_identity_operation(
            resource_id,
            "The request format was unexpected, a non-UserAssigned identity type should not contain: "
            "userAssignedIdentities",
        )
    request = {"type": type_text, "userAssignedIdentities": merged} if (system or user) else {"type": "None"}
    return apply_put(state, request, existing, resource_id, resource_type, location, meta)
