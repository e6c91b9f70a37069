"""The report per move (``shared/report.py``): who did what when, every item copied, rebound,
verified and deleted, the actions left, the events; JSON and Markdown, for a completed, a
discarded and a failed move."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from idmove.estate import Estate, clients_for, seed
from shared.report import to_markdown
from shared.service import MoveService
from tests.plugins.engine import drain
from tests.plugins.host import MakeIdentity, wait_for
from tests.test_engine_moves import move_body


@pytest.fixture
def estate(emu: str) -> Estate:
    return seed(clients_for(emu))


def run_to(service: MoveService, move_id: str, status: str) -> dict[str, Any]:
    drain(service)
    body = service.get(move_id)
    assert body["status"] == status, body.get("error")
    return body


def test_report_of_a_completed_move_names_who_and_every_item(
    emulated_service: MoveService, estate: Estate
) -> None:
    service = emulated_service
    move_id = service.start(move_body(estate), by="alice@example.com (oid-1)")["id"]
    run_to(service, move_id, "AwaitingCommit")
    service.commit(move_id, by="bob@example.com (oid-2)")
    status = run_to(service, move_id, "Completed")

    report = service.report(move_id)
    assert report["status"] == "Completed"
    assert report["started"]["by"] == "alice@example.com (oid-1)"
    assert report["started"]["at"] == status["createdAt"]
    assert [(c["command"], c["by"]) for c in report["commands"]] == [("commit", "bob@example.com (oid-2)")]
    assert report["source"]["id"] == estate.identity_id
    assert report["target"]["name"] == status["target"]["name"]
    kinds = {i["kind"] for i in report["copied"]}
    assert {"role", "credential", "group"} <= kinds, kinds
    assert all(i["status"] == "Done" and i["at"] for i in report["copied"])
    assert all(
        i["from"] == estate.identity_name and i["to"] == status["target"]["name"] for i in report["copied"]
    )
    assert len(report["copied"]) == sum(p["items"]["total"] for p in status["phases"] if p["name"] == "grant")
    assert report["rebound"] and all(i["status"] == "Done" for i in report["rebound"])
    assert report["verified"]["status"] == "Succeeded"
    assert (
        report["verified"]["checked"]["attachments"] == len(report["rebound"])
        or report["verified"]["checked"]
    )
    assert {i["kind"] for i in report["deleted"]} >= {"identity", "detach"}
    assert {a["code"] for a in report["actionsRequired"]} == {
        a["code"] for a in status["plan"]["actionsRequired"]
    }
    types = [e["type"] for e in report["events"]]
    assert types[0] == "IdentityMover.Move.Started" and types[-1] == "IdentityMover.Move.Completed"

    markdown = to_markdown(report)
    assert f"# Identity move {move_id}" in markdown
    assert "Started** by alice@example.com (oid-1)" in markdown
    assert "Commit** by bob@example.com (oid-2)" in markdown
    for section in ("Copied to the new identity", "Resources rebound", "Deleted at cleanup", "Events sent"):
        assert f"## {section}" in markdown


def test_report_of_a_discarded_move(emulated_service: MoveService, estate: Estate) -> None:
    service = emulated_service
    move_id = service.start(move_body(estate), by="alice")["id"]
    run_to(service, move_id, "AwaitingCommit")
    service.discard(move_id, by="carol")
    run_to(service, move_id, "Discarded")
    report = service.report(move_id)
    assert report["status"] == "Discarded"
    assert [(c["command"], c["by"]) for c in report["commands"]] == [("discard", "carol")]
    assert report["copied"] and report["deleted"] == []  # nothing of the source was deleted
    assert report["events"][-1]["type"] == "IdentityMover.Move.Discarded"
    assert "**Discard** by carol" in to_markdown(report)


def test_report_of_a_failed_move_carries_the_error(emulated_service: MoveService, estate: Estate) -> None:
    service = emulated_service
    move_id = service.start(move_body(estate, targetRegion="westeurope"))["id"]  # the source's own region
    run_to(service, move_id, "Failed")
    report = service.report(move_id)
    assert report["error"]["code"] == "PlanBlocked"
    assert report["started"]["by"] == "unknown"  # the service was called without a caller named
    assert report["copied"] == report["rebound"] == report["deleted"] == []
    assert report["events"][-1]["type"] == "IdentityMover.Move.Failed"
    markdown = to_markdown(report)
    assert "**Error:** `PlanBlocked`" in markdown and "## Copied to the new identity\n\n(none)" in markdown


def test_report_over_http_and_the_cli(
    api: httpx.Client, host_url: str, make_identity: MakeIdentity, tmp_path: Path
) -> None:
    identity = make_identity()
    move_id = api.post(
        "/api/moves", json={"sourceIdentityId": identity, "targetRegion": "northeurope"}
    ).json()["id"]
    wait_for(api, move_id, {"AwaitingCommit"})
    assert api.post(f"/api/moves/{move_id}/commit").status_code == 202
    wait_for(api, move_id, {"Completed"})

    response = api.get(f"/api/moves/{move_id}/report")
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/json")
    report = response.json()
    assert report["started"]["by"] == "local"  # the local host: no App Service authentication
    assert [(c["command"], c["by"]) for c in report["commands"]] == [("commit", "local")]
    markdown = api.get(f"/api/moves/{move_id}/report", params={"format": "markdown"})
    assert markdown.headers["content-type"].startswith("text/markdown")
    assert markdown.text.startswith(f"# Identity move {move_id}")
    bad = api.get(f"/api/moves/{move_id}/report", params={"format": "pdf"})
    assert bad.status_code == 400 and bad.json()["error"]["target"] == "format"
    assert api.get("/api/moves/no-such-move/report").status_code == 404

    out = tmp_path / "report.json"
    cli = [sys.executable, "-m", "idmove", "report", move_id, "--api", host_url]
    done = subprocess.run(
        [*cli, "--format", "json", "--out", str(out)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(out.read_text())["id"] == move_id
    printed = subprocess.run(cli, capture_output=True, text=True, timeout=60)
    assert printed.returncode == 0 and "## Events sent" in printed.stdout


def test_actor_is_the_app_service_principal_in_azure_else_function_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from starlette.requests import Request

    from shared.http_api import actor

    def request(**headers: str) -> Request:
        raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        return Request({"type": "http", "method": "POST", "path": "/", "headers": raw, "query_string": b""})

    monkeypatch.delenv("WEBSITE_INSTANCE_ID", raising=False)
    assert actor(request(**{"X-MS-CLIENT-PRINCIPAL-NAME": "mallory"})) == "local"
    monkeypatch.setenv("WEBSITE_INSTANCE_ID", "abc")
    assert actor(request()) == "function key"
    principal = {"X-MS-CLIENT-PRINCIPAL-NAME": "alice@contoso.com", "X-MS-CLIENT-PRINCIPAL-ID": "0000-1"}
    assert actor(request(**principal)) == "alice@contoso.com (0000-1)"


def test_a_decommission_start_names_the_event_and_topic_and_carries_the_commit_policy(
    emulated_service: MoveService, estate: Estate
) -> None:
    service = emulated_service
    policy = {"timeoutMinutes": 90, "onTimeout": "discard"}
    data = {
        "sourceRegion": "westeurope",
        "targetRegion": "northeurope",
        "subscriptionIds": [estate.subscription_id],
        "commitPolicy": policy,
        "autoCommit": False,
    }
    topic = "/subscriptions/x/resourceGroups/ops/providers/Microsoft.EventGrid/topics/decommission"
    service.start_region_decommission("evt-0001", data, topic)
    drain(service)
    moves = [m for m in service.list(top=200)[0] if m["source"]["id"].lower() == estate.identity_id.lower()]
    assert len(moves) == 1
    move = moves[0]
    assert move["request"]["commitPolicy"] == policy
    assert move["status"] == "AwaitingCommit", move.get("error")
    assert "commitDeadline" in move
    started = service.report(move["id"])["started"]
    assert started["by"] == "Event Grid event evt-0001"
    assert (started["eventId"], started["topic"]) == ("evt-0001", topic)
