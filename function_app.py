"""Identity Mover Function App (Azure Functions Python v2 programming model).

Thin triggers over ``shared/``; nothing here holds a client at import time.

==========================  ===========================================  ================================
function                    trigger                                      calls
==========================  ===========================================  ================================
``http_api``                HTTP ``/api/{*route}`` (FastAPI, function    ``shared.http_api`` -> service
                            keys in Azure)
``move_worker``             queue ``%IDMOVE_QUEUE_NAME%``                ``service.handle_message``
``move_poison``             queue ``%IDMOVE_QUEUE_NAME%-poison``         ``service.handle_poison``
``outbox_publisher``        timer, every minute                          ``service.publish_outbox``
``stalled_moves``           timer, every 5 minutes                       ``service.resume_stalled``
``commit_deadlines``        timer, every minute                          ``service.enforce_commit_deadlines``
``region_decommissioning``  Event Grid (``IdentityMover.RegionDe...``)   ``service.start_region_decommission``
==========================  ===========================================  ================================

The queue names are binding expressions: the Functions host replaces ``%IDMOVE_QUEUE_NAME%`` with
that app setting (``idmove-work`` by default, set by ``infra/app/api.bicep``), so the triggers read the
queue the engine writes to. Locally ``idmove host`` serves these same registered functions
(``app.get_functions()``) and resolves the expressions the same way.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import azure.functions as func

from shared.http_api import create_app

# binding expressions, resolved from app settings by the host (as shared.settings reads the same setting)
WORK_QUEUE = "%IDMOVE_QUEUE_NAME%"
POISON_QUEUE = f"{WORK_QUEUE}-poison"
STORAGE_CONNECTION = "AzureWebJobsStorage"
DECOMMISSION_EVENT = "IdentityMover.RegionDecommissioning"

log = logging.getLogger("function_app")


@functools.cache
def service() -> Any:
    """The engine facade, built once per worker process from the app settings, on first use."""
    from shared.service import MoveService
    from shared.settings import Settings

    return MoveService.from_settings(Settings.from_env())


app = func.AsgiFunctionApp(
    app=create_app(service), http_auth_level=func.AuthLevel.FUNCTION, function_name="http_api"
)


@app.function_name("move_worker")
@app.queue_trigger(arg_name="msg", queue_name=WORK_QUEUE, connection=STORAGE_CONNECTION)
def move_worker(msg: func.QueueMessage) -> None:
    """One step of a move. Raising makes the host retry; after 5 dequeues it goes to the poison queue."""
    service().handle_message(msg.get_body().decode("utf-8"), int(msg.dequeue_count or 1))


@app.function_name("move_poison")
@app.queue_trigger(arg_name="msg", queue_name=POISON_QUEUE, connection=STORAGE_CONNECTION)
def move_poison(msg: func.QueueMessage) -> None:
    """A step that failed five times: the engine marks its move Failed."""
    service().handle_poison(msg.get_body().decode("utf-8"))


@app.function_name("outbox_publisher")
@app.timer_trigger(schedule="0 */1 * * * *", arg_name="timer", run_on_startup=False, use_monitor=False)
def outbox_publisher(timer: func.TimerRequest) -> None:
    """Publishes events the steps left in the outbox (a safety net; steps publish as they go)."""
    sent = service().publish_outbox()
    if sent:
        log.info("published %d outbox events", sent)


@app.function_name("stalled_moves")
@app.timer_trigger(schedule="0 */5 * * * *", arg_name="timer", run_on_startup=False, use_monitor=False)
def stalled_moves(timer: func.TimerRequest) -> None:
    """Re-sends the step of moves idle for 10 minutes (a lost or expired queue message)."""
    resent = service().resume_stalled()
    if resent:
        log.warning("re-sent the step of %d stalled moves", resent)


@app.function_name("commit_deadlines")
@app.timer_trigger(schedule="30 */1 * * * *", arg_name="timer", run_on_startup=False, use_monitor=False)
def commit_deadlines(timer: func.TimerRequest) -> None:
    """Discards or commits moves left in AwaitingCommit past their commitPolicy's deadline."""
    acted = service().enforce_commit_deadlines()
    if acted:
        log.warning("the commit policy acted on %d moves past their deadline", acted)


@app.function_name("region_decommissioning")
@app.event_grid_trigger(arg_name="event")
def region_decommissioning(event: func.EventGridEvent) -> None:
    """``IdentityMover.RegionDecommissioning``: one move per identity in the region (idempotent by event id).

    The host hands over an ``EventGridEvent`` (Event Grid schema) or a ``CloudEvent`` (CloudEvents
    schema); both carry ``id`` and ``data``. Data that is not a valid request is logged and dropped
    (a 4xx ``ApiError``); anything else raises, so the host answers 500 and Event Grid delivers again.
    """
    event_type = getattr(event, "event_type", None) or getattr(event, "type", None)
    if event_type != DECOMMISSION_EVENT:
        log.info("ignoring event %s of type %s", event.id, event_type)
        return
    from shared.errors import ApiError

    try:
        topic = getattr(event, "topic", None) or getattr(event, "source", None)
        result = service().start_region_decommission(event.id, event.get_json(), topic)
    except ApiError as exc:
        if exc.status >= 500:
            raise
        # Bad event data never gets better: say why, and do not make Event Grid redeliver it for a day.
        log.error(
            "region decommissioning event %s rejected: %s %s (%s)",
            event.id,
            exc.code,
            exc.message,
            exc.target,
        )
        return
    log.info("region decommissioning event %s: %s", event.id, result)
