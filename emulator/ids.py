"""ARM resource ids: parsing and case-insensitive keys.

ARM matches ids case-insensitively (``resourceGroups`` vs ``resourcegroups``, any casing of names),
so every lookup key here is the lower-cased id; the stored resource keeps the casing it was
created with.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

GUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def is_guid(value: str) -> bool:
    return bool(GUID_RE.match(value))


def key(resource_id: str) -> str:
    return "/" + resource_id.strip("/").lower()


def new_guid() -> str:
    return str(uuid.uuid4())


@dataclass(frozen=True)
class ResourceId:
    """``/subscriptions/{s}/resourceGroups/{rg}/providers/{ns}/{t1}/{n1}[/{t2}/{n2}...]``."""

    subscription: str
    resource_group: str
    namespace: str
    types: tuple[str, ...]
    names: tuple[str, ...]

    @property
    def type(self) -> str:
        return "/".join((self.namespace, *self.types))

    @property
    def name(self) -> str:
        return self.names[-1]

    @property
    def resource_group_id(self) -> str:
        return f"/subscriptions/{self.subscription}/resourceGroups/{self.resource_group}"

    def with_group_name(self, group_name: str) -> str:
        """The id with the resource group spelled as stored (ARM echoes the group's own casing)."""
        tail = "/".join(f"{t}/{n}" for t, n in zip(self.types, self.names, strict=True))
        return f"/subscriptions/{self.subscription}/resourceGroups/{group_name}/providers/{self.namespace}/{tail}"

    @property
    def parent_id(self) -> str | None:
        if len(self.types) < 2:
            return None
        tail = "/".join(f"{t}/{n}" for t, n in zip(self.types[:-1], self.names[:-1], strict=True))
        return f"{self.resource_group_id}/providers/{self.namespace}/{tail}"


def parse_resource_id(resource_id: str) -> ResourceId | None:
    """Parse a resource-group-level resource id; None if it is not one."""
    segs = resource_id.strip("/").split("/")
    if len(segs) < 8 or len(segs) % 2 != 0:
        return None
    low = [s.lower() for s in segs[:5]]
    if low[0] != "subscriptions" or low[2] != "resourcegroups" or low[4] != "providers":
        return None
    rest = segs[6:]
    if any(not s for s in segs):
        return None
    return ResourceId(segs[1], segs[3], segs[5], tuple(rest[0::2]), tuple(rest[1::2]))


def subscription_of(scope: str) -> str | None:
    segs = scope.strip("/").split("/")
    if len(segs) >= 2 and segs[0].lower() == "subscriptions":
        return segs[1]
    return None


def resource_group_of(scope: str) -> str | None:
    segs = scope.strip("/").split("/")
    if len(segs) >= 4 and segs[0].lower() == "subscriptions" and segs[2].lower() == "resourcegroups":
        return segs[3]
    return None
