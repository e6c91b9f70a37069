"""The ``idmove`` command line against a running host: JSON output for scripts and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import httpx
import pytest

from idmove.azurite import free_port
from idmove.cli import (
    EXIT_BAD_INPUT,
    EXIT_CONFLICT,
    EXIT_MOVE_FAILED,
    EXIT_OK,
    EXIT_TIMEOUT,
    EXIT_UNREACHABLE,
)
from tests.plugins.host import MakeIdentity, wait_for


def idmove(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "idmove", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def as_json(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.stdout.strip(), result.stderr
    return json.loads(result.stdout)  # stdout holds JSON and nothing else


def test_help_documents_the_exit_codes() -> None:
    result = idmove("--help")
    assert result.returncode == 0
    for line in (
        "0  success",
        "1  the move failed",
        "3  conflict (409)",
        "4  cannot reach the API",
        "5  timed out",
    ):
        assert line in result.stdout


def test_plan_prints_the_plan_as_json(host_url: str, make_identity: MakeIdentity) -> None:
    source = make_identity()
    result = idmove("plan", source, "--to", "northeurope", "--api", host_url, "--output", "json")
    assert result.returncode == EXIT_OK, result.stderr
    move = as_json(result)
    assert move["status"] == "Planned"
    assert move["plan"]["blocking"] == []
    assert move["source"]["id"].lower() == source.lower()
    assert set(move["plan"]["inventory"]) >= {"roleAssignments", "federatedCredentials", "attachments"}


def test_plan_as_text_is_a_readable_report(host_url: str, make_identity: MakeIdentity) -> None:
    result = idmove("plan", make_identity(), "--to", "northeurope", "--api", host_url)
    assert result.returncode == EXIT_OK, result.stderr
    assert "Nothing blocks this move" in result.stdout


def test_plan_with_blockers_exits_1(host_url: str, make_identity: MakeIdentity) -> None:
    result = idmove(
        "plan", make_identity("northeurope"), "--to", "northeurope", "--api", host_url, "-o", "json"
    )
    assert result.returncode == 1
    assert as_json(result)["plan"]["blocking"][0]["code"] == "TargetRegionIsSource"


def test_move_with_commit_follows_to_completed(host_url: str, make_identity: MakeIdentity) -> None:
    result = idmove(
        "move", make_identity(), "--to", "northeurope", "--commit", "--api", host_url, "-o", "json"
    )
    assert result.returncode == EXIT_OK, result.stdout + result.stderr
    move = as_json(result)
    assert move["status"] == "Completed"
    assert all(phase["status"] == "Succeeded" for phase in move["phases"]), move["phases"]

    status = idmove("status", move["id"], "--api", host_url, "--output", "json")
    assert status.returncode == EXIT_OK
    assert as_json(status)["id"] == move["id"]
    listing = idmove("list", "--status", "Completed", "--api", host_url, "--output", "json")
    assert listing.returncode == EXIT_OK
    assert move["id"] in {m["id"] for m in as_json(listing)["value"]}


def test_move_as_text_shows_phase_progress(host_url: str, make_identity: MakeIdentity) -> None:
    result = idmove("move", make_identity(), "--to", "northeurope", "--api", host_url)
    assert result.returncode == EXIT_OK, result.stderr
    for phase in ("snapshot", "create", "grant", "rebind", "verify"):
        assert phase in result.stdout
    assert "AwaitingCommit" in result.stdout


def test_conflict_bad_input_unreachable_and_timeout_exit_codes(
    host_url: str, api: httpx.Client, make_identity: MakeIdentity
) -> None:
    source = make_identity()
    first = idmove("move", source, "--to", "northeurope", "--api", host_url, "-o", "json")
    assert first.returncode == EXIT_OK and as_json(first)["status"] == "AwaitingCommit"

    conflict = idmove("move", source, "--to", "uksouth", "--api", host_url, "-o", "json")
    assert conflict.returncode == EXIT_CONFLICT
    error = as_json(conflict)["error"]
    assert error["code"] == "MoveInProgress" and error["location"].endswith(as_json(first)["id"])

    bad = idmove("move", "/subscriptions/nope", "--to", "northeurope", "--api", host_url, "-o", "json")
    assert bad.returncode == EXIT_BAD_INPUT
    assert as_json(bad)["error"]["code"] == "InvalidSourceIdentityId"
    assert idmove("status", "no-such-move", "--api", host_url).returncode == EXIT_BAD_INPUT

    down = idmove("status", "x", "--api", f"http://127.0.0.1:{free_port()}")
    assert down.returncode == EXIT_UNREACHABLE
    assert "idmove up" in down.stderr and down.stdout == ""

    discard = idmove("discard", as_json(first)["id"], "--wait", "--api", host_url, "-o", "json")
    assert discard.returncode == EXIT_OK and as_json(discard)["status"] == "Discarded"

    slow = idmove(
        "move", make_identity(), "--to", "northeurope", "--timeout", "0", "--api", host_url, "-o", "json"
    )
    assert slow.returncode == EXIT_TIMEOUT
    waiting = as_json(slow)
    assert waiting["error"]["code"] == "Timeout"
    wait_for(api, waiting["move"]["id"], {"AwaitingCommit"})


@pytest.mark.parametrize("move_id", ["../openapi.json", "..", "a/b", "x?y=1", "%2e%2e", " spaced"])
def test_an_id_that_is_not_a_move_id_is_refused_before_any_request(host_url: str, move_id: str) -> None:
    for command in (("status", move_id), ("commit", move_id)):
        text = idmove(*command, "--api", host_url)
        assert text.returncode == EXIT_BAD_INPUT, text.stdout
        assert text.stdout == ""  # never the OpenAPI document or any other page
        assert "is not a move id" in " ".join(text.stderr.split()), text.stderr
    as_data = idmove("status", move_id, "--api", host_url, "-o", "json")
    assert as_data.returncode == EXIT_BAD_INPUT
    assert as_json(as_data)["error"]["code"] == "InvalidMoveId"


def test_plan_of_an_identity_that_does_not_exist_shows_the_error_and_its_code(
    host_url: str, make_identity: MakeIdentity
) -> None:
    missing = make_identity().rsplit("/", 1)[0] + "/id-never-created"
    data = idmove("plan", missing, "--to", "northeurope", "--api", host_url, "-o", "json")
    assert data.returncode == EXIT_MOVE_FAILED, data.stderr
    error = as_json(data)["error"]
    text = idmove("plan", missing, "--to", "northeurope", "--api", host_url)
    assert text.returncode == EXIT_MOVE_FAILED
    shown = " ".join(text.stdout.split())
    assert "Nothing blocks" not in shown
    assert error["code"] == "IdentityNotFound"
    assert "IdentityNotFound" in shown and "does not exist" in shown, shown


def test_usage_errors_exit_2() -> None:
    assert idmove("move").returncode == EXIT_BAD_INPUT
    assert idmove("frobnicate").returncode == EXIT_BAD_INPUT


def test_what_a_person_pasted_is_trimmed_before_the_api_sees_it(
    host_url: str, make_identity: MakeIdentity
) -> None:
    """The API takes values as sent (its OpenAPI patterns allow no whitespace around an id); the CLI
    trims an id pasted with its newline, and the plan is of that identity."""
    identity = make_identity()
    data = idmove("plan", f" {identity}\n", "--to", " northeurope ", "--api", host_url, "-o", "json")
    assert data.returncode == 0, data.stderr
    assert as_json(data)["source"]["id"].lower() == identity.lower()
