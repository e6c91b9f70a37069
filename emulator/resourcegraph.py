"""Azure Resource Graph: ``POST /providers/Microsoft.ResourceGraph/resources`` (2022-10-01; 2021-03-01
as azure-mgmt-resourcegraph 8 sends it).

Reproduces (FACTS.md "Azure Resource Manager", examples ``ResourcesFirstPageQuery.json`` /
``ResourcesNextPageQuery.json``):
- Body ``{"subscriptions": [...], "query": "<KQL>", "options": {"$top", "$skip", "$skipToken",
  "resultFormat"}}`` → ``{"totalRecords", "count", "resultTruncated": "false", "$skipToken"?, "data",
  "facets": []}``. ``$top`` defaults to 100 (max 1000).
- Rows are ARG's: ``type`` lower-cased, ``resourceGroup`` lower-cased, ``subscriptionId``,
  ``tenantId``, ``identity``, ``properties``, ``tags``, ``location``... for every ARM resource
  (generic resources and identities); ``ResourceContainers`` holds subscriptions and resource groups.
- Only what Azure indexes: proxy resources (``config/appsettings``, ``administrators``,
  ``sqlRoleAssignments``, ...) are not rows, and rows never carry secrets (``resource_types.py``).
- The view lags ARM by ``resourceGraphLagSeconds``.
- Per-user quota headers ``x-ms-user-quota-remaining`` / ``x-ms-user-quota-resets-after``; 429 when
  throttling is on and the 15-per-5-s window is spent.
- An unparsable query is 400 ``BadRequest`` with ``details`` [``InvalidQuery``, parser detail].
"""

from __future__ import annotations

import base64
import copy
import json
import re
from typing import Any

from emulator import kql, rbac_enforce, resource_types
from emulator.callers import caller_of
from emulator.errors import ArmError
from emulator.ids import parse_resource_id
from emulator.state import TENANT_ID, State
from emulator.wire import Request, Response

API_VERSIONS = frozenset(
    {"2019-04-01", "2020-04-01-preview", "2021-03-01", "2021-06-01-preview", "2022-10-01", "2024-04-01"}
)
COLUMNS = ["id", "name", "type", "tenantId", "kind", "location", "resourceGroup", "subscriptionId", "managedBy",
           "sku", "plan", "properties", "tags", "identity", "zones", "extendedLocation"]  # fmt: skip


def _row(body: dict[str, Any]) -> dict[str, Any]:
    parsed = parse_resource_id(body["id"])
    return {
        "id": body["id"],
        "name": body["name"],
        "type": body["type"].lower(),
        "tenantId": TENANT_ID,
        "kind": body.get("kind") or "",
        "location": body.get("location"),
        "resourceGroup": parsed.resource_group.lower() if parsed else "",
        "subscriptionId": parsed.subscription if parsed else "",
        "managedBy": body.get("managedBy") or "",
        "sku": copy.deepcopy(body.get("sku")),
        "plan": copy.deepcopy(body.get("plan")),
        "properties": copy.deepcopy(body.get("properties") or {}),
        "tags": copy.deepcopy(body.get("tags") or {}),
        "identity": copy.deepcopy(body.get("identity")),
        "zones": copy.deepcopy(body.get("zones")),
        "extendedLocation": copy.deepcopy(body.get("extendedLocation")),
    }


def _container_rows(state: State) -> list[dict[str, Any]]:
    rows = []
    for sub in state.subscriptions.values():
        rows.append({**dict.fromkeys(COLUMNS), "id": f"/subscriptions/{sub}", "name": sub, "tenantId": TENANT_ID,
                     "type": "microsoft.resources/subscriptions", "subscriptionId": sub, "resourceGroup": "",
                     "properties": {"state": "Enabled"}, "tags": {}})  # fmt: skip
    for group in state.resource_groups.values():
        sub = group["id"].split("/")[2]
        rows.append({**dict.fromkeys(COLUMNS), "id": group["id"], "name": group["name"], "tenantId": TENANT_ID,
                     "type": "microsoft.resources/subscriptions/resourcegroups", "location": group["location"],
                     "subscriptionId": sub, "resourceGroup": group["name"].lower(),
                     "properties": copy.deepcopy(group["properties"]), "tags": copy.deepcopy(group.get("tags") or {})})  # fmt: skip
    return rows


def _invalid(exc: kql.KqlError) -> ArmError:
    return ArmError(
        400,
        "BadRequest",
        "Please provide below info when asking for support: timestamp and correlationId. Query is invalid. Please "
        "refer to the documentation for the Azure Resource Graph service and fix the error before retrying.",
        details=[
            {"code": "InvalidQuery", "message": "Query is invalid. Please refer to the documentation for the Azure "
             "Resource Graph service and fix the error before retrying."},
            {"code": exc.code, "message": exc.message, "line": 1, "characterPositionInLine": exc.position,
             "token": exc.token, **_expected(exc)},
        ],
    )  # fmt: skip


def _expected(exc: kql.KqlError) -> dict[str, str]:
    """A parser failure names the token Kusto expected (recorded: ``expectedToken``); the emulator knows it
    when its message says "Expected '…'", else leaves it empty."""
    if exc.code != "ParserFailure":
        return {}
    match = re.match(r"Expected '([^']*)'", exc.message)
    return {"expectedToken": match.group(1) if match else ""}


def _token(offset: int, top: int) -> str:
    # like Azure's token (MaxRows, RowsToSkip), it carries the page size: a request with only the token
    # continues with the same size (recorded traffic, tests/conformance/recordings/resource-graph)
    return base64.b64encode(json.dumps({"$skip": offset, "$top": top}).encode()).decode()


def _offset(token: str) -> tuple[int, int | None]:
    try:
        decoded = json.loads(base64.b64decode(token))
        return int(decoded["$skip"]), (int(decoded["$top"]) if "$top" in decoded else None)
    except (ValueError, KeyError, TypeError) as exc:
        raise ArmError(400, "BadRequest", "The $skipToken is not valid.", details=[{"code": "InvalidSkipToken",
                       "message": "The skip token is not valid."}]) from exc  # fmt: skip


def _column_type(rows: list[dict[str, Any]], column: str) -> str:
    """A table column's type as Resource Graph names it, from the first value that is not null."""
    value = next((r.get(column) for r in rows if r.get(column) is not None), None)
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    return "string" if isinstance(value, str) else "object"


def query(state: State, req: Request) -> Response:
    version = req.query.get("api-version", "")
    if version not in API_VERSIONS:
        raise ArmError(
            400,
            "InvalidApiVersionParameter",
            f"The api-version '{version}' is invalid. The supported versions are '{', '.join(sorted(API_VERSIONS))}'.",
        )
    body = req.json_object()
    text = body.get("query")
    if not isinstance(text, str) or not text.strip():
        raise ArmError(
            400,
            "BadRequest",
            "The query is required.",
            details=[{"code": "InvalidQuery", "message": "Query is empty."}],
        )
    options = body.get("options") or {}
    subscriptions = body.get("subscriptions")
    caller = req.headers.get("authorization", "")
    with state.lock:
        # an invalid query spends quota too, and its 400 reports it (recorded traffic, test_query_error.yaml)
        quota = state.throttle.take_graph_query(state.config["throttling"], caller)
    try:
        run = kql.compile_query(text, {"Resources": COLUMNS, "ResourceContainers": COLUMNS})
    except kql.KqlError as exc:
        error = _invalid(exc)
        error.headers.update(quota)
        raise error from exc
    with state.lock:
        wanted = (
            {s.lower() for s in subscriptions} if isinstance(subscriptions, list) and subscriptions else None
        )
        resources = [
            _row(resource_types.present(b)) for b in state.graph_view(wanted) if resource_types.indexed(b)
        ]
        containers = _container_rows(state)
        # With RBAC enforced, ARG answers only the rows the caller may read (rbac_enforce.py).
        who = caller_of(req)
        resources = [r for r in resources if rbac_enforce.readable(state, who, r["id"], r["type"])]
        containers = [r for r in containers if rbac_enforce.readable(state, who, r["id"], r["type"])]
    if wanted is not None:
        resources = [r for r in resources if r["subscriptionId"].lower() in wanted]
        containers = [r for r in containers if str(r["subscriptionId"]).lower() in wanted]
    resources.sort(key=lambda r: r["id"].lower())
    _, rows = run({"Resources": resources, "ResourceContainers": containers})
    offset, token_top = (
        _offset(options["$skipToken"])
        if options.get("$skipToken")
        else (int(options.get("$skip") or 0), None)
    )
    top = min(int(options.get("$top") or token_top or 100), 1000)
    window = rows[offset : offset + top]
    result: dict[str, Any] = {
        "totalRecords": len(rows),
        "count": len(window),
        "resultTruncated": "false",
        "facets": [],
    }
    if offset + top < len(rows):
        result["$skipToken"] = _token(offset + top, top)
    # before 2021-03-01 the default result format was a table (recorded traffic at 2019-04-01)
    if options.get("resultFormat", "table" if version[:10] < "2021-03-01" else "objectArray") == "table":
        columns = list(window[0].keys()) if window else []
        result["data"] = {
            "columns": [{"name": c, "type": _column_type(window, c)} for c in columns],
            "rows": [[r.get(c) for c in columns] for r in window],
        }
    else:
        result["data"] = window
    return Response(200, result, quota)
