"""``idmove demo`` (``make demo``): one complete move on a local stack, start to finish, in about a minute.

1. start Azurite + the emulator + the Functions host on free loopback ports;
2. seed a realistic estate (``idmove/estate.py``) and set the emulator's replication delay (2 s),
   so the engine has to wait for the new principal the way it does in Azure;
3. start the move through the HTTP API, follow it phase by phase, commit when it is verified;
4. print the phase timeline and the source (before) vs target (after), read straight from ARM/Graph;
5. stop everything. Exit 0 only if the move completed and the target has everything the source had.
"""

from __future__ import annotations

import time
from typing import Any

import httpx
from rich.console import Console, Group
from rich.panel import Panel
from rich.rule import Rule
from rich.table import Table
from rich.text import Text

from idmove import render
from idmove.cli import follow
from idmove.client import MoveClient
from idmove.inventory import Inventory, compare
from idmove.stack import Stack

TARGET_REGION = "northeurope"


def seed(emulator_url: str) -> dict[str, Any]:
    """The demo estate (``idmove/estate.py``): ``{"identityId", "subscriptions", "resources"}``."""
    from idmove.estate import clients_for
    from idmove.estate import seed as seed_estate

    estate = seed_estate(clients_for(emulator_url))
    return {
        "identityId": estate.identity_id,
        "subscriptions": [estate.subscription_id],
        "resources": estate.attached_ids,
    }


def _retries_seen(emulator_url: str, since: int) -> dict[str, int]:
    """How often Azure (the emulator) said "not yet" during the move: the engine waited and retried."""
    seen = httpx.get(f"{emulator_url}/_emulator/requests", timeout=10).json()[since:]
    counts = {"requests": len(seen), "throttled": 0, "not yet replicated": 0}
    for request in seen:
        status, path = int(request.get("status", 0)), str(request.get("path", "")).lower()
        if status == 429:
            counts["throttled"] += 1
        elif (status == 404 and "/graph/" in path and "serviceprincipals" in path) or (
            status == 400 and "roleassignments" in path
        ):
            counts["not yet replicated"] += 1
    return counts


def comparison_table(rows: list[tuple[str, str, bool, bool]], source: str, target: str) -> Table:
    table = Table(
        title=f"Source before the move vs target after it\n{source} → {target}",
        title_justify="left",
        header_style="bold",
    )
    table.add_column("item", overflow="fold")
    table.add_column("source", justify="center")
    table.add_column("target", justify="center")
    table.add_column("", justify="center")
    kind_seen = ""
    for kind, label, before, after in rows:
        if kind != kind_seen:
            table.add_row(Text(kind, style="bold cyan"), "", "", "")
            kind_seen = kind
        ok = before == after
        table.add_row(
            f"  {label}",
            "●" if before else "",
            "●" if after else "",
            Text("✓", style="bold green") if ok else Text("✗", style="bold red"),
        )
    return table


def run(replication_delay: float = 2.0, timeout: float = 300.0, console: Console | None = None) -> int:
    console = console or Console(highlight=False)
    started = time.monotonic()
    console.print(Rule("[bold]Identity Mover demo[/]"))
    console.print("Moves a user-assigned managed identity to another region, through the HTTP API.\n")
    with console.status("Starting Azurite, the Azure emulator and the Functions host…"):
        stack = Stack.start()
    try:
        return _demo(stack, console, replication_delay, timeout, started)
    except KeyboardInterrupt:
        console.print("interrupted; stopping the stack", style="yellow")
        return 130
    finally:
        with console.status("Stopping the stack…"):
            stack.stop()
        host_log = stack.logs.get("host")
        console.print(f"[dim]stack stopped; logs in {host_log.parent if host_log else '-'}[/]")


def _demo(stack: Stack, console: Console, replication_delay: float, timeout: float, started: float) -> int:
    console.print(f"  [green]✓[/] HTTP API  {stack.api_url}/api/moves")
    console.print(f"  [green]✓[/] emulator  {stack.emulator_url}  (replication delay {replication_delay:g}s)")
    console.print(
        f"  [green]✓[/] Azurite   queues :{stack.azurite.queue_port}  tables :{stack.azurite.table_port}\n"
    )
    with console.status("Seeding a realistic estate…"):
        estate = seed(stack.emulator_url)
    # From now on a new principal takes a while to show up in Graph, as in Azure.
    httpx.put(
        f"{stack.emulator_url}/_emulator/config",
        json={"replicationDelaySeconds": replication_delay},
        timeout=10,
    ).raise_for_status()
    identity_id: str = estate["identityId"]
    subscriptions: list[str] = list(estate["subscriptions"])
    with Inventory(stack.emulator_url) as reader:
        resources = list(estate.get("resources") or reader.find_resources(identity_id, subscriptions))
        before = reader.read(identity_id, resources, subscriptions)
    console.print(
        Panel(_estate_summary(identity_id, before.identity, before.items), title="The estate", expand=False)
    )
    requests_before = len(httpx.get(f"{stack.emulator_url}/_emulator/requests", timeout=10).json())

    from idmove.cli import Output

    out = Output("text")
    with MoveClient(stack.api_url) as api:
        accepted = api.start({"sourceIdentityId": identity_id, "targetRegion": TARGET_REGION})
        console.print(f"POST /api/moves → 202, Location: {api.api}/api/moves/{accepted['id']}")
        move = follow(api, out, accepted["id"], timeout)
        console.line()
        if move["status"] != "AwaitingCommit":
            return _failed(console, move)
        console.print(
            "[magenta]Verified through the control plane.[/] Committing: the source will be cleaned up."
        )
        api.command(move["id"], "commit")
        move = follow(
            api, out, move["id"], timeout, until=lambda m: m.get("status") not in {"Running", "Pending"}
        )
        console.line()
        if move["status"] != "Completed":
            return _failed(console, move)

    console.print(render.timeline(move))
    retries = _retries_seen(stack.emulator_url, requests_before)
    console.print(
        f"[dim]{retries['requests']} ARM/Graph requests; Azure said 'not yet' {retries['not yet replicated']} "
        f"time(s) while the new principal replicated and throttled {retries['throttled']} time(s): "
        "the engine waited and retried.[/]"
    )
    target = move["target"]
    with Inventory(stack.emulator_url) as reader:
        after = reader.read(str(target["id"]), resources, subscriptions)
        source_gone = reader.arm.get(identity_id, params={"api-version": "2023-01-31"}).status_code == 404
    rows = compare(before, after)
    source_label = f"{before.identity.get('name')} ({before.identity.get('location')})"
    target_label = f"{target.get('name')} ({target.get('location')})"
    console.print(comparison_table(rows, source_label, target_label))
    missing = [row for row in rows if row[2] != row[3]]
    elapsed = time.monotonic() - started
    if missing:
        console.print(f"[bold red]✗ {len(missing)} item(s) differ between source and target.[/]")
        return 1
    cleaned = "the source identity was deleted" if source_gone else "the source identity is still there"
    console.print(
        Panel(
            Text.assemble(
                ("✓ Move completed. ", "bold green"),
                f"{len(rows)} items copied and verified; {cleaned}. ({elapsed:.0f}s)",
            ),
            expand=False,
            border_style="green",
        )
    )
    return 0


def _estate_summary(identity_id: str, identity: dict[str, Any], items: dict[str, dict[Any, str]]) -> Group:
    lines: list[Any] = [
        Text.assemble(("identity  ", "bold"), f"{identity.get('name')} in {identity.get('location')}"),
        Text(identity_id, style="dim"),
    ]
    for kind, entries in items.items():
        lines.append(Text(f"{kind}: {len(entries)}", style="cyan"))
        lines.extend(Text(f"  • {label}") for label in sorted(entries.values())[:8])
    lines.append(Text.assemble(("target region  ", "bold"), TARGET_REGION))
    return Group(*lines)


def _failed(console: Console, move: dict[str, Any]) -> int:
    console.print(render.move_view(move))
    error = move.get("error") or {}
    console.print(
        f"[bold red]✗ The move ended {move.get('status')}[/]: {error.get('code')} {error.get('message')}\n"
        "  Host log: .idmove/logs/host.log"
    )
    return 1
