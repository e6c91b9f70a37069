"""The HTTP API of the contract, as one FastAPI app over the ``MoveService`` facade.

Served in Azure through ``func.AsgiFunctionApp`` (``function_app.py``) and locally by ``idmove
host`` through the very same function, so there is one source of truth for routes and errors.

What this layer owns (the engine owns everything else):

- reading the body: size limit (413 ``RequestTooLarge``), content type (415), JSON (400
  ``InvalidJson``), a JSON object (400 ``InvalidRequestContent``) - before the engine sees it;
- query parameters (``status``, ``sourceRegion``, ``top``, ``$skipToken``): 400
  ``InvalidQueryParameter`` with ``target`` = the parameter;
- status codes and headers: 202 + ``Location`` + ``Retry-After`` for accepted commands and for a
  move still Pending/Running, 200 at rest, ``nextLink`` as a full URL; every URL it hands out
  carries the caller's ``?code=`` function key when the caller sent one;
- every error in ARM's shape ``{"error": {"code", "message", "target"}}``, FastAPI's own 422s and
  404/405s included; an unexpected exception is a 500 ``InternalServerError`` without details.

Example::

    app = create_app(lambda: MoveService.from_settings(Settings.from_env()))
    # uvicorn.run(app) or func.AsgiFunctionApp(app=app)
"""

from __future__ import annotations

import builtins
import json
import logging
import os
import re
from collections.abc import Callable
from typing import Annotated, Any, Protocol
from urllib.parse import urlencode

from fastapi import FastAPI, Query, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from fastapi.security import APIKeyHeader, APIKeyQuery
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared.dashboard import page
from shared.errors import ApiError
from shared.models import MoveRequest
from shared.report import to_markdown
from shared.statuses import Status

__all__ = ["MAX_BODY_BYTES", "RETRY_AFTER_SECONDS", "MoveServiceApi", "create_app"]

log = logging.getLogger(__name__)

API_PREFIX = "/api"
MAX_BODY_BYTES = 64 * 1024
RETRY_AFTER_SECONDS = 2
TOP_DEFAULT = 50
TOP_MAX = 200
MOVE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
COMMANDS = ("commit", "cancel", "retry", "discard")
BUSY = frozenset({Status.PENDING.value, Status.RUNNING.value})


class MoveServiceApi(Protocol):
    """The part of ``shared.service.MoveService`` the HTTP API calls."""

    def start(self, body: dict[str, Any], by: str | None = None) -> dict[str, Any]: ...
    def get(self, move_id: str, expand_inventory: bool = False) -> dict[str, Any]: ...
    def report(self, move_id: str) -> dict[str, Any]: ...
    def list(
        self,
        status: str | None = None,
        source_region: str | None = None,
        top: int = 50,
        skip_token: str | None = None,
    ) -> tuple[builtins.list[dict[str, Any]], str | None]: ...
    def commit(self, move_id: str, by: str | None = None) -> dict[str, Any]: ...
    def cancel(self, move_id: str, by: str | None = None) -> dict[str, Any]: ...
    def retry(self, move_id: str, by: str | None = None) -> dict[str, Any]: ...
    def discard(self, move_id: str, by: str | None = None) -> dict[str, Any]: ...


def actor(request: Request) -> str:
    """Who sent a command, for the move's audit (the report): in Azure the App Service
    authentication headers' principal when present (Easy Auth sets them and drops a client's own),
    else "function key"; on the local host (no ``WEBSITE_INSTANCE_ID``) always "local"."""
    if not os.environ.get("WEBSITE_INSTANCE_ID"):
        return "local"
    name = request.headers.get("x-ms-client-principal-name", "").strip()[:256]
    principal_id = request.headers.get("x-ms-client-principal-id", "").strip()[:64]
    if name and principal_id:
        return f"{name} ({principal_id})"
    return name or principal_id or "function key"


def error_response(
    status: int, code: str, message: str, target: str | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "target": target}}
    return JSONResponse(body, status_code=status, headers=headers)


def _base_url(request: Request) -> str:
    """Scheme and host the caller used (behind the Functions front end: the public host name)."""
    proto = request.headers.get("x-forwarded-proto") or request.url.scheme
    host = request.headers.get("x-forwarded-host") or request.headers.get("host") or request.url.netloc
    return f"{proto}://{host}"


def with_key(request: Request, url: str) -> str:
    """``url`` with the caller's ``?code=`` function key, if it sent one: so a client that
    authenticates by query string (Logic Apps, curl) can follow ``Location``, ``links`` and
    ``nextLink`` as they are. A key sent as ``x-functions-key`` is never copied into a URL."""
    code = request.query_params.get("code")
    if not code:
        return url
    return f"{url}{'&' if '?' in url else '?'}{urlencode({'code': code})}"


def move_url(request: Request, move_id: str) -> str:
    return with_key(request, f"{_base_url(request)}{API_PREFIX}/moves/{move_id}")


def links(request: Request, move_id: str) -> dict[str, str]:
    status_url = f"{_base_url(request)}{API_PREFIX}/moves/{move_id}"
    urls = {"status": status_url, **{command: f"{status_url}/{command}" for command in COMMANDS}}
    return {name: with_key(request, url) for name, url in urls.items()}


def _accepted(request: Request, result: dict[str, Any]) -> JSONResponse:
    move_id = str(result["id"])
    body = {"id": move_id, "status": result.get("status"), "links": links(request, move_id)}
    headers = {"Location": move_url(request, move_id), "Retry-After": str(RETRY_AFTER_SECONDS)}
    return JSONResponse(body, status_code=202, headers=headers)


def _check_move_id(move_id: str) -> None:
    if not MOVE_ID_RE.match(move_id):
        raise ApiError(404, "MoveNotFound", f"no move with id {move_id[:140]!r}", "id")


async def read_json_object(request: Request) -> dict[str, Any]:
    """The request body as a JSON object, or an ``ApiError`` (413/415/400) before anything else."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        raise ApiError(413, "RequestTooLarge", f"the request body is larger than {MAX_BODY_BYTES} bytes")
    content_type = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if content_type and content_type != "application/json" and not content_type.endswith("+json"):
        raise ApiError(
            415,
            "UnsupportedMediaType",
            f"send the body as application/json, not {content_type!r}",
            "Content-Type",
        )
    raw = b""
    async for chunk in request.stream():
        raw += chunk
        if len(raw) > MAX_BODY_BYTES:
            raise ApiError(413, "RequestTooLarge", f"the request body is larger than {MAX_BODY_BYTES} bytes")
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, "InvalidJson", f"the request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise ApiError(400, "InvalidJson", "the request body nests too deeply") from None
    if not isinstance(body, dict):
        raise ApiError(400, "InvalidRequestContent", "the request body must be a JSON object")
    return body


def _query_int(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not re.fullmatch(r"\d{1,6}", raw) or not low <= int(raw) <= high:
        raise ApiError(400, "InvalidQueryParameter", f"{name} must be an integer from {low} to {high}", name)
    return int(raw)


def _query_status(request: Request) -> str | None:
    raw = request.query_params.get("status")
    if raw is None or raw == "":
        return None
    for status in Status:
        if status.value.lower() == raw.lower():
            return status.value
    allowed = ", ".join(status.value for status in Status)
    raise ApiError(400, "InvalidQueryParameter", f"status must be one of {allowed}", "status")


def _query_region(request: Request) -> str | None:
    raw = request.query_params.get("sourceRegion")
    if raw is None or raw == "":
        return None
    region = raw.replace(" ", "").lower()
    if not re.fullmatch(r"[a-z][a-z0-9]{2,40}", region):
        raise ApiError(
            400, "InvalidQueryParameter", "sourceRegion must be an Azure region name", "sourceRegion"
        )
    return region


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        headers = {"Location": exc.location} if exc.location else None
        if exc.location and exc.location.startswith("/"):
            headers = {"Location": with_key(request, f"{_base_url(request)}{exc.location}")}
        return error_response(exc.status, exc.code, exc.message, exc.target, headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        loc = [str(part) for part in first.get("loc", ())]
        where = loc[0] if loc else "body"
        target = ".".join(loc[1:]) or None
        code = "InvalidQueryParameter" if where == "query" else "InvalidRequestContent"
        return error_response(400, code, str(first.get("msg", "invalid request")), target)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "NotFound", 405: "MethodNotAllowed", 413: "RequestTooLarge"}
        code = codes.get(exc.status_code, "BadRequest" if exc.status_code < 500 else "InternalServerError")
        message = str(exc.detail) if exc.status_code != 404 else f"no route {request.url.path}"
        return error_response(exc.status_code, code, message, None, dict(exc.headers or {}) or None)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(
            500, "InternalServerError", "the server failed to handle the request; retry later"
        )


# --- the OpenAPI document: bodies, headers and errors of every route --------------------------

_REF = "#/components/schemas/"
_NULLABLE_STRING: dict[str, Any] = {"type": ["string", "null"]}
_PARTY = {
    "type": ["object", "null"],
    "properties": {
        key: _NULLABLE_STRING
        for key in ("id", "name", "resourceGroup", "location", "principalId", "clientId")
    },
}
_ITEMS_SCHEMA = {
    "type": "object",
    "description": "what a phase has done of its items (role assignments, credentials, resources, ...)",
    "properties": {"total": {"type": "integer"}, "done": {"type": "integer"}, "failed": {"type": "integer"}},
}
_ERROR_DETAIL = {
    "type": "object",
    "properties": {
        "code": {"type": "string", "description": "machine-readable, e.g. InvalidSourceIdentityId"},
        "message": {"type": "string"},
        "target": {**_NULLABLE_STRING, "description": "the field or parameter at fault"},
    },
    "required": ["code", "message", "target"],
}


_WHO = {
    "type": "object",
    "description": "who asked and when: by = the signed-in principal (App Service authentication), "
    "'function key', 'local', 'Event Grid event <id>' (with eventId, topic) or 'commit policy' (with reason)",
    "properties": {
        "command": {"type": "string"},
        "by": _NULLABLE_STRING,
        "at": _NULLABLE_STRING,
        "eventId": _NULLABLE_STRING,
        "topic": _NULLABLE_STRING,
        "reason": _NULLABLE_STRING,
        "outcome": _NULLABLE_STRING,
    },
    "required": ["by", "at"],
}
_REPORT_ITEM = {
    "type": "object",
    "properties": {
        "kind": {"type": "string"},
        "what": {"type": "string"},
        "from": _NULLABLE_STRING,
        "to": _NULLABLE_STRING,
        "status": {"type": "string"},
        "outcome": _NULLABLE_STRING,
        "at": {**_NULLABLE_STRING, "description": "when the item was last written"},
        "error": {"type": "object"},
    },
    "required": ["kind", "what", "status", "outcome", "at"],
}
_COMMIT_FIELDS: dict[str, Any] = {
    "commitDeadline": {
        "type": "string",
        "format": "date-time",
        "description": "with a commitPolicy, once AwaitingCommit: when the timer discards or commits",
    },
    "commitTimeout": {
        "type": "object",
        "description": "what the commit policy's timer did at the deadline",
        "properties": {
            "outcome": {"type": "string", "enum": ["discard", "commit", "waitingForActionsRequired"]},
            "at": _NULLABLE_STRING,
            "reason": _NULLABLE_STRING,
        },
        "required": ["outcome"],
    },
}


def _report_schema() -> dict[str, Any]:
    keys = ("id", "name", "resourceGroup", "location", "principalId", "clientId")
    party = {"type": "object", "properties": {key: _NULLABLE_STRING for key in keys}}
    return {
        "type": "object",
        "description": "what a move did, by whom and when",
        "properties": {
            "id": {"type": "string"},
            "status": {"type": "string", "enum": [status.value for status in Status]},
            "dryRun": {"type": "boolean"},
            "source": party,
            "target": party,
            "started": _WHO,
            "commands": {"type": "array", "items": _WHO},
            "phases": {"type": "array", "items": {"type": "object"}},
            "copied": {"type": "array", "items": _REPORT_ITEM},
            "rebound": {"type": "array", "items": _REPORT_ITEM},
            "deleted": {"type": "array", "items": _REPORT_ITEM},
            "verified": {
                "type": "object",
                "properties": {
                    "status": _NULLABLE_STRING,
                    "completedAt": _NULLABLE_STRING,
                    "checked": {"type": "object", "additionalProperties": {"type": "integer"}},
                },
            },
            "actionsRequired": {"type": "array", "items": {"type": "object"}},
            "events": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string"},
                        "type": {"type": "string"},
                        "time": {"type": "string"},
                        "sent": {"type": "boolean"},
                        "data": {"type": "object"},
                    },
                    "required": ["id", "type", "time", "sent"],
                },
            },
            "error": _ERROR_DETAIL,
            "createdAt": {"type": "string"},
            "updatedAt": {"type": "string"},
        },
        "required": [
            "id",
            "status",
            "source",
            "target",
            "started",
            "commands",
            "copied",
            "rebound",
            "deleted",
            "verified",
            "actionsRequired",
            "events",
        ],
    }


def _schemas() -> dict[str, Any]:
    statuses = [status.value for status in Status]
    request = MoveRequest.model_json_schema(by_alias=True, ref_template=_REF + "{model}")
    nested = request.pop("$defs", {})  # CommitPolicy: a component of its own, where the $ref points
    return {
        **nested,
        "Report": _report_schema(),
        "ErrorResponse": {
            "type": "object",
            "description": "ARM's error shape. A 4xx means nothing was written.",
            "properties": {"error": _ERROR_DETAIL},
            "required": ["error"],
        },
        "MoveRequest": request,
        "Accepted": {
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "status": {"type": "string", "enum": statuses},
                "links": {
                    "type": "object",
                    "properties": {
                        name: {"type": "string", "format": "uri"} for name in ("status", *COMMANDS)
                    },
                    "required": ["status", *COMMANDS],
                },
            },
            "required": ["id", "status", "links"],
        },
        "Move": {
            "type": "object",
            "properties": {
                "id": {"type": "string"},
                "status": {"type": "string", "enum": statuses},
                "phase": _NULLABLE_STRING,
                "phases": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {
                            "name": {"type": "string"},
                            "status": {"type": "string"},
                            "startedAt": {**_NULLABLE_STRING, "format": "date-time"},
                            "completedAt": {**_NULLABLE_STRING, "format": "date-time"},
                            "items": _ITEMS_SCHEMA,
                        },
                        "required": ["name", "status"],
                    },
                },
                "source": _PARTY,
                "target": _PARTY,
                "plan": {
                    "type": ["object", "null"],
                    "properties": {
                        "blocking": {"type": "array", "items": {"type": "object"}},
                        "warnings": {"type": "array", "items": {"type": "object"}},
                        "actionsRequired": {
                            "type": "array",
                            "description": "steps a person must take that the mover cannot (outside ARM); "
                            "autoCommit waits for them unless acknowledgeActionsRequired; messages name "
                            "the new clientId once it is known",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "code": {
                                        "type": "string",
                                        "description": "stable: GitHubClientId, KubernetesServiceAccount, "
                                        "FederatedIssuer, SqlEntraAdmin, SqlContainedUser, MySqlEntraAdmin",
                                    },
                                    "target": {"type": "string"},
                                    "message": {"type": "string"},
                                },
                                "required": ["code", "target", "message"],
                            },
                        },
                        "discovery": {
                            "type": "object",
                            "description": "what snapshot read to find data-plane grants, e.g. cosmosAccountsRead",
                            "additionalProperties": {"type": "integer"},
                        },
                        "inventory": {
                            "type": "object",
                            "description": "only with $expand=inventory: what the move copies",
                            "properties": {
                                kind: {"type": "array", "items": {"type": "object"}}
                                for kind in (
                                    "roleAssignments",
                                    "federatedCredentials",
                                    "groups",
                                    "appRoles",
                                    "attachments",
                                    "keyVaultAccessPolicies",
                                    "cosmosRoleAssignments",
                                    "flexibleServerAdmins",
                                    "appSettings",
                                    "sqlServers",
                                )
                            },
                        },
                    },
                },
                "error": {**_ERROR_DETAIL, "description": "when the move failed"},
                "createdAt": {"type": "string", "format": "date-time"},
                "updatedAt": {"type": "string", "format": "date-time"},
                "dryRun": {"type": "boolean"},
                "autoCommit": {"type": "boolean"},
                "request": {"$ref": _REF + "MoveRequest"},
                **_COMMIT_FIELDS,
            },
            "required": ["id", "status", "phases", "source", "plan"],
        },
        "MoveList": {
            "type": "object",
            "properties": {
                "value": {"type": "array", "items": {"$ref": _REF + "Move"}},
                "nextLink": {"type": "string", "format": "uri", "description": "the next page, in full"},
            },
            "required": ["value"],
        },
    }


_HEADERS = {
    "Location": {
        "description": "the move's status URL (with the caller's ?code= key if it sent one)",
        "schema": {"type": "string", "format": "uri"},
    },
    "Retry-After": {
        "description": "seconds to wait before polling again",
        "schema": {"type": "integer", "minimum": 1},
    },
}
_DESCRIBED = {
    200: "The move, at rest.",
    202: "Accepted: follow `Location`, honour `Retry-After`.",
    400: "Bad input; nothing was written.",
    401: "No or a wrong function key (`?code=` or `x-functions-key`); answered before the API runs.",
    404: "No such move.",
    409: "The move's status does not allow this, or the identity already has a move in flight "
    "(`Location` = that move).",
    413: "The body is larger than 64 KiB.",
    415: "The body is not JSON.",
    500: "The server failed; retry later.",
}


def _responses(
    *codes: int,
    body: str | None = None,
    headers: tuple[str, ...] = (),
    description: dict[int, str] | None = None,
) -> dict[int | str, dict[str, Any]]:
    """``body`` (a schema name) and ``headers`` for the 2xx codes; ``ErrorResponse`` for the rest."""
    out: dict[int | str, dict[str, Any]] = {}
    for code in (*codes, 401, 500):
        entry: dict[str, Any] = {"description": (description or {}).get(code) or _DESCRIBED[code]}
        if code < 300 and body:
            entry["content"] = {"application/json": {"schema": {"$ref": _REF + body}}}
        if code < 300 and headers:
            entry["headers"] = {name: _HEADERS[name] for name in headers}
        if code == 409:
            entry["headers"] = {"Location": _HEADERS["Location"]}
        if code >= 400 and code != 401:
            entry["content"] = {"application/json": {"schema": {"$ref": _REF + "ErrorResponse"}}}
        out[code] = entry
    return out


_LIST_PARAMETERS = [
    {
        "name": "status",
        "in": "query",
        "required": False,
        "description": "only moves in this status (case-insensitive; empty = any)",
        "schema": {"type": "string", "enum": ["", *(status.value for status in Status)]},
    },
    {
        "name": "sourceRegion",
        "in": "query",
        "required": False,
        "description": "only moves of identities in this region (a name such as `westeurope` or "
        "`West Europe`)",
        # exactly what _query_region accepts: spaces dropped, then a letter and 2-40 letters/digits
        "schema": {"type": "string", "pattern": r"^$|^ *[A-Za-z]( *[A-Za-z0-9]){2,40} *$"},
    },
    {
        "name": "top",
        "in": "query",
        "required": False,
        "description": "page size",
        "schema": {"type": "integer", "minimum": 1, "maximum": TOP_MAX, "default": TOP_DEFAULT},
    },
    {
        "name": "$skipToken",
        "in": "query",
        "required": False,
        "description": "continuation from a nextLink (follow nextLink rather than building this)",
        "schema": {"type": "string", "maxLength": 1024},
    },
]


def _document_components(app: FastAPI) -> None:
    """Adds the shared schemas that the routes' ``$ref`` s point at to FastAPI's generated document."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = generate()
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            for operations in document.get("paths", {}).values():
                for operation in operations.values():
                    operation.get("responses", {}).pop("422", None)  # validation errors are 400s here
            for unused in ("HTTPValidationError", "ValidationError"):
                schemas.pop(unused, None)
            schemas.update(_schemas())
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def create_app(service_factory: Callable[[], MoveServiceApi]) -> FastAPI:
    """The API over a service built lazily (``service_factory`` is called per request; cache it)."""
    app = FastAPI(
        title="Identity Mover",
        version="1.0.0",
        description="Move a user-assigned managed identity to another region as a durable chain of phases.",
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=f"{API_PREFIX}/docs",
        redoc_url=None,
        # no 307 to the path without its trailing slash: in Azure the Functions ASGI adapter drops a
        # path's ';params' (urlparse), so '/api/moves/;x' arrives as '/api/moves/' and must be a 404,
        # not a redirect to the list
        redirect_slashes=False,
        # Documents the function key (checked by the Functions front end, not here).
        dependencies=[
            Security(APIKeyHeader(name="x-functions-key", scheme_name="functionKey", auto_error=False)),
            Security(APIKeyQuery(name="code", scheme_name="functionKeyQuery", auto_error=False)),
        ],
    )
    _install_error_handlers(app)
    _document_components(app)

    @app.post(
        f"{API_PREFIX}/moves",
        status_code=202,
        summary="Start a move (or a dry run with dryRun: true)",
        responses=_responses(202, 400, 409, 413, 415, body="Accepted", headers=("Location", "Retry-After")),
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": _REF + "MoveRequest"}}},
            }
        },
    )
    async def start_move(request: Request) -> JSONResponse:
        body = await read_json_object(request)
        who = actor(request)
        result = await run_in_threadpool(lambda: service_factory().start(body, by=who))
        return _accepted(request, result)

    @app.get(
        f"{API_PREFIX}/moves",
        summary="List moves, newest first; follow nextLink for more",
        responses=_responses(200, 400, body="MoveList", description={200: "A page of moves."}),
        openapi_extra={"parameters": _LIST_PARAMETERS},
    )
    async def list_moves(request: Request) -> JSONResponse:
        status = _query_status(request)
        region = _query_region(request)
        top = _query_int(request, "top", TOP_DEFAULT, 1, TOP_MAX)
        token = request.query_params.get("$skipToken") or None
        if token is not None and len(token) > 1024:
            raise ApiError(
                400, "InvalidQueryParameter", "$skipToken is not one this API issued", "$skipToken"
            )
        items, next_token = await run_in_threadpool(
            lambda: service_factory().list(status=status, source_region=region, top=top, skip_token=token)
        )
        body: dict[str, Any] = {"value": items}
        if next_token:
            query = {"status": status, "sourceRegion": region, "top": str(top), "$skipToken": next_token}
            kept = {key: value for key, value in query.items() if value}
            next_link = f"{_base_url(request)}{API_PREFIX}/moves?{urlencode(kept, safe='$')}"
            body["nextLink"] = with_key(request, next_link)
        return JSONResponse(body)

    @app.get(
        f"{API_PREFIX}/moves/{{move_id}}",
        summary="A move's status: 202 while Pending/Running, 200 at rest",
        responses={
            **_responses(200, 202, 400, 404, body="Move"),
            202: {
                "description": "The move is Pending or Running: poll again after `Retry-After`.",
                "headers": {"Retry-After": _HEADERS["Retry-After"]},
                "content": {"application/json": {"schema": {"$ref": _REF + "Move"}}},
            },
        },
    )
    async def get_move(
        move_id: str,
        request: Request,
        expand: Annotated[
            str | None,
            Query(
                alias="$expand",
                description="'inventory' adds plan.inventory: what the move copies",
                json_schema_extra={"enum": ["inventory"]},
            ),
        ] = None,
    ) -> JSONResponse:
        _check_move_id(move_id)
        if expand not in (None, "inventory"):
            raise ApiError(400, "InvalidQueryParameter", "$expand supports only 'inventory'", "$expand")
        move = await run_in_threadpool(lambda: service_factory().get(move_id, expand_inventory=bool(expand)))
        if move.get("status") in BUSY:
            return JSONResponse(move, status_code=202, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
        return JSONResponse(move)

    @app.get(
        f"{API_PREFIX}/moves/{{move_id}}/report",
        summary="What the move did, by whom and when (JSON, or Markdown with format=markdown)",
        responses={
            **_responses(200, 400, 404, body="Report", description={200: "The move's report."}),
            200: {
                "description": "The move's report.",
                "content": {
                    "application/json": {"schema": {"$ref": _REF + "Report"}},
                    "text/markdown": {"schema": {"type": "string"}},
                },
            },
        },
    )
    async def move_report(
        move_id: str,
        request: Request,
        format: Annotated[
            str | None,
            Query(description="json (default) or markdown", json_schema_extra={"enum": ["json", "markdown"]}),
        ] = None,
    ) -> Response:
        _check_move_id(move_id)
        if format not in (None, "json", "markdown"):
            raise ApiError(400, "InvalidQueryParameter", "format must be json or markdown", "format")
        body = await run_in_threadpool(lambda: service_factory().report(move_id))
        if format == "markdown":
            return PlainTextResponse(to_markdown(body), media_type="text/markdown")
        return JSONResponse(body)

    @app.get(
        f"{API_PREFIX}/dashboard",
        summary="The operator's web page: moves, phase timelines, commands (same auth as the API)",
        response_class=HTMLResponse,
        responses={
            200: {
                "description": "The page (HTML with its style and script inline; its API calls carry "
                "the ?code= key it was opened with).",
                "content": {"text/html": {"schema": {"type": "string"}}},
            },
            401: {"description": _DESCRIBED[401]},
            500: _responses(500)[500],
        },
    )
    async def dashboard() -> HTMLResponse:
        html, csp = page(API_PREFIX)
        headers = {
            "Content-Security-Policy": csp,
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",  # the page's URL may carry ?code=
        }
        return HTMLResponse(html, headers=headers)

    def add_command(command: str, summary: str) -> None:
        async def run_command(move_id: str, request: Request) -> JSONResponse:
            _check_move_id(move_id)
            who = actor(request)
            result = await run_in_threadpool(lambda: getattr(service_factory(), command)(move_id, by=who))
            return _accepted(request, {"id": move_id, **result})

        app.add_api_route(
            f"{API_PREFIX}/moves/{{move_id}}/{command}",
            run_command,
            methods=["POST"],
            status_code=202,
            summary=summary,
            name=f"{command}_move",
            responses=_responses(202, 404, 409, body="Accepted", headers=("Location", "Retry-After")),
        )

    add_command("commit", "Commit a move that is AwaitingCommit: clean up the source")
    add_command("cancel", "Cancel a move in flight (stops at the next step boundary)")
    add_command("retry", "Retry a Failed or Canceled move from the phase it stopped in")
    add_command("discard", "Discard a move: remove what it created, keep the source")
    return app
