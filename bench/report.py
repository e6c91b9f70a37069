"""The human-readable table of a fan-out results document (one column per run), with rich.

Example::

    render(json.loads(Path("bench/results/latest.json").read_text()))
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.console import Console
from rich.table import Table

Row = tuple[str, Callable[[dict[str, Any]], str]]


def _kinds(values: dict[str, Any], keys: tuple[str, ...] = ("reads", "writes", "deletes")) -> str:
    return " / ".join(str(values.get(k, 0)) for k in keys)


def _cpu(r: dict[str, Any]) -> str:
    per = r.get("cpuSecondsPerMove") or {}
    return " / ".join(
        "-" if per.get(k) is None else f"{per[k]:.2f}" for k in ("hosts", "emulator", "azurite")
    )


def _opt(value: Any, fmt: str = "{:.2f}") -> str:
    return "-" if value is None else fmt.format(value)


ROWS: list[Row] = [
    (
        "identities / subscriptions / instances",
        lambda r: f"{r['fleet']['identities']} / {r['fleet']['subscriptions']} / {r['fleet']['instances']}",
    ),
    ("emulator timeScale", lambda r: f"{r['fleet']['timeScale']:g}"),
    ("moves completed / started", lambda r: f"{r['moves']['completed']} / {r['moves']['started']}"),
    ("wall time, event -> all at rest (s)", lambda r: f"{r['wallSeconds']:.1f}"),
    ("CPU-s per move: hosts / emulator / Azurite", _cpu),
    (
        "CPU busy, % of all cores over the wall time",
        lambda r: _opt(r["cpu"]["busyPercentOfCores"], "{:.0f}%"),
    ),
    ("write floor, busiest subscription (s)", lambda r: f"{r['writeFloorSeconds']:.1f}"),
    ("ratio_to_lower_bound (wall / write floor)", lambda r: _opt(r["ratio_to_lower_bound"])),
    ("speedup_vs_sequential", lambda r: _opt(r["speedup_vs_sequential"], "{:.1f}x")),
    (
        "  the same, baseline without its extra discovery",
        lambda r: _opt((r.get("sequentialSameCalls") or {}).get("speedupSameCalls"), "{:.1f}x"),
    ),
    (
        "floors (s): reads / writes / deletes (max sub)",
        lambda r: " / ".join(
            f"{r['floor']['perBudgetSeconds'][k]:.1f}" for k in ("reads", "writes", "deletes")
        ),
    ),
    (
        "floors (s): tenant reads / Resource Graph",
        lambda r: (
            f"{r['floor']['perBudgetSeconds']['tenantReads']:.1f} / {r['floor']['perBudgetSeconds']['resourceGraph']:.1f}"
        ),
    ),
    (
        "per move: reads / writes / deletes",
        lambda r: " / ".join(f"{r['perMove'][k]:.1f}" for k in ("reads", "writes", "deletes")),
    ),
    (
        "per move: RG queries / Graph calls / queue msgs",
        lambda r: " / ".join(
            f"{r['perMove'][k]:.1f}" for k in ("resourceGraphQueries", "graphCalls", "queueMessages")
        ),
    ),
    (
        "per-move latency p50 / p95 / max (s)",
        lambda r: " / ".join(f"{v:.1f}" for v in r["latencySeconds"].values()),
    ),
    ("ARM writes PUT/PATCH/POST (accepted)", lambda r: str(r["arm"]["accepted"]["writes"])),
    ("ARM deletes (accepted)", lambda r: str(r["arm"]["accepted"]["deletes"])),
    ("ARM writes incl. deletes", lambda r: str(r["arm"]["writesInclDeletes"])),
    ("ARM reads (accepted)", lambda r: str(r["arm"]["accepted"]["reads"])),
    ("writes/s achieved (ARM: 10/s x timeScale)", lambda r: f"{r['arm']['perSecond']['writes']:.2f}"),
    (
        "write utilisation % (of all subscriptions)",
        lambda r: f"{r['arm']['utilisationPercent']['writes']:.0f}%",
    ),
    (
        "deletes/s, reads/s",
        lambda r: f"{r['arm']['perSecond']['deletes']:.2f}, {r['arm']['perSecond']['reads']:.2f}",
    ),
    ("peak writes/s over 10 s", lambda r: f"{r['arm']['writeProfile']['peakPerSecond']:.1f}"),
    ("429s reads / writes / deletes", lambda r: _kinds(r["throttling"]["serverSide429"])),
    ("429s Resource Graph", lambda r: str(r["throttling"]["serverSide429"]["resourceGraph"])),
    (
        "Retry-After honoured (s, all instances)",
        lambda r: f"{r['throttling']['retryAfterHonouredSeconds']:.1f}",
    ),
    ("client pacing wait (s, all instances)", lambda r: f"{r['throttling']['pacingWaitSeconds']:.1f}"),
    ("Graph calls (accepted)", lambda r: str(r["graph"].get("accepted", 0))),
    ("Resource Graph queries", lambda r: str(r["resourceGraph"].get("accepted", 0))),
    ("storage transactions (engine)", lambda r: str(r["storage"]["engineTransactions"])),
    ("storage transactions per move", lambda r: f"{r['storage']['perMove']:.0f}"),
    ("engine retries (TransientError)", lambda r: str(r["engine"]["retriesTotal"])),
    ("lost races / stale messages", lambda r: f"{r['engine']['lostRaces']} / {r['engine']['staleMessages']}"),
    ("queue messages handled", lambda r: str(r["engine"]["messagesHandled"])),
    ("binding floor (s, budget)", lambda r: f"{r['floor']['seconds']:.1f} ({r['floor']['binding']})"),
    (
        "wall / floor",
        lambda r: "-" if r["floor"]["wallOverFloor"] is None else f"{r['floor']['wallOverFloor']:.2f}x",
    ),
]


def render(document: dict[str, Any], console: Console | None = None) -> None:
    runs = len(document["runs"])
    console = console or Console(width=None if Console().is_terminal else 64 + 22 * runs)
    params = document["parameters"]
    table = Table(
        title=(
            f"Region fan-out, latency {params['latencyMs']['read']:g}/{params['latencyMs']['write']:g} ms "
            f"({document['machine']['cpus']} CPUs, load {document['machine'].get('loadAverage', '?')})"
        )
    )
    table.add_column("metric", no_wrap=True)
    for run in document["runs"]:
        table.add_column(run["name"], justify="right")
    for label, cell in ROWS:
        table.add_row(label, *(cell(run) for run in document["runs"]))
    console.print(table)
    phases = Table(title="phase duration p50 / max (s), completed moves")
    phases.add_column("phase")
    for run in document["runs"]:
        phases.add_column(run["name"], justify="right")
    names = list(dict.fromkeys(n for run in document["runs"] for n in run["phaseSeconds"]))
    for name in names:
        phases.add_row(
            name,
            *(
                f"{run['phaseSeconds'][name]['p50']:.1f} / {run['phaseSeconds'][name]['max']:.1f}"
                if name in run["phaseSeconds"]
                else "-"
                for run in document["runs"]
            ),
        )
    console.print(phases)
    seq = document.get("sequential")
    if seq:
        per = seq.get("perMove") or {}
        cpu = seq.get("cpuSecondsPerMove") or {}
        console.print(
            f"sequential baseline ({seq['sampleMoves']} moves of the {seq.get('estate')} estate, one at a time): "
            f"{seq['meanMoveSeconds']:.1f} s per move {seq['moveSeconds']}; per move reads / writes / deletes "
            f"{per.get('reads')} / {per.get('writes')} / {per.get('deletes')}, Resource Graph {per.get('resourceGraphQueries')}, "
            f"Graph {per.get('graphCalls')}; CPU-s per move hosts / emulator / Azurite "
            f"{cpu.get('hosts')} / {cpu.get('emulator')} / {cpu.get('azurite')}"
        )
