"""Benchmark: region fan-out against ARM's budgets (``python -m bench``; ``bench/README.md``).

Per run: N identities in one region spread over S subscriptions, each with a small estate
(``bench/seed.py``, seeded with throttling off and not measured); then ONE
``IdentityMover.RegionDecommissioning`` event naming every subscription, with ``autoCommit: true``,
through ``MoveService.start_region_decommission``, worked by W instance processes
(``bench/instance.py``) on the same queue against Azurite, with the emulator's throttling on at the
run's ``timeScale``. Measured from the event until every move is at rest: ARM calls and floors per
subscription from the emulator's request log, CPU-seconds of the hosts, the emulator and Azurite
(``bench/cpu.py``), storage transactions. ``make bench`` runs 60 x 1 and the headline 300 x 10
(with the sequential baseline in its estate); ``bench/capacity.py`` then says which limit binds
first at 100,000 identities over 500 subscriptions.

Example::

    python -m bench                                   # make bench
    python -m bench --identities 40 --subscriptions 2 --compare
    python -m bench --quick --results-dir /tmp/bench
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import queue
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench import capacity, cpu, metrics
from bench.instance import BenchClients, InstanceSpec, Observed, poller_options, serve
from bench.seed import REGION, TARGET_REGION, SeedShape, seed_fanout, subscription_ids
from bench.sequential import run_sequential
from idmove.azurite import Azurite
from idmove.stack import spawn_listening, stop_process
from shared.arm_pacing import WriteLimiter
from shared.azure_clients import AzureClients, StaticTokenCredential
from shared.service import MoveService
from shared.settings import Settings
from shared.statuses import Status
from shared.store import StateStore

RESULTS_DIR = Path(__file__).resolve().parent / "results"
UNPACED = 10_000.0  # writes per second: pacing effectively off
AT_REST = {s for s in Status if s not in (Status.PENDING, Status.RUNNING)}
# timeScale of the default 300 x 10 run: at 1 this machine's 2 cores bind before ARM's budgets
# (bench/README.md "Which timeScale"); slower refill makes the budgets bind again
FLEET_TIME_SCALE = 0.2


@dataclass(frozen=True)
class RunConfig:
    name: str
    identities: int = 60
    subscriptions: int = 1
    workers: int = 4
    time_scale: float = 1.0  # the emulator's throttling timeScale (1 = ARM's real refill)
    writes_per_second: float = 8.0
    writes_burst: float = 20.0
    drain_bucket: bool = False
    throttling: bool = True
    shared_budget: bool = True  # IDMOVE_ARM_SHARED_BUDGET (shared/write_budget.py), the product's default
    sequential: int = 0  # moves of this run's estate timed one at a time before its event (the baseline)
    headline: bool = False  # its figures go to the top level of latest.json
    budget_scale: float = 1.0  # ARM bucket capacities x this (the 100k simulation, bench/README.md)
    resource_graph_window: float = 5.0  # seconds per window (the simulation stretches it)
    resource_graph_capacity: int = 15  # queries per window
    simulates: tuple[int, int] | None = None  # (identities, subscriptions) this run stands for


@dataclass(frozen=True)
class Stack:
    emulator: str
    storage: str
    emulator_pid: int = 0
    azurite_pid: int = 0


DEFAULT_RUNS = (  # make bench: (name, identities, subscriptions); the second is the headline
    ("60x1", 60, 1),
    ("300x10", 300, 10),
)


def plan_runs(args: argparse.Namespace) -> list[RunConfig]:
    """The default runs, or one fleet of ``--identities``/``--subscriptions``; then the variants."""
    if args.simulate:  # a run of its own (bench/README.md "Simulation")
        return [simulation_run(args)]
    if args.identities or args.subscriptions or args.quick:
        n = args.identities or (16 if args.quick else 60)
        s = args.subscriptions or (2 if args.quick else 1)
        bases = [
            RunConfig(
                f"{n}x{s}", n, s, args.workers or (2 if args.quick else 4), args.time_scale or 1.0,
                sequential=args.sequential, headline=True,
            )
        ]  # fmt: skip
    else:
        bases = [
            RunConfig(
                name, n, s, args.workers or 4, args.time_scale or (1.0 if s == 1 else args.fleet_time_scale)
            )
            for name, n, s in DEFAULT_RUNS
        ]
        bases[-1] = replace(bases[-1], sequential=args.sequential, headline=True)
    runs: list[RunConfig] = []
    drains = {"off": [False], "on": [True], "both": [False, True]}[args.drain_bucket]
    first = bases[0]
    for base in bases:
        runs += [replace(base, name=f"{base.name}+drained" if d else base.name, drain_bucket=d,
                         sequential=0 if d else base.sequential, headline=base.headline and not d)
                 for d in drains]  # fmt: skip
    if args.compare:
        runs += [
            replace(first, name=f"{first.name} unpaced", writes_per_second=UNPACED, writes_burst=UNPACED, headline=False, sequential=0),
            replace(first, name=f"{first.name} unthrottled", throttling=False, headline=False, sequential=0),
        ]  # fmt: skip
    if args.per_process_pacing:
        runs += [
            replace(first, name=f"{first.name} per-process{'+drained' if d else ''}", shared_budget=False,
                    drain_bucket=d, headline=False, sequential=0)
            for d in drains
        ]  # fmt: skip
    return runs


def simulation_run(args: argparse.Namespace) -> RunConfig:
    """The 100k / 500 fleet scaled down (bench/README.md "Simulation"): ``--sim-subscriptions`` S'
    of its S subscriptions, each holding ``fraction`` x (I / S) identities with ARM's buckets x
    ``fraction``; the budgets the whole fleet shares (Resource Graph's per user) cut to the S' / S
    share these subscriptions would get, as 1 query per window (the 15-query burst is nothing at
    full size, a window of one keeps the refill smooth); every refill x ``--sim-time-scale``. A
    floor is then ``fraction / timeScale`` times the full fleet's; at fraction 1 (the default) exactly
    1 / timeScale, per-subscription costs included (a smaller fraction overstates those 1 / fraction)."""
    per_sub = max(1, round(args.target_identities / args.target_subscriptions * args.sim_fraction))
    subs = args.sim_subscriptions
    return RunConfig(
        f"sim{args.target_identities // 1000}k",
        per_sub * subs,
        subs,
        args.workers or 4,
        args.sim_time_scale,
        budget_scale=args.sim_fraction,
        resource_graph_window=5.0 / 15 * args.target_subscriptions / subs,
        resource_graph_capacity=1,
        simulates=(args.target_identities, args.target_subscriptions),
    )


# ---- the local stack -------------------------------------------------------------------------
@contextmanager
def local_stack() -> Iterator[Stack]:
    with tempfile.TemporaryDirectory(prefix="idmove-bench-emulator-") as logs:
        cmd = [sys.executable, "-m", "emulator"]
        emulator, port = spawn_listening("emulator", cmd, "/_emulator/health", Path(logs) / "emulator.log")
        try:
            with Azurite.start() as azurite:
                yield Stack(
                    f"http://127.0.0.1:{port}",
                    azurite.connection_string,
                    emulator_pid=emulator.pid,
                    azurite_pid=azurite.process.pid if azurite.process else 0,
                )
        finally:
            stop_process(emulator)


def configure(http: httpx.Client, stack: Stack, update: dict[str, Any]) -> dict[str, Any]:
    response = http.put(f"{stack.emulator}/_emulator/config", json=update)
    response.raise_for_status()
    return dict(response.json())


def throttling_config(cfg: RunConfig) -> dict[str, Any]:
    """The emulator's ``throttling`` section for a run: ARM's budgets (x ``budget_scale``), timeScale."""
    caps = {kind: max(1, round(cap * cfg.budget_scale)) for kind, (cap, _) in metrics.ARM_BUDGET.items()}
    return {
        "enabled": True,
        "timeScale": cfg.time_scale,
        **{
            kind: {"capacity": caps[kind], "refillPerSecond": rate}
            for kind, (_, rate) in metrics.ARM_BUDGET.items()
        },
        "resourceGraph": {
            "capacity": cfg.resource_graph_capacity,
            "windowSeconds": cfg.resource_graph_window,
        },
    }


def budgets_of(throttling: dict[str, Any]) -> dict[str, tuple[float, float]]:
    """(capacity, refill per second before timeScale) per ARM kind, as the emulator applies them."""
    return {
        kind: (float(throttling[kind]["capacity"]), float(throttling[kind]["refillPerSecond"]))
        for kind in metrics.ARM_BUDGET
    }


def drain_buckets(http: httpx.Client, stack: Stack, subscriptions: list[str]) -> dict[str, int]:
    """Spend each subscription's writes and deletes buckets until ARM answers 429 (steady state)."""
    auth = {"Authorization": "Bearer bench"}
    spent: dict[str, int] = {}
    for sub_id in subscriptions:
        sub = f"{stack.emulator}/subscriptions/{sub_id}"
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
        for kind, (method, url, body) in calls.items():
            spent[kind] = spent.get(kind, 0)
            for _ in range(2000):
                response = http.request(method, url, json=body, headers=auth)
                if response.status_code == 429:
                    break
                response.raise_for_status()
                spent[kind] += 1
    return spent


def bench_settings(stack: Stack, tag: str, cfg: RunConfig | None = None) -> Settings:
    """The product's settings for one run: its own queue and tables on the bench's stack."""
    cfg = cfg or RunConfig("default")
    return Settings(
        storage_connection_string=stack.storage,
        arm_endpoint=stack.emulator,
        graph_endpoint=f"{stack.emulator}/graph/v1.0",
        credential="emulator",
        queue_name=f"bench-{tag}",
        table_prefix=f"b{tag}",
        arm_writes_per_second=cfg.writes_per_second,
        arm_writes_burst=cfg.writes_burst,
        arm_shared_budget=cfg.shared_budget,
        # the mover is told the ARM it works against: the emulator's refill runs at timeScale
        arm_shared_rate=Settings.arm_shared_rate * cfg.time_scale,
        arm_shared_burst=Settings.arm_shared_burst * cfg.budget_scale,
        # every completed phase is published, as in Azure (the emulator's Event Grid topic): the
        # outbox's storage is part of a move's cost
        eventgrid_endpoint=f"{stack.emulator}/eventgrid/api/events",
        eventgrid_key="bench-key",
        # the product's setting, as the environment gives it (10 s when unset; "none": always sleep)
        arm_max_pacing_wait=Settings.from_env(
            {"IDMOVE_ARM_MAX_PACING_WAIT": os.environ.get("IDMOVE_ARM_MAX_PACING_WAIT", "10")}
        ).arm_max_pacing_wait,
    )


def seed(stack: Stack, settings: Settings, count: int, subscriptions: list[str]) -> list[str]:
    """Seed as the estate owner (a non-JWT token, not the mover's principal), unpaced."""
    owner = AzureClients(
        settings,
        credential=StaticTokenCredential("estate-owner"),
        write_limiter=WriteLimiter(UNPACED, UNPACED),
    )
    return seed_fanout(owner, count, subscriptions)


# ---- one run ---------------------------------------------------------------------------------
def run_once(stack: Stack, cfg: RunConfig, args: argparse.Namespace, log_dir: Path) -> dict[str, Any]:
    http = httpx.Client(timeout=60)
    http.post(f"{stack.emulator}/_emulator/reset").raise_for_status()
    configure(http, stack, {"throttling": {"enabled": False}})
    tag = uuid.uuid4().hex[:8]
    settings = bench_settings(stack, tag, cfg)
    subscriptions = subscription_ids(cfg.subscriptions)
    began = time.monotonic()
    identities = seed(stack, settings, cfg.identities + cfg.sequential, subscriptions)
    seed_seconds = time.monotonic() - began
    say(
        f"[{cfg.name}] seeded {len(identities)} identities over {cfg.subscriptions} subscription(s) in "
        f"{seed_seconds:.1f}s"
    )
    throttling = throttling_config(cfg) if cfg.throttling else {"enabled": False}
    sequential = None
    if cfg.sequential:  # the baseline, in this run's own estate, before its event
        sequential = sequential_baseline(
            stack, http, cfg, args, settings, identities[cfg.identities :], throttling
        )
    expected = cfg.identities + (
        sequential["sampleMoves"] - sequential["byStatus"].get("Completed", 0) if sequential else 0
    )

    ctx = multiprocessing.get_context("spawn")
    ready, results, stop = ctx.Queue(), ctx.Queue(), ctx.Event()
    procs = []
    for index in range(cfg.workers):
        spec = InstanceSpec(
            settings,
            index,
            threads=args.threads,
            poller=poller_options(),
            log_file=str(log_dir / f"{cfg.name}-instance-{index}.log".replace(" ", "-")),
        )
        proc = ctx.Process(target=serve, args=(spec, ready, stop, results), name=f"bench-instance-{index}")
        proc.start()
        procs.append(proc)
    instances: list[dict[str, Any]] = []
    cpu_groups = {
        "hosts": [p.pid for p in procs if p.pid],
        "emulator": [stack.emulator_pid],
        "azurite": [stack.azurite_pid],
    }
    try:
        for _ in procs:
            ready.get(timeout=120)
        applied = configure(http, stack, {"throttling": throttling, "latencyMs": {"read": 0, "write": 0}})
        drained = drain_buckets(http, stack, subscriptions) if cfg.drain_bucket else {}
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
        say(f"[{cfg.name}] {cfg.workers} instances ready; sending the event")
        cpu_before = cpu.snapshot(cpu_groups)
        t0 = time.time()
        answer = coordinator.start_region_decommission(
            f"bench-{tag}",
            {
                "sourceRegion": REGION,
                "targetRegion": TARGET_REGION,
                "subscriptionIds": subscriptions,
                "autoCommit": True,
                # the seeded identities' GitHub credentials are actionsRequired steps; the bench
                # measures complete moves, so it acknowledges them (else each waits in AwaitingCommit)
                "acknowledgeActionsRequired": True,
            },
        )
        started_seconds = time.time() - t0
        handler_storage = coordinator.stats.total
        say(f"[{cfg.name}] event answered ({answer['status']}) in {started_seconds:.2f}s")
        moves, timed_out = watch(settings, expected, args.timeout, cfg.name)
        cpu_spent = {k: round(v - cpu_before[k], 2) for k, v in cpu.snapshot(cpu_groups).items()}
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
    # the server's view of the run, beside the instances' logs, for reading a run after the fact
    (log_dir / f"{cfg.name}-requests.json").write_text(json.dumps(log))
    (log_dir / f"{cfg.name}-instances.json").write_text(json.dumps(instances))
    # each move's phases (started, completed), to see which waited and where (bench/README.md)
    timeline = [
        {
            "id": m.get("id"),
            "source": m.get("source"),
            "createdAt": m.get("createdAt"),
            "phases": [
                {k: p.get(k) for k in ("name", "startedAt", "completedAt", "attempts")}
                for p in m.get("phases") or []
            ],
        }
        for m in moves
    ]
    (log_dir / f"{cfg.name}-moves.json").write_text(json.dumps(timeline))
    return summarise(
        cfg,
        t0=t0,
        moves=moves,
        timed_out=timed_out,
        log=log,
        instances=instances,
        coordinator=coordinator,
        coordinator_observed=coordinator_observed,
        summary=summary,
        throttling=applied["throttling"],
        subscriptions=subscriptions,
        cpu_spent=cpu_spent,
        extra={
            "seedSeconds": round(seed_seconds, 2),
            "eventHandlerSeconds": round(started_seconds, 2),
            "eventHandlerStorageTransactions": handler_storage,
            "drained": drained,
            "sequential": sequential,
        },
    )


def _saturated(instances: list[dict[str, Any]]) -> float | None:
    samples = [
        (n, i["poller"]["threads"])
        for i in instances
        for n in i["poller"].get("running", [])
        if "threads" in i["poller"]
    ]
    return round(sum(n >= t for n, t in samples) / len(samples), 3) if samples else None


def watch(settings: Settings, expected: int, timeout: float, name: str) -> tuple[list[dict[str, Any]], bool]:
    """Poll the move records (own storage client, not counted as the engine's) until all are at rest.

    Every 2 s: the wall time comes from the records' ``updatedAt``, not from this loop, and each
    poll lists every record (Azurite's CPU includes these listings)."""
    store = StateStore(settings.storage, settings.table_prefix)
    deadline = time.monotonic() + timeout
    last_report = time.monotonic()
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
                    "source": r.source_id,
                    "createdAt": r.created_at,
                    "updatedAt": r.updated_at,
                    "phases": r.phases,
                    "error": r.error,
                }
                for r in records
            ]
            return moves, len(rest) < expected
        if time.monotonic() - last_report > 30:
            last_report = time.monotonic()
            say(f"[{name}] {len(rest)}/{expected} moves at rest")
        time.sleep(2.0)


def floors_of(
    cfg: RunConfig,
    by_scope: dict[str, dict[str, dict[str, int]]],
    throttling: dict[str, Any],
    subscriptions: list[str],
    arg_queries: int,
    graph: dict[str, int],
) -> dict[str, Any]:
    """Every budget's floor: ARM per subscription (and the tenant scope), the largest over
    subscriptions per kind, Resource Graph per user, Graph per app+tenant and MSI creates per
    subscription (those two Azure's documented limits, not enforced by the emulator)."""
    scale = float(throttling.get("timeScale", 1.0)) if cfg.throttling else 1.0
    budgets = budgets_of(throttling) if cfg.throttling else dict(metrics.ARM_BUDGET)
    drained = {s.lower(): {"writes": 0.0, "deletes": 0.0} for s in subscriptions} if cfg.drain_bucket else {}
    per_scope = metrics.scope_floors(by_scope, budgets, drained, scale)
    subs = {k: v for k, v in per_scope.items() if k != "tenant"}
    tenant = per_scope.get("tenant", dict.fromkeys([*budgets, "msiCreates"], 0.0))
    per_budget: dict[str, float] = {
        kind: max((f[kind] for f in subs.values()), default=0.0) for kind in [*budgets, "msiCreates"]
    }
    per_budget.update({f"tenant{kind.title()}": tenant[kind] for kind in budgets})
    rg = throttling.get("resourceGraph", {}) if cfg.throttling else {}
    rg_window, rg_cap = float(rg.get("windowSeconds", 5.0)), float(rg.get("capacity", 15))
    per_budget["resourceGraph"] = metrics.allowance_floor(arg_queries, (rg_cap, rg_cap / rg_window), scale)
    per_budget["graphReads"] = metrics.allowance_floor(graph["reads"], metrics.GRAPH_BUDGET["reads"], scale)
    per_budget["graphWrites"] = metrics.allowance_floor(
        graph["writes"], metrics.GRAPH_BUDGET["writes"], scale
    )
    write_floor = max(per_budget["writes"], per_budget["deletes"])
    binding = max(per_budget, key=lambda k: per_budget[k])
    write_scope = max(subs, key=lambda k: max(subs[k]["writes"], subs[k]["deletes"]), default=None)
    return {
        "perBudgetSeconds": per_budget,
        "perSubscriptionSeconds": subs,
        "tenantSeconds": tenant,
        "writeFloorSeconds": write_floor,
        "writeFloorSubscription": write_scope,
        "binding": binding,
        "seconds": per_budget[binding],
        "timeScale": scale,
        "budgets": {kind: {"capacity": c, "refillPerSecond": r} for kind, (c, r) in budgets.items()},
        "resourceGraphQuota": {"capacity": rg_cap, "windowSeconds": rg_window},
    }


def summarise(
    cfg: RunConfig,
    *,
    t0: float,
    moves: list[dict[str, Any]],
    timed_out: bool,
    log: list[dict[str, Any]],
    instances: list[dict[str, Any]],
    coordinator: MoveService,
    coordinator_observed: Observed,
    summary: dict[str, Any],
    throttling: dict[str, Any],
    subscriptions: list[str],
    cpu_spent: dict[str, float],
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
    by_scope = metrics.arm_by_scope(log)
    graph = metrics.graph_kinds(log)
    arg_queries = int(traffic["resourceGraph"].get("accepted", 0))
    floor = floors_of(cfg, by_scope, throttling, subscriptions, arg_queries, graph)
    scale = floor["timeScale"]
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
    tenant = by_scope.get("tenant", {"accepted": dict.fromkeys(metrics.ARM_BUDGET, 0)})["accepted"]
    per_move = {
        kind: round(n / completed_n, 2) if completed_n else 0.0
        for kind, n in {
            "reads": accepted["reads"],
            "writes": accepted["writes"],
            "deletes": accepted["deletes"],
            "tenantReads": tenant["reads"],
            "msiCreates": sum(s["msiCreates"].get("count", 0) for s in by_scope.values()),
            "resourceGraphQueries": arg_queries,
            "graphCalls": int(traffic["graph"].get("accepted", 0)),
            "graphReads": graph["reads"],
            "graphWrites": graph["writes"],
            "storageTransactions": sum(engine_storage.values()),
            "queueMessages": engine_storage.get("queue.send", 0),
        }.items()
    }
    write_floor = floor["writeFloorSeconds"]
    cpu_total = sum(cpu_spent.values())
    return {
        "name": cfg.name,
        "config": asdict(cfg),
        "fleet": {
            "identities": cfg.identities,
            "subscriptions": cfg.subscriptions,
            "instances": cfg.workers,
            "timeScale": scale,
        },
        # the contract's figures (CONTRACT.md "Benchmark results"), per run; the headline run's at the top
        "ratio_to_lower_bound": round(wall / write_floor, 2) if write_floor else None,
        "failed_moves": cfg.identities - completed_n,  # not Completed, or never started
        "speedup_vs_sequential": None,  # filled in by main() from the sequential baseline
        "storage_transactions_per_move": per_move["storageTransactions"],
        "write_429s": throttled["writes"] + throttled["deletes"],
        "perMove": per_move,
        "writeFloorSeconds": write_floor,
        "cpuSecondsPerMove": {
            k: round(v / completed_n, 3) if completed_n else None for k, v in cpu_spent.items()
        },
        "cpu": {
            "seconds": cpu_spent,
            "cores": os.cpu_count(),
            # near 100%: this machine's CPU, not ARM's budget, is what binds
            "busyPercentOfCores": round(100 * cpu_total / ((os.cpu_count() or 1) * wall), 1)
            if wall
            else None,
        },
        "moves": {
            "expected": cfg.identities,
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
            "perScope": by_scope,
            "byMethod": {
                kind: {k: v for k, v in arm[kind].items() if k not in ("accepted", "throttled")}
                for kind in metrics.ARM_BUDGET
            },
            "writesInclDeletes": accepted["writes"] + accepted["deletes"],
            "perSecond": rates,
            "utilisationPercent": {  # of the budget of all the run's subscriptions together
                kind: round(100 * rates[kind] / (metrics.ARM_BUDGET[kind][1] * scale * cfg.subscriptions), 1)
                for kind in metrics.ARM_BUDGET
            },
            "writeProfile": metrics.rate_profile(log, t0, "writes"),
            "perMove": {kind: per_move[kind] for kind in metrics.ARM_BUDGET},
        },
        "throttling": {
            "enabled": cfg.throttling,
            "timeScale": scale,
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
            # writes whose token was further than IDMOVE_ARM_MAX_PACING_WAIT: their step went back to the queue
            "pacingGivenBack": sum(i["pacing"].get("givenBack", 0) for i in instances),
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
            # handler threads busy, sampled each second on every instance: the share of samples with
            # every thread busy (then the threads, not Azure's budgets, held the work back)
            "handlersSaturatedShare": _saturated(instances),
        },
        "floor": {**floor, "wallOverFloor": round(wall / floor["seconds"], 2) if floor["seconds"] else None},
        # where the write floor's subscription left its budget unused (bench/README.md "What each number means")
        "writeBudgetUse": _write_budget_use(log, t0, wall, floor),
        **({"simulation": simulation_summary(cfg, wall, floor)} if cfg.simulates else {}),
        **{k: v for k, v in extra.items() if k != "sequential" or v is not None},
    }


def _write_budget_use(
    log: list[dict[str, Any]], t0: float, wall: float, floor: dict[str, Any]
) -> dict[str, Any]:
    """``metrics.budget_use`` of the write floor's subscription, for its binding kind."""
    scope = floor.get("writeFloorSubscription")
    if not scope:
        return {}
    per = floor["perSubscriptionSeconds"].get(scope, {})
    kind = "deletes" if per.get("deletes", 0) > per.get("writes", 0) else "writes"
    bucket = floor["budgets"].get(kind, {})
    budget = (
        float(bucket.get("capacity", metrics.ARM_BUDGET[kind][0])),
        float(bucket.get("refillPerSecond", metrics.ARM_BUDGET[kind][1])),
    )
    return {
        "subscription": scope,
        "kind": kind,
        **metrics.budget_use(log, t0, t0 + wall, scope, kind, budget, floor["timeScale"]),
    }


def simulation_summary(cfg: RunConfig, wall: float, floor: dict[str, Any]) -> dict[str, Any]:
    """What the scaled-down run says of the full fleet: times x timeScale / fraction."""
    assert cfg.simulates is not None
    back = cfg.time_scale / cfg.budget_scale
    return {
        "fleet": {"identities": cfg.simulates[0], "subscriptions": cfg.simulates[1]},
        "fraction": cfg.budget_scale,
        "timeScale": cfg.time_scale,
        "fullFleetWallSeconds": round(wall * back, 1),
        "fullFleetFloorSeconds": {k: round(v * back, 1) for k, v in floor["perBudgetSeconds"].items()},
        "binding": floor["binding"],
    }


def latency_config(args: argparse.Namespace) -> dict[str, float]:
    read, write = args.latency
    return {"read": read, "write": write}


def sequential_baseline(
    stack: Stack,
    http: httpx.Client,
    cfg: RunConfig,
    args: argparse.Namespace,
    settings: Settings,
    sample: list[str],
    throttling: dict[str, Any],
) -> dict[str, Any]:
    """``bench/sequential.py``: the sample's moves one at a time, in the run's own estate (same
    subscriptions, same density, same budgets and latency), on a queue and tables of their own.

    Its request log gives the calls per move beside the fleet's, and its CPU-seconds per move: the
    host is this process (``os.times``), plus the emulator and Azurite."""
    own = replace(settings, queue_name=f"{settings.queue_name}-seq", table_prefix=f"{settings.table_prefix}s")
    configure(http, stack, {"throttling": throttling, "latencyMs": latency_config(args)})
    log_start = len(http.get(f"{stack.emulator}/_emulator/requests").json())
    say(
        f"[sequential] {len(sample)} moves of the {cfg.name} estate one at a time (latency {latency_config(args)} ms)"
    )
    groups = {"emulator": [stack.emulator_pid], "azurite": [stack.azurite_pid]}
    before, host_before = cpu.snapshot(groups), _own_cpu()
    result = run_sequential(own, sample, cfg.identities, timeout=args.timeout)
    spent = {"hosts": _own_cpu() - host_before, **{k: v - before[k] for k, v in cpu.snapshot(groups).items()}}
    log = http.get(f"{stack.emulator}/_emulator/requests").json()[log_start:]
    configure(http, stack, {"throttling": {"enabled": False}, "latencyMs": {"read": 0, "write": 0}})
    done = result["byStatus"].get("Completed", 0)
    traffic, by_scope, graph = metrics.classify(log), metrics.arm_by_scope(log), metrics.graph_kinds(log)
    counts = {
        **{kind: traffic["arm"][kind].get("accepted", 0) for kind in metrics.ARM_BUDGET},
        "tenantReads": by_scope.get("tenant", {"accepted": {"reads": 0}})["accepted"]["reads"],
        "msiCreates": sum(s["msiCreates"].get("count", 0) for s in by_scope.values()),
        "resourceGraphQueries": traffic["resourceGraph"].get("accepted", 0),
        "graphCalls": traffic["graph"].get("accepted", 0),
        "graphReads": graph["reads"],
        "graphWrites": graph["writes"],
        "storageTransactions": result["storageTransactions"],
    }
    result.update(
        {
            "estate": cfg.name,
            "perMove": {k: round(v / done, 2) if done else None for k, v in counts.items()},
            "cpuSecondsPerMove": {k: round(v / done, 3) if done else None for k, v in spent.items()},
            "requests429": {
                **{kind: traffic["arm"][kind].get("throttled", 0) for kind in metrics.ARM_BUDGET},
                "resourceGraph": traffic["resourceGraph"].get("throttled", 0),
            },
        }
    )
    say(
        f"[sequential] {result['meanMoveSeconds']:.1f} s per move; {cfg.identities} moves ~ {result['estimatedSeconds']:.0f} s"
    )
    return result


def _own_cpu() -> float:
    t = os.times()
    return t.user + t.system


def speedups(
    runs: list[dict[str, Any]], sequential: dict[str, Any] | None, latency: dict[str, float]
) -> None:
    """speedup_vs_sequential per run: sequential mean seconds per move x the run's moves / its wall.

    A move started alone discovers for itself, so the baseline's moves make more reads and Resource
    Graph queries than a fleet's (same writes, deletes and Graph calls). ``speedupSameCalls`` takes
    the latency of those extra calls out of the baseline's mean (reads at the read latency, queries,
    which are POSTs, at the write latency): the speedup from concurrency alone."""
    mean = (sequential or {}).get("meanMoveSeconds")
    seq = (sequential or {}).get("perMove") or {}
    for run in runs:
        wall, n = run["wallSeconds"], run["fleet"]["identities"]
        run["speedup_vs_sequential"] = round(mean * n / wall, 1) if mean and wall else None
        if not (mean and wall and seq.get("reads") is not None):
            continue
        extra_reads = max(0.0, seq["reads"] - run["perMove"]["reads"])
        extra_queries = max(0.0, seq["resourceGraphQueries"] - run["perMove"]["resourceGraphQueries"])
        same = mean - (extra_reads * latency["read"] + extra_queries * latency["write"]) / 1000
        run["sequentialSameCalls"] = {
            "extraReadsPerMove": round(extra_reads, 2),
            "extraResourceGraphQueriesPerMove": round(extra_queries, 2),
            "meanMoveSeconds": round(same, 2),
            "speedupSameCalls": round(same * n / wall, 1),
        }


def headline(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """CONTRACT.md "Benchmark results": the top-level figures, from the headline run."""
    head = next((r for r in runs if r["config"]["headline"]), runs[0])
    return {
        "headline_run": head["name"],
        "ratio_to_lower_bound": head["ratio_to_lower_bound"],
        "failed_moves": head["failed_moves"],
        "speedup_vs_sequential": head["speedup_vs_sequential"],
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
        # others' work shares the machine: the 1/5/15-minute load when the results were written
        "loadAverage": " ".join(f"{x:.2f}" for x in os.getloadavg()),
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
        prog="python -m bench", description="Region fan-out against ARM's budgets (bench/README.md)."
    )
    parser.add_argument(
        "--identities", type=int, default=None, help="one fleet of N identities instead of the default runs"
    )
    parser.add_argument(
        "--subscriptions",
        type=int,
        default=None,
        help="spread the identities over S subscriptions (default 1)",
    )
    parser.add_argument("--workers", type=int, default=None, help="worker instances = processes (default 4)")
    parser.add_argument("--threads", type=int, default=8, help="handler threads per instance (default 8)")
    parser.add_argument(
        "--time-scale", type=float, default=None, help="emulator throttling timeScale for every run (1 = ARM)"
    )
    parser.add_argument(
        "--fleet-time-scale",
        type=float,
        default=FLEET_TIME_SCALE,
        help=f"timeScale of the default multi-subscription run (default {FLEET_TIME_SCALE}: this machine's "
        "2 cores would bind at 1, see bench/README.md)",
    )
    parser.add_argument(
        "--drain-bucket",
        nargs="?",
        const="on",
        default="off",
        choices=["off", "on", "both"],
        help="spend every subscription's writes/deletes buckets before the event: on = drained only, "
        "off (default) = full only, both = one run each",
    )
    parser.add_argument(
        "--compare",
        action="store_true",
        help="+ pacing off and a throttling-off reference (first run's fleet)",
    )
    parser.add_argument("--quick", action="store_true", help="16 identities, 2 subscriptions, 2 workers")
    parser.add_argument(
        "--per-process-pacing",
        action="store_true",
        help="+ the first run's fleet with IDMOVE_ARM_SHARED_BUDGET off (each instance paces itself)",
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
        help="moves timed one at a time in the headline run's estate (0: none; default 4)",
    )
    parser.add_argument(
        "--simulate", action="store_true", help="only the scaled-down 100k / 500 fleet (bench/README.md)"
    )
    parser.add_argument("--target-identities", type=int, default=100_000, help="fleet to analyse (100000)")
    parser.add_argument("--target-subscriptions", type=int, default=500, help="its subscriptions (500)")
    parser.add_argument("--target-instances", type=int, default=20, help="its instances (20)")
    parser.add_argument("--sim-subscriptions", type=int, default=1, help="simulation: subscriptions (1)")
    parser.add_argument(
        "--sim-fraction",
        type=float,
        default=1.0,
        help="simulation: identities per subscription and ARM buckets x this (1)",
    )
    parser.add_argument("--sim-time-scale", type=float, default=4.0, help="simulation: timeScale (4)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per run before giving up")
    parser.add_argument("--results-dir", type=Path, default=RESULTS_DIR)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    runs = plan_runs(args)
    log_dir = Path(tempfile.mkdtemp(prefix="idmove-bench-"))
    say(
        "fan-out runs: "
        + ", ".join(
            f"{r.name} ({r.identities} ids / {r.subscriptions} subs / {r.workers} inst, timeScale {r.time_scale})"
            for r in runs
        )
    )
    results = []
    with local_stack() as stack:
        for cfg in runs:
            results.append(run_once(stack, cfg, args, log_dir))
    sequential = next((r["sequential"] for r in results if r.get("sequential")), None)
    speedups(results, sequential, latency_config(args))
    document = {
        "benchmark": "region-fanout",
        **headline(results),
        "finishedAt": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "parameters": {
            "runs": [r.name for r in runs],
            "threadsPerWorker": args.threads,
            "fleetTimeScale": args.fleet_time_scale,
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
    document["capacity"] = capacity.analyse(
        document, args.target_identities, args.target_subscriptions, args.target_instances
    )
    path = write_results(document, args.results_dir)
    from bench.report import render

    render(document)
    capacity.render(document["capacity"])
    say(f"results: {path} (and {args.results_dir / 'latest.json'}); instance logs: {log_dir}")
    incomplete = [r["name"] for r in results if r["moves"]["completed"] != r["moves"]["expected"]]
    if incomplete:
        say(f"not every move completed in: {', '.join(incomplete)}")
    return 1 if incomplete else 0
