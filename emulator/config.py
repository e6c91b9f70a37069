"""The emulator's behaviour knobs (``GET``/``PUT /_emulator/config``).

Defaults reproduce Azure with the slow parts switched off: no throttling, no replication delay,
no latency, no Resource Graph lag. ``PUT`` is a partial, deep update; unknown keys are refused so
a typo does not silently leave Azure behaviour switched off.
"""

from __future__ import annotations

import copy
from typing import Any

from emulator.errors import ArmError

DEFAULTS: dict[str, Any] = {
    # FACTS.md "Azure Resource Manager": token bucket per subscription and operation kind.
    "throttling": {
        "enabled": False,
        "timeScale": 1.0,
        "reads": {"capacity": 250, "refillPerSecond": 25},
        "writes": {"capacity": 200, "refillPerSecond": 10},
        "deletes": {"capacity": 200, "refillPerSecond": 10},
        # Resource Graph's own per-user quota: 15 queries per 5 s window.
        "resourceGraph": {"capacity": 15, "windowSeconds": 5},
    },
    # Entra ID replication: a new managed identity's service principal is invisible this long.
    "replicationDelaySeconds": 0.0,
    "latencyMs": {"read": 0, "write": 0},
    "roleAssignmentLimit": 4000,
    "managementGroupRoleAssignmentLimit": 500,
    "pageSize": 100,
    "patchUnsupportedTypes": ["Microsoft.ContainerInstance/containerGroups"],
    "resourceGraphLagSeconds": 0.0,
    "ficWriteWindowMs": 50,
    "ficLimit": 20,
    # ARM authorization and Graph application permissions for callers with an ``oid`` (rbac_enforce.py).
    "rbac": {"enforce": False},
}


def defaults() -> dict[str, Any]:
    return copy.deepcopy(DEFAULTS)


def merge(current: dict[str, Any], update: Any, path: str = "") -> dict[str, Any]:
    """Deep-merge ``update`` into a copy of ``current``; 400 on unknown keys or wrong types."""
    if not isinstance(update, dict):
        raise ArmError(400, "InvalidConfig", f"config{path} must be a JSON object")
    result = copy.deepcopy(current)
    for key, value in update.items():
        where = f"{path}.{key}"
        if key not in result:
            raise ArmError(400, "InvalidConfig", f"unknown config key '{where.lstrip('.')}'")
        existing = result[key]
        if isinstance(existing, dict):
            result[key] = merge(existing, value, where)
        elif isinstance(existing, bool):
            if not isinstance(value, bool):
                raise ArmError(400, "InvalidConfig", f"config {where.lstrip('.')} must be a boolean")
            result[key] = value
        elif isinstance(existing, (int, float)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ArmError(
                    400, "InvalidConfig", f"config {where.lstrip('.')} must be a non-negative number"
                )
            result[key] = value
        elif isinstance(existing, list):
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ArmError(400, "InvalidConfig", f"config {where.lstrip('.')} must be a list of strings")
            result[key] = value
    if path:
        return result
    if result["throttling"]["timeScale"] <= 0:
        raise ArmError(400, "InvalidConfig", "config throttling.timeScale must be positive")
    if result["pageSize"] < 1:
        raise ArmError(400, "InvalidConfig", "config pageSize must be at least 1")
    return result
