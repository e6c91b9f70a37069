"""The HTTP server: one ``ThreadingHTTPServer`` on loopback serving ARM, Graph, the Event Grid sink
and the control API.

Why the standard library: it starts in well under a second, has no framework overhead per request
(a GET costs a fraction of a millisecond of server time) and speaks HTTP/1.1 keep-alive, which the
Azure SDKs use. Every answer has a ``Content-Length``.

Per request, in order (as ARM does): bearer token (401 ``AuthenticationFailed``), ``api-version``
(400 ``MissingApiVersionParameter``), injected faults, injected latency (slept outside the state
lock), throttling (429 + ``Retry-After``), authorization when ``rbac.enforce`` is on
(``rbac_enforce.py`` for ARM, ``graph_permissions.py`` for Graph; callers from ``callers.py``), then the
handler. ARM answers carry
``x-ms-request-id``, ``x-ms-correlation-request-id`` and ``x-ms-ratelimit-remaining-*``; each
ARM/Graph request is appended to the request log. ``x-ms-emulator-server-time-us`` tells how long
the emulator spent on the request.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

from emulator import control, eventgrid, graph, graph_permissions, rbac_enforce, router
from emulator.errors import ArmError
from emulator.ids import new_guid, subscription_of
from emulator.state import State, create_state
from emulator.throttle import kind_of
from emulator.wire import Request, Response


def _bearer(req: Request) -> bool:
    auth = req.headers.get("authorization", "")
    return auth[:7].lower() == "bearer " and bool(auth[7:].strip())


def _unauthorized_arm(req: Request) -> ArmError:
    """ARM's 401: ``AuthenticationFailed`` without an Authorization header, ``InvalidAuthenticationToken``
    when one is there but holds no bearer token."""
    if not req.headers.get("authorization", "").strip():
        code, message = (
            "AuthenticationFailed",
            "Authentication failed. The 'Authorization' header is missing.",
        )
    else:
        code, message = "InvalidAuthenticationToken", "The access token is invalid."
    return ArmError(
        401,
        code,
        message,
        headers={
            "WWW-Authenticate": 'Bearer authorization_uri="https://login.microsoftonline.com/common", '
            f'error="invalid_token", error_description="{message}"'
        },
    )


class Emulator:
    """Turns a :class:`Request` into a :class:`Response`; holds the :class:`State`."""

    def __init__(self, state: State | None = None) -> None:
        self.state = state or create_state()

    def handle(self, req: Request) -> Response:
        started = time.perf_counter()
        path_low = req.path.lower()
        if path_low.startswith("/_emulator/"):
            try:
                return control.handle(self.state, req, path_low[len("/_emulator/") :].strip("/"))
            except ArmError as exc:
                return Response(exc.status, exc.arm_body(), dict(exc.headers))
        surface = (
            "graph"
            if path_low.startswith("/graph/")
            else "eventgrid"
            if path_low.startswith("/eventgrid/")
            else "arm"
        )
        request_id = new_guid()
        headers: dict[str, str] = {}
        try:
            response = self._dispatch(req, surface, headers)
        except ArmError as exc:
            headers.update(exc.headers)
            if surface == "graph":
                body = exc.graph_body(request_id, datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S"))
            else:
                body = exc.arm_body()
            response = Response(exc.status, body)
        response.headers = {**headers, **response.headers}
        if surface == "graph":
            response.headers.setdefault("request-id", request_id)
            response.headers.setdefault("client-request-id", req.headers.get("client-request-id", request_id))
        else:
            response.headers.setdefault("x-ms-request-id", request_id)
            response.headers.setdefault(
                "x-ms-correlation-request-id", req.headers.get("x-ms-correlation-request-id", request_id)
            )
        if response.body is not None and surface == "graph":
            response.headers.setdefault(
                "Content-Type",
                "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8",
            )
        elapsed = time.perf_counter() - started
        response.headers["x-ms-emulator-server-time-us"] = str(int(elapsed * 1e6))
        if surface != "eventgrid":
            entry = {
                "method": req.method,
                "path": req.path,
                "query": req.raw_query,
                "status": response.status,
                "time": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "durationMs": round(elapsed * 1000, 3),
            }
            with self.state.lock:
                self.state.requests.append(entry)
        return response

    def _dispatch(self, req: Request, surface: str, headers: dict[str, str]) -> Response:
        state = self.state
        if surface == "eventgrid":
            if req.path.rstrip("/").lower() != "/eventgrid/api/events" or req.method != "POST":
                raise ArmError(404, "NotFound", f"No Event Grid endpoint {req.method} {req.path}")
            return eventgrid.publish(state, req)
        if not _bearer(req):
            if surface == "graph":
                raise ArmError(401, "InvalidAuthenticationToken", "Access token is empty.")
            raise _unauthorized_arm(req)
        if surface == "arm" and not req.query.get("api-version"):
            raise ArmError(
                400,
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            )
        with state.lock:
            fault = control.match_fault(state, req.method, req.path)
            latency = state.config["latencyMs"]
            delay = float(latency["read"] if req.method in ("GET", "HEAD") else latency["write"]) / 1000.0
        if fault is not None:
            raise fault
        if delay > 0:
            time.sleep(delay)
        if surface == "graph":
            segs = [unquote(s) for s in req.path.strip("/").split("/")[2:]]
            if req.path.lower().split("/")[2:3] != ["v1.0"]:
                raise ArmError(400, "BadRequest", "Only Microsoft Graph v1.0 is emulated (/graph/v1.0).")
            graph_permissions.authorize_graph(state, req, segs)
            return graph.handle(state, req, segs)
        if not req.path.lower().startswith("/providers/microsoft.resourcegraph/"):
            sub = subscription_of(req.path)
            with state.lock:
                headers.update(
                    state.throttle.take(
                        state.config["throttling"], sub.lower() if sub else "tenant", kind_of(req.method)
                    )
                )
        rbac_enforce.authorize_arm(state, req)
        return router.route(state, req)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # answer in one segment: no delayed-ACK stalls on keep-alive
    server_version = "IdentityMoverEmulator/1.0"
    emulator: Emulator

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        req = Request.build(self.command, self.path, headers, body)
        try:
            response = self.emulator.handle(req)
        except Exception as exc:  # a bug in a handler: answer like ARM's 500, keep serving
            response = Response(
                500, ArmError(500, "InternalServerError", f"Emulator error: {exc!r}").arm_body()
            )
        payload = response.encode()
        self.send_response(response.status)
        if response.body is not None and not any(k.lower() == "content-type" for k in response.headers):
            self.send_header("Content-Type", "application/json; charset=utf-8")
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers_with(payload if self.command != "HEAD" else b"")

    def end_headers_with(self, payload: bytes) -> None:
        """End the headers and send them together with the body in a single write."""
        buffer: list[bytes] = self._headers_buffer  # type: ignore[attr-defined]  # http.server's own buffer
        buffer.append(b"\r\n")
        if payload:
            buffer.append(payload)
        self.flush_headers()

    do_GET = do_PUT = do_POST = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _serve

    def log_message(
        self, format: str, *args: Any
    ) -> None:  # quiet: the request log is at /_emulator/requests
        return


class EmulatorServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


def check_loopback(host: str) -> None:
    """The emulator accepts any bearer token, so it must never listen beyond this machine."""
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except socket.gaierror as exc:
        raise ValueError(f"cannot resolve host '{host}': {exc}") from exc
    if not addresses or not all(ipaddress.ip_address(str(a).split("%")[0]).is_loopback for a in addresses):
        raise ValueError(
            f"refusing to listen on '{host}': the emulator accepts any bearer token, so it only listens on a "
            "loopback address (127.0.0.1, ::1, localhost)"
        )


def make_server(
    host: str = "127.0.0.1", port: int = 7070, emulator: Emulator | None = None
) -> EmulatorServer:
    check_loopback(host)
    handler = type("Handler", (_Handler,), {"emulator": emulator or Emulator()})
    if ":" in host:
        EmulatorServer.address_family = socket.AF_INET6
    return EmulatorServer((host, port), handler)


def serve(host: str = "127.0.0.1", port: int = 7070) -> None:
    """Serve until interrupted."""
    server = make_server(host, port)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()


def serve_in_thread(host: str = "127.0.0.1", port: int = 0) -> tuple[EmulatorServer, threading.Thread]:
    """Start on a background thread (port 0 = any free port); stop with ``server.shutdown()``."""
    server = make_server(host, port)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    return server, thread


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))
