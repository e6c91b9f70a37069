"""What a move did, by whom and when: ``GET /api/moves/{id}/report`` and ``idmove report``.

Read from the move's own partition only (no Azure call): the record (its ``audit`` of commands),
every item entity of the fanned-out phases (with its outcome and the time the store last wrote it),
the verify counts the engine kept, the plan's actionsRequired, and the outbox's events.

================  ===============================================================================
section           from
================  ===============================================================================
``started``       the record's first ``audit`` entry (who: signed-in principal, "function key",
                  "local", or the Event Grid event id and topic)
``commands``      later ``audit`` entries: commit, cancel, retry, discard (also the commit policy)
``copied``        grant items (role assignments, credentials, groups, data-plane grants ...)
``rebound``       rebind items (resources given the new identity, settings rewritten)
``verified``      what verify compared (counts per kind) and its outcome
``deleted``       cleanup items (detached, deleted) after commit
``events``        the outbox, oldest first, with whether each was sent
================  ===============================================================================

Example::

    body = build(record, items, events)      # items/events: raw table entities of the move
    print(to_markdown(body))
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from shared.store import MoveRecord

__all__ = ["build", "to_markdown"]

# the item data fields that name what an item is about, most telling first
_WHAT = (
    "roleName",
    "displayName",
    "resourceDisplayName",
    "name",
    "vault",
    "account",
    "server",
    "site",
    "id",
)
_WHERE = ("scope", "issuer", "subject", "resourceId", "type")
_SECTIONS = {"grant": "copied", "rebind": "rebound", "cleanup": "deleted"}


def _time(value: Any) -> str | None:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value) if value else None


def _what(key: str, data: dict[str, Any]) -> str:
    name = next((str(data[f]) for f in _WHAT if data.get(f)), key)
    where = next((str(data[f]) for f in _WHERE if data.get(f) and str(data[f]) != name), None)
    return f"{name} ({where})" if where else name


def _item(entity: Any, source: dict[str, Any], target: dict[str, Any]) -> dict[str, Any]:
    data = json.loads(entity.get("Data") or "{}")
    result = json.loads(entity.get("Result") or "null") or {}
    error = json.loads(entity.get("Error") or "null")
    phase = str(entity["Phase"])
    if phase == "cleanup":  # what cleanup removes is the old identity's
        origin, dest = source.get("name"), None
    else:
        origin, dest = source.get("name"), target.get("name")
    outcome = result.get("outcome") or entity.get("Status")
    entry: dict[str, Any] = {
        "kind": str(entity.get("Kind")),
        "what": _what(str(entity.get("Key")), data),
        "from": origin,
        "to": dest,
        "status": str(entity.get("Status")),
        "outcome": str(outcome) if outcome else None,
        "at": _time((getattr(entity, "metadata", None) or {}).get("timestamp")),
    }
    if error:
        entry["error"] = error
    return entry


def build(record: MoveRecord, items: Iterable[Any], events: Iterable[Any]) -> dict[str, Any]:
    """The report of ``record``; ``items`` and ``events`` are the move's table entities."""
    source, target = record.source or {}, record.target or {}
    audit = list(record.audit)
    started = audit[0] if audit and audit[0].get("command") == "start" else {"by": None, "at": None}
    started = {**started, "at": started.get("at") or record.created_at}
    sections: dict[str, list[dict[str, Any]]] = {"copied": [], "rebound": [], "deleted": []}
    for entity in items:
        section = _SECTIONS.get(str(entity.get("Phase")))
        if section:
            sections[section].append(_item(entity, source, target))
    for listed in sections.values():
        listed.sort(key=lambda e: (e["at"] or "", e["kind"], e["what"]))
    verify = next((p for p in record.phases if p.get("name") == "verify"), {})
    plan = record.plan or {}
    client_id = target.get("clientId")
    actions = [
        {**a, "message": str(a.get("message", "")).replace("<new clientId>", str(client_id))}
        if client_id
        else dict(a)
        for a in plan.get("actionsRequired") or []
    ]
    body: dict[str, Any] = {
        "id": record.id,
        "status": record.status.value,
        "dryRun": record.dry_run,
        "source": {k: source.get(k) for k in ("id", "name", "resourceGroup", "location", "principalId")},
        "target": {
            k: target.get(k) for k in ("id", "name", "resourceGroup", "location", "principalId", "clientId")
        },
        "started": started,
        "commands": [a for a in audit if a is not started and a.get("command") != "start"],
        "phases": [
            {k: p.get(k) for k in ("name", "status", "startedAt", "completedAt")} for p in record.phases
        ],
        **sections,
        "verified": {
            "status": verify.get("status"),
            "completedAt": verify.get("completedAt"),
            "checked": dict(verify.get("checked") or {}),
        },
        "actionsRequired": actions,
        "events": [
            {
                "id": f"{e['PartitionKey']}/{e['RowKey']}",
                "type": str(e.get("Type")),
                "time": str(e.get("Time")),
                "sent": bool(e.get("Published")),
                "data": json.loads(e.get("Data") or "{}"),
            }
            for e in events
        ],
        "createdAt": record.created_at,
        "updatedAt": record.updated_at,
    }
    if record.error:
        body["error"] = record.error
    return body


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _table(headers: list[str], rows: list[list[Any]]) -> list[str]:
    if not rows:
        return ["(none)", ""]
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return [*out, ""]


def _who(entry: dict[str, Any]) -> str:
    who = str(entry.get("by") or "unknown")
    if entry.get("topic"):
        who += f" (topic {entry['topic']})"
    if entry.get("reason"):
        who += f": {entry['reason']}"
    return who


def to_markdown(report: dict[str, Any]) -> str:
    """The report as Markdown: headings and tables, one line per item."""
    src, tgt = report["source"], report["target"]
    lines = [
        f"# Identity move {report['id']}",
        "",
        f"- **Status:** {report['status']}" + (" (dry run)" if report.get("dryRun") else ""),
        f"- **Source:** {src.get('name')} in {src.get('location')} (`{src.get('id')}`)",
        f"- **Target:** {tgt.get('name') or '-'} in {tgt.get('location') or '-'}"
        + (f" (`{tgt['id']}`)" if tgt.get("id") else ""),
        f"- **Started** by {_who(report['started'])} at {report['started'].get('at')}",
    ]
    for command in report["commands"]:
        lines.append(
            f"- **{str(command.get('command')).capitalize()}** by {_who(command)} at {command.get('at')}"
        )
    if report.get("error"):
        err = report["error"]
        lines.append(f"- **Error:** `{err.get('code')}` {err.get('message')} (target: {err.get('target')})")
    lines += ["", "## Phases", ""]
    lines += _table(
        ["phase", "status", "started", "completed"],
        [[p["name"], p["status"], p.get("startedAt"), p.get("completedAt")] for p in report["phases"]],
    )
    titles = {
        "copied": "Copied to the new identity",
        "rebound": "Resources rebound",
        "deleted": "Deleted at cleanup",
    }
    for section, title in titles.items():
        lines += [f"## {title}", ""]
        lines += _table(
            ["kind", "what", "from", "to", "outcome", "time"],
            [
                [i["kind"], i["what"], i.get("from"), i.get("to") or "-", i.get("outcome"), i.get("at")]
                for i in report[section]
            ],
        )
    verified = report["verified"]
    lines += [
        "## Verified",
        "",
        f"Status: {verified.get('status')} at {verified.get('completedAt') or '-'}",
        "",
    ]
    lines += _table(["kind", "compared"], [[k, v] for k, v in sorted(verified["checked"].items())])
    lines += ["## Actions a person still has to take", ""]
    lines += _table(
        ["code", "target", "what to do"],
        [[a.get("code"), a.get("target"), a.get("message")] for a in report["actionsRequired"]],
    )
    lines += ["## Events sent", ""]
    lines += _table(
        ["time", "type", "id", "sent"],
        [[e["time"], e["type"], e["id"], "yes" if e["sent"] else "not yet"] for e in report["events"]],
    )
    return "\n".join(lines).rstrip() + "\n"
