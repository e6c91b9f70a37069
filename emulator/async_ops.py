"""Asynchronous ARM operations (the "Azure-AsyncOperation" pattern of the ARM RPC).

Some resource providers answer a PUT or DELETE with **202 Accepted**, no body, and two headers:
``Azure-AsyncOperation`` (an operation-status resource) and ``Location`` (an operation-result
resource). The write is not visible until the operation completes: a GET of the resource right after
the 202 still shows the old state (404 for a new one). Used here by Cosmos DB
``sqlRoleAssignments``/``sqlRoleDefinitions`` (``…/locations/{l}/operationsStatus/{op}``), the flexible
servers' ``administrators`` (``…/locations/{l}/azureAsyncOperation/{op}``) and ``Microsoft.Sql/servers/
administrators`` (``…/locations/{l}/administratorAzureAsyncOperation/{server}/{op}``), with the URLs of
the spec examples (``CosmosDBSqlRoleAssignmentDelete.json``, ``AdministratorsMicrosoftEntraAdd.json``).

An operation completes when a client polls either URL, or at the latest ``COMPLETE_AFTER_SECONDS``
after it was accepted (Azure finishes whether or not anyone polls). Status answers are the ARM RPC
shape: ``{"id", "name", "status": "InProgress"|"Succeeded"|"Failed", "startTime", "endTime"?,
"error"?}``; the ``Location`` URL answers 202 while in progress, then 200 with the resource (PUT) or
204 (DELETE). No ``Retry-After`` is sent, as in the examples: the caller picks its polling interval.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from emulator.errors import ArmError
from emulator.ids import new_guid
from emulator.state import State, now_iso
from emulator.wire import Request, Response

COMPLETE_AFTER_SECONDS = 2.0
# The operation-status / operation-result segment names the providers use after ``locations/{l}/``.
STATUS_KINDS = {"operationsstatus", "azureasyncoperation", "administratorazureasyncoperation"}
RESULT_KINDS = {"operationresults", "administratoroperationresults"}


@dataclass
class Operation:
    id: str
    apply: Callable[[], dict[str, Any] | None]  # does the write; the resource body (PUT) or None (DELETE)
    is_delete: bool
    accepted: float
    start_time: str
    status: str = "InProgress"
    end_time: str | None = None
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None


def accept(
    state: State,
    req: Request,
    subscription: str,
    namespace: str,
    location: str,
    status_kind: str,
    result_kind: str,
    apply: Callable[[], dict[str, Any] | None],
    is_delete: bool = False,
    infix: str = "",
) -> Response:
    """Record an operation and answer 202 with its two URLs. ``apply`` runs under the state lock."""
    op_id = new_guid()
    state.async_operations[op_id] = Operation(op_id, apply, is_delete, time.monotonic(), now_iso())
    api = req.query.get("api-version", "")
    base = f"{req.base_url}/subscriptions/{subscription}/providers/{namespace}/locations/{location}"
    mid = f"/{infix}" if infix else ""
    return Response(
        202,
        None,
        {
            "Azure-AsyncOperation": f"{base}/{status_kind}{mid}/{op_id}?api-version={api}",
            "Location": f"{base}/{result_kind}{mid}/{op_id}?api-version={api}",
        },
    )


def _complete(op: Operation) -> None:
    if op.status != "InProgress":
        return
    try:
        op.result = op.apply()
        op.status = "Succeeded"
    except ArmError as exc:
        op.status = "Failed"
        op.error = {"code": exc.code, "message": exc.message}
    op.end_time = now_iso()


def settle(state: State) -> None:
    """Complete every operation older than ``COMPLETE_AFTER_SECONDS`` (call under the state lock)."""
    cutoff = time.monotonic() - COMPLETE_AFTER_SECONDS
    for op in list(state.async_operations.values()):
        if op.status == "InProgress" and op.accepted <= cutoff:
            _complete(op)


def is_operation_path(low: list[str]) -> bool:
    """``/subscriptions/{s}[/resourceGroups/{rg}]/providers/{ns}/locations/{l}/{kind}[/{x}]/{op}``."""
    for i in (2, 4):
        if len(low) > i + 5 and low[i] == "providers" and low[i + 2] == "locations":
            return low[i + 4] in STATUS_KINDS | RESULT_KINDS and len(low) in (i + 6, i + 7)
    return False


def get(state: State, req: Request, segs: list[str], low: list[str]) -> Response:
    """GET of an operation's status URL or result URL; polling completes the operation."""
    if req.method != "GET":
        raise ArmError(
            405, "MethodNotAllowed", f"The requested resource does not support http method '{req.method}'."
        )
    op_id = segs[-1]
    kind = next(s for s in low if s in STATUS_KINDS | RESULT_KINDS)
    with state.lock:
        op = state.async_operations.get(op_id.lower()) or state.async_operations.get(op_id)
        if op is None:
            raise ArmError(404, "OperationNotFound", f"The operation '{op_id}' could not be found.")
        _complete(op)
        if kind in STATUS_KINDS:
            body: dict[str, Any] = {
                "id": req.path,
                "name": op.id,
                "status": op.status,
                "startTime": op.start_time,
            }
            if op.end_time:
                body["endTime"] = op.end_time
            if op.error:
                body["error"] = op.error
            return Response(200, body)
        if op.status == "Failed" and op.error:
            raise ArmError(400, op.error["code"], op.error["message"])
        if op.is_delete or op.result is None:
            return Response(204)
        return Response(200, op.result)
