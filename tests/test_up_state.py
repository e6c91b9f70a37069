"""``idmove up`` keeps local state: Azurite's data in a folder (``--fresh`` to start empty), a host that
dies is started again on the same storage, Azurite's telemetry is off; ``make demo`` needs no checkov."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import httpx
import pytest

from idmove.azurite import REPO_ROOT, Azurite, free_port
from idmove.stack import DATA_DIR
from tests.plugins.emulator import identity_path, put_identity

ARM = {"Authorization": "Bearer local-test-token"}


class Up:
    """One ``idmove up`` process on free ports, its output read line by line."""

    def __init__(self, data_dir: Path, *extra: str) -> None:
        self.ports = {name: free_port() for name in ("emulator", "host", "queue", "table")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "idmove", "up", "--data-dir", str(data_dir), *extra,
             *[f"--{name}-port={port}" for name, port in self.ports.items()]],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=REPO_ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "250", "IDMOVE_HOST_KEY": ""},
            start_new_session=True,
        )  # fmt: skip
        self.lines: list[str] = []
        self._partial = ""
        self.wait_for_line(lambda line: line.startswith("  try"))

    @property
    def stdout(self) -> IO[bytes]:
        assert self.proc.stdout is not None
        return self.proc.stdout

    def wait_for_line(self, found: Callable[[str], bool], timeout: float = 90) -> str:
        deadline = time.monotonic() + timeout
        while True:
            while "\n" in self._partial:
                line, self._partial = self._partial.split("\n", 1)
                self.lines.append(line + "\n")
                if found(line + "\n"):
                    return line
            left = deadline - time.monotonic()
            assert left > 0 and self.proc.poll() is None, "".join(self.lines) + self._partial
            ready, _, _ = select.select([self.stdout], [], [], left)  # bounded: never a blocking read
            if ready:
                self._partial += os.read(self.stdout.fileno(), 65536).decode()

    def output(self) -> str:
        with contextlib.suppress(OSError, ValueError):
            while select.select([self.stdout], [], [], 0)[0]:
                chunk = os.read(self.stdout.fileno(), 65536).decode()
                if not chunk:
                    break
                self._partial += chunk
        return "".join(self.lines) + self._partial

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.ports['host']}"

    @property
    def emulator(self) -> str:
        return f"http://127.0.0.1:{self.ports['emulator']}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                code = self.proc.wait(timeout=90)  # a bound against hanging, not a timing assertion
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
                raise AssertionError(
                    f"idmove up ignored Ctrl-C for 90 s; it printed: {self.output()}"
                ) from None
            assert code == 0, self.output()
        self.stdout.close()


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "azurite"


def _host_pid(api: str) -> int:
    return int(httpx.get(f"{api}/admin/host/status", timeout=10).json()["processId"])


def test_up_keeps_moves_across_a_host_crash_and_a_restart_and_fresh_starts_empty(data_dir: Path) -> None:
    up = Up(data_dir)
    try:
        with httpx.Client(base_url=up.emulator, headers=ARM, timeout=30) as arm:
            put_identity(arm, "rg-up", "id-up")
        started = httpx.post(
            f"{up.api}/api/moves",
            json={"sourceIdentityId": identity_path("rg-up", "id-up"), "targetRegion": "northeurope", "dryRun": True},
            timeout=30,
        )  # fmt: skip
        assert started.status_code == 202, started.text
        move_id = started.json()["id"]

        first = _host_pid(up.api)
        os.kill(first, signal.SIGKILL)  # the host crashes; the stack stays up and starts it again
        up.wait_for_line(lambda line: "host is back" in line)
        assert _host_pid(up.api) != first
        assert any("restarting it" in line for line in up.lines), "".join(up.lines)
        deadline = time.monotonic() + 60
        while (move := httpx.get(f"{up.api}/api/moves/{move_id}", timeout=30).json())["status"] != "Planned":
            assert time.monotonic() < deadline, move  # the restarted host finishes the move
            time.sleep(0.25)
    finally:
        up.stop()
    assert any(data_dir.iterdir()), "Azurite kept nothing in its data folder"

    again = Up(data_dir)  # the same folder: the move is still there
    try:
        assert httpx.get(f"{again.api}/api/moves/{move_id}", timeout=30).json()["status"] == "Planned"
    finally:
        again.stop()

    fresh = Up(data_dir, "--fresh")
    try:
        assert httpx.get(f"{fresh.api}/api/moves/{move_id}", timeout=30).status_code == 404
        assert httpx.get(f"{fresh.api}/api/moves", timeout=30).json()["value"] == []
    finally:
        fresh.stop()


def test_azurite_runs_with_telemetry_off_in_memory_or_in_a_folder(tmp_path: Path) -> None:
    in_memory = Azurite.command(1, 2, 3)
    kept = Azurite.command(1, 2, 3, tmp_path)
    for command in (in_memory, kept):
        assert "--disableTelemetry" in command
    assert "--inMemoryPersistence" in in_memory and "--location" not in in_memory
    assert kept[kept.index("--location") + 1] == str(tmp_path) and "--inMemoryPersistence" not in kept
    help_text = subprocess.run([in_memory[0], "--help"], capture_output=True, text=True, timeout=60).stdout
    for flag in ("--disableTelemetry", "--location", "--inMemoryPersistence", "--skipApiVersionCheck"):
        assert flag in help_text, f"the installed Azurite has no {flag}"


def test_up_keeps_its_data_in_the_ignored_idmove_folder() -> None:
    assert DATA_DIR == REPO_ROOT / ".idmove" / "azurite"
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", str(DATA_DIR / "__queuestorage__")], cwd=REPO_ROOT, check=False
    )
    assert ignored.returncode == 0, ".idmove/ is not git-ignored"


def _planned_commands(target: str) -> str:
    """What ``make`` would run for ``target`` from scratch (``-n -B``: print, run nothing)."""
    done = subprocess.run(
        ["make", "-n", "-B", target], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_make_demo_installs_only_what_the_demo_needs_and_make_test_still_gets_checkov() -> None:
    demo = _planned_commands("demo")
    assert "npm ci" in demo and "pip install" in demo and "idmove demo" in demo
    assert "checkov" not in demo and ".venv-tools" not in demo
    test = _planned_commands("test")
    assert "checkov" in test and "pytest" in test
