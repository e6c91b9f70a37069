"""Which ARM action a request performs, and over which scope: what ARM authorizes before it hands a
request to a resource provider (Microsoft's "Azure resource provider operations" names them).

The rule, as ARM derives it from the path and the method:

- a resource ``…/providers/{ns}/{t1}/{n1}[/{t2}/{n2}…]``: ``GET``/``HEAD`` → ``{ns}/{t1}[/{t2}…]/read``,
  ``PUT``/``PATCH`` → ``…/write``, ``DELETE`` → ``…/delete``, over the resource id;
- a collection (the path ends on a type) → ``{type}/read`` over the path;
- ``POST {resource id}/{operation}`` → ``{type of that resource}/{operation}/action``, e.g.
  ``POST …/sites/s/config/appsettings/list`` → ``Microsoft.Web/sites/config/list/action``,
  ``POST …/containerApps/a/listSecrets`` → ``Microsoft.App/containerApps/listSecrets/action``;
- ``PUT …/vaults/v/accessPolicies/add`` is a write of the child type:
  ``Microsoft.KeyVault/vaults/accessPolicies/write``;
- resource groups: ``Microsoft.Resources/subscriptions/resourceGroups/read|write|delete`` (``PATCH`` is
  a write, ``HEAD`` a read); ``…/resourceGroups/{rg}/resources`` →
  ``Microsoft.Resources/subscriptions/resourceGroups/resources/read``; ``/subscriptions/{s}`` →
  ``Microsoft.Resources/subscriptions/read``; ``…/resources`` →
  ``Microsoft.Resources/subscriptions/resources/read``; ``…/resourcegroups`` →
  ``Microsoft.Resources/subscriptions/resourceGroups/read``; ``…/locations`` →
  ``Microsoft.Resources/subscriptions/locations/read``; ``…/providers/{ns}`` →
  ``Microsoft.Resources/subscriptions/providers/read``;
- ``{scope}/providers/Microsoft.Authorization/roleAssignments[/{id}]`` →
  ``Microsoft.Authorization/roleAssignments/read|write|delete`` over the assignment's scope (the
  refusal message names the assignment id, as ARM's does); ``roleDefinitions/write|delete`` the same
  way, while reading role definitions needs no role (every caller may read them, built-ins at ``/``
  included);
- ``{resource}/providers/Microsoft.ManagedIdentity/identities/default`` →
  ``Microsoft.ManagedIdentity/identities/read``;
- management groups: ``Microsoft.Management/managementGroups/read|write|delete`` and
  ``Microsoft.Management/managementGroups/subscriptions/write|delete`` over the group.

Requests that need no action (:data:`NO_ACTION`): ``GET /subscriptions`` (every caller may list the
subscriptions it can see), ``…/operationresults/…`` polls and the status/result URLs of asynchronous
operations (``…/providers/{ns}/locations/{l}/…``; ARM authorizes those too, the emulator does not), the
caller's own
``…/Microsoft.Authorization/permissions``, and Resource Graph queries (ARG checks no action; it answers
only the rows the caller may read, see ``rbac_enforce.readable``).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote


@dataclass(frozen=True)
class Check:
    """One authorization decision ARM makes before serving a request."""

    action: str
    scope: str  # where role assignments are looked up: this scope and every scope above it
    message_scope: str  # what ARM names in its refusal


NO_ACTION = None
_VERB = {"GET": "read", "HEAD": "read", "PUT": "write", "PATCH": "write", "DELETE": "delete"}
_RG = "Microsoft.Resources/subscriptions/resourceGroups"


def _verb(method: str) -> str | None:
    return _VERB.get(method.upper())


def derive(method: str, path: str) -> Check | None:
    """The action and scope of an ARM request; None when ARM checks no action for it."""
    segs = [unquote(s) for s in path.strip("/").split("/")] if path.strip("/") else []
    low = [s.lower() for s in segs]
    n = len(segs)
    whole = "/" + "/".join(segs)
    verb = _verb(method)

    auth_at = next(
        (
            i
            for i in range(n - 2, -1, -1)
            if low[i] == "providers" and low[i + 1] == "microsoft.authorization"
        ),
        None,
    )
    if auth_at is not None:
        scope = "/" + "/".join(segs[:auth_at])
        rest = low[auth_at + 2 :]
        kind = {"roleassignments": "roleAssignments", "roledefinitions": "roleDefinitions"}.get(
            rest[0] if rest else ""
        )
        if kind is None:
            return NO_ACTION  # permissions (the caller's own) and anything the router refuses anyway
        action_verb = verb if len(rest) == 2 else "read"
        if action_verb is None or (kind == "roleDefinitions" and action_verb == "read"):
            return NO_ACTION  # role definitions are readable by every caller
        return Check(f"Microsoft.Authorization/{kind}/{action_verb}", scope, whole)

    if n >= 4 and low[-4:] == ["providers", "microsoft.managedidentity", "identities", "default"]:
        return Check("Microsoft.ManagedIdentity/identities/read", "/" + "/".join(segs[:-4]), whole)

    if low[:2] == ["providers", "microsoft.resourcegraph"]:
        return NO_ACTION
    if low[:3] == ["providers", "microsoft.management", "operationresults"]:
        return NO_ACTION
    if low[:3] == ["providers", "microsoft.management", "managementgroups"] and n >= 4:
        group = "/" + "/".join(segs[:4])
        if n == 4 and verb:
            return Check(f"Microsoft.Management/managementGroups/{verb}", group, group)
        if n == 6 and low[4] == "subscriptions" and verb:
            return Check(f"Microsoft.Management/managementGroups/subscriptions/{verb}", group, whole)
        return NO_ACTION

    if low[:1] != ["subscriptions"] or n == 1:
        return NO_ACTION
    sub = "/" + "/".join(segs[:2])
    if n == 2:
        return Check("Microsoft.Resources/subscriptions/read", sub, sub)
    if low[2] == "operationresults":
        return NO_ACTION
    if n == 3:
        name = {"locations": "locations", "resources": "resources", "resourcegroups": "resourceGroups"}.get(
            low[2]
        )
        return Check(f"Microsoft.Resources/subscriptions/{name}/read", sub, sub) if name else NO_ACTION
    if low[2] == "providers":
        if n == 4:
            return Check("Microsoft.Resources/subscriptions/providers/read", sub, sub)
        if n == 5:
            return Check(f"{segs[3]}/{segs[4]}/read", sub, whole)
        return NO_ACTION
    if low[2] != "resourcegroups":
        return NO_ACTION
    group = "/" + "/".join(segs[:4])
    if n == 4:
        return Check(f"{_RG}/{verb}", group, group) if verb else NO_ACTION
    if n == 5 and low[4] == "resources":
        return Check(f"{_RG}/resources/read", group, group)
    if n < 7 or low[4] != "providers":
        return NO_ACTION
    namespace, rest = segs[5], segs[6:]
    if low[6] == "locations":
        return NO_ACTION  # status and result URLs of asynchronous operations (async_ops.py)
    types = rest[0::2]
    if len(rest) % 2 == 0:  # a resource
        if method.upper() == "POST":
            return NO_ACTION  # POST on a resource itself: nothing the emulator serves
        return Check(f"{namespace}/{'/'.join(types)}/{verb}", whole, whole) if verb else NO_ACTION
    # odd: a collection (GET), or an operation on the resource before it (POST)
    if method.upper() == "POST" and len(rest) >= 3:
        resource = "/" + "/".join(segs[:-1])
        return Check(f"{namespace}/{'/'.join(types[:-1])}/{rest[-1]}/action", resource, resource)
    if verb == "read":
        return Check(f"{namespace}/{'/'.join(types)}/read", whole, whole)
    return NO_ACTION
