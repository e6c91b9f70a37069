"""Validated input of the engine (pydantic) and resource-id helpers.

``MoveRequest.parse(body)`` turns a JSON body into a request or raises ``InvalidRequest`` (400)
with ``target`` = the offending field (camelCase). Nothing is written before it succeeds.

Example::

    req = MoveRequest.parse({"sourceIdentityId": "/subscriptions/<guid>/resourceGroups/rg/providers/"
                             "Microsoft.ManagedIdentity/userAssignedIdentities/app-id",
                             "targetRegion": "northeurope"})
    req.identity.name  # "app-id"
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from shared.errors import InvalidRequest
from shared.regions import KNOWN_REGIONS, normalize_region
from shared.statuses import Status

__all__ = [
    "CommitPolicy",
    "IdentityRef",
    "MoveRequest",
    "RegionDecommissionRequest",
    "Status",
    "parse_identity_id",
]

GUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
# Every regex here reads the same under Python (the validators, compiled ``re.ASCII``) and under the
# readers of the OpenAPI document's patterns (schemathesis reads them ASCII, with ``$`` as the end):
# ``\w`` is ASCII, and what Azure allows beyond ASCII in a resource group name (Unicode letters and
# digits) is any non-ASCII character (``NON_ASCII``; ARM refuses the rest with its own error). The
# validators use ``fullmatch``: Python's ``$`` also matches before a final newline, and an id ending
# in one took a lock of its own (the lock key is the id as sent). Unicode ``\w`` on the server
# accepted "é" as a resource group name the document (ASCII ``\w``) calls invalid.
NON_ASCII = r"[^\x00-\x7f]"
RG_NAME = rf"(?:[-\w._()]|{NON_ASCII}){{0,89}}(?:[-\w_()]|{NON_ASCII})"  # Azure: 1-90, not ending in '.'
IDENTITY_NAME = r"[A-Za-z0-9][-A-Za-z0-9_]{2,127}"  # Azure: 3-128 ASCII letters, digits, '-', '_'
SEGMENT = r"[^/]*[^/.][^/]*"  # a path segment that is not '.' or '..'
IDENTITY_ID_RE = re.compile(
    rf"^/subscriptions/(?P<sub>{GUID})/resourceGroups/(?P<rg>{RG_NAME})"
    rf"/providers/Microsoft\.ManagedIdentity/userAssignedIdentities/(?P<name>{IDENTITY_NAME})$",
    re.IGNORECASE | re.ASCII,
)
# the last segment ends in neither '/' nor ASCII whitespace (a pasted id's newline); no ``\s``, whose
# Unicode reading (\x1c is whitespace to Python) refused an id the document's ASCII reading took
LAST_SEGMENT = r"(?:[^/]*[^/.][^/]*[^/ \t\n\r\f\v]|[^/. \t\n\r\f\v])"
RESOURCE_ID_PATTERN = (
    rf"^/subscriptions/{GUID}/resourceGroups/{RG_NAME}/providers/{SEGMENT}/{SEGMENT}"
    rf"(/{SEGMENT}/{SEGMENT})*/{LAST_SEGMENT}$"
)
RESOURCE_ID_RE = re.compile(RESOURCE_ID_PATTERN, re.I | re.ASCII)
RG_NAME_RE = re.compile(rf"^{RG_NAME}$", re.ASCII)
IDENTITY_NAME_RE = re.compile(rf"^{IDENTITY_NAME}$", re.ASCII)
# The same rules in the OpenAPI document (JSON Schema ``pattern``), so generated clients and
# property-based tests know what is valid without reading the validators.
IDENTITY_ID_PATTERN = (
    rf"^/subscriptions/{GUID}/resourceGroups/{RG_NAME}"
    rf"/providers/Microsoft\.ManagedIdentity/userAssignedIdentities/{IDENTITY_NAME}$"
)
MAX_RESOURCE_MAP = 500


@dataclass(frozen=True)
class IdentityRef:
    """The parts of a user-assigned identity resource id."""

    subscription_id: str
    resource_group: str
    name: str

    @property
    def id(self) -> str:
        return (
            f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
            f"/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{self.name}"
        )


DOT_SEGMENT = "a resource id has no '.' or '..' segments (a URL would resolve them to another resource)"


def has_dot_segment(value: str) -> bool:
    """``/a/../b`` or ``/a/./b``: an HTTP client normalises these away, so the mover would read another URL."""
    return any(segment in (".", "..") for segment in value.split("/"))


def parse_identity_id(value: str) -> IdentityRef | None:
    match = IDENTITY_ID_RE.fullmatch(value)
    if match is None:
        return None
    return IdentityRef(match["sub"].lower(), match["rg"], match["name"])


def _integral(value: Any) -> Any:
    """JSON has one number type: ``5.0`` is an integer to JSON Schema, so accept it as 5 (``5.5``
    and ``"5"`` still fail the strict int check)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


JsonInt = Annotated[int, BeforeValidator(_integral)]


class CommitPolicy(BaseModel):
    """What happens to a move left in AwaitingCommit (``shared/commit_policy.py``)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, strict=True)

    timeout_minutes: JsonInt = Field(
        alias="timeoutMinutes",
        ge=1,
        le=525_600,
        description="minutes after the move reached AwaitingCommit (verify completed)",
    )
    on_timeout: Literal["discard", "commit"] = Field(
        alias="onTimeout",
        description="discard: remove what the move created; commit: clean up the source (still waits "
        "while actionsRequired is not empty and not acknowledged)",
    )

    @field_validator("timeout_minutes", mode="before")
    @classmethod
    def _whole_number(cls, value: Any) -> Any:
        """1739.0 is an integer to JSON Schema (and to the OpenAPI document): take it as 1739."""
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return value


def _resource_group(value: str | None) -> str | None:
    if value is not None and not RG_NAME_RE.fullmatch(value):
        raise ValueError("must be a resource group name (1-90 of letters, digits, -_.(), not ending in '.')")
    return value


class MoveRequest(BaseModel):
    """``POST /api/moves`` body (camelCase on the wire). Values are taken as sent, never stripped:
    the OpenAPI document's patterns describe exactly what is accepted (stripped, a target name
    " abc" was accepted though the document calls it invalid, and a resource id the document calls
    valid could end in an empty segment; the CLI trims what a person pasted). The one leniency is
    ARM's own: a region is normalized like a location ("North Europe" -> "northeurope")."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, strict=True)

    source_identity_id: str = Field(
        alias="sourceIdentityId", max_length=512, json_schema_extra={"pattern": IDENTITY_ID_PATTERN}
    )
    target_region: str = Field(
        alias="targetRegion", max_length=64, json_schema_extra={"enum": list[Any](sorted(KNOWN_REGIONS))}
    )
    target_resource_group: str | None = Field(
        default=None,
        alias="targetResourceGroup",
        max_length=90,
        json_schema_extra={"pattern": RG_NAME_RE.pattern},
    )
    target_name: str | None = Field(
        default=None,
        alias="targetName",
        max_length=128,
        json_schema_extra={"pattern": IDENTITY_NAME_RE.pattern},
    )
    isolation_scope: Literal["Inherit", "None", "Regional"] = Field(default="Inherit", alias="isolationScope")
    resource_map: dict[str, str] = Field(
        default_factory=dict,
        alias="resourceMap",
        max_length=MAX_RESOURCE_MAP,
        json_schema_extra={
            "propertyNames": {"pattern": RESOURCE_ID_PATTERN, "maxLength": 1024},
            "additionalProperties": {"type": "string", "pattern": RESOURCE_ID_PATTERN, "maxLength": 1024},
        },
    )
    dry_run: bool = Field(default=False, alias="dryRun")
    auto_commit: bool = Field(default=False, alias="autoCommit")
    allow_privileged_roles: bool = Field(default=False, alias="allowPrivilegedRoles")
    acknowledge_actions_required: bool = Field(
        default=False,
        alias="acknowledgeActionsRequired",
        description="autoCommit commits although plan.actionsRequired is not empty (the steps are done "
        "or will be); without it such a move waits in AwaitingCommit",
    )
    commit_policy: CommitPolicy | None = Field(
        default=None,
        alias="commitPolicy",
        description="discard or commit a move still AwaitingCommit this long after verify; default: wait",
    )

    @field_validator("source_identity_id")
    @classmethod
    def _identity_id(cls, value: str) -> str:
        if has_dot_segment(value):
            raise ValueError(DOT_SEGMENT)
        if parse_identity_id(value) is None:
            raise ValueError(
                "must be a user-assigned identity id: /subscriptions/{guid}/resourceGroups/{rg}/providers/"
                "Microsoft.ManagedIdentity/userAssignedIdentities/{name}"
            )
        return value

    @field_validator("target_region")
    @classmethod
    def _region(cls, value: str) -> str:
        region = normalize_region(value)
        if not re.fullmatch(r"[a-z][a-z0-9]{2,40}", region):
            raise ValueError("must be an Azure region name such as 'northeurope'")
        if region not in KNOWN_REGIONS:
            raise ValueError(f"unknown Azure region {value!r}")
        return region

    @field_validator("target_resource_group")
    @classmethod
    def _rg(cls, value: str | None) -> str | None:
        return _resource_group(value)

    @field_validator("target_name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is not None and not IDENTITY_NAME_RE.fullmatch(value):
            raise ValueError("must be 3-128 letters, digits, '-' or '_', starting with a letter or digit")
        return value

    @field_validator("resource_map")
    @classmethod
    def _map(cls, value: dict[str, str]) -> dict[str, str]:
        for key, target in value.items():
            for item in (key, target):
                if has_dot_segment(item):
                    raise ValueError(f"{item[:200]!r}: {DOT_SEGMENT}")
                if len(item) > 1024 or not RESOURCE_ID_RE.fullmatch(item):
                    raise ValueError(f"{item[:200]!r} is not a resource id")
        return value

    @property
    def identity(self) -> IdentityRef:
        ref = parse_identity_id(self.source_identity_id)
        assert ref is not None  # validated
        return ref

    @classmethod
    def parse(cls, body: Any) -> MoveRequest:
        return _parse(cls, body)

    def to_body(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True)


class RegionDecommissionRequest(BaseModel):
    """``IdentityMover.RegionDecommissioning`` event data. Values are taken as sent, like
    ``MoveRequest``'s (stripped until 2026-12-02, so " 7d2f..." was a subscription and a resource
    group " rg" was accepted here, then refused by each identity's move at its start); a target
    resource group is checked here, so a bad one is refused with the event, not once per identity."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, strict=True)

    source_region: str = Field(alias="sourceRegion", max_length=64)
    target_region: str = Field(alias="targetRegion", max_length=64)
    subscription_ids: list[str] = Field(alias="subscriptionIds", min_length=1, max_length=100)
    target_resource_group: str | None = Field(default=None, alias="targetResourceGroup", max_length=90)
    auto_commit: bool = Field(default=False, alias="autoCommit")
    acknowledge_actions_required: bool = Field(default=False, alias="acknowledgeActionsRequired")
    commit_policy: CommitPolicy | None = Field(default=None, alias="commitPolicy")

    @field_validator("source_region", "target_region")
    @classmethod
    def _region(cls, value: str) -> str:
        region = normalize_region(value)
        if region not in KNOWN_REGIONS:
            raise ValueError(f"unknown Azure region {value!r}")
        return region

    @field_validator("target_resource_group")
    @classmethod
    def _rg(cls, value: str | None) -> str | None:
        return _resource_group(value)

    @field_validator("subscription_ids")
    @classmethod
    def _subs(cls, value: list[str]) -> list[str]:
        for sub in value:
            if not re.fullmatch(GUID, sub):
                raise ValueError(f"{sub!r} is not a subscription id")
        return [sub.lower() for sub in value]

    @model_validator(mode="after")
    def _different(self) -> RegionDecommissionRequest:
        if self.source_region == self.target_region:
            raise ValueError("targetRegion must differ from sourceRegion")
        return self

    @classmethod
    def parse(cls, body: Any) -> RegionDecommissionRequest:
        return _parse(cls, body)


FIELD_CODES = {"sourceIdentityId": "InvalidSourceIdentityId", "targetRegion": "InvalidTargetRegion"}


M = TypeVar("M", bound=BaseModel)


def _parse(model: type[M], body: Any) -> M:
    if not isinstance(body, dict):
        raise InvalidRequest("InvalidRequestContent", "the request body must be a JSON object")
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        target = ".".join(str(part) for part in first["loc"]) or None
        field = str(first["loc"][0]) if first["loc"] else ""
        if first["type"] == "extra_forbidden":
            message = f"unknown field {target!r}"
        else:
            message = first["msg"].removeprefix("Value error, ")
        code = (
            "InvalidRequestContent"
            if first["type"] == "missing"
            else FIELD_CODES.get(field, "InvalidRequestContent")
        )
        raise InvalidRequest(code, message, target) from None
