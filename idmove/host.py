"""``idmove host``: the Function App served locally, like ``func start`` would serve it.

Everything is read from the app's own registered functions (``app.get_functions()``, the same
metadata the Functions worker indexes): one source of truth for routes and triggers.

=====================  =====================================================================
trigger                served as
=====================  =====================================================================
``httpTrigger``        ``/{routePrefix}/{route}`` (routePrefix from host.json, ``api``), any
                       method the binding allows; function keys only if ``IDMOVE_HOST_KEY``
``queueTrigger``       ``idmove.queue_poller`` on the binding's queue and connection: dequeue
                       counts, ``<queue>-poison`` after ``maxDequeueCount`` (host.json, 5)
``timerTrigger``       the NCRONTAB schedule (``runOnStartup`` honoured)
``eventGridTrigger``   ``POST /runtime/webhooks/eventgrid?functionName=<fn>``: the subscription
                       validation handshake of both schemas, then one invocation per event
=====================  =====================================================================

Also, like the real host: ``GET /admin/host/status`` and ``POST /admin/functions/{name}``
(``{"input": "..."}``) to run a non-HTTP function once.

Example::

    idmove host --port 7071          # AzureWebJobsStorage=UseDevelopmentStorage=true -> Azurite
"""

from __future__ import annotations

import asyncio
import contextlib
import faulthandler
import inspect
import json
import logging
import os
import re
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import azure.functions as func
import uvicorn
from azure.functions import meta
from azure.functions.eventgrid import EventGridEventInConverter
from azure.functions.queue import QueueMessage
from azure.functions.timer import TimerRequest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from idmove.azurite import connection_string as azurite_connection_string
from idmove.ncrontab import Schedule
from idmove.stack import PROCESS_HEADER

log = logging.getLogger("idmove.host")

REPO_ROOT = Path(__file__).resolve().parent.parent
DEV_STORAGE = "UseDevelopmentStorage=true"
STORAGE_SETTING = "AzureWebJobsStorage"
HOST_OVERRIDE = "AzureFunctionsJobHost__"
EVENTGRID_WEBHOOK = "/runtime/webhooks/eventgrid"
EVENT_KINDS = ("subscriptionvalidation", "notification", "unsubscribe", "subscriptiondeletion")


# --- settings -----------------------------------------------------------------------------------


def resolve_storage(value: str | None) -> str:
    """``UseDevelopmentStorage=true`` (or nothing) -> Azurite on its default ports 10001/10002."""
    if not value or value.strip().rstrip(";").lower() == DEV_STORAGE.lower():
        return azurite_connection_string(10001, 10002)
    return value


def load_local_settings(root: Path = REPO_ROOT) -> dict[str, str]:
    """``local.settings.json`` ``Values`` (as ``func start`` reads them); the environment wins."""
    path = root / "local.settings.json"
    if not path.exists():
        return {}
    values = json.loads(path.read_text(encoding="utf-8")).get("Values") or {}
    applied = {}
    for name, value in values.items():
        if name not in os.environ and value is not None:
            os.environ[name] = str(value)
            applied[name] = str(value)
    return applied


def load_host_json(root: Path = REPO_ROOT, env: dict[str, str] | None = None) -> dict[str, Any]:
    """host.json, with ``AzureFunctionsJobHost__a__b`` settings overriding ``a.b`` as in Azure."""
    path = root / "host.json"
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    for name, value in (os.environ if env is None else env).items():
        if not name.lower().startswith(HOST_OVERRIDE.lower()):
            continue
        keys = name[len(HOST_OVERRIDE) :].split("__")
        node = data
        for key in keys[:-1]:
            node = node.setdefault(key, {})
        node[keys[-1]] = value
    return data


# App settings the deployment sets (infra/app/api.bicep) that binding expressions name; locally they
# default to the same values unless the environment or local.settings.json sets them.
APP_SETTING_DEFAULTS = {"IDMOVE_QUEUE_NAME": "idmove-work"}
_EXPRESSION = re.compile(r"%([^%]+)%")


class BindingError(ValueError):
    """A ``%setting%`` binding expression names an app setting that is not set (the host refuses it too)."""


def resolve_bindings(value: str, env: dict[str, str] | None = None) -> str:
    """``%NAME%`` in a binding property -> the app setting ``NAME``, as the Functions host resolves it
    (anywhere in the string: ``%IDMOVE_QUEUE_NAME%-poison``). An unset setting is an error, not ``""``."""
    settings = os.environ if env is None else env

    def setting(match: re.Match[str]) -> str:
        name = match[1]
        found = settings.get(name)
        if found is None:
            raise BindingError(f"'%{name}%' does not resolve to a value: set the app setting {name}")
        return found

    return _EXPRESSION.sub(setting, value)


def apply_setting_defaults(env: dict[str, str] | None = None) -> dict[str, str]:
    """Set ``APP_SETTING_DEFAULTS`` that are not set; returns what it set."""
    target = os.environ if env is None else env
    applied = {name: value for name, value in APP_SETTING_DEFAULTS.items() if name not in target}
    target.update(applied)
    return applied


# --- the app's functions ------------------------------------------------------------------------


@dataclass(frozen=True)
class HostedFunction:
    """One registered function: its name, its trigger binding (function.json shape) and its code."""

    name: str
    trigger: dict[str, Any]
    user_function: Callable[..., Any]

    @property
    def trigger_type(self) -> str:
        return str(self.trigger["type"])

    @property
    def auth_level(self) -> str:
        return str(self.trigger.get("authLevel", "FUNCTION")).upper()

    def describe(self, base_url: str, route_prefix: str) -> str:
        kind = self.trigger_type
        if kind == "httpTrigger":
            methods = ",".join(self.trigger.get("methods") or ["*"])
            return f"[{methods}] {base_url}{_join(route_prefix, self.trigger.get('route') or self.name)}"
        if kind == "queueTrigger":
            return f"queueTrigger {self.trigger['queueName']}"
        if kind == "timerTrigger":
            return f"timerTrigger {self.trigger['schedule']}"
        if kind == "eventGridTrigger":
            return f"eventGridTrigger {base_url}{EVENTGRID_WEBHOOK}?functionName={self.name}"
        return kind


def load_functions(app: Any) -> list[HostedFunction]:
    """The app's functions, from ``app.get_functions()`` (callable once per app object), with their
    trigger's ``%setting%`` binding expressions resolved from the environment (``BindingError`` if unset)."""
    hosted = []
    for function in app.get_functions():
        bindings = [json.loads(raw) if isinstance(raw, str) else raw for raw in function.get_raw_bindings()]
        triggers = [b for b in bindings if str(b.get("type", "")).endswith("Trigger")]
        if len(triggers) != 1:
            raise ValueError(f"function {function.get_function_name()} has {len(triggers)} triggers")
        trigger = {
            key: resolve_bindings(value) if isinstance(value, str) else value
            for key, value in triggers[0].items()
        }
        hosted.append(HostedFunction(function.get_function_name(), trigger, function.get_user_function()))
    return hosted


def load_function_app(module: str = "function_app") -> Any:
    import importlib

    return importlib.import_module(module).app


def _join(prefix: str, route: str) -> str:
    parts = [p.strip("/") for p in (prefix, route) if p and p.strip("/")]
    return "/" + "/".join(parts)


def _route_regex(template: str) -> re.Pattern[str]:
    """``/api/moves/{id}`` and ``/api/{*route}`` -> a regex with named groups."""
    out, pos = "", 0
    for match in re.finditer(r"\{(\*?)([A-Za-z_]\w*)(?::[^}?]+)?(\?)?\}", template):
        out += re.escape(template[pos : match.start()])
        catch_all, name = match[1], match[2]
        out += f"(?P<{name}>.*)" if catch_all else f"(?P<{name}>[^/]+)"
        if match[3]:
            out += "?"
        pos = match.end()
    out += re.escape(template[pos:])
    return re.compile(f"^{out}/?$", re.IGNORECASE)


# --- invoking -----------------------------------------------------------------------------------


@dataclass
class InvocationContext:
    """What ``func.Context`` offers a function."""

    function_name: str
    invocation_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    function_directory: str = str(REPO_ROOT)
    trace_context: Any = None
    retry_context: Any = None
    thread_local_storage: Any = field(default_factory=threading.local)


def _arguments(function: HostedFunction, value: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = {function.trigger["name"]: value}
    if "context" in inspect.signature(function.user_function).parameters:
        kwargs["context"] = InvocationContext(function.name)
    return kwargs


async def invoke(function: HostedFunction, value: Any) -> Any:
    """Call the function with its trigger value (and ``context`` if it asks for one)."""
    kwargs = _arguments(function, value)
    if inspect.iscoroutinefunction(function.user_function):
        return await function.user_function(**kwargs)
    return await asyncio.to_thread(_logged, function, kwargs, _reason(value))


def invoke_sync(function: HostedFunction, value: Any) -> Any:
    """For threads (queue pollers, timers): run one invocation to the end."""
    if inspect.iscoroutinefunction(function.user_function):
        return asyncio.run(invoke(function, value))
    return _logged(function, _arguments(function, value), _reason(value))


def _reason(value: Any) -> str:
    if hasattr(value, "dequeue_count"):
        return f"queue message, dequeue {value.dequeue_count}"
    if hasattr(value, "past_due"):
        return "timer"
    return type(value).__name__


def _logged(function: HostedFunction, kwargs: dict[str, Any], reason: str) -> Any:
    """Like the Functions host: "Executing 'Functions.x' (reason)" ... "Executed ... (Succeeded|Failed)"."""
    started = time.monotonic()
    log.info("Executing 'Functions.%s' (%s)", function.name, reason)
    try:
        result = function.user_function(**kwargs)
    except Exception as exc:
        log.warning(
            "Executed 'Functions.%s' (Failed, %.0f ms): %s: %s",
            function.name, (time.monotonic() - started) * 1000, type(exc).__name__, exc,
        )  # fmt: skip
        raise
    log.info(
        "Executed 'Functions.%s' (Succeeded, %.0f ms)", function.name, (time.monotonic() - started) * 1000
    )
    return result


def event_value(event: dict[str, Any]) -> Any:
    """An event as the worker hands it over: ``EventGridEvent`` or ``CloudEvent`` (the SDK's converter)."""
    return EventGridEventInConverter.decode(meta.Datum(json.dumps(event), "json"), trigger_metadata={})


# --- the host -----------------------------------------------------------------------------------


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message, "target": None}}, status_code=status)


class LocalHost:
    """Serves a function app's HTTP and Event Grid triggers and runs its queue and timer triggers."""

    def __init__(
        self,
        app: Any,
        *,
        storage: str | None = None,
        host_key: str | None = None,
        host_json: dict[str, Any] | None = None,
    ) -> None:
        self.functions = load_functions(app)
        self.function_app = app
        self.host_json = load_host_json() if host_json is None else host_json
        http = self.host_json.get("extensions", {}).get("http", {})
        self.route_prefix = str(http.get("routePrefix", "api"))
        self.queue_settings = dict(self.host_json.get("extensions", {}).get("queues", {}))
        self.storage = resolve_storage(storage if storage is not None else os.environ.get(STORAGE_SETTING))
        self.host_key = host_key if host_key is not None else (os.environ.get("IDMOVE_HOST_KEY") or None)
        self._routes = [
            (_route_regex(_join(self.route_prefix, f.trigger.get("route") or f.name)), f)
            for f in self.functions
            if f.trigger_type == "httpTrigger"
        ]
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._pollers: list[Any] = []
        self.asgi = Starlette(
            routes=[
                Route(EVENTGRID_WEBHOOK, self._eventgrid, methods=["POST", "OPTIONS"]),
                Route("/admin/host/status", self._status, methods=["GET"]),
                Route("/admin/functions/{name}", self._admin_invoke, methods=["POST"]),
                Route(
                    "/{path:path}",
                    self._http,
                    methods=["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"],
                ),
            ],
            lifespan=self._lifespan,
            # a path no route pattern matches at all (e.g. a newline in it): the ARM error shape too
            exception_handlers={
                404: lambda request, exc: _error(404, "NotFound", f"no function serves {request.method}"),
                405: lambda request, exc: _error(405, "MethodNotAllowed", "method not allowed"),
            },
        )

    def by_name(self, name: str) -> HostedFunction | None:
        return next((f for f in self.functions if f.name.lower() == name.lower()), None)

    def connection_string(self, function: HostedFunction) -> str:
        setting = str(function.trigger.get("connection") or STORAGE_SETTING)
        if setting == STORAGE_SETTING:
            return self.storage
        return resolve_storage(os.environ.get(setting))

    # -- keys

    def _authorized(self, request: Request, level: str = "FUNCTION") -> bool:
        if level == "ANONYMOUS" or not self.host_key:
            return True
        given = request.query_params.get("code") or request.headers.get("x-functions-key")
        return given == self.host_key

    # -- HTTP triggers

    async def _http(self, request: Request) -> Response:
        path = request.url.path
        for regex, function in self._routes:
            match = regex.match(path)
            if match is None:
                continue
            methods = [m.upper() for m in function.trigger.get("methods") or []]
            if methods and request.method not in methods:
                continue
            if not self._authorized(request, function.auth_level):
                return _error(
                    401, "Unauthorized", "this host needs a function key: ?code=<key> or x-functions-key"
                )
            body = await request.body()
            req = func.HttpRequest(
                method=request.method,
                url=str(request.url),
                headers=dict(request.headers),
                params=dict(request.query_params),
                route_params={k: v or "" for k, v in match.groupdict().items()},
                body=body,
            )
            result = await invoke(function, req)
            return self._to_response(result)
        return _error(404, "NotFound", f"no function serves {request.method} {path}")

    @staticmethod
    def _to_response(result: Any) -> Response:
        if result is None:
            return Response(status_code=204)
        if isinstance(result, str | bytes):
            return Response(result, status_code=200)
        headers = {k: v for k, v in result.headers.items() if k.lower() != "content-length"}
        if result.mimetype and "content-type" not in {k.lower() for k in headers}:
            headers["content-type"] = result.mimetype
        return Response(result.get_body(), status_code=result.status_code, headers=headers)

    # -- Event Grid

    async def _eventgrid(self, request: Request) -> Response:
        """The Event Grid extension's webhook, answering as the Functions host does.

        ``functionName`` missing or not an Event Grid function: 404. ``aeg-event-type`` decides:
        ``SubscriptionValidation`` (Event Grid schema: answer ``validationResponse``), ``Notification``
        (an array = Event Grid schema, an object = one CloudEvent; 202, 500 if a function failed so
        Event Grid delivers again), ``Unsubscribe``/``SubscriptionDeletion`` (202); anything else,
        or no header: 400. ``OPTIONS`` is the CloudEvents abuse-protection handshake.
        """
        if not self._authorized(request):
            return _error(401, "Unauthorized", "the Event Grid webhook needs the host key: ?code=<key>")
        if request.method == "OPTIONS":  # CloudEvents abuse-protection handshake
            origin = request.headers.get("webhook-request-origin")
            if not origin:
                return _error(400, "BadRequest", "OPTIONS needs a WebHook-Request-Origin header")
            return Response(
                status_code=200, headers={"WebHook-Allowed-Origin": origin, "WebHook-Allowed-Rate": "*"}
            )
        name = request.query_params.get("functionName") or ""
        function = self.by_name(name) if name else None
        if function is None or function.trigger_type != "eventGridTrigger":
            grid = [f.name for f in self.functions if f.trigger_type == "eventGridTrigger"]
            return _error(404, "NotFound", f"cannot find function {name!r}; Event Grid functions: {grid}")
        kind = request.headers.get("aeg-event-type", "").lower()
        if kind not in EVENT_KINDS:
            return _error(
                400,
                "BadRequest",
                "the aeg-event-type header must be SubscriptionValidation, Notification or Unsubscribe",
            )
        if kind in ("unsubscribe", "subscriptiondeletion"):
            return Response(status_code=202)
        try:
            payload = json.loads(await request.body())
        except (ValueError, RecursionError):
            return _error(400, "BadRequest", "the body is not JSON")
        events = payload if isinstance(payload, list) else [payload]
        if not events or not all(isinstance(e, dict) for e in events):
            return _error(400, "BadRequest", "expected an array of events (Event Grid) or one CloudEvent")
        if kind == "subscriptionvalidation":
            data = events[0].get("data")
            code = data.get("validationCode") if isinstance(data, dict) else None
            if not isinstance(payload, list) or not isinstance(code, str) or not code:
                return _error(400, "BadRequest", "a SubscriptionValidationEvent needs data.validationCode")
            log.info("perform handshake with eventGrid for function: %s", function.name)
            return JSONResponse({"validationResponse": code})
        for event in events:
            try:
                value = event_value(event)
            except Exception as exc:
                return _error(400, "BadRequest", f"not an Event Grid event or CloudEvent: {exc}")
            try:
                await invoke(function, value)
            except Exception:
                log.exception("function %s failed on event %s", function.name, event.get("id"))
                return _error(500, "FunctionFailed", f"{function.name} failed; Event Grid will deliver again")
        return Response(status_code=202)

    # -- admin

    async def _status(self, request: Request) -> Response:
        # who answers, key or not: a starting stack waits for THIS process (``idmove.stack.wait_http``),
        # not whatever else came to listen on a port it was handed
        who = {PROCESS_HEADER: str(os.getpid())}
        if not self._authorized(request, "ADMIN"):
            denied = _error(401, "Unauthorized", "needs the host key: ?code=<key> or x-functions-key")
            denied.headers.update(who)
            return denied
        return JSONResponse(
            {"state": "Running", "processId": os.getpid(), "functions": [f.name for f in self.functions]},
            headers=who,
        )

    async def _admin_invoke(self, request: Request) -> Response:
        if not self._authorized(request, "ADMIN"):
            return _error(401, "Unauthorized", "needs the host key")
        function = self.by_name(request.path_params["name"])
        if function is None or function.trigger_type == "httpTrigger":
            return _error(404, "NotFound", "no such non-HTTP function")
        raw = await request.body()
        text = str((json.loads(raw) if raw else {}).get("input") or "")
        value: Any
        if function.trigger_type == "timerTrigger":
            value = TimerRequest(past_due=False)
        elif function.trigger_type == "queueTrigger":
            value = QueueMessage(id=str(uuid.uuid4()), body=text.encode(), dequeue_count=1)  # type: ignore[no-untyped-call]
        elif function.trigger_type == "eventGridTrigger":
            value = event_value(json.loads(text))
        else:
            return _error(400, "BadRequest", f"cannot invoke a {function.trigger_type}")
        await invoke(function, value)
        return Response(status_code=202)

    # -- background triggers

    @contextlib.asynccontextmanager
    async def _lifespan(self, _app: Starlette) -> Any:
        self.start_background()
        try:
            yield
        finally:
            self.stop_background()
            await self._shutdown_asgi_function_app()

    async def _shutdown_asgi_function_app(self) -> None:
        """AsgiFunctionApp starts its ASGI app's lifespan on first request: end it in this loop."""
        app = self.function_app
        if getattr(app, "startup_task_done", False) and hasattr(app, "middleware"):
            with contextlib.suppress(Exception):
                await app.middleware.notify_shutdown()
            app.startup_task_done = False

    def start_background(self) -> None:
        self._stop.clear()
        for function in self.functions:
            if function.trigger_type == "queueTrigger":
                self._start_queue(function)
            elif function.trigger_type == "timerTrigger":
                self._start_thread(f"timer-{function.name}", self._run_timer, function)

    def stop_background(self) -> None:
        self._stop.set()
        for poller in self._pollers:
            poller.stop()
        for thread in self._threads:
            thread.join(timeout=10)
        self._threads.clear()
        self._pollers.clear()

    def _start_thread(self, name: str, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _start_queue(self, function: HostedFunction) -> None:
        from idmove.queue_poller import start_poller

        def handler(message: func.QueueMessage) -> None:
            invoke_sync(function, message)

        poller = start_poller(
            self.connection_string(function),
            str(function.trigger["queueName"]),
            handler,
            settings=self.queue_settings,
            name=function.name,
        )
        self._pollers.append(poller)

    def _run_timer(self, function: HostedFunction) -> None:
        schedule = Schedule.parse(str(function.trigger["schedule"]))
        if function.trigger.get("runOnStartup"):
            self._fire(function)
        due = schedule.next_after(datetime.now(UTC))
        while not self._stop.is_set():
            wait = (due - datetime.now(UTC)).total_seconds()
            if wait > 0:
                self._stop.wait(min(wait, 1.0))
                continue
            self._fire(function)
            due = schedule.next_after(datetime.now(UTC))

    @staticmethod
    def _fire(function: HostedFunction) -> None:
        try:
            invoke_sync(function, TimerRequest(past_due=False))
        except Exception:
            log.exception("timer function %s failed", function.name)

    # -- running

    def banner(self, base_url: str) -> Iterator[str]:
        yield "Functions:"
        for function in self.functions:
            yield f"    {function.name}: {function.describe(base_url, self.route_prefix)}"

    def server(self, port: int, host: str = "127.0.0.1") -> uvicorn.Server:
        config = uvicorn.Config(
            self.asgi, host=host, port=port, log_level="warning", lifespan="on", access_log=False
        )
        return uvicorn.Server(config)


def run(port: int = 7071, *, app_module: str = "function_app", quiet: bool = False) -> int:
    """``idmove host``: serve until Ctrl-C (or SIGTERM)."""
    logging.basicConfig(
        level=os.environ.get("IDMOVE_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("azure.core.pipeline.policies.http_logging_policy", "azure.identity", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    faulthandler.register(signal.SIGUSR1)  # `kill -USR1 <pid>` prints every thread's stack: for hangs
    from_file = load_local_settings()
    apply_setting_defaults()  # after local.settings.json, like the app settings of a deployment
    storage = resolve_storage(os.environ.get(STORAGE_SETTING))
    os.environ[STORAGE_SETTING] = storage  # the engine reads its settings from the environment
    host = LocalHost(load_function_app(app_module), storage=storage)
    # bound here, before the banner: ``--port 0`` takes a port from the kernel and the banner says
    # which (how the stack and the tests start it: a port picked free beforehand can be taken)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError as exc:
        sock.close()
        print(f"host: cannot listen on 127.0.0.1:{port}: {exc}", flush=True)
        return 1
    port = int(sock.getsockname()[1])
    if not quiet:
        print(f"Identity Mover host on http://127.0.0.1:{port} (pid {os.getpid()})", flush=True)
        for line in host.banner(f"http://127.0.0.1:{port}"):
            print(line, flush=True)
        if host.host_key:
            print("Function keys required (IDMOVE_HOST_KEY).", flush=True)
        if from_file:
            print(f"Settings from local.settings.json: {', '.join(sorted(from_file))}", flush=True)
    host.server(port).run(sockets=[sock])
    return 0
