"""The contract's HTTP API over real HTTP, served by ``idmove host`` (Azurite + emulator behind it)."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from tests.plugins.host import SUBSCRIPTION, MakeIdentity, identity_id, wait_for

VM_ID = f"/subscriptions/{SUBSCRIPTION}/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm1"
GOOD_ID = identity_id(SUBSCRIPTION, "rg-x", "id-x")


def _count_moves(api: httpx.Client) -> int:
    total, url = 0, "/api/moves?top=200"
    while url:
        body = api.get(url).json()
        total += len(body["value"])
        url = body.get("nextLink")
    return total


def _assert_arm_error(response: httpx.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    error: dict[str, Any] = response.json()["error"]
    assert set(error) >= {"code", "message", "target"}
    assert error["message"]
    if code is not None:
        assert error["code"] == code, error
    return error


BAD_STARTS: list[tuple[str, dict[str, Any], int, str, str | None]] = [
    ("malformed JSON", {"content": b'{"sourceIdentityId": '}, 400, "InvalidJson", None),
    ("JSON array", {"json": [GOOD_ID]}, 400, "InvalidRequestContent", None),
    ("JSON string", {"json": "hello"}, 400, "InvalidRequestContent", None),
    ("empty body", {"content": b""}, 400, "InvalidJson", None),
    ("unknown field", {"json": {"sourceIdentityId": GOOD_ID, "targetRegion": "northeurope", "x": 1}}, 400, "InvalidRequestContent", "x"),
    ("missing region", {"json": {"sourceIdentityId": GOOD_ID}}, 400, "InvalidRequestContent", "targetRegion"),
    ("malformed resource id", {"json": {"sourceIdentityId": "/subscriptions/nope", "targetRegion": "northeurope"}}, 400, "InvalidSourceIdentityId", "sourceIdentityId"),
    ("not an identity", {"json": {"sourceIdentityId": VM_ID, "targetRegion": "northeurope"}}, 400, "InvalidSourceIdentityId", "sourceIdentityId"),
    ("unknown region", {"json": {"sourceIdentityId": GOOD_ID, "targetRegion": "atlantis"}}, 400, "InvalidTargetRegion", "targetRegion"),
    ("wrong type", {"json": {"sourceIdentityId": GOOD_ID, "targetRegion": "northeurope", "dryRun": "yes"}}, 400, "InvalidRequestContent", "dryRun"),
    ("bad resource map", {"json": {"sourceIdentityId": GOOD_ID, "targetRegion": "northeurope", "resourceMap": {"a": "b"}}}, 400, "InvalidRequestContent", "resourceMap"),
    ("deeply nested", {"content": b"[" * 60_000}, 400, "InvalidJson", None),
    ("'..' segment", {"json": {"sourceIdentityId": identity_id(SUBSCRIPTION, "..", "id-x"), "targetRegion": "northeurope"}}, 400, "InvalidSourceIdentityId", "sourceIdentityId"),
    ("'.' segment", {"json": {"sourceIdentityId": identity_id(SUBSCRIPTION, ".", "id-x"), "targetRegion": "northeurope"}}, 400, "InvalidSourceIdentityId", "sourceIdentityId"),
    # the OpenAPI document's patterns and the validators agree on values as sent (no strip, no newline
    # before Python's '$', ASCII '\w'): an id the old pattern took and the old server, stripped, refused
    ("resource map id ending in '/ '", {"json": {"sourceIdentityId": GOOD_ID, "targetRegion": "northeurope", "resourceMap": {VM_ID.rsplit("/", 1)[0] + "/ ": VM_ID}}}, 400, "InvalidRequestContent", "resourceMap"),
    ("resource map id ending in a newline", {"json": {"sourceIdentityId": GOOD_ID, "targetRegion": "northeurope", "resourceMap": {VM_ID + "\n": VM_ID}}}, 400, "InvalidRequestContent", "resourceMap"),
    ("source id ending in a newline", {"json": {"sourceIdentityId": GOOD_ID + "\n", "targetRegion": "northeurope"}}, 400, "InvalidSourceIdentityId", "sourceIdentityId"),
    ("target name with a leading space", {"json": {"sourceIdentityId": GOOD_ID, "targetRegion": "northeurope", "targetName": " abc"}}, 400, "InvalidRequestContent", "targetName"),
    ("target name not ASCII", {"json": {"sourceIdentityId": GOOD_ID, "targetRegion": "northeurope", "targetName": "aéé"}}, 400, "InvalidRequestContent", "targetName"),
    ("source id with a trailing space", {"json": {"sourceIdentityId": GOOD_ID + " ", "targetRegion": "northeurope"}}, 400, "InvalidSourceIdentityId", "sourceIdentityId"),
    ("resource map id with a leading space", {"json": {"sourceIdentityId": GOOD_ID, "targetRegion": "northeurope", "resourceMap": {VM_ID: " " + VM_ID}}}, 400, "InvalidRequestContent", "resourceMap"),
    ("'..' in resource map", {"json": {"sourceIdentityId": GOOD_ID, "targetRegion": "northeurope", "resourceMap": {VM_ID.replace("/rg/", "/../"): VM_ID}}}, 400, "InvalidRequestContent", "resourceMap"),
    ("oversized", {"json": {"sourceIdentityId": GOOD_ID, "targetRegion": "northeurope", "targetName": "x" * 70_000}}, 413, "RequestTooLarge", None),
    ("form body", {"content": b"sourceIdentityId=x", "headers": {"content-type": "application/x-www-form-urlencoded"}}, 415, "UnsupportedMediaType", "Content-Type"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("case", "request_kwargs", "status", "code", "target"), BAD_STARTS, ids=[c[0] for c in BAD_STARTS]
)
def test_bad_start_requests_are_arm_errors_and_write_nothing(
    api: httpx.Client, case: str, request_kwargs: dict[str, Any], status: int, code: str, target: str | None
) -> None:
    before = _count_moves(api)
    error = _assert_arm_error(api.post("/api/moves", **request_kwargs), status, code)
    if target is not None:
        assert error["target"] == target
    assert _count_moves(api) == before


@pytest.mark.parametrize(
    ("query", "target"),
    [
        ("top=0", "top"),
        ("top=201", "top"),
        ("top=ten", "top"),
        ("status=Sleeping", "status"),
        ("sourceRegion=%2F%2F", "sourceRegion"),
    ],
)
def test_bad_list_queries_are_400(api: httpx.Client, query: str, target: str) -> None:
    error = _assert_arm_error(api.get(f"/api/moves?{query}"), 400, "InvalidQueryParameter")
    assert error["target"] == target


@pytest.mark.parametrize(
    "path", ["/api/moves/no-such-move", "/api/moves/no-such-move/commit", "/api/moves/%20bad%20id"]
)
def test_unknown_moves_are_404(api: httpx.Client, path: str) -> None:
    response = api.get(path) if path.count("/") == 3 else api.post(path)
    _assert_arm_error(response, 404, "MoveNotFound")


@pytest.mark.parametrize(
    "token",
    ["MTIz", "WzFd", "dHJ1ZQ==", "garbage", "bnVsbA==", "eyJ4IjogMX0=", "%%%", "x" * 2000],
    ids=["base64 of 123", "base64 of [1]", "base64 of true", "garbage", "base64 of null",
         "base64 of a foreign object", "not base64", "too long"],
)  # fmt: skip
def test_a_skip_token_we_did_not_issue_is_400_invalid_query_parameter(api: httpx.Client, token: str) -> None:
    response = api.get("/api/moves", params={"$skipToken": token})
    error = _assert_arm_error(response, 400, "InvalidQueryParameter")
    assert error["target"] == "$skipToken"


def test_unknown_routes_and_methods_are_arm_errors(api: httpx.Client) -> None:
    _assert_arm_error(api.get("/api/nothing-here"), 404, "NotFound")
    _assert_arm_error(api.delete("/api/moves"), 405, "MethodNotAllowed")


def _operations(document: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (method.upper(), path): operation
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
    }


def _schema(document: dict[str, Any], ref_holder: dict[str, Any]) -> dict[str, Any]:
    """The component a ``{"$ref": "#/components/schemas/X"}`` points at."""
    ref = ref_holder["$ref"]
    assert ref.startswith("#/components/schemas/"), ref
    schema: dict[str, Any] = document["components"]["schemas"][ref.rsplit("/", 1)[-1]]
    return schema


def test_openapi_document_describes_every_route_body_header_and_error(api: httpx.Client) -> None:
    from shared.http_api import create_app
    from shared.models import MoveRequest

    response = api.get("/api/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document["openapi"].startswith("3.")
    operations = _operations(document)
    served = {
        (method, route.path)
        for route in create_app(lambda: None).routes
        if getattr(route, "methods", None) and route.path.startswith("/api/moves")
        for method in route.methods
    }
    contract = {("POST", "/api/moves"), ("GET", "/api/moves"), ("GET", "/api/moves/{move_id}")} | {
        ("POST", f"/api/moves/{{move_id}}/{command}") for command in ("commit", "cancel", "retry", "discard")
    }
    contract.add(("GET", "/api/moves/{move_id}/report"))
    assert served == contract  # the app serves the contract's routes, no more, no less
    assert set(operations) == contract | {("GET", "/api/dashboard")}  # and the document describes each
    dashboard = operations.pop(("GET", "/api/dashboard"))
    assert "text/html" in dashboard["responses"]["200"]["content"]

    start = operations[("POST", "/api/moves")]
    assert start["requestBody"]["required"] is True
    body_schema = _schema(document, start["requestBody"]["content"]["application/json"]["schema"])
    model_schema = MoveRequest.model_json_schema(by_alias=True, ref_template="#/components/schemas/{model}")
    nested = model_schema.pop("$defs")  # CommitPolicy: its own component, where the $ref points
    assert body_schema == model_schema
    assert all(document["components"]["schemas"][name] == schema for name, schema in nested.items())
    assert body_schema["additionalProperties"] is False
    assert set(body_schema["required"]) == {"sourceIdentityId", "targetRegion"}

    error = document["components"]["schemas"]["ErrorResponse"]
    assert error["required"] == ["error"]
    assert set(error["properties"]["error"]["required"]) == {"code", "message", "target"}
    for (method, path), operation in operations.items():
        responses = operation["responses"]
        assert "422" not in responses, (method, path)  # validation errors are 400s in ARM's shape
        assert {"400", "404"} & set(responses), (method, path)
        for code, described in responses.items():
            if int(code) >= 400 and code != "401":
                ref = described["content"]["application/json"]["schema"]
                assert ref == {"$ref": "#/components/schemas/ErrorResponse"}, (method, path, code)
        if method == "POST":
            assert {"Location", "Retry-After"} <= set(responses["202"]["headers"]), path
            assert (
                _schema(document, responses["202"]["content"]["application/json"]["schema"])
                is (document["components"]["schemas"]["Accepted"])
            )
            assert "Location" in responses["409"]["headers"], path
        assert operation["security"] == [{"functionKey": []}, {"functionKeyQuery": []}]

    status = operations[("GET", "/api/moves/{move_id}")]
    assert set(status["responses"]) >= {"200", "202", "404"}
    assert "Retry-After" in status["responses"]["202"]["headers"]
    expand = next(p for p in status["parameters"] if p["name"] == "$expand")
    assert expand["in"] == "query" and expand["schema"]["enum"] == ["inventory"]
    move = document["components"]["schemas"]["Move"]
    assert set(move["properties"]["plan"]["properties"]["inventory"]["properties"]) == {
        "roleAssignments", "federatedCredentials", "groups", "appRoles", "attachments",
        "keyVaultAccessPolicies", "cosmosRoleAssignments", "flexibleServerAdmins", "appSettings", "sqlServers",
    }  # fmt: skip
    listing = operations[("GET", "/api/moves")]
    assert {p["name"] for p in listing["parameters"]} == {"status", "sourceRegion", "top", "$skipToken"}
    assert (
        "nextLink"
        in _schema(document, listing["responses"]["200"]["content"]["application/json"]["schema"])[
            "properties"
        ]
    )
    schemes = document["components"]["securitySchemes"]
    assert schemes["functionKey"] == {"type": "apiKey", "name": "x-functions-key", "in": "header"}
    assert schemes["functionKeyQuery"] == {"type": "apiKey", "name": "code", "in": "query"}


def test_openapi_document_is_valid_and_real_responses_match_it(
    api: httpx.Client, make_identity: MakeIdentity
) -> None:
    validator = pytest.importorskip("openapi_spec_validator", reason="pip install openapi-spec-validator")
    import jsonschema

    document = api.get("/api/openapi.json").json()
    validator.validate(document)

    def check(response: httpx.Response, component: str) -> None:
        schema = {"$ref": f"#/components/schemas/{component}", "components": document["components"]}
        jsonschema.Draft202012Validator(schema).validate(response.json())

    started = _start(api, make_identity(), dryRun=True)
    check(started, "Accepted")
    move_id = started.json()["id"]
    check(api.get(f"/api/moves/{move_id}"), "Move")
    wait_for(api, move_id, {"Planned"})
    check(api.get(f"/api/moves/{move_id}", params={"$expand": "inventory"}), "Move")
    check(api.get("/api/moves", params={"top": 1}), "MoveList")
    check(api.post(f"/api/moves/{move_id}/commit"), "ErrorResponse")
    check(api.post("/api/moves", content=b"{"), "ErrorResponse")
    check(api.get("/api/moves/nope"), "ErrorResponse")
    with pytest.raises(jsonschema.ValidationError):  # the schemas do say something
        check(api.get("/api/moves/nope"), "Move")


def _start(api: httpx.Client, source: str, **extra: Any) -> httpx.Response:
    return api.post("/api/moves", json={"sourceIdentityId": source, "targetRegion": "northeurope", **extra})


def test_a_move_from_start_to_commit(api: httpx.Client, host_url: str, make_identity: MakeIdentity) -> None:
    source = make_identity("westeurope")
    started = _start(api, source)
    assert started.status_code == 202, started.text
    body = started.json()
    move_id = body["id"]
    assert started.headers["Location"] == f"{host_url}/api/moves/{move_id}"
    assert int(started.headers["Retry-After"]) >= 1
    assert body["status"] in ("Pending", "Running")
    assert body["links"]["status"] == started.headers["Location"]

    codes: set[int] = set()
    while (polled := api.get(started.headers["Location"])).json()["status"] in ("Pending", "Running"):
        assert polled.status_code == 202 and int(polled.headers["Retry-After"]) >= 1, polled.headers
        codes.add(polled.status_code)
        time.sleep(0.1)
    assert codes == {202}  # six phases over queue hops: the first poll right after the start sees it busy
    waiting = wait_for(api, move_id, {"AwaitingCommit", "Failed"})
    assert waiting["status"] == "AwaitingCommit", waiting
    at_rest = api.get(f"/api/moves/{move_id}")
    assert at_rest.status_code == 200 and "Retry-After" not in at_rest.headers
    move = at_rest.json()
    assert [p["name"] for p in move["phases"]] == [
        "snapshot",
        "create",
        "grant",
        "rebind",
        "verify",
        "cleanup",
    ]
    assert move["target"]["location"] == "northeurope" and move["target"]["principalId"]
    assert move["source"]["id"].lower() == source.lower()

    committed = api.post(f"/api/moves/{move_id}/commit")
    assert committed.status_code == 202, committed.text
    assert committed.headers["Location"] == f"{host_url}/api/moves/{move_id}"
    done = wait_for(api, move_id, {"Completed", "Failed"})
    assert done["status"] == "Completed", done

    again = api.post(f"/api/moves/{move_id}/commit")
    _assert_arm_error(again, 409, "InvalidMoveState")
    _assert_arm_error(api.post(f"/api/moves/{move_id}/cancel"), 409, "InvalidMoveState")


def test_a_second_move_of_the_same_identity_is_409_with_the_first_as_location(
    api: httpx.Client, host_url: str, make_identity: MakeIdentity
) -> None:
    source = make_identity()
    first = _start(api, source)
    assert first.status_code == 202
    second = _start(api, source, targetRegion="uksouth")
    _assert_arm_error(second, 409, "MoveInProgress")
    assert second.headers["Location"] == first.headers["Location"]
    wait_for(api, first.json()["id"], {"AwaitingCommit", "Failed"})
    assert api.post(f"/api/moves/{first.json()['id']}/discard").status_code == 202
    wait_for(api, first.json()["id"], {"Discarded", "Failed"})


def test_of_100_concurrent_starts_one_wins_and_every_409_names_it(
    host_url: str, make_identity: MakeIdentity
) -> None:
    """Also the 409s of the race's "is starting" window (lock written, record not yet) carry Location."""
    from concurrent.futures import ThreadPoolExecutor

    source = make_identity()
    body = {"sourceIdentityId": source, "targetRegion": "northeurope"}
    limits = httpx.Limits(max_connections=100)
    with httpx.Client(base_url=host_url, timeout=120, limits=limits) as client:
        with ThreadPoolExecutor(100) as pool:
            responses = list(pool.map(lambda _: client.post("/api/moves", json=body), range(100)))
        accepted = [r for r in responses if r.status_code == 202]
        assert len(accepted) == 1, sorted(r.status_code for r in responses)
        winner = accepted[0].headers["Location"]
        conflicts = [r for r in responses if r.status_code == 409]
        assert len(conflicts) == 99, [r.text for r in responses if r.status_code not in (202, 409)]
        for conflict in conflicts:
            assert _assert_arm_error(conflict, 409, "MoveInProgress")
            assert conflict.headers.get("Location") == winner, conflict.text
        move_id = accepted[0].json()["id"]
        wait_for(client, move_id, {"AwaitingCommit", "Failed"})
        client.post(f"/api/moves/{move_id}/discard")


def test_dry_run_plans_and_discard_and_retry_follow_the_status_table(
    api: httpx.Client, make_identity: MakeIdentity
) -> None:
    source = make_identity()
    started = _start(api, source, dryRun=True)
    assert started.status_code == 202
    move_id = started.json()["id"]
    planned = wait_for(api, move_id, {"Planned", "Failed"})
    assert planned["status"] == "Planned", planned
    assert {"blocking", "warnings"} <= set(planned["plan"])
    expanded = api.get(f"/api/moves/{move_id}", params={"$expand": "inventory"})
    assert expanded.status_code == 200
    assert set(expanded.json()["plan"]["inventory"]) == {
        "roleAssignments", "federatedCredentials", "groups", "appRoles", "attachments",
        "keyVaultAccessPolicies", "cosmosRoleAssignments", "flexibleServerAdmins", "appSettings", "sqlServers",
    }  # fmt: skip
    _assert_arm_error(
        api.get(f"/api/moves/{move_id}", params={"$expand": "everything"}), 400, "InvalidQueryParameter"
    )
    _assert_arm_error(api.post(f"/api/moves/{move_id}/commit"), 409, "InvalidMoveState")
    _assert_arm_error(api.post(f"/api/moves/{move_id}/retry"), 409, "InvalidMoveState")
    discarded = api.post(f"/api/moves/{move_id}/discard")
    assert discarded.status_code == 202 and discarded.headers["Location"].endswith(move_id)
    assert wait_for(api, move_id, {"Discarded"})["status"] == "Discarded"


def test_cancel_then_retry(api: httpx.Client, make_identity: MakeIdentity) -> None:
    source = make_identity()
    move_id = _start(api, source).json()["id"]
    canceled = api.post(f"/api/moves/{move_id}/cancel")  # allowed while Pending, Running, AwaitingCommit
    assert canceled.status_code == 202, canceled.text
    assert wait_for(api, move_id, {"Canceled"})["status"] == "Canceled"
    retried = api.post(f"/api/moves/{move_id}/retry")
    assert retried.status_code == 202, retried.text
    assert wait_for(api, move_id, {"AwaitingCommit", "Failed"})["status"] == "AwaitingCommit"
    api.post(f"/api/moves/{move_id}/discard")
    wait_for(api, move_id, {"Discarded", "Failed"})


def test_equal_regions_end_in_a_blocked_plan(api: httpx.Client, make_identity: MakeIdentity) -> None:
    source = make_identity("northeurope")
    started = _start(api, source)
    assert started.status_code == 202
    failed = wait_for(api, started.json()["id"], {"Failed", "AwaitingCommit"})
    assert failed["status"] == "Failed"
    assert failed["error"]["code"] == "PlanBlocked", failed["error"]


def test_list_pages_through_next_link(api: httpx.Client, host_url: str, make_identity: MakeIdentity) -> None:
    for _ in range(3):
        move_id = _start(api, make_identity("eastasia"), dryRun=True).json()["id"]
        wait_for(api, move_id, {"Planned", "Failed"})
    first = api.get("/api/moves", params={"top": 2, "sourceRegion": "eastasia"})
    assert first.status_code == 200
    page = first.json()
    assert len(page["value"]) == 2
    assert page["nextLink"].startswith(f"{host_url}/api/moves?")
    seen = [m["id"] for m in page["value"]]
    while page.get("nextLink"):
        page = api.get(page["nextLink"]).json()
        seen += [m["id"] for m in page["value"]]
    assert len(seen) == len(set(seen)) >= 3
    planned = api.get("/api/moves", params={"status": "planned", "top": 200}).json()["value"]
    assert planned and all(m["status"] == "Planned" for m in planned)


def test_json_error_bodies_are_parseable_even_for_unexpected_content(api: httpx.Client) -> None:
    response = api.post("/api/moves", content=json.dumps({"sourceIdentityId": None}).encode())
    _assert_arm_error(response, 400)
