"""Error responses in the shapes Azure uses.

ARM (and every resource provider behind it) answers errors as
``{"error": {"code", "message", "target"?, "details"?}}`` (``common-types/v5/types.json``
``ErrorResponse``); Microsoft Graph answers ``{"error": {"code", "message", "innerError": {...}}}``.
Handlers raise :class:`ArmError`; the server renders it in the shape of the API that was called.
"""

from __future__ import annotations

from typing import Any


class ArmError(Exception):
    """An HTTP error with an Azure error code. Rendered by the server, never caught by handlers."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        target: str | None = None,
        details: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.target = target
        self.details = details
        self.headers = headers or {}

    def arm_body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.target is not None:
            error["target"] = self.target
        if self.details:
            error["details"] = self.details
        return {"error": error}

    def graph_body(self, request_id: str, date: str) -> dict[str, Any]:
        return {
            "error": {
                "code": self.code,
                "message": self.message,
                "innerError": {"date": date, "request-id": request_id, "client-request-id": request_id},
            }
        }


def not_found(resource_type: str, names: list[str], resource_group: str | None = None) -> ArmError:
    """ARM's 404 for a missing resource (``ResourceNotFound``), worded as ARM words it: the type's
    segments interleaved with the names (``Microsoft.X/parents/p/children/c``), then the ARM link.
    """
    namespace, *types = resource_type.split("/")
    path = "/".join([namespace, *(f"{t}/{n}" for t, n in zip(types, names, strict=False))])
    where = f" under resource group '{resource_group}'" if resource_group else ""
    return ArmError(
        404,
        "ResourceNotFound",
        f"The Resource '{path}'{where} was not found. For more details please go to "
        "https://aka.ms/ARMResourceNotFoundFix",
    )


def resource_group_not_found(name: str) -> ArmError:
    return ArmError(404, "ResourceGroupNotFound", f"Resource group '{name}' could not be found.")


def bad_request(message: str, code: str = "BadRequest", target: str | None = None) -> ArmError:
    return ArmError(400, code, message, target)


def graph_not_found(object_id: str) -> ArmError:
    """Graph's 404 for a directory object that does not exist (or has not replicated yet)."""
    return ArmError(
        404,
        "Request_ResourceNotFound",
        f"Resource '{object_id}' does not exist or one of its queried reference-property objects are not present.",
    )


def graph_bad_request(message: str) -> ArmError:
    return ArmError(400, "Request_BadRequest", message)
