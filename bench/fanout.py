"""Benchmark: region fan-out against ARM's write budget (``python -m bench``; ``bench/README.md``).

N identities in one region of one subscription, each with a small estate (``bench/seed.py``,
seeded with throttling off and not measured); then ONE ``IdentityMover.RegionDecommissioning``
event with ``autoCommit: true`` through ``MoveService.start_region_decommission``, worked by W
instance processes (``bench/instance.py``) on the same queue against Azurite, with the emulator's
ARM throttling on (``timeScale`` 1 = ARM's real budget). Measured from the event until every move
is at rest. ``--compare`` runs the same scenario with client-side pacing on (8/s) and effectively
off, plus a reference with throttling off (what the engine does when ARM never says no).

Example::

    python -m bench --identities 40 --workers 4 --compare
    python -m bench --quick --results-dir /tmp/bench
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import queue
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench import metrics
from bench.instance import BenchClients, InstanceSpec, Observed, poller_options, serve
from bench.seed import REGION, SUB, TARGET_REGION, SeedShape, seed_fanout
from bench.sequential import run_sequential
from idmove.azurite import Azurite, free_port, wait_for_port
from shared.arm_pacing import WriteLimiter
from shared.azure_clients import AzureClients, StaticTokenCredential
from shared.service import MoveService
from shared.settings import Settings
from shared.statuses import Status
from shared.store import StateStore

RESULTS_DIR = Path(__file__).resolve().parent / "results"
UNPACED = 10_000.0  # writes per second: pacing effectively off
AT_REST = {s for s in Status if s not in (Status.PENDING, Status.RUNNING)}


@dataclass(frozen=True)
class RunConfig:
    name: str
    writes_per_second: float = 8.0
    writes_burst: float = 20.0
    drain_bucket: bool = False
    throttling: bool = True
    shared_budget: bool = False  # IDMOVE_ARM_SHARED_BUDGET (shared/write_budget.py)


@dataclass(frozen=True)
class Stack:
    emulator: str
    storage: str


def plan_runs(args: argparse.Namespace) -> list[RunConfig]:
    buckets = {"off": [False], "on": [True], "both": [False, True]}[args.drain_bucket]
    pacing = [("paced", 8.0, 20.0)]
    if args.compare:
        pacing.append(("unpaced", UNPACED, UNPACED))
    runs = [
        RunConfig(f"{name}{'+drained' if drain else ''}", rate, burst, drain)
        for drain in buckets
        for name, rate, burst in pacing
    ]
    if args.compare:
        runs.append(RunConfig("unthrottled", throttling=False))
    if args.shared_budget:
        runs += [
            RunConfig(f"shared{'+drained' if d else ''}", shared_budget=True, drain_bucket=d) for d in buckets
        ]
    return runs


# ---- the local stack -------------------------------------------------------------------------
@contextmanager
def local_stack() -> Iterator[Stack]:
    port = free_port()
    emulator = subprocess.Popen(
        [sys.executable, "-m", "emulator", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, proc=emulator)
        with Azurite.start() as azurite:
            yield Stack(f"http://127.0.0.1:{port}", azurite.connection_string)
    finally:
        emulator.terminate()
        try:
            emulator.wait(timeout=10)
        except subprocess.TimeoutExpired:
            emulator.kill()
            emulator.wait()


def configure(http: httpx.Client, stack: Stack, update: dict[str, Any]) -> None:
    http.put(f"{stack.emulator}/_emulator/config", json=update).raise_for_status()


def drain_buckets(http: httpx.Client, stack: Stack) -> dict[str, int]:
    """Spend the subscription's writes and deletes buckets until ARM answers 429 (steady state)."""
    auth = {"Authorization": "Bearer bench"}
    sub = f"{stack.emulator}/subscriptions/{SUB}"
    calls = {
        "writes": (
            "PUT",
            f"{sub}/resourcegroups/rg-bench-drain?api-version=2021-04-01",
            {"location": REGION},
        ),
        "deletes": (
            "DELETE",
            f"{sub}/providers/Microsoft.Authorization/roleAssignments/{uuid.uuid4()}?api-version=2022-04-01",
            None,
        ),
    }
    spent: dict[str, int] = {}
    for kind, (method, url, body) in calls.items():
        spent[kind] = 0
        for _ in range(2000):
            response = http.request(method, url, json=body, headers=auth)
            if response.status_code == 429:
                break
            response.raise_for_status()
            spent[kind] += 1
    return spent


# ---- one run ---------------------------------------------------------------------------------
def run_once(stack: Stack, cfg: RunConfig, args: argparse.Namespace, log_dir: Path) -> dict[str, Any]:
    http = httpx.Client(timeout=60)
    http.post(f"{stack.emulator}/_emulator/reset").raise_for_status()
    configure(http, stack, {"throttling": {"enabled": False}})
    tag = uuid.uuid4().hex[:8]
    settings = Settings(
        storage_connection_string=stack.storage,
        arm_endpoint=stack.emulator,
        graph_endpoint=f"{stack.emulator}/graph/v1.0",
        credential="emulator",
        queue_name=f"bench-{tag}",
        table_prefix=f"b{tag}",
        arm_writes_per_second=cfg.writes_per_second,
        arm_writes_burst=cfg.writes_burst,
        arm_shared_budget=cfg.shared_budget,
    )
    began = time.monotonic()
    seed_clients = AzureClients(  # the estate owner (a non-JWT token), not the mover's principal
        settings,
        credential=StaticTokenCredential("estate-owner"),
        write_limiter=WriteLimiter(UNPACED, UNPACED),
    )
    identities = seed_fanout(seed_clients, args.identities)
    seed_seconds = time.monotonic() - began
    say(
        f"[{cfg.name}] seeded {len(identities)} identities in {seed_seconds:.1f}s; starting {args.workers} instances"
    )

    ctx = multiprocessing.get_context("spawn")
    ready, results, stop = ctx.Queue(), ctx.Queue(), ctx.Event()
    procs = []
    for index in range(args.workers):
        spec = InstanceSpec(
            settings,
            index,
            threads=args.threads,
            poller=poller_options(),
            log_file=str(log_dir / f"{cfg.name}-instance-{index}.log"),
        )
        proc = ctx.Process(target=serve, args=(spec, ready, stop, results), name=f"bench-instance-{index}")
        proc.start()
        procs.append(proc)
    instances: list[dict[str, Any]] = []
    try:
        for _ in procs:
            ready.get(timeout=120)
        if cfg.throttling:
            configure(http, stack, {"throttling": {"enabled": True, "timeScale": args.time_scale}})
        drained = drain_buckets(http, stack) if cfg.drain_bucket else {}
        configure(http, stack, {"latencyMs": latency_config(args)})  # after draining: that is not measured
        log_start = len(http.get(f"{stack.emulator}/_emulator/requests").json())

        coordinator_observed = Observed()  # the event handler: since issue 11 it only records and enqueues
        coordinator = MoveService(
            settings,
            clients=BenchClients(
                settings,
                coordinator_observed,
                WriteLimiter(settings.arm_writes_per_second, settings.arm_writes_burst),
            ),
        )
        t0 = time.time()
        answer = coordinator.start_region_decommission(
            f"bench-{tag}",
            {
                "sourceRegion": REGION,
                "targetRegion": TARGET_REGION,
                "subscriptionIds": [SUB],
                "autoCommit": True,
                # the seeded identities' GitHub credentials are actionsRequired steps; the bench
                # measures complete moves, so it acknowledges them (else each waits in AwaitingCommit)
                "acknowledgeActionsRequired": True,
            },
        )
        started_seconds = time.time() - t0
        handler_storage = coordinator.stats.total
        say(f"[{cfg.name}] event answered ({answer['status']}) in {started_seconds:.2f}s")
        moves, timed_out = watch(settings, len(identities), args.timeout, cfg.name)
        summary = coordinator.decommission(f"bench-{tag}") or {"started": [], "skipped": []}
    finally:
        stop.set()
        for _ in procs:
            try:
                instances.append(results.get(timeout=60))
            except queue.Empty:
                break
        for proc in procs:
            proc.join(timeout=15)
            if proc.is_alive():
                proc.terminate()
                proc.join()
    log = http.get(f"{stack.emulator}/_emulator/requests").json()[log_start:]
    http.close()
    return summarise(
        cfg,
        args,
        t0=t0,
        moves=moves,
        timed_out=timed_out,
        log=log,
        instances=instances,
        coordinator=coordinator,
        coordinator_observed=coordinator_observed,
        summary=summary,
        extra={
            "seedSeconds": round(seed_seconds, 2),
            "eventHandlerSeconds": round(started_seconds, 2),
            "eventHandlerStorageTransactions": handler_storage,
            "drained": drained,
        },
    )


def watch(settings: Settings, expected: int, timeout: float, name: str) -> tuple[list[dict[str, Any]], bool]:
    """Poll the move records (own storage client, not counted as the engine's) until all are at rest."""
    store = StateStore(settings.storage, settings.table_prefix)
    deadline = time.monotonic() + timeout
    last_report = 0.0
    while True:
        records, token = store.list_moves(None, None, 1000, None)
        while token:
            more, token = store.list_moves(None, None, 1000, token)
            records += more
        rest = [r for r in records if r.status in AT_REST]
        if len(rest) >= expected or time.monotonic() > deadline:
            moves = [
                {
                    "id": r.id,
                    "status": r.status.value,
                    "createdAt": r.created_at,
                    "updatedAt": r.updated_at,
                    "phases": r.phases,
                    "error": r.error,
                }
                for r in records
            ]
            return moves, len(rest) < expected
        if time.monotonic() - last_report > 15:
            last_report = time.monotonic()
            say(f"[{name}] {len(rest)}/{expected} moves at rest")
        time.sleep(0.5)


def summarise(
    cfg: RunConfig,
    args: argparse.Namespace,
    *,
    t0: float,
    moves: list[dict[str, Any]],
    timed_out: bool,
    log: list[dict[str, Any]],
    instances: list[dict[str, Any]],
    coordinator: MoveService,
    coordinator_observed: Observed,
    summary: dict[str, Any],
    extra: dict[str, Any],
) -> dict[str, Any]:
    finished = [
        metrics.parse_time(m["updatedAt"]) for m in moves if m["status"] in {s.value for s in AT_REST}
    ]
    wall = (max(finished) - t0) if finished else 0.0
    completed = [m for m in moves if m["status"] == Status.COMPLETED.value]
    latencies = [metrics.parse_time(m["updatedAt"]) - metrics.parse_time(m["createdAt"]) for m in completed]
    traffic = metrics.classify(log)
    arm = traffic["arm"]
    accepted = {kind: int(arm[kind].get("accepted", 0)) for kind in metrics.ARM_BUDGET}
    throttled = {kind: int(arm[kind].get("throttled", 0)) for kind in metrics.ARM_BUDGET}
    scale = args.time_scale if cfg.throttling else 1.0
    buckets = {
        kind: (0.0 if cfg.drain_bucket and kind != "reads" else metrics.ARM_BUDGET[kind][0])
        for kind in metrics.ARM_BUDGET
    }
    arg_queries = int(traffic["resourceGraph"].get("accepted", 0))
    floors = metrics.floor_seconds(accepted, buckets, arg_queries, scale)
    floor = max(floors.values())
    rates = {kind: round(accepted[kind] / wall, 2) if wall else 0.0 for kind in metrics.ARM_BUDGET}
    observed = metrics.merge_counts([i["observed"] for i in instances] + [dict(coordinator_observed.counts)])
    engine_storage = metrics.merge_counts(
        [i["storage"] for i in instances] + [dict(coordinator.stats.counts)]
    )
    engine_retries = {
        k.removeprefix("engine.retry."): v for k, v in observed.items() if k.startswith("engine.retry.")
    }
    errors: dict[str, int] = {}
    for m in moves:
        if m.get("error"):
            code = str(m["error"].get("code"))
            errors[code] = errors.get(code, 0) + 1
    completed_n = len(completed)
    per_move = {
        kind: round(n / completed_n, 2) if completed_n else 0.0
        for kind, n in {
            "reads": accepted["reads"],
            "writes": accepted["writes"],
            "deletes": accepted["deletes"],
            "resourceGraphQueries": arg_queries,
            "graphCalls": int(traffic["graph"].get("accepted", 0)),
            "storageTransactions": sum(engine_storage.values()),
        }.items()
    }
    write_floor = max(floors["writes"], floors["deletes"])
    return {
        "name": cfg.name,
        "config": asdict(cfg),
        # the contract's figures (CONTRACT.md "Benchmark results"), per run; the headline run's at the top
        "ratio_to_lower_bound": round(wall / write_floor, 2) if write_floor else None,
        "failed_moves": args.identities - completed_n,  # not Completed, or never started
        "storage_transactions_per_move": per_move["storageTransactions"],
        "write_429s": throttled["writes"] + throttled["deletes"],
        "perMove": per_move,
        "writeFloorSeconds": write_floor,
        "moves": {
            "started": len(summary["started"]),
            "skipped": len(summary["skipped"]),
            "completed": len(completed),
            "byStatus": _count(m["status"] for m in moves),
            "errors": errors,
            "timedOut": timed_out,
        },
        "wallSeconds": round(wall, 2),
        "latencySeconds": metrics.latency(latencies),
        "phaseSeconds": metrics.phase_durations(completed),
        "arm": {
            "accepted": accepted,
            "throttled": throttled,
            "byMethod": {
                kind: {k: v for k, v in arm[kind].items() if k not in ("accepted", "throttled")}
                for kind in metrics.ARM_BUDGET
            },
            "writesInclDeletes": accepted["writes"] + accepted["deletes"],
            "perSecond": rates,
            "utilisationPercent": {
                kind: round(100 * rates[kind] / (metrics.ARM_BUDGET[kind][1] * scale), 1)
                for kind in metrics.ARM_BUDGET
            },
            "writeProfile": metrics.rate_profile(log, t0, "writes"),
            "perMove": {
                kind: round(accepted[kind] / len(completed), 2) if completed else 0.0
                for kind in metrics.ARM_BUDGET
            },
        },
        "throttling": {
            "enabled": cfg.throttling,
            "timeScale": scale,
            "bucketsAtStart": buckets,
            "serverSide429": {
                **throttled,
                "resourceGraph": int(traffic["resourceGraph"].get("throttled", 0)),
            },
            "clientRetriesByStatus": {
                k.removeprefix("http."): v for k, v in observed.items() if k.startswith("http.")
            },
            "retryAfterHonouredSeconds": round(
                sum(i["retryAfterSeconds"] for i in instances) + coordinator_observed.retry_after_seconds, 2
            ),
            "pacingWaitSeconds": round(sum(i["pacing"]["waitedSeconds"] for i in instances), 2),
        },
        "topRequests": metrics.top_requests(log),
        "graph": traffic["graph"],
        "resourceGraph": traffic["resourceGraph"],
        "statuses": traffic["statuses"],
        "storage": {
            "engineTransactions": sum(engine_storage.values()),
            "perMove": round(sum(engine_storage.values()) / len(completed), 1) if completed else 0.0,
            "byKind": engine_storage,
        },
        "engine": {
            "retries": engine_retries,
            "retriesTotal": sum(engine_retries.values()),
            "staleMessages": observed.get("engine.stale", 0),
            "lostRaces": observed.get("engine.conflict", 0),
            "handlerFailures": sum(i["poller"]["failures"] for i in instances),
            "poisoned": sum(i["poller"]["poisoned"] for i in instances),
            "messagesHandled": sum(i["poller"]["handled"] for i in instances),
        },
        "floor": {
            "perBudgetSeconds": floors,
            "seconds": floor,
            "wallOverFloor": round(wall / floor, 2) if floor else None,
        },
        **extra,
    }


def latency_config(args: argparse.Namespace) -> dict[str, float]:
    read, write = args.latency
    return {"read": read, "write": write}


def sequential_baseline(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    """``bench/sequential.py`` on a fresh estate of ``--sequential`` identities, same budgets and latency."""
    http = httpx.Client(timeout=60)
    http.post(f"{stack.emulator}/_emulator/reset").raise_for_status()
    configure(http, stack, {"throttling": {"enabled": False}})
    tag = uuid.uuid4().hex[:8]
    settings = Settings(
        storage_connection_string=stack.storage,
        arm_endpoint=stack.emulator,
        graph_endpoint=f"{stack.emulator}/graph/v1.0",
        credential="emulator",
        queue_name=f"bench-{tag}",
        table_prefix=f"b{tag}",
    )
    seed_clients = AzureClients(
        settings,
        credential=StaticTokenCredential("estate-owner"),
        write_limiter=WriteLimiter(UNPACED, UNPACED),
    )
    identities = seed_fanout(seed_clients, args.sequential)
    configure(http, stack, {"throttling": {"enabled": True, "timeScale": args.time_scale}})
    configure(http, stack, {"latencyMs": latency_config(args)})
    say(f"[sequential] {len(identities)} moves one at a time (latency {latency_config(args)} ms)")
    result = run_sequential(settings, identities, args.identities, timeout=args.timeout)
    http.close()
    say(
        f"[sequential] {result['meanMoveSeconds']:.1f} s per move; {args.identities} moves ~ {result['estimatedSeconds']:.0f} s"
    )
    return result


def headline(runs: list[dict[str, Any]], sequential: dict[str, Any] | None) -> dict[str, Any]:
    """CONTRACT.md "Benchmark results": the top-level figures, from the first (headline) run."""
    head = runs[0]
    wall = head["wallSeconds"]
    estimate = (sequential or {}).get("estimatedSeconds")
    return {
        "headline_run": head["name"],
        "ratio_to_lower_bound": head["ratio_to_lower_bound"],
        "failed_moves": head["failed_moves"],
        "speedup_vs_sequential": round(estimate / wall, 1) if estimate and wall else None,
        "storage_transactions_per_move": head["storage_transactions_per_move"],
        "write_429s": head["write_429s"],
    }


def _count(values: Iterator[str] | list[str] | Any) -> dict[str, int]:
    counts: dict[str, int] = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    return counts


# ---- output ----------------------------------------------------------------------------------
def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def write_results(document: dict[str, Any], results_dir: Path) -> Path:
    results_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = results_dir / f"fanout-{stamp}.json"
    text = json.dumps(document, indent=2, sort_keys=False) + "\n"
    path.write_text(text)
    (results_dir / "latest.json").write_text(text)
    return path


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description="Region fan-out against ARM's write budget (bench/README.md)."
    )
    parser.add_argument("--identities", type=int, default=None, help="identities in the region (default 40)")
    parser.add_argument("--workers", type=int, default=None, help="worker instances = processes (default 4)")
    parser.add_argument("--threads", type=int, default=8, help="handler threads per instance (default 8)")
    parser.add_argument(
        "--time-scale", type=float, default=1.0, help="emulator throttling timeScale (1 = ARM)"
    )
    parser.add_argument(
        "--drain-bucket",
        nargs="?",
        const="on",
        default="both",
        choices=["off", "on", "both"],
        help="spend the writes/deletes buckets before the event: on = drained only, off = full only, "
        "both (default) = one run each",
    )
    parser.add_argument(
        "--compare", action="store_true", help="pacing on vs off, plus a throttling-off reference"
    )
    parser.add_argument("--quick", action="store_true", help="16 identities, 2 workers")
    parser.add_argument(
        "--shared-budget",
        action="store_true",
        help="also run with one ARM write budget per subscription shared by all instances",
    )
    parser.add_argument(
        "--latency",
        type=lambda v: tuple(float(x) for x in v.split(",")),
        default=(80.0, 300.0),
        help="emulator latency in ms, READ,WRITE, during every measured run (default 80,300)",
    )
    parser.add_argument(
        "--sequential",
        type=int,
        default=4,
        help="moves timed one at a time for the sequential baseline (0: none; default 4)",
    )
    parser.add_argument("--timeout", type=float, default=300, help="seconds per run before giving up")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    args.identities = args.identities or (16 if args.quick else 60)
    args.workers = args.workers or (2 if args.quick else 4)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    runs = plan_runs(args)
    log_dir = Path(tempfile.mkdtemp(prefix="idmove-bench-"))
    say(
        f"fan-out: {args.identities} identities, {args.workers} instances, runs: {', '.join(r.name for r in runs)}"
    )
    results = []
    sequential: dict[str, Any] | None = None
    with local_stack() as stack:
        for cfg in runs:
            results.append(run_once(stack, cfg, args, log_dir))
        if args.sequential:
            sequential = sequential_baseline(stack, args)
    document = {
        "benchmark": "region-fanout",
        **headline(results, sequential),
        "finishedAt": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "parameters": {
            "identities": args.identities,
            "workers": args.workers,
            "threadsPerWorker": args.threads,
            "timeScale": args.time_scale,
            "drainBucket": args.drain_bucket,
            "compare": args.compare,
            "latencyMs": latency_config(args),
            "sequentialSample": args.sequential,
            "estatePerIdentity": asdict(SeedShape()),
            "poller": poller_options(),
        },
        "logs": str(log_dir),
        "runs": results,
        "sequential": sequential,
    }
    path = write_results(document, args.results_dir)
    from bench.report import render

    render(document)
    say(f"results: {path} (and {args.results_dir / 'latest.json'}); instance logs: {log_dir}")
    incomplete = [r["name"] for r in results if r["moves"]["completed"] != r["moves"]["started"]]
    if incomplete:
        say(f"not every move completed in: {', '.join(incomplete)}")
    return 1 if incomplete else 0
