"""Event Grid custom-topic sink: ``POST /eventgrid/api/events?api-version=2018-01-01``.

Spec: ``arm-specs/Microsoft.EventGrid/2018-01-01/EventGrid.json`` (PublishEvents) and FACTS.md "Event
Grid": the topic takes a JSON array — CloudEvents 1.0 (``application/cloudevents-batch+json``; each
event needs ``id``, ``source``, ``type``, ``specversion``) or the Event Grid schema (``id``,
``subject``, ``data``, ``eventType``, ``eventTime``, ``dataVersion``). Key in ``aeg-sas-key`` (any
non-empty value) or a bearer token; otherwise 401. Malformed batches are 400 with an error body;
success is 200 with an empty body. Accepted events are kept, as sent, for ``GET /_emulator/events``.
"""

from __future__ import annotations

import json
from typing import Any

from emulator.errors import ArmError
from emulator.state import State
from emulator.wire import Request, Response

CLOUD_EVENT_FIELDS = ("id", "source", "type", "specversion")
EVENT_GRID_FIELDS = ("id", "subject", "data", "eventType", "eventTime", "dataVersion")


def authorized(req: Request) -> bool:
    if req.headers.get("aeg-sas-key", "").strip():
        return True
    auth = req.headers.get("authorization", "")
    return auth.lower().startswith("bearer ") and bool(auth[7:].strip())


def _bad(message: str) -> ArmError:
    return ArmError(400, "BadRequest", message)


def publish(state: State, req: Request) -> Response:
    if not authorized(req):
        raise ArmError(
            401,
            "Unauthorized",
            "The request authorization key is not authorized for this topic. Report 'aeg-sas-key' or a bearer token.",
        )
    if req.query.get("api-version") != "2018-01-01":
        raise _bad(f"The api-version '{req.query.get('api-version', '')}' is not supported; use 2018-01-01.")
    try:
        events = json.loads(req.body) if req.body.strip() else None
    except ValueError as exc:
        raise _bad(f"The request body is not valid JSON: {exc}.") from exc
    if not isinstance(events, list) or not events:
        raise _bad("The request body must be a non-empty JSON array of events.")
    cloud = "cloudevents" in req.headers.get("content-type", "").lower() or all(
        isinstance(e, dict) and "specversion" in e for e in events
    )
    required = CLOUD_EVENT_FIELDS if cloud else EVENT_GRID_FIELDS
    schema = "CloudEvents 1.0" if cloud else "Event Grid"
    for index, event in enumerate(events):
        if not isinstance(event, dict):
            raise _bad(f"Event at index {index} is not a JSON object.")
        missing = [f for f in required if f not in event or event[f] in (None, "")]
        if missing:
            raise _bad(f"Event at index {index} is missing the required {schema} property '{missing[0]}'.")
        if cloud and event.get("specversion") != "1.0":
            raise _bad(
                f"Event at index {index} has specversion '{event.get('specversion')}'; only '1.0' is supported."
            )
    with state.lock:
        accepted: list[Any] = list(events)
        state.events.extend(accepted)
    return Response(200)
