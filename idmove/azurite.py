"""Start and stop the repository's own Azurite (tables + queues) on loopback.

Azurite is installed from the npm registry into ``node_modules`` by ``make install``. It runs
in memory (tests, the demo) or with its data in a folder (``data_dir``: ``idmove up`` keeps it in
the repository's git-ignored ``.idmove/azurite``), always with ``--disableTelemetry`` (Azurite
collects telemetry unless told not to) and ``--skipApiVersionCheck`` because the current
azure-storage-queue sends a newer API version than Azurite 3.35 accepts.

Ports nobody fixed are port 0: the child binds whatever the kernel gives it and says which in its
output (``listening_port``). A port picked free by the parent (``free_port``) is free when picked,
not when the child binds it: parallel test workers start dozens of servers and open thousands of
client connections, and one of them took a picked port in between (a CI failure, 2026-12-02).

Example::

    with Azurite.start() as azurite:
        print(azurite.connection_string)
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

REPO_ROOT = Path(__file__).resolve().parent.parent
ACCOUNT = "devstoreaccount1"
# Azurite's well-known development key (public, documented by Microsoft; not a secret).
DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def listening_port(
    output: Path, pattern: re.Pattern[str], proc: subprocess.Popen[bytes], timeout: float = 30.0
) -> int:
    """The port a child started on port 0 says it listens on: ``pattern``'s first group, in the file
    its output goes to. RuntimeError if it exits first, TimeoutError if it never says."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(FileNotFoundError):
            match = pattern.search(output.read_text(errors="replace"))
            if match:
                return int(match.group(1))
        if proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening; see {output}")
        time.sleep(0.05)
    raise TimeoutError(f"no listening port in {output} after {timeout}s")


def connection_string(queue_port: int, table_port: int) -> str:
    return (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={DEV_KEY};"
        f"QueueEndpoint=http://127.0.0.1:{queue_port}/{ACCOUNT};"
        f"TableEndpoint=http://127.0.0.1:{table_port}/{ACCOUNT};"
    )


def azurite_binary() -> Path:
    path = REPO_ROOT / "node_modules" / ".bin" / "azurite"
    if not path.exists():
        raise FileNotFoundError(
            f"Azurite is not installed at {path}: run `make install` (needs Node.js 20 and npm)"
        )
    return path


# what Azurite prints once a service listens (with --silent too), e.g.
# "Azurite Queue service is successfully listening at http://127.0.0.1:37851"
AZURITE_LISTENING = {
    service: re.compile(
        rf"Azurite {service.title()} service is successfully listening at http://[^\s]+:(\d+)"
    )
    for service in ("queue", "table")
}


@dataclass
class Azurite:
    queue_port: int
    table_port: int
    process: subprocess.Popen[bytes] | None = None
    workdir: str = field(default="")

    @property
    def connection_string(self) -> str:
        return connection_string(self.queue_port, self.table_port)

    @staticmethod
    def command(queue_port: int, table_port: int, blob_port: int, data_dir: Path | None = None) -> list[str]:
        """Azurite's command line: in memory, or persisting to ``data_dir``; telemetry off."""
        storage = ["--location", str(data_dir)] if data_dir is not None else ["--inMemoryPersistence"]
        return [
            str(azurite_binary()),
            "--silent",
            *storage,
            "--disableTelemetry",
            "--skipApiVersionCheck",
            "--disableProductStyleUrl",
            "--blobHost", "127.0.0.1", "--blobPort", str(blob_port),
            "--queueHost", "127.0.0.1", "--queuePort", str(queue_port),
            "--tableHost", "127.0.0.1", "--tablePort", str(table_port),
        ]  # fmt: skip

    @classmethod
    def start(
        cls, queue_port: int | None = None, table_port: int | None = None, data_dir: Path | None = None
    ) -> Azurite:
        """In memory unless ``data_dir`` is given (created if missing; its data survives restarts).
        Ports not given are bound by Azurite itself (port 0) and read from its output."""
        workdir = tempfile.mkdtemp(prefix="idmove-azurite-")  # its output / cwd only
        if data_dir is not None:
            data_dir.mkdir(parents=True, exist_ok=True)
        output = Path(workdir) / "azurite.out"
        cmd = cls.command(queue_port or 0, table_port or 0, 0, data_dir)
        with output.open("wb") as handle:
            proc = subprocess.Popen(
                cmd,
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=os.environ.copy(),
                cwd=workdir,
            )
        azurite = cls(queue_port=queue_port or 0, table_port=table_port or 0, process=proc, workdir=workdir)
        try:
            azurite.queue_port = listening_port(output, AZURITE_LISTENING["queue"], proc)
            azurite.table_port = listening_port(output, AZURITE_LISTENING["table"], proc)  # it listens
        except Exception:
            azurite.stop()
            raise
        return azurite

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Azurite:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
