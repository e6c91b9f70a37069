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

# Runs inside the 3.13 venv: the worker's own indexer (``loader.index_function_app`` and
# ``process_indexed_function``, which validates bindings and parameters through its ``Registry``) with
# real protobuf messages. The generated ``FunctionRpc_pb2`` ships with the Functions host's proxy
# worker, not on PyPI (azure-functions-worker there is a 2020 release that does not build on 3.13),
# so the three messages the indexer fills are declared here with the field names, types and enum
# values of FunctionRpc.proto and built by the protobuf runtime the worker pins (5.29): an unknown
# field, a wrong type or an unknown enum value fails just as it would against the host's protos.
INDEXER = r"""
import json, sys
root = sys.argv[1]
sys.path.insert(0, root)
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from google.protobuf import duration_pb2  # registers google/protobuf/duration.proto
from azure_functions_runtime import loader
from azure_functions_runtime.bindings.meta import load_binding_registry
from azure_functions_runtime.functions import Registry

F = descriptor_pb2.FieldDescriptorProto
PKG = "AzureFunctionsRpcMessages"
proto = descriptor_pb2.FileDescriptorProto(
    name="function_rpc_indexing_subset.proto", package=PKG, syntax="proto3",
    dependency=["google/protobuf/duration.proto"])

def add(msg, name, number, kind, label=F.LABEL_OPTIONAL, type_name=""):
    field = msg.field.add(name=name, number=number, type=kind, label=label)
    if type_name:
        field.type_name = type_name

def enum(msg, name, values):
    e = msg.enum_type.add(name=name)
    for number, value in enumerate(values):
        e.value.add(name=value, number=number)

def add_map(msg, name, number, kind, type_name=""):
    entry = msg.nested_type.add(name="".join(p.capitalize() for p in name.split("_")) + "Entry")
    entry.options.map_entry = True
    add(entry, "key", 1, F.TYPE_STRING)
    add(entry, "value", 2, kind, type_name=type_name)
    add(msg, name, number, F.TYPE_MESSAGE, F.LABEL_REPEATED, f".{PKG}.{msg.name}.{entry.name}")

binding = proto.message_type.add(name="BindingInfo")
enum(binding, "Direction", ["in", "out", "inout"])
enum(binding, "DataType", ["undefined", "string", "binary", "stream"])
add(binding, "type", 2, F.TYPE_STRING)
add(binding, "direction", 3, F.TYPE_ENUM, type_name=f".{PKG}.BindingInfo.Direction")
add(binding, "data_type", 4, F.TYPE_ENUM, type_name=f".{PKG}.BindingInfo.DataType")
retry = proto.message_type.add(name="RpcRetryOptions")
enum(retry, "RetryStrategy", ["exponential_backoff", "fixed_delay"])
add(retry, "max_retry_count", 2, F.TYPE_INT32)
for number, name in enumerate(["delay_interval", "minimum_interval", "maximum_interval"], 3):
    add(retry, name, number, F.TYPE_MESSAGE, type_name=".google.protobuf.Duration")
add(retry, "retry_strategy", 6, F.TYPE_ENUM, type_name=f".{PKG}.RpcRetryOptions.RetryStrategy")
meta = proto.message_type.add(name="RpcFunctionMetadata")
for name, number in (("directory", 1), ("script_file", 2), ("entry_point", 3), ("name", 4),
                     ("language", 9), ("function_id", 13)):
    add(meta, name, number, F.TYPE_STRING)
add_map(meta, "bindings", 6, F.TYPE_MESSAGE, f".{PKG}.BindingInfo")
add(meta, "is_proxy", 7, F.TYPE_BOOL)
add(meta, "raw_bindings", 10, F.TYPE_STRING, F.LABEL_REPEATED)
add(meta, "managed_dependency_enabled", 14, F.TYPE_BOOL)
add(meta, "retry_options", 15, F.TYPE_MESSAGE, type_name=f".{PKG}.RpcRetryOptions")
add_map(meta, "properties", 16, F.TYPE_STRING)
pool = descriptor_pool.DescriptorPool()
pool.AddSerializedFile(duration_pb2.DESCRIPTOR.serialized_pb)
pool.Add(proto)
messages = message_factory.GetMessages([proto], pool=pool)

class protos:
    BindingInfo = messages[f"{PKG}.BindingInfo"]
    RpcFunctionMetadata = messages[f"{PKG}.RpcFunctionMetadata"]
    RpcRetryOptions = messages[f"{PKG}.RpcRetryOptions"]

load_binding_registry()
indexed = loader.index_function_app(root + "/function_app.py")
metadata, _ = loader.process_indexed_function(protos, Registry(), indexed, root)
import shared.service, shared.settings  # the lazily imported engine also loads with requirements.txt only
out = []
for m in metadata:
    assert isinstance(m, protos.RpcFunctionMetadata)
    wire = protos.RpcFunctionMetadata.FromString(m.SerializeToString())  # what the host would receive
    record = json_format.MessageToDict(wire, preserving_proto_field_name=True)
    record["raw_bindings"] = [json.loads(b) for b in wire.raw_bindings]
    out.append(record)
print(json.dumps(out))
"""
INSTALL = ["azure-functions-runtime", "protobuf~=5.29.0"]


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
    digest = hashlib.sha256(requirements.read_bytes() + repr(INSTALL).encode()).hexdigest()
    if not stamp.exists() or stamp.read_text() != digest:
        shutil.rmtree(VENV, ignore_errors=True)
        subprocess.run([python, "-m", "venv", str(VENV)], check=True, timeout=120)
        pip = [str(VENV / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        result = subprocess.run(
            [*pip, *INSTALL, "-r", str(requirements)],
            capture_output=True,
            text=True,
            timeout=600,
        )
        if result.returncode != 0:
            pytest.skip(f"could not install azure-functions-runtime for Python 3.13: {result.stderr[-500:]}")
        stamp.write_text(digest)
    return VENV / "bin" / "python"


@pytest.fixture(scope="module")
def metadata() -> dict[str, dict[str, Any]]:
    """``RpcFunctionMetadata`` per function, as the worker hands it to the host (protobuf -> dict)."""
    python = _indexer_python()
    result = subprocess.run(
        [str(python), "-c", INDEXER, str(ROOT)], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr[-3000:]
    functions = json.loads(result.stdout.strip().splitlines()[-1])
    return {f["name"]: f for f in functions}


@pytest.fixture(scope="module")
def indexed(metadata: dict[str, dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    return {name: m["raw_bindings"] for name, m in metadata.items()}


def _trigger(bindings: list[dict[str, Any]]) -> dict[str, Any]:
    (trigger,) = [b for b in bindings if b["type"].endswith("Trigger")]
    return trigger


FUNCTIONS = {
    "http_api": "httpTrigger",
    "move_worker": "queueTrigger",
    "move_poison": "queueTrigger",
    "outbox_publisher": "timerTrigger",
    "stalled_moves": "timerTrigger",
    "commit_deadlines": "timerTrigger",
    "region_decommissioning": "eventGridTrigger",
}


def test_the_worker_indexes_every_function(metadata: dict[str, dict[str, Any]]) -> None:
    assert set(metadata) == set(FUNCTIONS)
    for name, m in metadata.items():
        assert m["entry_point"] == name and m["language"] == "python"
        assert m["script_file"].endswith("function_app.py")
        assert m["properties"] == {"worker_indexed": "True"}
        assert m["function_id"] and "retry_options" not in m  # no retry policy: the engine retries
        # the typed binding protos agree with the raw bindings: one trigger (direction in), names match
        typed = m["bindings"]
        assert set(typed) == {b["name"] for b in m["raw_bindings"]}, name
        triggers = {k: v for k, v in typed.items() if v["type"].endswith("Trigger")}
        assert [v["type"] for v in triggers.values()] == [FUNCTIONS[name]], typed
        assert all(v.get("direction", "in") == "in" for v in triggers.values())  # proto3 omits the default


def test_http_api_is_one_function_key_route_for_the_fastapi_app(
    indexed: dict[str, list[dict[str, Any]]], metadata: dict[str, dict[str, Any]]
) -> None:
    trigger = _trigger(indexed["http_api"])
    assert trigger["type"] == "httpTrigger"
    assert trigger["authLevel"] == "FUNCTION"
    assert trigger["route"] == "/{*route}"
    assert {"GET", "POST"} <= set(trigger["methods"])
    assert {"type": "http", "direction": "OUT", "name": "$return"} in indexed["http_api"]
    assert metadata["http_api"]["bindings"]["$return"]["direction"] == "out"


def test_queue_triggers_bind_to_the_queue_name_setting_and_its_poison_queue(
    indexed: dict[str, list[dict[str, Any]]],
) -> None:
    work, poison = _trigger(indexed["move_worker"]), _trigger(indexed["move_poison"])
    assert (work["type"], work["name"], work["queueName"], work["connection"]) == (
        "queueTrigger", "msg", "%IDMOVE_QUEUE_NAME%", "AzureWebJobsStorage"
    )  # fmt: skip
    assert (poison["type"], poison["name"], poison["queueName"], poison["connection"]) == (
        "queueTrigger", "msg", "%IDMOVE_QUEUE_NAME%-poison", "AzureWebJobsStorage"
    )  # fmt: skip
    assert work["direction"] == poison["direction"] == "IN"


def test_timer_and_event_grid_triggers(indexed: dict[str, list[dict[str, Any]]]) -> None:
    for name, schedule in (
        ("outbox_publisher", "0 */1 * * * *"),
        ("stalled_moves", "0 */5 * * * *"),
        ("commit_deadlines", "30 */1 * * * *"),
    ):
        timer = _trigger(indexed[name])
        assert (timer["type"], timer["name"], timer["schedule"]) == ("timerTrigger", "timer", schedule)
        assert timer["runOnStartup"] is False and timer["useMonitor"] is False
    grid = _trigger(indexed["region_decommissioning"])
    assert (grid["type"], grid["name"], grid["direction"]) == ("eventGridTrigger", "event", "IN")
    assert len(indexed["region_decommissioning"]) == 1  # no output binding: events go out via the outbox


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
