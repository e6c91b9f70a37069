"""Rich views of moves for people: phase progress, plan report, lists, timelines.

Everything here takes the API's JSON (camelCase dicts) and returns a renderable; nothing calls the API.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from rich.console import Group, RenderableType
from rich.padding import Padding
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

PHASES = ("snapshot", "create", "grant", "rebind", "verify", "cleanup")
STATUS_STYLE = {
    "Pending": "yellow",
    "Running": "cyan",
    "Planned": "green",
    "AwaitingCommit": "magenta",
    "Completed": "bold green",
    "Failed": "bold red",
    "Canceled": "yellow",
    "Discarded": "dim",
}
PHASE_ICON = {
    "NotStarted": ("·", "dim"),
    "Pending": ("·", "dim"),
    "Running": ("▶", "cyan"),
    "Succeeded": ("✓", "green"),
    "Completed": ("✓", "green"),
    "Skipped": ("-", "dim"),
    "Failed": ("✗", "red"),
    "Canceled": ("■", "yellow"),
}


def status_text(status: str | None) -> Text:
    return Text(str(status), style=STATUS_STYLE.get(str(status), ""))


def _time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def duration(start: str | None, end: str | None, now: datetime | None = None) -> str:
    begin, finish = _time(start), _time(end) or now
    if begin is None or finish is None:
        return ""
    seconds = max(0.0, (finish - begin).total_seconds())
    return f"{seconds:.1f}s" if seconds < 120 else f"{seconds / 60:.1f}m"


def _bar(done: int, total: int, width: int = 16) -> Text:
    if total <= 0:
        return Text("")
    filled = round(width * min(done, total) / total)
    return Text("█" * filled, style="green") + Text("░" * (width - filled), style="dim")


def phase_table(move: dict[str, Any], now: datetime | None = None) -> Table:
    """One row per phase: icon, name, status, items done/total with a bar, time taken."""
    table = Table(box=None, pad_edge=False, show_header=True, header_style="bold")
    table.add_column("", width=1)
    table.add_column("phase")
    table.add_column("status")
    table.add_column("items", justify="right")
    table.add_column("")
    table.add_column("time", justify="right")
    current = move.get("phase")
    for phase in move.get("phases") or []:
        status = str(phase.get("status", ""))
        icon, style = PHASE_ICON.get(status, ("?", ""))
        items = phase.get("items") or {}
        total, done, failed = (
            int(items.get("total", 0)),
            int(items.get("done", 0)),
            int(items.get("failed", 0)),
        )
        count = f"{done}/{total}" + (f" ({failed} failed)" if failed else "") if items else ""
        name = Text(str(phase.get("name")), style="bold" if phase.get("name") == current else "")
        end = phase.get("completedAt") if phase.get("completedAt") else None
        running_now = now if status == "Running" else None
        table.add_row(
            Text(icon, style=style),
            name,
            Text(status, style=style),
            count,
            _bar(done, total) if items and status != "NotStarted" else Text(""),
            duration(phase.get("startedAt"), end, running_now),
        )
    return table


def move_header(move: dict[str, Any]) -> Text:
    source, target = move.get("source") or {}, move.get("target") or {}
    request = move.get("request") or {}
    text = Text()
    text.append(f"move {move.get('id')}  ", style="bold")
    text.append_text(status_text(move.get("status")))
    text.append(f"\n{source.get('name') or source.get('id')}")
    if source.get("location"):
        text.append(f" ({source['location']})", style="dim")
    text.append(" → ")
    text.append(str(target.get("name") or request.get("targetName") or "new identity"))
    region = target.get("location") or request.get("targetRegion")
    if region:
        text.append(f" ({region})", style="dim")
    return text


def move_view(move: dict[str, Any], now: datetime | None = None) -> RenderableType:
    parts: list[RenderableType] = [move_header(move), phase_table(move, now)]
    error = move.get("error")
    if error:
        parts.append(
            Text(f"{error.get('code')}: {error.get('message')}  [{error.get('target')}]", style="red")
        )
    plan = move.get("plan") or {}
    for item in plan.get("blocking") or []:
        parts.append(Text(f"blocking: {_describe(item)}", style="red"))
    for item in plan.get("actionsRequired") or []:
        parts.append(Text(f"action required: {item.get('code')}: {item.get('message')}", style="magenta"))
    return Panel(Group(*parts), border_style=STATUS_STYLE.get(str(move.get("status")), "cyan"), expand=False)


def _describe(item: Any) -> str:
    if isinstance(item, dict):
        code = item.get("code")
        message = item.get("message") or item.get("reason") or ""
        target = item.get("target")
        return " ".join(
            str(p) for p in (f"{code}:" if code else "", message, f"[{target}]" if target else "") if p
        )
    return str(item)


def timeline(move: dict[str, Any]) -> Table:
    """When each phase started and ended, for the record."""
    table = Table(title="Phase timeline", title_justify="left", header_style="bold")
    for column in ("phase", "status", "started", "completed", "took", "items"):
        table.add_column(column)
    for phase in move.get("phases") or []:
        start, end = phase.get("startedAt"), phase.get("completedAt")
        items = phase.get("items") or {}
        status = str(phase.get("status", ""))
        icon, style = PHASE_ICON.get(status, ("?", ""))
        table.add_row(
            str(phase.get("name")),
            Text(f"{icon} {status}", style=style),
            _clock(start),
            _clock(end),
            duration(start, end),
            f"{items.get('done', 0)}/{items.get('total', 0)}" if items else "",
        )
    return table


def _clock(value: str | None) -> str:
    moment = _time(value)
    return moment.strftime("%H:%M:%S.%f")[:-3] if moment else ""


def _date_time(value: str | None) -> str:
    moment = _time(value)
    return moment.strftime("%Y-%m-%d %H:%M:%S") if moment else ""


def moves_table(moves: list[dict[str, Any]]) -> Table:
    """Newest first, as the API lists them; ids in full (a move id is what every command takes)."""
    table = Table(header_style="bold")
    for column in ("id", "status", "phase", "source", "target region", "created (UTC)", "updated (UTC)"):
        table.add_column(column, overflow="fold")
    for move in moves:
        source = move.get("source") or {}
        request = move.get("request") or {}
        table.add_row(
            str(move.get("id")),
            status_text(move.get("status")),
            str(move.get("phase") or ""),
            str(source.get("name") or source.get("id") or ""),
            str(request.get("targetRegion") or (move.get("target") or {}).get("location") or ""),
            _date_time(move.get("createdAt")),
            _date_time(move.get("updatedAt")),
        )
    return table


# --- the plan report -----------------------------------------------------------------------------

PLAN_SECTIONS = (
    ("roleAssignments", "Role assignments"),
    ("federatedCredentials", "Federated credentials"),
    ("groups", "Entra group memberships"),
    ("appRoles", "App role assignments"),
    ("appRoleAssignments", "App role assignments"),
    ("attachments", "Resources using the identity"),
)
APP_ROLE_COLUMNS = ("resourceDisplayName", "appRoleValue", "appRoleId", "resourceId")
PREFERRED_COLUMNS = {
    "roleAssignments": ("roleName", "scope", "privileged", "condition"),
    "federatedCredentials": ("name", "issuer", "subject", "audiences"),
    "groups": ("displayName", "id"),
    "appRoles": APP_ROLE_COLUMNS,
    "appRoleAssignments": APP_ROLE_COLUMNS,
    "attachments": ("name", "id", "type", "location", "attached", "refs"),
}


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, list):
        return ", ".join(_cell(v) for v in value)
    if isinstance(value, bool):
        return "yes" if value else ""
    if isinstance(value, dict):
        return ", ".join(f"{k}={_cell(v)}" for k, v in value.items())
    return str(value)


def _items_table(title: str, key: str, items: list[Any]) -> Table:
    table = Table(title=f"{title} ({len(items)})", title_justify="left", header_style="bold", expand=False)
    rows = [item if isinstance(item, dict) else {"value": item} for item in items]
    present = [c for c in PREFERRED_COLUMNS.get(key, ()) if any(c in row for row in rows)]
    if not present:
        seen: list[str] = []
        for row in rows:
            seen.extend(k for k in row if k not in seen)
        present = seen[:5]
    for column in present:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*[_cell(row.get(column)) for column in present])
    return table


DATA_PLANE = (
    "keyVaultAccessPolicies",
    "cosmosRoleAssignments",
    "flexibleServerAdmins",
    "appSettings",
    "sqlServers",
)


def _name(resource_id: Any) -> str:
    return str(resource_id or "").rstrip("/").rsplit("/", 1)[-1]


def _short_target(target: str) -> str:
    """A resource id from its type on (80 columns leave no room for subscription GUIDs)."""
    parts = target.strip("/").split("/")
    lowered = [p.lower() for p in parts]
    if not target.startswith("/subscriptions/") or "providers" not in lowered:
        return target
    return "/".join(parts[lowered.index("providers") + 2 :])


def _words(key: str) -> str:
    out = "".join(f" {c.lower()}" if c.isupper() else c for c in key)
    return out.strip()


def data_plane_lines(inventory: dict[str, Any]) -> list[Text]:
    """One short line per data-plane grant (plan.inventory), readable at 80 columns."""
    lines: list[Text] = []

    def line(kind: str, what: str) -> None:
        lines.append(Text(f"  {kind:<18}", style="cyan") + Text(what))

    for e in inventory.get("keyVaultAccessPolicies") or []:
        perms = "; ".join(f"{k} {', '.join(v)}" for k, v in (e.get("permissions") or {}).items())
        line("Key Vault policy", f"{_name(e.get('vault'))}: {perms}")
    for e in inventory.get("cosmosRoleAssignments") or []:
        role = _name(e.get("roleDefinitionId"))
        role = {"00000000-0000-0000-0000-000000000001": "Data Reader",
                "00000000-0000-0000-0000-000000000002": "Data Contributor"}.get(role, role)  # fmt: skip
        scope = str(e.get("scope") or "")
        inner = scope[len(str(e.get("account") or "")) :] or "/"
        line("Cosmos DB role", f"{_name(e.get('account'))}: {role} at {inner}")
    for e in inventory.get("flexibleServerAdmins") or []:
        note = " (reported only: one admin)" if e.get("reportOnly") else ""
        line(f"{e.get('engine') or 'DB'} admin", f"{_name(e.get('server'))}{note}")
    for e in inventory.get("appSettings") or []:
        names = [*(e.get("appSettings") or []), *(e.get("connectionStrings") or [])]
        line("App settings", f"{_name(e.get('site'))}: {', '.join(names)}")
    return lines


def plan_report(move: dict[str, Any]) -> RenderableType:
    """What a move will copy (from the snapshot's plan) and what blocks or warns."""
    plan = move.get("plan") or {}
    parts: list[RenderableType] = [move_header(move)]
    nested = plan.get("inventory") or plan.get("items")
    inventory: dict[str, Any] = nested if isinstance(nested, dict) else plan
    for key, title in PLAN_SECTIONS:
        items = inventory.get(key)
        if isinstance(items, list):
            parts.append(_items_table(title, key, items) if items else Text(f"{title}: none", style="dim"))
    grants = data_plane_lines(inventory)
    if grants:
        parts.append(Text(f"Data-plane grants ({len(grants)}) — copied, verified, cleaned up:", style="bold"))
        parts.extend(grants)
    discovery = plan.get("discovery") or {}
    if discovery:
        read = ", ".join(f"{_words(k)} {v}" for k, v in discovery.items())
        parts.append(Text(f"Read to find them: {read}", style="dim"))
    actions = plan.get("actionsRequired") or []
    if actions:
        parts.append(
            Text(f"Actions required ({len(actions)}) — steps the mover cannot take:", style="bold magenta")
        )
        for item in actions:
            target = _short_target(str(item.get("target") or ""))
            parts.append(Text(f"  ▸ {item.get('code')}", style="bold magenta"))
            parts.append(Padding(Text(target, style="magenta"), (0, 0, 0, 4)))
            parts.append(Padding(Text(str(item.get("message") or "")), (0, 0, 0, 4)))
    known = (
        {key for key, _ in PLAN_SECTIONS} | {"blocking", "warnings", "items", "inventory"} | set(DATA_PLANE)
    )
    for key, value in inventory.items():
        if key not in known and isinstance(value, list) and value and isinstance(value[0], dict):
            parts.append(_items_table(key, key, value))
    blocking, warnings = plan.get("blocking") or [], plan.get("warnings") or []
    error = move.get("error")
    if blocking:
        parts.append(Text("Blocking — the move will not start until these are resolved:", style="bold red"))
        parts.extend(Text(f"  ✗ {_describe(item)}", style="red") for item in blocking)
    elif error:  # no plan was made (e.g. the identity does not exist): say why, not "nothing blocks"
        where = f"  [{error.get('target')}]" if error.get("target") else ""
        parts.append(Text("✗ No plan: the dry run failed", style="bold red"))
        parts.append(Text(f"  {error.get('code')}: {error.get('message')}{where}", style="red"))
    else:
        parts.append(Text("✓ Nothing blocks this move.", style="green"))
    if warnings:
        parts.append(Text("Warnings:", style="bold yellow"))
        parts.extend(Text(f"  ! {_describe(item)}", style="yellow") for item in warnings)
    return Group(*parts)
