"""The contract's HTTP API over real HTTP, served by ``idmove host`` (Azurite + emulator behind it)."""

from __future__ import annotations

import json
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


def test_a_skip_token_we_did_not_issue_is_not_a_server_error(api: httpx.Client) -> None:
    for token in ("garbage", "x" * 2000):
        response = api.get("/api/moves", params={"$skipToken": token})
        assert response.status_code in (200, 400), response.text


def test_unknown_routes_and_methods_are_arm_errors(api: httpx.Client) -> None:
    _assert_arm_error(api.get("/api/nothing-here"), 404, "NotFound")
    _assert_arm_error(api.delete("/api/moves"), 405, "MethodNotAllowed")


def test_openapi_document_describes_every_route(api: httpx.Client) -> None:
    response = api.get("/api/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document["openapi"].startswith("3.")
    paths = document["paths"]
    assert {"post", "get"} <= set(paths["/api/moves"])
    assert "get" in paths["/api/moves/{move_id}"]
    for command in ("commit", "cancel", "retry", "discard"):
        assert "post" in paths[f"/api/moves/{{move_id}}/{command}"]
    assert {"functionKey", "functionKeyQuery"} <= set(document["components"]["securitySchemes"])
    body_schema = paths["/api/moves"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert {"sourceIdentityId", "targetRegion", "dryRun"} <= set(body_schema["properties"])


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

    first = api.get(started.headers["Location"])
    if first.json()["status"] in ("Pending", "Running"):
        assert first.status_code == 202 and "Retry-After" in first.headers
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
        "roleAssignments", "federatedCredentials", "groups", "appRoles", "attachments"
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
