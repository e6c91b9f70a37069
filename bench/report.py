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


ROWS: list[Row] = [
    ("moves completed / started", lambda r: f"{r['moves']['completed']} / {r['moves']['started']}"),
    ("wall time, event -> all at rest (s)", lambda r: f"{r['wallSeconds']:.1f}"),
    (
        "per-move latency p50 / p95 / max (s)",
        lambda r: " / ".join(f"{v:.1f}" for v in r["latencySeconds"].values()),
    ),
    ("ARM writes PUT/PATCH/POST (accepted)", lambda r: str(r["arm"]["accepted"]["writes"])),
    ("ARM deletes (accepted)", lambda r: str(r["arm"]["accepted"]["deletes"])),
    ("ARM writes incl. deletes", lambda r: str(r["arm"]["writesInclDeletes"])),
    ("ARM reads (accepted)", lambda r: str(r["arm"]["accepted"]["reads"])),
    ("writes/s achieved (ARM: 10/s x timeScale)", lambda r: f"{r['arm']['perSecond']['writes']:.2f}"),
    ("write utilisation %", lambda r: f"{r['arm']['utilisationPercent']['writes']:.0f}%"),
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
    ("floor from budgets (s)", lambda r: f"{r['floor']['seconds']:.1f}"),
    (
        "wall / floor",
        lambda r: "-" if r["floor"]["wallOverFloor"] is None else f"{r['floor']['wallOverFloor']:.2f}x",
    ),
]


def render(document: dict[str, Any], console: Console | None = None) -> None:
    runs = len(document["runs"])
    console = console or Console(width=None if Console().is_terminal else 44 + 20 * runs)
    params = document["parameters"]
    table = Table(
        title=(
            f"Region fan-out: {params['identities']} identities, {params['workers']} instances, "
            f"timeScale {params['timeScale']} ({document['machine']['cpus']} CPUs)"
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
