"""function_app.py indexes cleanly with the official Python worker's indexer, as the real host does.

The worker (``azure-functions-runtime``) needs Python 3.13: where one exists, a throwaway venv is
built once under ``.venv/py313-indexer`` (about 15 s; cached, rebuilt when requirements.txt
changes) with ``azure-functions-runtime`` + requirements.txt only, and the worker's own
``loader.index_function_app`` + ``process_indexed_function`` run over the app. Skipped otherwise.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
VENV = ROOT / ".venv" / "py313-indexer"
CANDIDATES = ["/root/.pyenv/versions/3.13.0/bin/python3", "python3.13"]

# Runs inside the 3.13 venv: the worker's indexer with a stand-in for its protobuf module (the
# protos only carry the results; validation of bindings and parameters is the worker's own code).
INDEXER = r"""
import json, sys, types
root = sys.argv[1]
sys.path.insert(0, root)
from azure_functions_runtime import loader
from azure_functions_runtime.bindings.meta import load_binding_registry
from azure_functions_runtime.functions import Registry

class Message:
    def __init__(self, **fields):
        self.__dict__.update(fields)

class BindingInfo(Message):
    undefined, in_, out, inout = 0, 0, 1, 2

protos = types.SimpleNamespace(BindingInfo=BindingInfo, RpcFunctionMetadata=Message, RpcRetryOptions=Message)
load_binding_registry()
indexed = loader.index_function_app(root + "/function_app.py")
metadata, _ = loader.process_indexed_function(protos, Registry(), indexed, root)
import shared.service, shared.settings  # the lazily imported engine also loads with requirements.txt only
print(json.dumps([{"name": m.name, "bindings": [json.loads(b) for b in m.raw_bindings]} for m in metadata]))
"""


def _python313() -> str | None:
    for candidate in CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    return None


def _indexer_python() -> Path:
    python = _python313()
    if python is None:
        pytest.skip(
            "no Python 3.13 interpreter: the official worker indexer (azure-functions-runtime) needs 3.13"
        )
    requirements = ROOT / "requirements.txt"
    stamp = VENV / ".requirements-sha256"
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()
    if not stamp.exists() or stamp.read_text() != digest:
        shutil.rmtree(VENV, ignore_errors=True)
        subprocess.run([python, "-m", "venv", str(VENV)], check=True, timeout=120)
        pip = [str(VENV / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        result = subprocess.run(
            [*pip, "azure-functions-runtime", "-r", str(requirements)],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if result.returncode != 0:
            pytest.skip(f"could not install azure-functions-runtime for Python 3.13: {result.stderr[-500:]}")
        stamp.write_text(digest)
    return VENV / "bin" / "python"


@pytest.fixture(scope="module")
def indexed() -> dict[str, list[dict[str, Any]]]:
    python = _indexer_python()
    result = subprocess.run(
        [str(python), "-c", INDEXER, str(ROOT)], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr[-3000:]
    functions = json.loads(result.stdout.strip().splitlines()[-1])
    return {f["name"]: f["bindings"] for f in functions}


def _trigger(bindings: list[dict[str, Any]]) -> dict[str, Any]:
    (trigger,) = [b for b in bindings if b["type"].endswith("Trigger")]
    return trigger


def test_the_worker_indexes_every_function(indexed: dict[str, list[dict[str, Any]]]) -> None:
    assert set(indexed) == {
        "http_api",
        "move_worker",
        "move_poison",
        "outbox_publisher",
        "stalled_moves",
        "region_decommissioning",
    }


def test_http_api_is_one_function_key_route_for_the_fastapi_app(
    indexed: dict[str, list[dict[str, Any]]],
) -> None:
    trigger = _trigger(indexed["http_api"])
    assert trigger["type"] == "httpTrigger"
    assert trigger["authLevel"] == "FUNCTION"
    assert trigger["route"] == "/{*route}"
    assert {"GET", "POST"} <= set(trigger["methods"])
    assert {"type": "http", "direction": "OUT", "name": "$return"} in indexed["http_api"]


def test_queue_triggers_read_the_work_queue_and_its_poison_queue(
    indexed: dict[str, list[dict[str, Any]]],
) -> None:
    work, poison = _trigger(indexed["move_worker"]), _trigger(indexed["move_poison"])
    assert (work["type"], work["queueName"], work["connection"]) == (
        "queueTrigger",
        "idmove-work",
        "AzureWebJobsStorage",
    )
    assert (poison["type"], poison["queueName"]) == ("queueTrigger", "idmove-work-poison")


def test_timer_and_event_grid_triggers(indexed: dict[str, list[dict[str, Any]]]) -> None:
    timer = _trigger(indexed["outbox_publisher"])
    assert timer["type"] == "timerTrigger"
    assert timer["schedule"] == "0 */1 * * * *"
    assert _trigger(indexed["stalled_moves"])["schedule"] == "0 */5 * * * *"
    assert _trigger(indexed["region_decommissioning"])["type"] == "eventGridTrigger"


def test_host_json_matches_what_the_triggers_need() -> None:
    host = json.loads((ROOT / "host.json").read_text())
    assert host["version"] == "2.0"
    assert host["extensionBundle"] == {
        "id": "Microsoft.Azure.Functions.ExtensionBundle",
        "version": "[4.*, 5.0.0)",
    }
    assert host["extensions"]["http"]["routePrefix"] == "api"
    assert host["extensions"]["queues"]["maxDequeueCount"] == 5
    assert host["extensions"]["queues"]["messageEncoding"] == "base64"


def test_requirements_hold_no_worker_package() -> None:
    names = [
        line.split(">")[0].split("=")[0].split("<")[0].strip().lower()
        for line in (ROOT / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert "azure-functions" in names
    assert not {"azure-functions-worker", "azure-functions-runtime"} & set(names)
    assert sys.version_info >= (3, 11)
