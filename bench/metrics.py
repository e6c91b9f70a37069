"""Numbers from the emulator's request log and the move records: pure functions, no I/O.

The request log (``GET /_emulator/requests``) is the server's view: every ARM and Graph request
with method, path, status and time. ARM's budget (FACTS.md) is a token bucket per subscription and
kind: reads 250 / 25 per s, writes (PUT/PATCH/POST) 200 / 10 per s, deletes 200 / 10 per s. Graph
and Resource Graph (15 queries / 5 s per user) have their own budgets and are counted apart.

Example::

    traffic = classify(log_entries)
    traffic["arm"]["writes"]["accepted"]
"""

from __future__ import annotations

import math
from collections import Counter
from datetime import datetime
from typing import Any

ARM_BUDGET = {  # FACTS.md "Azure Resource Manager": bucket, refill per second
    "reads": (250.0, 25.0),
    "writes": (200.0, 10.0),
    "deletes": (200.0, 10.0),
}
RESOURCE_GRAPH_BUDGET = (15.0, 3.0)  # 15 queries per 5 s window
# Not enforced by the emulator, counted against Azure's documented limits (bench/README.md):
# Microsoft Graph, identity and access service, per application+tenant pair
# (https://learn.microsoft.com/graph/throttling-limits): a large tenant (over 500 users) 8,000
# resource units per 10 s (a GET costs at least 1), writes 3,000 per 2 min 30 s; per tenant for all
# apps 18,000 writes per 5 min. As (allowance, per second).
GRAPH_BUDGET = {"reads": (8000.0, 800.0), "writes": (3000.0, 20.0)}
GRAPH_TENANT_WRITES = (18000.0, 60.0)
# Managed identity creates: 80 per 20 s per subscription per region (issue 11; FACTS.md).
MSI_CREATE_BUDGET = (80.0, 4.0)


def surface(path: str) -> str:
    low = path.lower()
    if low.startswith("/graph/"):
        return "graph"
    if low.startswith("/providers/microsoft.resourcegraph/"):
        return "resourceGraph"
    return "arm"


def arm_kind(method: str) -> str:
    method = method.upper()
    if method in ("GET", "HEAD"):
        return "reads"
    return "deletes" if method == "DELETE" else "writes"


def scope_of(path: str) -> str:
    """ARM's budget scope of a path: the subscription id (lower case), else ``tenant``."""
    segs = path.strip("/").split("/")
    if len(segs) >= 2 and segs[0].lower() == "subscriptions":
        return segs[1].lower()
    return "tenant"


def is_msi_create(method: str, path: str) -> bool:
    """A PUT of a user-assigned identity itself (not of its federated credentials)."""
    segs = [s.lower() for s in path.split("?")[0].strip("/").split("/")]
    return (
        method.upper() == "PUT"
        and len(segs) >= 2
        and segs[-2] == "userassignedidentities"
        and "microsoft.managedidentity" in segs
    )


def parse_time(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def classify(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts per surface; ARM per kind split into accepted (spent a token) and throttled (429)."""
    arm: dict[str, Counter[str]] = {k: Counter() for k in ARM_BUDGET}
    graph: Counter[str] = Counter()
    resource_graph: Counter[str] = Counter()
    statuses: Counter[str] = Counter()
    for e in entries:
        where, status = surface(e["path"]), int(e["status"])
        statuses[f"{where}.{status}"] += 1
        if where == "graph":
            graph[e["method"]] += 1
            graph["throttled" if status == 429 else "accepted"] += 1
        elif where == "resourceGraph":
            resource_graph["throttled" if status == 429 else "accepted"] += 1
        else:
            counter = arm[arm_kind(e["method"])]
            counter["throttled" if status == 429 else "accepted"] += 1
            counter[e["method"].upper()] += 1
    return {
        "arm": {k: dict(v) for k, v in arm.items()},
        "graph": dict(graph),
        "resourceGraph": dict(resource_graph),
        "statuses": dict(sorted(statuses.items())),
    }


def arm_by_scope(entries: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, int]]]:
    """Per budget scope (subscription id or ``tenant``): ``accepted`` and ``throttled`` per kind,
    and ``msiCreates`` (accepted identity PUTs)."""
    scopes: dict[str, dict[str, dict[str, int]]] = {}
    for e in entries:
        if surface(e["path"]) != "arm":
            continue
        scope = scopes.setdefault(
            scope_of(e["path"]),
            {
                "accepted": dict.fromkeys(ARM_BUDGET, 0),
                "throttled": dict.fromkeys(ARM_BUDGET, 0),
                "msiCreates": {},
            },
        )
        outcome = "throttled" if int(e["status"]) == 429 else "accepted"
        scope[outcome][arm_kind(e["method"])] += 1
        if outcome == "accepted" and int(e["status"]) < 300 and is_msi_create(e["method"], e["path"]):
            scope["msiCreates"]["count"] = scope["msiCreates"].get("count", 0) + 1
    return dict(sorted(scopes.items()))


def graph_kinds(entries: list[dict[str, Any]]) -> dict[str, int]:
    """Accepted Microsoft Graph calls: ``reads`` (GET) and ``writes`` (anything else)."""
    out = {"reads": 0, "writes": 0}
    for e in entries:
        if surface(e["path"]) == "graph" and int(e["status"]) != 429:
            out["reads" if e["method"].upper() == "GET" else "writes"] += 1
    return out


def scope_floors(
    by_scope: dict[str, dict[str, dict[str, int]]],
    budgets: dict[str, tuple[float, float]],
    bucket_at_start: dict[str, dict[str, float]],
    time_scale: float = 1.0,
) -> dict[str, dict[str, float]]:
    """Per scope and kind ``max(0, accepted - tokens at start) / (refill x time_scale)``, plus
    ``msiCreates`` against 80 per 20 s (Azure's, not enforced by the emulator)."""
    floors: dict[str, dict[str, float]] = {}
    for scope, counts in by_scope.items():
        start = bucket_at_start.get(scope, {})
        floors[scope] = {
            kind: round(max(0.0, counts["accepted"][kind] - start.get(kind, cap)) / (rate * time_scale), 2)
            for kind, (cap, rate) in budgets.items()
        }
        cap, rate = MSI_CREATE_BUDGET
        creates = counts["msiCreates"].get("count", 0)
        floors[scope]["msiCreates"] = round(max(0.0, creates - cap) / (rate * time_scale), 2)
    return floors


def allowance_floor(n: int, budget: tuple[float, float], time_scale: float = 1.0) -> float:
    """``max(0, n - allowance) / (rate x time_scale)``: a windowed limit read as a bucket."""
    cap, rate = budget
    return round(max(0.0, n - cap) / (rate * time_scale), 2)


def rate_profile(
    entries: list[dict[str, Any]], start: float, kind: str, window: float = 10.0
) -> dict[str, float]:
    """Accepted ARM requests of ``kind`` per second: peak over any ``window`` seconds, and over the
    run after the first ``window`` (once a full bucket has been spent, what refill allows)."""
    times = sorted(
        parse_time(e["time"]) - start
        for e in entries
        if surface(e["path"]) == "arm" and arm_kind(e["method"]) == kind and int(e["status"]) != 429
    )
    if not times:
        return {"peakPerSecond": 0.0, "afterFirstWindowPerSecond": 0.0}
    peak, lo = 0, 0
    for hi, t in enumerate(times):
        while t - times[lo] > window:
            lo += 1
        peak = max(peak, hi - lo + 1)
    later = [t for t in times if t >= window]
    span = (times[-1] - window) if later else 0.0
    return {
        "peakPerSecond": round(peak / window, 2),
        "afterFirstWindowPerSecond": round(len(later) / span, 2) if span > 0 else 0.0,
    }


def floor_seconds(
    accepted: dict[str, int], buckets: dict[str, float], graph_queries: int, time_scale: float = 1.0
) -> dict[str, float]:
    """The least time the budgets allow for this many accepted requests: per bucket
    ``max(0, n - tokens at start) / refill`` (refill times ``time_scale``, as the emulator does);
    the run cannot beat the largest of them."""
    floors = {
        kind: round(max(0.0, accepted.get(kind, 0) - buckets[kind]) / (ARM_BUDGET[kind][1] * time_scale), 2)
        for kind in ARM_BUDGET
    }
    cap, rate = RESOURCE_GRAPH_BUDGET
    floors["resourceGraph"] = round(max(0.0, graph_queries - cap) / (rate * time_scale), 2)
    return floors


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return round(ordered[rank - 1], 2)


def latency(values: list[float]) -> dict[str, float]:
    return {
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "max": round(max(values), 2) if values else 0.0,
    }


def phase_durations(moves: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Per phase, seconds from its start to its end across moves (p50/p95/max)."""
    spans: dict[str, list[float]] = {}
    for move in moves:
        for entry in move.get("phases") or []:
            if entry.get("startedAt") and entry.get("completedAt"):
                spent = parse_time(entry["completedAt"]) - parse_time(entry["startedAt"])
                spans.setdefault(entry["name"], []).append(spent)
    return {name: latency(values) for name, values in spans.items()}


def path_template(path: str) -> str:
    """``/subscriptions/x/resourceGroups/rg/providers/Microsoft.Web/sites/a`` ->
    ``/subscriptions/{}/resourceGroups/{}/providers/Microsoft.Web/sites/{}`` (Graph: after the version)."""
    segs = [s for s in path.split("?")[0].strip("/").split("/") if s]
    head = segs[:2] if segs[:1] == ["graph"] else []
    out, name_next, i = list(head), False, len(head)
    while i < len(segs):
        seg = segs[i]
        if seg.lower() == "providers" and i + 1 < len(segs):
            out += [seg, segs[i + 1]]
            i, name_next = i + 2, False
            continue
        out.append("{}" if name_next else seg)
        name_next = not name_next
        i += 1
    return "/" + "/".join(out)


def top_requests(entries: list[dict[str, Any]], n: int = 15) -> list[dict[str, Any]]:
    """The most frequent ``METHOD template`` pairs: where the requests go."""
    counts = Counter(f"{e['method']} {path_template(e['path'])}" for e in entries)
    return [{"request": k, "count": v} for k, v in counts.most_common(n)]


def merge_counts(parts: list[dict[str, int]]) -> dict[str, int]:
    total: Counter[str] = Counter()
    for part in parts:
        total.update(part)
    return dict(sorted(total.items()))


def budget_use(
    entries: list[dict[str, Any]],
    start: float,
    end: float,
    scope: str,
    kind: str,
    budget: tuple[float, float],
    time_scale: float = 1.0,
) -> dict[str, float]:
    """Where one scope's ``kind`` budget went unused: the bucket replayed from the accepted requests
    (full at ``start``, ``budget`` = (capacity, refill per s) times ``time_scale``). Refill lost while the
    bucket was full is time the run gave away: ``idleBeforeFirst`` (nothing asked for it yet),
    ``idleBetween`` (between the first and the last accepted request) in seconds of refill, and
    ``tail`` (from the last accepted request to ``end``: the run's last moves waiting on something
    else). With the bucket empty at the last request, ``wall = floor + idleBeforeFirst + idleBetween
    + tail``."""
    cap, rate = budget[0], budget[1] * time_scale
    times = sorted(
        parse_time(e["time"]) - start
        for e in entries
        if surface(e["path"]) == "arm"
        and scope_of(e["path"]) == scope
        and arm_kind(e["method"]) == kind
        and int(e["status"]) != 429
    )
    if not times:
        return {"requests": 0}
    tokens, now, lost_before, lost_between = cap, 0.0, 0.0, 0.0
    for index, t in enumerate(times):
        gained = rate * max(0.0, t - now)
        overflow = max(0.0, tokens + gained - cap)
        if index == 0:
            lost_before += overflow
        else:
            lost_between += overflow
        tokens = min(cap, tokens + gained) - 1.0
        now = max(now, t)
    return {
        "requests": len(times),
        "firstSeconds": round(times[0], 2),
        "lastSeconds": round(times[-1], 2),
        "idleBeforeFirst": round(lost_before / rate, 2),
        "idleBetween": round(lost_between / rate, 2),
        "tail": round(max(0.0, end - start - times[-1]), 2),
        "tokensLeftAtLast": round(max(0.0, tokens), 1),
    }
