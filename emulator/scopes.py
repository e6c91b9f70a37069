"""RBAC scopes: tenant root, management groups, subscriptions, resource groups, resources.

"At, above and below" (FACTS.md: ``principalId eq`` returns a principal's assignments at, above
and below the scope; ``atScope()`` those at or above) is decided on the chain of ancestors of a
scope: its parent resources, resource group, subscription, the management groups holding the
subscription (and their parents), and the tenant root ``/``.
"""

from __future__ import annotations

from emulator.errors import ArmError, resource_group_not_found
from emulator.ids import key
from emulator.state import State

MG_PREFIX = "/providers/microsoft.management/managementgroups/"


def mg_scope(name: str) -> str:
    return f"/providers/Microsoft.Management/managementGroups/{name}"


def normalize(scope: str) -> str:
    return "/" + scope.strip("/")


def chain(state: State, scope: str) -> list[str]:
    """Keys of ``scope`` and every scope above it, nearest first."""
    k = key(scope)
    result: list[str] = []
    segs = k.strip("/").split("/") if k != "/" else []
    if segs[:1] == ["subscriptions"]:
        # resource-level ancestors: every even-length prefix that ends on a name
        for n in range(len(segs), 1, -1):
            prefix = "/" + "/".join(segs[:n])
            if n == 2 or n == 4 or (n > 6 and n % 2 == 0):
                result.append(prefix)
        mg = _mg_of_subscription(state, segs[1]) if len(segs) > 1 else None
    elif k.startswith(MG_PREFIX):
        mg = k[len(MG_PREFIX) :].split("/")[0]
    else:
        mg = None
    seen: set[str] = set()
    while mg is not None and mg not in seen:
        seen.add(mg)
        result.append(key(mg_scope(mg)))
        mg = state.management_groups.get(mg, {}).get("parent")
    result.append("/")
    return result


def _mg_of_subscription(state: State, subscription_lower: str) -> str | None:
    for name, group in state.management_groups.items():
        if subscription_lower in group["subscriptions"]:
            return name
    return None


def at_or_above(state: State, candidate: str, target: str) -> bool:
    return key(candidate) in chain(state, target)


def below(state: State, candidate: str, target: str) -> bool:
    return key(candidate) != key(target) and key(target) in chain(state, candidate)


def validate(state: State, scope: str) -> str:
    """404 when the scope does not exist (subscriptions exist on first use). Returns the scope."""
    scope = normalize(scope)
    k = key(scope)
    segs = scope.strip("/").split("/") if scope != "/" else []
    if k.startswith(MG_PREFIX):
        name = segs[3].lower() if len(segs) >= 4 else ""
        if len(segs) != 4 or name not in state.management_groups:
            raise ArmError(
                404,
                "ManagementGroupNotFound",
                f"The management group '{segs[3] if len(segs) > 3 else ''}' was not found.",
            )
        return scope
    if not segs or segs[0].lower() != "subscriptions" or len(segs) < 2:
        if scope == "/":
            return scope
        raise ArmError(400, "InvalidScope", f"The scope '{scope}' is not valid for role assignments.")
    state.touch_subscription(segs[1])
    if len(segs) == 2:
        return scope
    if segs[2].lower() != "resourcegroups" or len(segs) < 4:
        raise ArmError(400, "InvalidScope", f"The scope '{scope}' is not valid for role assignments.")
    if key(f"/subscriptions/{segs[1]}/resourceGroups/{segs[3]}") not in state.resource_groups:
        raise resource_group_not_found(segs[3])
    if len(segs) == 4:
        return scope
    if k not in state.resources:
        raise ArmError(
            404,
            "ResourceNotFound",
            f"The Resource '{'/'.join(segs[5:])}' under resource group '{segs[3]}' was not found. "
            "For more details please go to https://aka.ms/ARMResourceNotFoundFix",
        )
    return scope


def subscription_prefix(scope: str) -> str:
    """``/subscriptions/{s}`` for scopes inside a subscription, else ``""``."""
    segs = scope.strip("/").split("/")
    if len(segs) >= 2 and segs[0].lower() == "subscriptions":
        return f"/subscriptions/{segs[1]}"
    return ""
