"""Helpers the phases share: error classification, generic resources by id, identity blocks, paths.

``classify(exc, target)`` turns what the SDKs raise into the engine's error tree:
429/408/5xx/connection errors, ``PrincipalNotFound`` and Graph 404s -> ``TransientError`` (with the
response's ``retry_after``; ``throttled`` for a 429, or a 503 with ``Retry-After``);
any other 4xx -> ``PermanentError`` with ARM's error code and message.
"""

from __future__ import annotations

import copy
from typing import Any

from azure.core.exceptions import HttpResponseError, ServiceRequestError, ServiceResponseError

from shared.azure_clients import AzureClients, GraphError, retry_after_seconds, subscription_of
from shared.errors import PermanentError, TransientError

TRANSIENT_CODES = {
    "PrincipalNotFound",
    "ResourceGroupNotFound_Replicating",
    "ConcurrentFederatedIdentityCredentialsWritesForSingleManagedIdentity",
}

Path = list[str | int]


def error_code(exc: HttpResponseError) -> str:
    code = getattr(getattr(exc, "error", None), "code", None)
    return str(code or getattr(exc, "reason", None) or exc.status_code or "HttpError")


def error_message(exc: Exception) -> str:
    message = getattr(getattr(exc, "error", None), "message", None)
    return str(message or exc).splitlines()[0][:500]


def classify(exc: Exception, target: str | None = None) -> Exception:
    """Map an SDK/Graph exception to ``TransientError`` or ``PermanentError`` (return it, caller raises)."""
    if isinstance(exc, ServiceRequestError | ServiceResponseError):
        return TransientError("ConnectionError", error_message(exc), target)
    if isinstance(exc, GraphError):
        if exc.status in (404, 408, 429) or exc.status >= 500:
            throttled = _throttled(exc.status, exc.retry_after)
            return TransientError(
                exc.code or f"Graph{exc.status}", exc.message, target, exc.retry_after, throttled
            )
        return PermanentError(exc.code or f"Graph{exc.status}", exc.message, target)
    if isinstance(exc, HttpResponseError):
        code = error_code(exc)
        status = exc.status_code or 0
        if status in (408, 429) or status >= 500 or code in TRANSIENT_CODES:
            wait = retry_after_of(exc)
            return TransientError(code, error_message(exc), target, wait, _throttled(status, wait))
        return PermanentError(code, error_message(exc), target)
    return exc


def _throttled(status: int, retry_after: float | None) -> bool:
    """429, or 503 with a ``Retry-After``: Azure asked to come back later (not the step's fault)."""
    return status == 429 or (status == 503 and retry_after is not None)


def retry_after_of(exc: HttpResponseError) -> float | None:
    """Seconds ARM asked to wait (``retry-after-ms``, ``x-ms-retry-after-ms`` or ``Retry-After`` seconds)."""
    return retry_after_seconds(getattr(exc.response, "headers", None))


def raw(pipeline_response: Any, deserialized: Any, headers: Any) -> Any:
    """``cls=`` callback: the response body as JSON, as ARM sent it."""
    return pipeline_response.http_response.json()


ROLE_DEFINITION_MAX_AGE = 600.0  # built-in roles never change; custom ones rarely (see role_definition)


def role_definition(clients: AzureClients, sub: str, definition_id: str) -> dict[str, Any]:
    """``{"roleName", "permissions": [{"actions", "notActions"}]}`` of a role definition, read once per
    ``ROLE_DEFINITION_MAX_AGE`` by this process (``AzureClients.memo``): every move of a fleet holds
    the same few roles, and a role's permissions are not access granted to an identity (a custom role
    edited meanwhile is the same role for the old and the new identity)."""

    def read() -> dict[str, Any]:
        definition = clients.authorization(sub).role_definitions.get_by_id(definition_id)
        return {
            "roleName": str(definition.role_name),
            "permissions": [
                {"actions": list(p.actions or []), "notActions": list(p.not_actions or [])}
                for p in definition.permissions or []
            ],
        }

    found: dict[str, Any] = clients.memo(
        f"roleDefinition|{definition_id.lower()}", ROLE_DEFINITION_MAX_AGE, read
    )
    return found


def get_resource(clients: AzureClients, resource_id: str) -> dict[str, Any] | None:
    """GET any resource by id; ``None`` if it does not exist."""
    client = clients.resources(subscription_of(resource_id))
    try:
        body: dict[str, Any] = client.resources.get_by_id(  # type: ignore[assignment]  # cls=raw: JSON
            resource_id, api_version=clients.api_version_for(resource_id), cls=raw
        )
    except HttpResponseError as exc:
        if exc.status_code == 404:
            return None
        raise classify(exc, resource_id) from exc
    return body


def patch_or_put(clients: AzureClients, resource_id: str, patch: dict[str, Any], full: dict[str, Any]) -> str:
    """PATCH ``patch``; where the type refuses PATCH (405) PUT ``full`` (the GET body, changed). Returns the verb used."""
    client = clients.resources(subscription_of(resource_id))
    api = clients.api_version_for(resource_id)
    try:
        client.resources.begin_update_by_id(resource_id, patch, api_version=api).result()
        return "PATCH"
    except HttpResponseError as exc:
        if exc.status_code != 405:
            raise classify(exc, resource_id) from exc
    return put_full(clients, resource_id, full)


def put_full(clients: AzureClients, resource_id: str, full: dict[str, Any]) -> str:
    """PUT the resource back (its GET body, changed): for types that refuse PATCH or list-valued references."""
    client = clients.resources(subscription_of(resource_id))
    try:
        client.resources.begin_create_or_update_by_id(
            resource_id, put_body(full), api_version=clients.api_version_for(resource_id)
        ).result()
    except HttpResponseError as exc:
        raise classify(exc, resource_id) from exc
    return "PUT"


WRITABLE = ("location", "tags", "identity", "properties", "kind", "sku", "plan", "zones", "extendedLocation")


def put_body(resource: dict[str, Any]) -> dict[str, Any]:
    return {k: resource[k] for k in WRITABLE if k in resource and resource[k] is not None}


def same_id(a: str | None, b: str | None) -> bool:
    return bool(a) and bool(b) and str(a).lower() == str(b).lower()


def user_identities(resource: dict[str, Any]) -> dict[str, Any]:
    block = resource.get("identity") or {}
    return dict(block.get("userAssignedIdentities") or {})


def has_identity(resource: dict[str, Any], identity_id: str) -> bool:
    return any(same_id(key, identity_id) for key in user_identities(resource))


def identity_type(resource: dict[str, Any], keep_user_assigned: bool) -> str:
    """The identity ``type`` keeping system-assigned as it is."""
    current = str((resource.get("identity") or {}).get("type") or "")
    system = "systemassigned" in current.replace(" ", "").lower().split(",")
    if keep_user_assigned:
        return "SystemAssigned,UserAssigned" if system else "UserAssigned"
    return "SystemAssigned" if system else "None"


def find_refs(value: Any, needles: dict[str, str], path: Path | None = None) -> list[dict[str, Any]]:
    """Paths under ``value`` whose string equals (case-insensitively) one of ``needles`` (lower -> kind)."""
    path = path or []
    found: list[dict[str, Any]] = []
    if isinstance(value, dict):
        for key, item in value.items():
            found += find_refs(item, needles, [*path, key])
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += find_refs(item, needles, [*path, index])
    elif isinstance(value, str) and value.lower() in needles:
        found.append({"path": path, "kind": needles[value.lower()]})
    return found


def get_path(value: Any, path: Path) -> Any:
    for step in path:
        try:
            value = value[step]
        except (KeyError, IndexError, TypeError):
            return None
    return value


def set_path(value: Any, path: Path, new: Any) -> None:
    for step in path[:-1]:
        value = value[step]
    value[path[-1]] = new


def merge_patch_for(path: Path, new: Any) -> dict[str, Any] | None:
    """A JSON merge patch setting ``path`` to ``new``; ``None`` when the path crosses a list (merge patch can't)."""
    if any(isinstance(step, int) for step in path):
        return None
    patch: dict[str, Any] = {}
    cursor = patch
    for step in path[:-1]:
        cursor = cursor.setdefault(str(step), {})
    cursor[str(path[-1])] = new
    return patch


def deep_merge(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    out = dict(a)
    for key, value in b.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def counterpart_of(resource_map: dict[str, str], resource_id: str) -> str:
    """Where the move writes for ``resource_id``: its ``resourceMap`` counterpart, else itself."""
    mapping = {k.lower(): v for k, v in resource_map.items()}
    return mapping.get(resource_id.lower(), resource_id)


def assignment_subscriptions(snapshot: dict[str, Any]) -> list[str]:
    """Subscriptions holding the snapshot's role assignments (+ the identity's, for management-group scopes):
    where the new principal's copies are, so verify and discard list only those."""
    subs = {subscription_of(a["scope"]) for a in snapshot.get("roleAssignments", [])}
    subs.add(str(snapshot["identity"]["subscriptionId"]).lower())
    return sorted(s for s in subs if s)


def identity_refs(resource: dict[str, Any], identity: dict[str, Any]) -> list[dict[str, Any]]:
    """Paths under ``properties`` naming ``identity`` by resource id or clientId (``kind`` says which)."""
    needles = {str(identity["id"]).lower(): "id", str(identity["clientId"]).lower(): "clientId"}
    return find_refs(resource.get("properties") or {}, needles, ["properties"])


def without_identity(resource: dict[str, Any], identity_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The identity block with ``identity_id`` removed: (merge-patch form with its ``null`` entry, full form).

    System-assigned is kept as it is; with no user-assigned identity left, ``type`` drops ``UserAssigned``.
    """
    remaining = [k for k in user_identities(resource) if not same_id(k, identity_id)]
    kind = identity_type(resource, keep_user_assigned=bool(remaining))
    if not remaining:
        return {"type": kind}, {"type": kind}
    return (
        {"type": kind, "userAssignedIdentities": {identity_id: None}},
        {"type": kind, "userAssignedIdentities": {k: {} for k in remaining}},
    )


def write_resource(
    clients: AzureClients,
    resource_id: str,
    resource: dict[str, Any],
    refs: list[dict[str, Any]],
    values: dict[str, str],
    identity: tuple[dict[str, Any], dict[str, Any]] | None = None,
) -> str:
    """One write of a resource: each ref set to ``values[ref kind]`` and, if given, the identity block
    (patch form, full form). PATCH when every change fits a merge patch, else GET body + PUT. Returns the verb."""
    patch: dict[str, Any] = {}
    full = copy.deepcopy(resource)
    if identity is not None:
        patch["identity"], full["identity"] = identity
    needs_put = False
    for ref in refs:
        value = values[ref["kind"]]
        set_path(full, ref["path"], value)
        piece = merge_patch_for(ref["path"], value)
        if piece is None:
            needs_put = True  # a reference inside a list: merge patch cannot address it
        else:
            patch = deep_merge(patch, piece)
    if needs_put:
        return put_full(clients, resource_id, full)
    return patch_or_put(clients, resource_id, patch, full)
