"""Which limit binds first for a fleet, from the per-move costs a benchmark run measured.

``python -m bench.capacity`` reads a results file (default ``bench/results/latest.json``), takes a
run's per-move costs (the headline run unless ``--run``): ARM reads (subscription and tenant
level), writes, deletes and identity creates, Resource Graph queries, Microsoft Graph reads and
writes, storage transactions, queue messages, the hosts' CPU-seconds; and computes for a fleet of
I identities over S subscriptions (spread evenly) with W instances the time each limit alone would
impose, as ``max(0, demand - allowance) / refill per second``:

=========================== ============================================ =========================
limit                       Azure's figure                               demand
=========================== ============================================ =========================
ARM per subscription        reads 250 / 25 per s, writes 200 / 10 per s, I/S x per-move cost
                            deletes 200 / 10 per s (per principal)
ARM per tenant              reads 250 / 25 per s (tenant-level calls)    I x tenant reads
MSI creates                 80 per 20 s per subscription per region      I/S x creates
Resource Graph              15 queries per 5 s per user                  I x queries
Microsoft Graph             per app+tenant: 8,000 resource units per     I x reads (1 unit each),
                            10 s (large tenant), 3,000 writes per 150 s  I x writes
Storage account             ~20,000 transactions per s                   I x transactions
Storage queue               ~2,000 messages per s                        I x messages sent
Host CPU                    W instances, one core each                   I x CPU-s / W
=========================== ============================================ =========================

Microsoft Graph's figures: https://learn.microsoft.com/graph/throttling-limits ("Identity and
access service limits"); ARM's: https://learn.microsoft.com/azure/azure-resource-manager/management/request-limits-and-throttling;
storage: https://learn.microsoft.com/azure/storage/common/scalability-targets-standard-account and
https://learn.microsoft.com/azure/storage/queues/scalability-targets. The costs are per move
averages of the measured run: what the engine does once per fleet (discovery) is spread over its
moves, so a run at a small fleet overstates it for a big one (bench/README.md).

Example::

    python -m bench.capacity --identities 100000 --subscriptions 500 --instances 20
    analyse(json.loads(Path("bench/results/latest.json").read_text()), 100_000, 500, 20)
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench import metrics

RESULTS = Path(__file__).resolve().parent / "results" / "latest.json"
STORAGE_ACCOUNT_TPS = 20_000.0
QUEUE_MESSAGES_PER_SECOND = 2_000.0


@dataclass(frozen=True)
class Limit:
    name: str
    scope: str  # what one budget covers
    allowance: float  # tokens at the start (bucket, or one window's quota)
    per_second: float  # refill
    cost: str  # the per-move cost it draws on
    per_subscription: bool  # demand = moves per subscription (else the whole fleet)


LIMITS = (
    Limit("ARM writes", "subscription x principal", 200, 10, "writes", True),
    Limit("ARM deletes", "subscription x principal", 200, 10, "deletes", True),
    Limit("ARM reads", "subscription x principal", 250, 25, "subscriptionReads", True),
    Limit("ARM tenant reads", "tenant x principal", 250, 25, "tenantReads", False),
    Limit("MSI creates", "subscription x region", *metrics.MSI_CREATE_BUDGET, "msiCreates", True),
    Limit("Resource Graph", "user", 15, 3, "resourceGraphQueries", False),
    Limit("Microsoft Graph reads", "app x tenant", *metrics.GRAPH_BUDGET["reads"], "graphReads", False),
    Limit("Microsoft Graph writes", "app x tenant", *metrics.GRAPH_BUDGET["writes"], "graphWrites", False),
    Limit("storage account", "account", 0, STORAGE_ACCOUNT_TPS, "storageTransactions", False),
    Limit("storage queue", "queue", 0, QUEUE_MESSAGES_PER_SECOND, "queueMessages", False),
)


def costs(run: dict[str, Any]) -> dict[str, float]:
    """Per completed move, from a run of ``python -m bench``."""
    per_move = run["perMove"]
    out = {k: float(per_move.get(k) or 0.0) for k in
           ("writes", "deletes", "tenantReads", "msiCreates", "resourceGraphQueries", "graphReads",
            "graphWrites", "storageTransactions", "queueMessages")}  # fmt: skip
    out["subscriptionReads"] = float(per_move.get("reads") or 0.0) - out["tenantReads"]
    out["hostCpuSeconds"] = float((run.get("cpuSecondsPerMove") or {}).get("hosts") or 0.0)
    return out


def pick_run(document: dict[str, Any], name: str | None = None) -> dict[str, Any]:
    runs = document["runs"]
    if name:
        return next(r for r in runs if r["name"] == name)
    return next((r for r in runs if r["config"].get("headline")), runs[0])


def fleet_seconds(
    cost: dict[str, float], identities: int, subscriptions: int, instances: int
) -> list[dict[str, Any]]:
    """Each limit alone: the least time it allows the fleet's moves (the busiest subscription)."""
    per_sub = math.ceil(identities / max(1, subscriptions))
    rows = []
    for limit in LIMITS:
        demand = cost[limit.cost] * (per_sub if limit.per_subscription else identities)
        seconds = max(0.0, demand - limit.allowance) / limit.per_second
        rows.append({"limit": limit.name, "scope": limit.scope, "demand": round(demand, 1),
                     "allowance": limit.allowance, "perSecond": limit.per_second, "seconds": round(seconds, 1)})  # fmt: skip
    cpu = cost["hostCpuSeconds"] * identities
    rows.append({"limit": "host CPU", "scope": f"{instances} instances x 1 core", "demand": round(cpu, 1),
                 "allowance": 0, "perSecond": instances, "seconds": round(cpu / max(1, instances), 1)})  # fmt: skip
    return sorted(rows, key=lambda r: -r["seconds"])


def analyse(
    document: dict[str, Any], identities: int, subscriptions: int, instances: int, run: str | None = None
) -> dict[str, Any]:
    """The fleet's time per limit, which binds and by how much (x the next one)."""
    source = pick_run(document, run)
    cost = costs(source)
    rows = fleet_seconds(cost, identities, subscriptions, instances)
    first, second = rows[0], rows[1]
    return {
        "fleet": {"identities": identities, "subscriptions": subscriptions, "instances": instances},
        "costsFrom": {"run": source["name"], **source.get("fleet", {})},
        "perMoveCosts": cost,
        "limits": rows,
        "binding": first["limit"],
        "bindingSeconds": first["seconds"],
        "nextLimit": second["limit"],
        "bindingOverNext": round(first["seconds"] / second["seconds"], 1) if second["seconds"] else None,
        "writeFloorSeconds": max(r["seconds"] for r in rows if r["limit"] in ("ARM writes", "ARM deletes")),
    }


def render(result: dict[str, Any], console: Console | None = None) -> None:
    fleet = result["fleet"]
    table = Table(
        title=(
            f"Capacity: {fleet['identities']:,} identities / {fleet['subscriptions']} subscriptions / "
            f"{fleet['instances']} instances, costs per move of run {result['costsFrom']['run']}"
        )
    )
    for column in ("limit", "scope", "demand", "allowance + per s", "seconds alone"):
        table.add_column(column, justify="left" if column in ("limit", "scope") else "right")
    for row in result["limits"]:
        table.add_row(
            row["limit"], row["scope"], f"{row['demand']:,.0f}", f"{row['allowance']:,.0f} + {row['perSecond']:,.0f}",
            f"{row['seconds']:,.1f}",
        )  # fmt: skip
    (console or Console()).print(table)
    ratio = result["bindingOverNext"]
    (console or Console()).print(
        f"binds first: {result['binding']} ({result['bindingSeconds']:,.0f} s"
        + (f", {ratio}x the next, {result['nextLimit']})" if ratio else ")")
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.capacity", description=__doc__.split("\n")[0])
    parser.add_argument("--results", type=Path, default=RESULTS, help="a results file (latest.json)")
    parser.add_argument("--run", default=None, help="whose per-move costs (default: the headline run)")
    parser.add_argument("--identities", type=int, default=100_000)
    parser.add_argument("--subscriptions", type=int, default=500)
    parser.add_argument("--instances", type=int, default=20)
    parser.add_argument(
        "--write", action="store_true", help="store the analysis in the results file ('capacity')"
    )
    args = parser.parse_args(argv)
    document = json.loads(args.results.read_text())
    result = analyse(document, args.identities, args.subscriptions, args.instances, args.run)
    render(result)
    if args.write:
        document["capacity"] = result
        args.results.write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
