"""A small httpx client for the Identity Mover HTTP API (used by the CLI, the demo and tests).

Errors carry what a person needs to act on them::

    ClientError
     +-- Unreachable     nothing answers at the API URL (exit code 4)
     +-- ApiProblem      the API answered 4xx/5xx with ARM's error shape (exit 2, 3 for 409, 6 for 5xx)
     +-- WaitTimeout     the move did not come to rest in time (exit 5)
     +-- InvalidMoveId   not a move id; nothing was sent (exit 2)

Example::

    with MoveClient("http://127.0.0.1:7071") as api:
        accepted = api.start({"sourceIdentityId": "...", "targetRegion": "northeurope"})
        move = api.wait(accepted["id"])
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import httpx

DEFAULT_API = "http://127.0.0.1:7071"
AT_REST = frozenset({"Planned", "AwaitingCommit", "Completed", "Failed", "Canceled", "Discarded"})
MOVE_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")  # what the API accepts (shared/http_api.py)


class ClientError(Exception):
    """Base of the client's errors."""


class Unreachable(ClientError):
    def __init__(self, api: str, reason: str) -> None:
        super().__init__(f"cannot reach {api} ({reason}) — start the stack with `idmove up` or pass --api")
        self.api = api


class ApiProblem(ClientError):
    def __init__(
        self, status: int, code: str, message: str, target: str | None = None, location: str | None = None
    ) -> None:
        where = f" (target {target})" if target else ""
        super().__init__(f"{status} {code}: {message}{where}")
        self.status = status
        self.code = code
        self.message = message
        self.target = target
        self.location = location

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"status": self.status, "code": self.code, "message": self.message}
        body["target"] = self.target
        if self.location:
            body["location"] = self.location
        return {"error": body}


class InvalidMoveId(ClientError):
    """Not a move id: refused before anything is sent (``../openapi.json`` must not reach another URL)."""

    def __init__(self, move_id: str) -> None:
        super().__init__(
            f"{move_id[:140]!r} is not a move id (letters, digits, '.', '-', '_'; it starts with a letter "
            "or digit) — `idmove list --all` shows the moves this API knows"
        )
        self.move_id = move_id


def move_path(move_id: str, *rest: str) -> str:
    """``/api/moves/{id}[/rest]`` with the id checked and percent-encoded (``InvalidMoveId`` otherwise)."""
    if not MOVE_ID_RE.match(move_id):
        raise InvalidMoveId(move_id)
    return "/".join(["/api/moves", quote(move_id, safe=""), *rest])


class WaitTimeout(ClientError):
    def __init__(self, move_id: str, seconds: float, last: dict[str, Any]) -> None:
        super().__init__(
            f"move {move_id} is still {last.get('status')} (phase {last.get('phase')}) after {seconds:.0f}s — "
            f"follow it with `idmove status {move_id}` or wait longer with --timeout"
        )
        self.move_id = move_id
        self.last = last


class MoveClient:
    def __init__(
        self,
        api: str = DEFAULT_API,
        key: str | None = None,
        *,
        timeout: float = 30.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.api = api.rstrip("/")
        headers = {"x-functions-key": key} if key else {}
        self.http = httpx.Client(base_url=self.api, headers=headers, timeout=timeout, transport=transport)
        self.next_link: str | None = None  # set by ``pages``: the page after the one last yielded

    def __enter__(self) -> MoveClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self.http.request(method, url, **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise Unreachable(self.api, type(exc).__name__) from None
        except httpx.TransportError as exc:
            raise Unreachable(self.api, f"{type(exc).__name__}: {exc}") from None
        if response.status_code >= 400:
            raise _problem(response)
        return response

    def start(self, body: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self._request("POST", "/api/moves", json=body).json()
        return result

    def get(self, move_id: str, expand: str | None = None) -> dict[str, Any]:
        params = {"$expand": expand} if expand else None
        result: dict[str, Any] = self._request("GET", move_path(move_id), params=params).json()
        return result

    def report(self, move_id: str, fmt: str = "markdown") -> str:
        """The move's report as the API renders it (Markdown, or JSON text)."""
        return self._request("GET", move_path(move_id, "report"), params={"format": fmt}).text

    def command(self, move_id: str, command: str) -> dict[str, Any]:
        result: dict[str, Any] = self._request("POST", move_path(move_id, command)).json()
        return result

    def pages(
        self, status: str | None = None, source_region: str | None = None, top: int | None = None
    ) -> Iterator[list[dict[str, Any]]]:
        params = {k: v for k, v in {"status": status, "sourceRegion": source_region, "top": top}.items() if v}
        url: str | None = "/api/moves"
        while url:
            body = self._request("GET", url, params=params).json()
            self.next_link = body.get("nextLink")  # what follows the page just yielded, if anything
            yield list(body.get("value") or [])
            url, params = body.get("nextLink"), {}

    def wait(
        self,
        move_id: str,
        *,
        until: Callable[[dict[str, Any]], bool] = lambda move: move.get("status") in AT_REST,
        timeout: float = 600.0,
        interval: float = 1.0,
        on_update: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Poll the status URL until ``until(move)`` (default: at rest); honours ``Retry-After`` up to ``interval``."""
        deadline = time.monotonic() + timeout
        while True:
            move = self.get(move_id)
            if on_update is not None:
                on_update(move)
            if until(move):
                return move
            if time.monotonic() >= deadline:
                raise WaitTimeout(move_id, timeout, move)
            time.sleep(min(interval, max(0.0, deadline - time.monotonic())))


def _problem(response: httpx.Response) -> ApiProblem:
    try:
        error = response.json().get("error") or {}
    except ValueError:
        error = {}
    return ApiProblem(
        response.status_code,
        str(error.get("code") or response.reason_phrase or "Error"),
        str(error.get("message") or response.text[:300] or "no details"),
        error.get("target"),
        response.headers.get("location"),
    )
