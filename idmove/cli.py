"""``idmove``: run the local stack and start, watch and steer moves through the HTTP API.

Every client command takes ``--api`` (env ``IDMOVE_API``), ``--key`` (env ``IDMOVE_API_KEY``) and
``--output json`` (machine-readable; nothing else on stdout). Exit codes: see ``EPILOG``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.live import Live

from idmove import render
from idmove.client import (
    AT_REST,
    DEFAULT_API,
    ApiProblem,
    ClientError,
    InvalidMoveId,
    MoveClient,
    Unreachable,
    WaitTimeout,
)

EXIT_OK = 0
EXIT_MOVE_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_CONFLICT = 3
EXIT_UNREACHABLE = 4
EXIT_TIMEOUT = 5
EXIT_SERVER_ERROR = 6
EXIT_INTERRUPTED = 130

EPILOG = """\
exit codes (scripts can rely on them):
  0  success: the command did what it was asked; a move is at rest as expected
  1  the move failed (Failed, Canceled or Discarded where Completed was expected; a plan with blockers)
  2  bad input or usage: the API answered 4xx (error.code says why), or bad arguments
  3  conflict (409): the identity already has a move in flight, or the move's status does not allow this
  4  cannot reach the API: start the stack with `idmove up`, or pass --api / --key
  5  timed out waiting for the move (it goes on: follow it with `idmove status ID`)
  6  the API failed (5xx)
  130  interrupted (Ctrl-C); a move that was started goes on

examples:
  idmove up                                    # Azurite + emulator + host on 127.0.0.1
  idmove plan /subscriptions/<sub>/resourceGroups/rg/providers/Microsoft.ManagedIdentity/userAssignedIdentities/app --to northeurope
  idmove move <identity id> --to northeurope --commit
  idmove list --status Failed --output json
"""


class Output:
    """Text for people (rich) or JSON for scripts, never both on stdout."""

    def __init__(self, mode: str) -> None:
        self.json = mode == "json"
        self.console = Console(highlight=False)
        self.err = Console(stderr=True, highlight=False)

    def data(self, value: Any) -> None:
        if self.json:
            sys.stdout.write(json.dumps(value, indent=2, sort_keys=False) + "\n")
            sys.stdout.flush()

    def show(self, renderable: Any) -> None:
        if not self.json:
            self.console.print(renderable)

    def note(self, message: str, style: str = "dim") -> None:
        if not self.json:
            self.err.print(message, style=style)

    def fail(self, message: str, payload: dict[str, Any]) -> None:
        if self.json:
            self.data(payload)
        else:
            self.err.print(f"error: {message}", style="bold red")


# --- arguments -----------------------------------------------------------------------------------


def _client_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("API")
    group.add_argument(
        "--api",
        default=os.environ.get("IDMOVE_API", DEFAULT_API),
        help="API base URL (env IDMOVE_API) [%(default)s]",
    )
    group.add_argument(
        "--key", default=os.environ.get("IDMOVE_API_KEY"), help="function key (env IDMOVE_API_KEY)"
    )
    group.add_argument(
        "--output", "-o", choices=("text", "json"), default="text", help="output format [text]"
    )
    group.add_argument(
        "--timeout", type=float, default=600.0, help="seconds to wait for a move to come to rest [600]"
    )
    return common


def _move_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", metavar="IDENTITY_ID", help="resource id of the user-assigned identity")
    parser.add_argument("--to", dest="target_region", required=True, metavar="REGION", help="target region")
    parser.add_argument("--target-resource-group", metavar="RG", help="resource group of the new identity")
    parser.add_argument("--target-name", metavar="NAME", help="name of the new identity")
    parser.add_argument("--isolation-scope", choices=("Inherit", "None", "Regional"))
    parser.add_argument(
        "--map", action="append", default=[], metavar="SRC=DST", help="resource map entry (repeatable)"
    )
    parser.add_argument(
        "--allow-privileged-roles", action="store_true", help="copy Owner / User Access Administrator / ..."
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="idmove",
        description="Identity Mover: move a user-assigned managed identity to another Azure region.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    common = _client_options()
    raw = argparse.RawDescriptionHelpFormatter

    up = sub.add_parser("up", help="start Azurite + emulator + host on 127.0.0.1 until Ctrl-C")
    up.add_argument("--replication-delay", type=float, default=None, help="emulator replication delay (s)")
    up.add_argument(
        "--fresh", action="store_true", help="start with empty storage (deletes the kept Azurite data)"
    )
    up.add_argument(
        "--data-dir", type=Path, default=None, metavar="DIR", help="Azurite's data folder [.idmove/azurite]"
    )
    for part, port in (("emulator", 7070), ("host", 7071), ("queue", 10001), ("table", 10002)):
        up.add_argument(
            f"--{part}-port", type=int, default=port, metavar="PORT", help=f"{part} port [%(default)s]"
        )
    emulator = sub.add_parser("emulator", help="run the Azure control-plane emulator")
    emulator.add_argument("--port", type=int, default=7070)
    host = sub.add_parser("host", help="run the local Functions host (HTTP API, queue worker, Event Grid)")
    host.add_argument("--port", type=int, default=7071)
    demo = sub.add_parser("demo", help="start a stack, move a seeded identity end to end, stop (make demo)")
    demo.add_argument(
        "--replication-delay", type=float, default=2.0, help="emulator replication delay (s) [2]"
    )
    demo.add_argument("--timeout", type=float, default=300.0)
    seeding = sub.add_parser("seed", help="put the demo's sample estate into the running emulator")
    seeding.add_argument(
        "--emulator",
        default=os.environ.get("IDMOVE_EMULATOR", "http://127.0.0.1:7070"),
        help="emulator URL (env IDMOVE_EMULATOR) [http://127.0.0.1:7070]",
    )
    seeding.add_argument("--data-plane", action="store_true", help="add Key Vault, Cosmos DB, SQL, settings")
    seeding.add_argument("--output", "-o", choices=("text", "json"), default="text")
    permissions = sub.add_parser(
        "permissions", help="what the mover needs in Azure and Microsoft Graph (shared/permissions.py)"
    )
    permissions.add_argument("--output", "-o", choices=("text", "json"), default="text")

    plan = sub.add_parser(
        "plan",
        parents=[common],
        help="dry run: what would be copied, what blocks",
        epilog=EPILOG,
        formatter_class=raw,
    )
    _move_options(plan)
    move = sub.add_parser(
        "move", parents=[common], help="start a move and follow it", epilog=EPILOG, formatter_class=raw
    )
    _move_options(move)
    commit_mode = move.add_mutually_exclusive_group()
    commit_mode.add_argument("--commit", action="store_true", help="commit when AwaitingCommit, then follow")
    commit_mode.add_argument("--auto-commit", action="store_true", help="ask the engine to commit on its own")
    move.add_argument(
        "--acknowledge-actions",
        action="store_true",
        help="let --auto-commit commit although the plan lists actions required (you will do them)",
    )
    move.add_argument("--no-follow", action="store_true", help="print the accepted move and return")

    status = sub.add_parser("status", parents=[common], help="show a move")
    status.add_argument("move_id", metavar="MOVE_ID")
    status.add_argument("--wait", action="store_true", help="follow until the move is at rest")
    listing = sub.add_parser("list", parents=[common], help="list moves")
    listing.add_argument("--status")
    listing.add_argument("--source-region")
    listing.add_argument("--top", type=int, default=None, help="page size")
    listing.add_argument("--all", action="store_true", help="follow nextLink to the end")
    report = sub.add_parser(
        "report", parents=[common], help="what a move did, by whom and when (GET /api/moves/{id}/report)"
    )
    report.add_argument("move_id", metavar="MOVE_ID")
    report.add_argument("--format", choices=("markdown", "json"), default="markdown", help="[markdown]")
    report.add_argument("--out", type=Path, default=None, metavar="FILE", help="write it here, not stdout")
    for name, text in (
        ("commit", "commit a move that is AwaitingCommit (cleans up the source)"),
        ("cancel", "cancel a move in flight"),
        ("retry", "retry a Failed or Canceled move"),
        ("discard", "discard a move: remove what it created"),
    ):
        command = sub.add_parser(name, parents=[common], help=text)
        command.add_argument("move_id", metavar="MOVE_ID")
        command.add_argument("--wait", action="store_true", help="follow until the move is at rest")
    return parser


# --- commands ------------------------------------------------------------------------------------


def _request_body(args: argparse.Namespace, dry_run: bool) -> dict[str, Any]:
    """The API takes values exactly as its OpenAPI document describes them (no whitespace around an
    id): what a person pasted is trimmed here."""
    body: dict[str, Any] = {
        "sourceIdentityId": args.source.strip(),
        "targetRegion": args.target_region.strip(),
    }
    if args.target_resource_group:
        body["targetResourceGroup"] = args.target_resource_group.strip()
    if args.target_name:
        body["targetName"] = args.target_name.strip()
    if args.isolation_scope:
        body["isolationScope"] = args.isolation_scope
    if args.map:
        pairs = [[part.strip() for part in entry.split("=", 1)] for entry in args.map]
        if any(len(pair) != 2 for pair in pairs):
            raise ClientError("--map takes SRC=DST (resource id = resource id)")
        body["resourceMap"] = dict(pairs)
    if args.allow_privileged_roles:
        body["allowPrivilegedRoles"] = True
    if dry_run:
        body["dryRun"] = True
    if getattr(args, "auto_commit", False):
        body["autoCommit"] = True
    if getattr(args, "acknowledge_actions", False):
        body["acknowledgeActionsRequired"] = True
    return body


def follow(
    api: MoveClient,
    out: Output,
    move_id: str,
    timeout: float,
    until: Callable[[dict[str, Any]], bool] | None = None,
) -> dict[str, Any]:
    """Poll until at rest (or ``until``), with a live per-phase display for people."""
    stop = until or (lambda move: move.get("status") in AT_REST)
    if out.json:
        return api.wait(move_id, until=stop, timeout=timeout)
    first = api.get(move_id)
    with Live(render.move_view(first, datetime.now(UTC)), console=out.console, refresh_per_second=8) as live:
        return api.wait(
            move_id,
            until=stop,
            timeout=timeout,
            interval=0.5,
            on_update=lambda move: live.update(render.move_view(move, datetime.now(UTC))),
        )


def _exit_for(move: dict[str, Any], expected: set[str]) -> int:
    return EXIT_OK if move.get("status") in expected else EXIT_MOVE_FAILED


def cmd_plan(api: MoveClient, out: Output, args: argparse.Namespace) -> int:
    accepted = api.start(_request_body(args, dry_run=True))
    out.note(f"dry run {accepted['id']} started; waiting for the plan…")
    move = api.wait(accepted["id"], timeout=args.timeout, interval=0.5)
    move = api.get(accepted["id"], expand="inventory")  # what will be copied, from the snapshot
    out.data(move)
    out.show(render.plan_report(move))
    blocked = bool((move.get("plan") or {}).get("blocking"))
    if move.get("status") != "Planned" or blocked:
        return EXIT_MOVE_FAILED
    out.note(f"run it with: idmove move {args.source} --to {args.target_region}")
    return EXIT_OK


def cmd_move(api: MoveClient, out: Output, args: argparse.Namespace) -> int:
    accepted = api.start(_request_body(args, dry_run=False))
    move_id = accepted["id"]
    if args.no_follow:
        out.data(accepted)
        out.show(f"move {move_id} accepted: {accepted.get('links', {}).get('status', '')}")
        return EXIT_OK
    out.note(f"move {move_id} started")
    move = follow(api, out, move_id, args.timeout)
    if args.commit and move.get("status") == "AwaitingCommit":
        out.note("verified; committing (the source is cleaned up)…")
        api.command(move_id, "commit")
        move = follow(api, out, move_id, args.timeout, until=_rest_after_commit)
    out.data(move)
    expected = {"Completed"} if (args.commit or args.auto_commit) else {"Completed", "AwaitingCommit"}
    if move.get("status") == "AwaitingCommit" and not args.commit:
        out.note(
            f"verified and waiting: `idmove commit {move_id}` to finish, `idmove discard {move_id}` to undo"
        )
    return _exit_for(move, expected)


def _rest_after_commit(move: dict[str, Any]) -> bool:
    return move.get("status") in AT_REST and move.get("status") != "AwaitingCommit"


def cmd_status(api: MoveClient, out: Output, args: argparse.Namespace) -> int:
    move = follow(api, out, args.move_id, args.timeout) if args.wait else api.get(args.move_id)
    out.data(move)
    if not args.wait:
        out.show(render.move_view(move, datetime.now(UTC)))
    return EXIT_MOVE_FAILED if move.get("status") == "Failed" else EXIT_OK


def cmd_list(api: MoveClient, out: Output, args: argparse.Namespace) -> int:
    moves: list[dict[str, Any]] = []
    for page in api.pages(args.status, args.source_region, args.top):
        moves.extend(page)
        if not args.all:
            break
    more = None if args.all else api.next_link
    out.data({"value": moves, **({"nextLink": more} if more else {})})
    out.show(render.moves_table(moves) if moves else "no moves")
    if more:
        out.show("more moves on further pages: `idmove list --all` (or a larger --top) shows them")
    return EXIT_OK


def cmd_report(api: MoveClient, out: Output, args: argparse.Namespace) -> int:
    text = api.report(args.move_id, args.format)
    if args.out is not None:
        args.out.write_text(text, encoding="utf-8")
        print(f"report of move {args.move_id} written to {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return EXIT_OK


def cmd_command(api: MoveClient, out: Output, args: argparse.Namespace) -> int:
    accepted = api.command(args.move_id, args.command)
    if not args.wait:
        out.data(accepted)
        out.show(f"{args.command}: move {args.move_id} is {accepted.get('status')}")
        return EXIT_OK
    until = _rest_after_commit if args.command == "commit" else None
    move = follow(api, out, args.move_id, args.timeout, until=until)
    out.data(move)
    expected = {"commit": {"Completed"}, "discard": {"Discarded"}, "cancel": {"Canceled"}}.get(
        args.command, {"Completed", "AwaitingCommit", "Planned"}
    )
    return _exit_for(move, expected)


ALLOWED_IN = {
    "commit": "AwaitingCommit",
    "cancel": "Pending, Running or AwaitingCommit",
    "retry": "Failed or Canceled",
    "discard": "AwaitingCommit, Failed, Canceled or Planned",
}


def next_step(problem: ApiProblem, args: argparse.Namespace) -> str:
    """What to do about an API error, in one line."""
    move_id = getattr(args, "move_id", None)
    if problem.code == "MoveInProgress" and problem.location:
        existing = problem.location.split("?")[0].rstrip("/").rsplit("/", 1)[-1]
        return f"follow the move already in flight with `idmove status {existing} --wait`"
    if problem.status == 409 and move_id:
        allowed = ALLOWED_IN.get(args.command, "another status")
        return (
            f"{args.command} needs a move that is {allowed}: see where it is with `idmove status {move_id}`"
        )
    if problem.status == 404 and move_id:
        return "check the id: `idmove list --all` shows the moves this API knows"
    if problem.status in (401, 403):
        return f"pass the function key with --key or IDMOVE_API_KEY (API {args.api})"
    if problem.status >= 500:
        return "the API failed: retry, and read the host's log (`idmove up`: .idmove/logs/host.log)"
    if problem.target:
        return f"fix {problem.target} and run the command again"
    return "fix the request and run the command again (`idmove COMMAND --help`)"


CLIENT_COMMANDS: dict[str, Callable[[MoveClient, Output, argparse.Namespace], int]] = {
    "plan": cmd_plan,
    "move": cmd_move,
    "status": cmd_status,
    "list": cmd_list,
    "report": cmd_report,
    "commit": cmd_command,
    "cancel": cmd_command,
    "retry": cmd_command,
    "discard": cmd_command,
}


def run_client(args: argparse.Namespace) -> int:
    out = Output(args.output)
    try:
        with MoveClient(args.api, args.key) as api:
            return CLIENT_COMMANDS[args.command](api, out, args)
    except Unreachable as exc:
        out.fail(str(exc), {"error": {"code": "Unreachable", "message": str(exc), "api": exc.api}})
        return EXIT_UNREACHABLE
    except ApiProblem as exc:
        out.fail(f"{exc} — {next_step(exc, args)}", exc.to_json())
        if exc.status == 409:
            return EXIT_CONFLICT
        return EXIT_SERVER_ERROR if exc.status >= 500 else EXIT_BAD_INPUT
    except WaitTimeout as exc:
        out.fail(str(exc), {"error": {"code": "Timeout", "message": str(exc)}, "move": exc.last})
        return EXIT_TIMEOUT
    except InvalidMoveId as exc:
        out.fail(str(exc), {"error": {"code": "InvalidMoveId", "message": str(exc), "target": "MOVE_ID"}})
        return EXIT_BAD_INPUT
    except ClientError as exc:
        out.fail(str(exc), {"error": {"code": "ClientError", "message": str(exc)}})
        return EXIT_BAD_INPUT


# --- the stack -----------------------------------------------------------------------------------


HOST_RESTARTS_PER_MINUTE = 5  # a host that dies more often than this is broken, not unlucky


def stop_on_signals() -> None:
    """Ctrl-C (SIGINT) and SIGTERM stop this process with ``KeyboardInterrupt``, whatever it
    inherited: a process started in the background of a non-interactive shell (``cmd &``, a CI
    script) has SIGINT *ignored*, and Python then installs no handler of its own, so a stack started
    that way ignored Ctrl-C and restarted its host when the host obeyed it."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)


def cmd_up(args: argparse.Namespace) -> int:
    """Azurite keeps its data in ``.idmove/azurite`` (``--fresh`` empties it first), so moves survive a
    restart of the stack; a host that dies is started again on the same storage."""
    import shutil

    from idmove.stack import DATA_DIR, Stack, StackError

    console = Console(highlight=False)
    stop_on_signals()
    data_dir: Path = args.data_dir or DATA_DIR
    if args.fresh and data_dir.exists():
        shutil.rmtree(data_dir)
    try:
        stack = Stack.start(
            ports={
                "emulator": args.emulator_port,
                "host": args.host_port,
                "queue": args.queue_port,
                "table": args.table_port,
            },
            data_dir=data_dir,
        )
    except (StackError, FileNotFoundError, TimeoutError) as exc:
        console.print(f"error: {exc}", style="bold red")
        return EXIT_UNREACHABLE
    try:
        if args.replication_delay is not None:
            import httpx

            httpx.put(
                f"{stack.emulator_url}/_emulator/config",
                json={"replicationDelaySeconds": args.replication_delay},
                timeout=5,
            )
        lines = [
            "[bold green]Identity Mover local stack is up[/] (Ctrl-C stops everything)",
            f"  HTTP API      {stack.api_url}/api/moves   (OpenAPI: {stack.api_url}/api/openapi.json)",
            f"  Event Grid    {stack.api_url}/runtime/webhooks/eventgrid?functionName=region_decommissioning",
            f"  emulator      {stack.emulator_url}   (control: {stack.emulator_url}/_emulator/health)",
            f"  Azurite       queues :{stack.azurite.queue_port}, tables :{stack.azurite.table_port}"
            f"   (data: {data_dir}; `idmove up --fresh` starts empty)",
            f"  logs          {stack.logs['host'].parent}",
            "  try           idmove list   ·   idmove plan <identity id> --to northeurope",
        ]
        for line in lines:
            console.print(line, soft_wrap=True)
        restarts: list[float] = []
        while True:
            failed = stack.failed_part()
            host = stack.processes["host"]
            if failed and host.poll() is not None and stack.processes["emulator"].poll() is None:
                restarts = [t for t in restarts if time.monotonic() - t < 60] + [time.monotonic()]
                if len(restarts) > HOST_RESTARTS_PER_MINUTE:
                    console.print(f"error: {failed}; it keeps dying, giving up", style="bold red")
                    return EXIT_SERVER_ERROR
                console.print(f"{failed}; restarting it (moves go on from storage)", style="yellow")
                try:
                    stack.restart_host()
                except StackError as exc:
                    console.print(f"error: {exc}", style="bold red")
                    return EXIT_SERVER_ERROR
                console.print(f"  host is back on {stack.api_url}", style="green")
                continue
            if failed:
                console.print(f"error: {failed}", style="bold red")
                return EXIT_SERVER_ERROR
            time.sleep(0.5)
    except KeyboardInterrupt:
        console.print("stopping…")
        return EXIT_OK
    finally:
        stack.stop()


def cmd_emulator(args: argparse.Namespace) -> int:
    from emulator.__main__ import main as emulator_main

    result = emulator_main(["--port", str(args.port)])
    return int(result or 0)


def cmd_host(args: argparse.Namespace) -> int:
    from idmove.host import run

    return run(args.port)


def cmd_demo(args: argparse.Namespace) -> int:
    from idmove.demo import run

    return int(run(replication_delay=args.replication_delay, timeout=args.timeout))


def cmd_seed(args: argparse.Namespace) -> int:
    from azure.core.exceptions import AzureError

    from idmove.seed import run

    try:
        run(args.emulator, data_plane=args.data_plane, output=args.output)
    except AzureError as exc:
        print(f"cannot seed {args.emulator}: {exc} — is the stack up (`idmove up`)?", file=sys.stderr)
        return EXIT_UNREACHABLE
    return EXIT_OK


def cmd_permissions(args: argparse.Namespace) -> int:
    """The one list the infra and the plan's preflight are checked against (no API needed)."""
    from shared import permissions

    if args.output == "json":
        print(json.dumps(permissions.as_json(), indent=2))
    else:
        print(permissions.markdown(), end="")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command in CLIENT_COMMANDS:
            return run_client(args)
        handlers = {
            "up": cmd_up,
            "emulator": cmd_emulator,
            "host": cmd_host,
            "demo": cmd_demo,
            "permissions": cmd_permissions,
            "seed": cmd_seed,
        }
        return handlers[args.command](args)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
