"""The ``idmove`` command line as a person meets it: a live display on a terminal, nothing but JSON
with ``--output json`` (terminal or not), errors that say what to do next, every command in
``--help``, and ``idmove up`` that prints its URLs and stops every child on Ctrl-C."""

from __future__ import annotations

import argparse
import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from idmove.azurite import free_port
from idmove.cli import EXIT_BAD_INPUT, EXIT_CONFLICT, EXIT_MOVE_FAILED, EXIT_OK, build_parser
from idmove.stack import port_in_use
from tests.plugins.host import MakeIdentity, wait_for
from tests.test_cli_commands import as_json, idmove


def _on_a_tty(*args: str, timeout: float = 120) -> tuple[int, str, str]:
    """Run ``idmove`` with stdout on a pseudo-terminal (stderr piped): exit code, terminal text, stderr."""
    master, slave = pty.openpty()
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "140", "LINES": "50"}
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "idmove", *args], stdout=slave, stderr=subprocess.PIPE, env=env
    )
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # the child closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
        code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
    stderr = proc.stderr.read().decode() if proc.stderr else ""
    return code, b"".join(chunks).decode("utf-8", "replace"), stderr


def test_help_lists_every_command() -> None:
    result = idmove("--help")
    assert result.returncode == 0
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    names = set(commands.choices)
    assert names == {
        "up",
        "emulator",
        "host",
        "demo",
        "plan",
        "move",
        "status",
        "list",
        "commit",
        "cancel",
        "retry",
        "discard",
        "permissions",
        "seed",
        "report",
    }
    for name in names:
        # each one listed with its help line (beside it, or below a name too long for the column)
        assert re.search(rf"^    {name}(\s|$)", result.stdout, re.M), name
    for name in names:  # and each has its own --help
        assert idmove(name, "--help").returncode == 0, name


def test_move_on_a_terminal_shows_live_phase_progress(host_url: str, make_identity: MakeIdentity) -> None:
    code, screen, stderr = _on_a_tty("move", make_identity(), "--to", "northeurope", "--api", host_url)
    assert code == EXIT_OK, screen + stderr
    assert "\x1b[" in screen  # drawn for a terminal: colours and cursor movement
    redraws = screen.count("\x1b[2K") + screen.count("\x1b[1A")
    assert redraws >= 2, screen  # the display was redrawn in place, not printed once at the end
    for phase in ("snapshot", "create", "grant", "rebind", "verify"):
        assert phase in screen
    assert "AwaitingCommit" in screen
    assert "idmove commit" in stderr  # what to do next


def test_move_with_output_json_on_a_terminal_prints_only_json(
    host_url: str, api: httpx.Client, make_identity: MakeIdentity
) -> None:
    code, screen, _ = _on_a_tty(
        "move", make_identity(), "--to", "northeurope", "--api", host_url, "-o", "json"
    )
    assert code == EXIT_OK
    move = json.loads(screen.replace("\r\n", "\n"))  # no progress, no escape codes: JSON only
    assert move["status"] == "AwaitingCommit"
    assert "\x1b" not in screen
    api.post(f"/api/moves/{move['id']}/discard")


def test_status_exit_codes_follow_the_documented_table(
    host_url: str, api: httpx.Client, make_identity: MakeIdentity
) -> None:
    failed_id = api.post(
        "/api/moves", json={"sourceIdentityId": make_identity("northeurope"), "targetRegion": "northeurope"}
    ).json()["id"]
    wait_for(api, failed_id, {"Failed"})
    failed = idmove("status", failed_id, "--api", host_url, "--output", "json")
    assert failed.returncode == EXIT_MOVE_FAILED
    assert as_json(failed)["status"] == "Failed"
    waited = idmove("status", failed_id, "--wait", "--api", host_url, "--output", "json")
    assert waited.returncode == EXIT_MOVE_FAILED and as_json(waited)["error"]["code"] == "PlanBlocked"

    planned_id = api.post(
        "/api/moves",
        json={"sourceIdentityId": make_identity(), "targetRegion": "northeurope", "dryRun": True},
    ).json()["id"]
    at_rest = idmove("status", planned_id, "--wait", "--api", host_url, "--output", "json")
    assert at_rest.returncode == EXIT_OK and as_json(at_rest)["status"] == "Planned"
    missing = idmove("status", "no-such-move", "--api", host_url, "--output", "json")
    assert missing.returncode == EXIT_BAD_INPUT
    assert as_json(missing)["error"]["code"] == "MoveNotFound"


@pytest.mark.parametrize(
    ("args", "code", "advice"),
    [
        (("status", "no-such-move"), EXIT_BAD_INPUT, "idmove list"),
        (("commit", "{failed}"), EXIT_CONFLICT, "commit needs a move that is AwaitingCommit"),
        (("retry", "{planned}"), EXIT_CONFLICT, "idmove status {planned}"),
        (("move", "/subscriptions/nope", "--to", "northeurope"), EXIT_BAD_INPUT, "fix sourceIdentityId"),
        (("move", "{source}", "--to", "uksouth"), EXIT_CONFLICT, "idmove status {in_flight} --wait"),
    ],
    ids=["unknown move", "commit a failed move", "retry a plan", "bad identity id", "second move"],
)
def test_errors_say_what_to_do_next(
    host_url: str,
    api: httpx.Client,
    make_identity: MakeIdentity,
    args: tuple[str, ...],
    code: int,
    advice: str,
) -> None:
    source = make_identity()
    names: dict[str, Any] = {"source": source}
    if any("{failed}" in a for a in args):
        names["failed"] = api.post(
            "/api/moves",
            json={"sourceIdentityId": make_identity("northeurope"), "targetRegion": "northeurope"},
        ).json()["id"]
        wait_for(api, names["failed"], {"Failed"})
    if any("{planned}" in a for a in args):
        names["planned"] = api.post(
            "/api/moves", json={"sourceIdentityId": source, "targetRegion": "northeurope", "dryRun": True}
        ).json()["id"]
        wait_for(api, names["planned"], {"Planned"})
    if "{in_flight}" in advice:
        names["in_flight"] = api.post(
            "/api/moves", json={"sourceIdentityId": source, "targetRegion": "northeurope"}
        ).json()["id"]
    result = idmove(*[a.format(**names) for a in args], "--api", host_url)
    assert result.returncode == code, result.stderr
    assert result.stdout == ""  # errors go to stderr
    assert advice.format(**names) in " ".join(result.stderr.split()), result.stderr
    if "in_flight" in names:
        wait_for(api, names["in_flight"], {"AwaitingCommit", "Failed"})
        api.post(f"/api/moves/{names['in_flight']}/discard")


@pytest.mark.parametrize("delivery", ["process", "process group"])
def test_up_prints_urls_and_ctrl_c_stops_every_part(delivery: str, tmp_path: Path) -> None:
    """``delivery``: SIGINT to ``idmove up`` alone (its children must be stopped by it), or to its
    process group, as a terminal's Ctrl-C does."""
    ports = {name: free_port() for name in ("emulator", "host", "queue", "table")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "idmove",
            "up",
            "--data-dir",
            str(tmp_path / "azurite"),
            *[f"--{name}-port={port}" for name, port in ports.items()],
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"},
        start_new_session=True,
        # started as a script's background job is: SIGINT ignored, inherited (Python then installs no
        # handler); `up` must stop on Ctrl-C all the same (it did not, and restarted its host instead)
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    assert proc.stdout is not None
    try:
        lines: list[str] = []
        deadline = time.monotonic() + 60
        while not any("emulator" in line and "_emulator/health" in line for line in lines):
            assert time.monotonic() < deadline and proc.poll() is None, "".join(lines)
            lines.append(proc.stdout.readline().decode())
        while not any(line.startswith("  try") for line in lines):
            lines.append(proc.stdout.readline().decode())
        text = "".join(lines)
        assert f"http://127.0.0.1:{ports['host']}/api/moves" in text
        assert f"http://127.0.0.1:{ports['host']}/api/openapi.json" in text
        assert (
            f"http://127.0.0.1:{ports['host']}/runtime/webhooks/eventgrid?functionName=region_decommissioning"
            in text
        )
        assert f"http://127.0.0.1:{ports['emulator']}" in text
        assert f":{ports['queue']}" in text and f":{ports['table']}" in text
        assert all(port_in_use(port) for port in ports.values()), ports
        assert httpx.get(f"http://127.0.0.1:{ports['host']}/api/moves", timeout=10).status_code == 200

        if delivery == "process":
            proc.send_signal(signal.SIGINT)
        else:
            os.killpg(proc.pid, signal.SIGINT)
        try:
            code = proc.wait(timeout=90)  # a bound against hanging, not a timing assertion
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise AssertionError(
                f"idmove up ignored Ctrl-C for 90 s: {proc.stdout.read().decode()}"
            ) from None
        assert code == EXIT_OK
        rest = proc.stdout.read().decode()
        assert "stopping" in rest, rest
        busy = {name: port for name, port in ports.items() if port_in_use(port)}
        assert busy == {}, f"still listening after Ctrl-C: {busy}"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
