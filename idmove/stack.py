"""The local stack as processes: Azurite + the emulator + the Functions host, all on 127.0.0.1.

Used by ``idmove up`` (default ports, until Ctrl-C) and ``idmove demo`` (free ports, for one run).
Each child's output goes to ``.idmove/logs/<part>.log`` so a failure can be read afterwards.

Example::

    with Stack.start() as stack:
        print(stack.api_url, stack.emulator_url)
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import httpx

from idmove.azurite import REPO_ROOT, Azurite, listening_port

LOG_DIR = REPO_ROOT / ".idmove" / "logs"
DATA_DIR = REPO_ROOT / ".idmove" / "azurite"  # git-ignored: `idmove up` keeps moves across restarts
DEFAULT_PORTS = {"queue": 10001, "table": 10002, "emulator": 7070, "host": 7071}


class StackError(RuntimeError):
    """A part of the stack did not come up; the message says which and where its log is."""


def port_in_use(port: int) -> bool:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def host_env(storage: str, emulator_url: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The Function App settings that point the engine at the local emulator and Azurite."""
    env = dict(os.environ)
    env.update(
        {
            "AzureWebJobsStorage": storage,
            "IDMOVE_ARM_ENDPOINT": emulator_url,
            "IDMOVE_GRAPH_ENDPOINT": f"{emulator_url}/graph/v1.0",
            "IDMOVE_CREDENTIAL": "emulator",
            "IDMOVE_EVENTGRID_ENDPOINT": f"{emulator_url}/eventgrid/api/events",
            "IDMOVE_EVENTGRID_KEY": "local-emulator-key",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra or {})
    return env


PROCESS_HEADER = "x-idmove-process-id"  # the host's /admin/host/status: the pid that answered
# what each part prints once it listens (started with ``--port 0``: the port the kernel gave it), with
# its pid: parts of several stacks may write the same log file (`idmove up` and `idmove demo` both
# log to .idmove/logs)
LISTENING = {
    "emulator": r"emulator listening on http://[^\s]+:(\d+) \(pid {pid}\)",
    "host": r"Identity Mover host on http://[^\s]+:(\d+) \(pid {pid}\)",
}


def answered_by(response: httpx.Response, proc: subprocess.Popen[bytes]) -> bool:
    """The answer came from ``proc``: the host says its pid in ``PROCESS_HEADER``, the emulator's
    health in ``processId``. Parts start on port 0 and say the port they bound (``spawn_listening``);
    a port picked free beforehand was once taken by another test's emulator, which answered the
    host's readiness check (any answer below 500 counted) with 401, and 23 tests then talked to the
    wrong server. Ports a user fixes (``idmove up``) can still be anyone's: hence this check too."""
    if response.headers.get(PROCESS_HEADER) == str(proc.pid):
        return True
    with contextlib.suppress(ValueError):
        body = response.json()
        return isinstance(body, dict) and body.get("processId") == proc.pid
    return False


def wait_http(url: str, proc: subprocess.Popen[bytes], name: str, log: Path, timeout: float = 30.0) -> None:
    """Until ``proc`` answers ``url`` (``answered_by``); StackError if it exits or never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise StackError(f"{name} exited with code {proc.returncode} while starting; see {log}")
        with contextlib.suppress(httpx.HTTPError):
            response = httpx.get(url, timeout=1.0)
            if response.status_code < 500 and answered_by(response, proc):
                return
        time.sleep(0.1)
    raise StackError(f"{name} did not answer {url} within {timeout:.0f}s; see {log}")


def read_port(part: str, log: Path, proc: subprocess.Popen[bytes], name: str = "") -> int:
    """The port ``part`` (a key of ``LISTENING``), started on port 0, says in ``log`` it listens on."""
    try:
        return listening_port(log, re.compile(LISTENING[part].format(pid=proc.pid)), proc)
    except (RuntimeError, TimeoutError) as exc:
        raise StackError(f"{name or part} did not start: {exc}") from exc


def spawn_listening(
    part: str,
    cmd: list[str],
    path: str,
    log: Path,
    env: dict[str, str] | None = None,
    name: str = "",
    port: int = 0,
) -> tuple[subprocess.Popen[bytes], int]:
    """Start ``cmd --port PORT`` (``part``: "emulator" or "host"; ``name`` for messages) with its
    output in ``log``; returns the process and its port (0: the one it bound, read from ``log``)
    once the process itself answers ``path``."""
    with log.open("wb") as handle:
        proc = subprocess.Popen(
            [*cmd, "--port", str(port)], stdout=handle, stderr=subprocess.STDOUT, cwd=REPO_ROOT, env=env
        )
    try:
        if port == 0:
            port = read_port(part, log, proc, name)
        wait_http(f"http://127.0.0.1:{port}{path}", proc, name or part, log)
    except BaseException:
        stop_process(proc)
        raise
    return proc, port


STOP_SECONDS = 10.0  # how long the parts of a stack get to shut down together before they are killed


def stop_process(proc: subprocess.Popen[bytes] | None, timeout: float = 10.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@dataclass
class Stack:
    azurite: Azurite
    emulator_port: int
    host_port: int
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    logs: dict[str, Path] = field(default_factory=dict)
    _files: list[IO[Any]] = field(default_factory=list)
    _commands: dict[str, tuple[list[str], dict[str, str] | None]] = field(default_factory=dict)

    @property
    def emulator_url(self) -> str:
        return f"http://127.0.0.1:{self.emulator_port}"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.host_port}"

    @property
    def storage(self) -> str:
        return self.azurite.connection_string

    @classmethod
    def start(
        cls,
        *,
        default_ports: bool = False,
        ports: dict[str, int] | None = None,
        host_settings: dict[str, str] | None = None,
        log_dir: Path = LOG_DIR,
        data_dir: Path | None = None,
    ) -> Stack:
        """``ports`` (keys as ``DEFAULT_PORTS``) or ``default_ports`` must be free; otherwise free ports.
        ``data_dir``: Azurite keeps its data there (else in memory)."""
        fixed = {**DEFAULT_PORTS, **(ports or {})} if (default_ports or ports) else None
        ports = fixed or dict.fromkeys(DEFAULT_PORTS, 0)  # 0: the part binds what the kernel gives it
        busy = [f"{name} {port}" for name, port in ports.items() if fixed and port_in_use(port)]
        if busy:
            raise StackError(
                f"port(s) already in use: {', '.join(busy)} — is `idmove up` already running? Stop it, or pick others (idmove up --help)."
            )
        log_dir.mkdir(parents=True, exist_ok=True)
        azurite = Azurite.start(
            queue_port=ports["queue"] or None, table_port=ports["table"] or None, data_dir=data_dir
        )
        stack = cls(azurite, ports["emulator"], ports["host"])
        try:
            stack._start_part(
                "emulator", "emulator_port", [sys.executable, "-m", "emulator"], "/_emulator/health", log_dir
            )
            env = host_env(stack.storage, stack.emulator_url, host_settings)
            host = [sys.executable, "-m", "idmove", "host"]
            stack._start_part("host", "host_port", host, "/admin/host/status", log_dir, env)
        except BaseException:
            stack.stop()
            raise
        return stack

    def _start_part(
        self,
        name: str,
        port_attr: str,
        cmd: list[str],
        path: str,
        log_dir: Path,
        env: dict[str, str] | None = None,
    ) -> None:
        """Start ``name`` on the port in ``port_attr`` (0: the one it binds, kept for a restart)."""
        log = log_dir / f"{name}.log"
        self.logs[name] = log
        proc, port = spawn_listening(name, cmd, path, log, env, port=getattr(self, port_attr))
        self.processes[name] = proc
        setattr(self, port_attr, port)
        self._commands[name] = ([*cmd, "--port", str(port)], env)

    def _spawn(
        self, name: str, cmd: list[str], log_dir: Path, env: dict[str, str] | None = None, mode: str = "wb"
    ) -> None:
        log = log_dir / f"{name}.log"
        handle = log.open(mode)
        self._files.append(handle)
        self.logs[name] = log
        self._commands[name] = (cmd, env)
        self.processes[name] = subprocess.Popen(
            cmd, stdout=handle, stderr=subprocess.STDOUT, cwd=REPO_ROOT, env=env or dict(os.environ)
        )

    def restart_host(self) -> None:
        """Start the host again after it died (its log goes on in the same file); state is in Azurite."""
        cmd, env = self._commands["host"]
        stop_process(self.processes.get("host"))
        self._spawn("host", cmd, self.logs["host"].parent, env, mode="ab")
        wait_http(f"{self.api_url}/admin/host/status", self.processes["host"], "host", self.logs["host"])

    def failed_part(self) -> str | None:
        for name, proc in self.processes.items():
            if proc.poll() is not None:
                return f"{name} exited with code {proc.returncode}; see {self.logs[name]}"
        return None

    def stop(self) -> None:
        """Every part at once (Ctrl-C of a whole stack should not take the sum of its parts' shutdowns,
        least of all on a busy machine): SIGINT to host and emulator, Azurite stopped meanwhile, then
        each waited for within one shared bound and killed past it."""
        running = [
            proc
            for name in ("host", "emulator")
            if (proc := self.processes.get(name)) and proc.poll() is None
        ]
        for proc in running:
            proc.send_signal(signal.SIGINT)
        self.azurite.stop()
        deadline = time.monotonic() + STOP_SECONDS
        for proc in running:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for handle in self._files:
            handle.close()
        self._files.clear()

    def __enter__(self) -> Stack:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
