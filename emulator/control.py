"""The emulator's own control API under ``/_emulator`` (no auth; CONTRACT.md "Emulator").

``GET /health``; ``POST /reset`` (empty estate, built-ins kept, config/faults/request log reset);
``GET /requests`` (every ARM/Graph request, oldest first: method, path, query, status, time,
durationMs); ``GET /events`` (what the Event Grid sink accepted); ``GET|PUT /config`` (partial
update, see ``config.py``; enabling throttling refills every bucket); ``GET|POST|DELETE /faults``.

A fault is ``{"method": "PUT"|"*", "pathPattern": <regex, case-insensitive, searched in the path>,
"status": 429|500|..., "times": n | "rate": 0..1, "retryAfter": seconds?, "code": "..."?}``;
``times`` counts down, ``rate`` fires with that probability.
"""

from __future__ import annotations

import copy
import os
import random
import re
from typing import Any

from emulator import config as config_mod
from emulator.errors import ArmError
from emulator.state import State
from emulator.wire import Request, Response

DEFAULT_CODES = {
    400: "BadRequest", 401: "AuthenticationFailed", 403: "AuthorizationFailed", 404: "NotFound", 409: "Conflict",
    429: "TooManyRequests", 500: "InternalServerError", 502: "BadGateway", 503: "ServiceUnavailable",
    504: "GatewayTimeout",
}  # fmt: skip


def handle(state: State, req: Request, name: str) -> Response:
    m = req.method
    if name == "health" and m == "GET":
        return Response(200, {"status": "ok", "processId": os.getpid()})  # who answers (``wait_http``)
    if name == "reset" and m == "POST":
        state.reset()
        return Response(200, {"status": "reset"})
    if name == "requests" and m == "GET":
        with state.lock:
            return Response(200, list(state.requests))
    if name == "events" and m == "GET":
        with state.lock:
            return Response(200, list(state.events))
    if name == "config" and m == "GET":
        with state.lock:
            return Response(200, copy.deepcopy(state.config))
    if name == "config" and m in ("PUT", "PATCH"):
        update = req.json()
        with state.lock:
            state.config = config_mod.merge(state.config, update)
            throttling = update.get("throttling") if isinstance(update, dict) else None
            if isinstance(throttling, dict):
                state.throttle.reset()
            return Response(200, copy.deepcopy(state.config))
    if name == "faults":
        if m == "GET":
            with state.lock:
                return Response(200, [{k: v for k, v in f.items() if k != "regex"} for f in state.faults])
        if m == "POST":
            faults = req.json()
            if isinstance(faults, dict):
                faults = [faults]
            if not isinstance(faults, list):
                raise ArmError(400, "InvalidFault", "faults must be a JSON array")
            parsed = [_parse_fault(f) for f in faults]
            with state.lock:
                state.faults.extend(parsed)
            return Response(200, [{k: v for k, v in f.items() if k != "regex"} for f in parsed])
        if m == "DELETE":
            with state.lock:
                state.faults.clear()
            return Response(204)
    raise ArmError(404, "NotFound", f"No control endpoint {m} /_emulator/{name}")


def _parse_fault(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise ArmError(400, "InvalidFault", "each fault must be a JSON object")
    status = raw.get("status")
    if not isinstance(status, int) or not 400 <= status <= 599:
        raise ArmError(400, "InvalidFault", "fault.status must be an HTTP error status (400-599)")
    try:
        regex = re.compile(str(raw.get("pathPattern", ".*")), re.IGNORECASE)
    except re.error as exc:
        raise ArmError(400, "InvalidFault", f"fault.pathPattern is not a valid regex: {exc}") from exc
    fault: dict[str, Any] = {
        "method": str(raw.get("method") or "*").upper(),
        "pathPattern": regex.pattern,
        "status": status,
        "code": raw.get("code") or DEFAULT_CODES.get(status, "Error"),
        "regex": regex,
    }
    if raw.get("times") is not None:
        fault["times"] = int(raw["times"])
    elif raw.get("rate") is not None:
        fault["rate"] = float(raw["rate"])
    else:
        fault["times"] = 1
    if raw.get("retryAfter") is not None:
        fault["retryAfter"] = raw["retryAfter"]
    if raw.get("message"):
        fault["message"] = str(raw["message"])
    return fault


def match_fault(state: State, method: str, path: str) -> ArmError | None:
    """The injected error for this request, if a fault fires (call with the lock held)."""
    for fault in state.faults:
        if fault["method"] not in ("*", method) or not fault["regex"].search(path):
            continue
        if "times" in fault:
            if fault["times"] <= 0:
                continue
            fault["times"] -= 1
        elif random.random() >= fault["rate"]:
            continue
        headers = {}
        if fault.get("retryAfter") is not None:
            headers["Retry-After"] = str(fault["retryAfter"])
        return ArmError(
            fault["status"],
            fault["code"],
            fault.get("message") or f"Injected fault ({fault['status']} {fault['code']}).",
            headers=headers,
        )
    return None
