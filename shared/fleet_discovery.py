"""Fleet discovery: one discovery pass shared by the moves of a region decommission (DESIGN.md
"Fleet discovery"). This module is the storage and the coordination; what is read is
``activities/fleet.py``.

Table ``{prefix}fleet``:

==========================================  ===========================================================
partition / row                             what
==========================================  ===========================================================
``link`` / ``{move id}``                    the move belongs to fleet ``Fleet`` (the decommission's
                                            partition); written by the decommission's start step
                                            before the move exists. No link: per-move discovery.
``{fleet}`` / ``g|{kind}|{n:06d}``          generation ``n`` of a series (``discovery``, snapshots
                                            and cleanups together; ``activities/fleet.py`` ``SERIES``):
                                            ``Status`` Gathering -> Running (<-> Paused when
                                            throttled) -> Done | Failed,
                                            ``StartAt``, ``Owner`` (a member), ``Beat`` (last progress)
``{fleet}`` / ``m|{kind}|{member}``         a member (a move's step) and the generation it joined
                                            (``Gen``), with what the run needs of it (``Data``) and
                                            the handle of its waiting retry message (``Wake``)
``{fleet}`` / ``p|{kind}|{n}|{step}|…``     a finished read of a run (resumed after a throttle)
``{fleet}`` / ``r|{kind}|{n}|{member}|…``   a member's result too big for its member row (below)
==========================================  ===========================================================

Values larger than a property (64 KB) are JSON split over properties and rows (``put_blobs``).
A member's result is merged into its own row (``ResultGen`` and properties ``R00``…, ``put_results``)
when it fits there, as it nearly always does: the member's state query, which it makes anyway,
then brings it along, and no query of its own is needed to read it.

The rule (``shared_result``): a member gets data only from a generation whose member list held it
when the run read that list, and the run reads Azure only after that. So the data was read after
the member row was written -- after the move had started (snapshot), after it was committed and
verified (cleanup). A member that joined too late (the run had already read its list) joins the next
generation. The first member to find no open generation creates one (``create``: one wins) that
gathers members for ``GATHER_SECONDS`` (waited out in that member's thread, ``INLINE_GATHER``) and
runs it; the others wait (a throttled
``TransientError``: the engine sends the step again after ``retry_after``). A run throttled for a
short while goes on in its runner's thread; one Paused longer is resumed by whichever member comes
first after its Retry-After. A run whose owner stops beating for ``LEASE_SECONDS`` is taken over,
resuming from its stored reads. Every start or
resumption of a run is an ETag-guarded claim (-> Running), so duplicates of a message never run it
twice at once. A failed run, too many generations, or a wait past ``WAIT_LIMIT_SECONDS``: the
member does its own discovery.

Waking (``wake``): a member waiting for another's run keeps the handle of its own retry message in
its row (``Wake``, one merge, from the error's ``on_scheduled`` once the engine has sent that
message). The run, once its results and Done are saved, reads the generation's members again (one
query: handles written after it first read the list count too) and wakes each other member's
message (``WorkQueue.wake``: visible now). So a waiting step has exactly one message (unless a
move idle past ``resume_stalled``'s limit is sent a new attempt), with its own
token and attempt: the wake runs the step that was waiting, never a second one beside it, and a
message already delivered or deleted is simply not woken. A member whose handle came too late (or
whose wake failed) comes back by itself after ``POLL_SECONDS``; one woken while its generation is
not Done yet (a handle kept from an earlier wait) waits again, with a new handle.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from azure.core.exceptions import (
    AzureError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.data.tables import TableClient, TableTransactionError, UpdateMode

from shared.errors import TransientError
from shared.settings import Settings
from shared.storage import merge_if_unchanged

# How long a new generation gathers members before its run. Each second is a second every member
# waits; the generations it spares cost one Resource Graph query (25 members) each. The quota (15 per
# 5 s per user) allows several per second, a fleet's moves arrive a page at a time, and snapshots
# and cleanups share one series (``activities/fleet.py`` ``SERIES``): a short gathering costs a few
# queries more at most. 4 s for snapshots and 10 s for cleanups kept the last moves of a 60-identity
# bench waiting ~10 s with ARM's write budget unused.
GATHER_SECONDS = {"discovery": 2.0}
GATHER_DEFAULT = 2.0
LEASE_SECONDS = 60.0
# A member that can be woken by the run comes back by itself only this often (the engine adds up to
# half again as jitter). The wake reaches every member whose handle was saved before the run, done,
# re-read its members -- normally all that joined while it gathered, since the run reads Azure
# first -- so this fallback is for a handle saved late or a lost wake; each extra visit of a waiting
# member costs ~6 storage transactions (receive, record, state, send, handle, delete), so while a
# long (throttled) run goes on, fewer visits are worth more than a quicker fallback.
POLL_SECONDS = 30.0
INLINE_GATHER = 3.0  # a gathering this short is waited out in the owner's thread, which then runs it
# Seconds per visit a member may wait in its own thread for a run it joined (its gathering and
# ``RUN_GUESS``, then a second at a time) before it waits on the queue instead. A wait on the queue
# costs ~6 storage transactions (the retry sent, its handle kept, the wake, receive, record, delete);
# in the 300x10 bench 224 cleanups waited so (0.75 per move) for runs that took 1-3 s after a 2 s
# gathering, while the handlers were all busy in under a fifth of the samples
INLINE_WAIT = 6.0
RUN_GUESS = 1.5  # a run's usual length: a member that joined checks this long after the gathering
# ... unless the fleet's last runs say otherwise (``_run_guess``: from their gathering's end to their
# Done, the latest ``GUESS_FROM``, within ``GUESS_BOUNDS``). A fixed 1.5 s looked too early at 300x10
# (runs of 1.1-2.2 s: a member's second look, a second later, cost a query, 3.4 a move in all) and
# too late at 60x1 (runs of 0.7-1.1 s: half a second of every cleanup's thread)
GUESS_FROM = 5
GUESS_BOUNDS = (0.5, 4.0)
GUESS_MARGIN = 0.15
WAIT_LIMIT_SECONDS = 600.0
# generations below the newest a member reads (its own, if older, apart: a read of its own). A
# generation row is small and a query's page holds 1,000, so a wide window costs no transaction: at 6,
# a member waiting through a long run found its own outside it ~1.2 times per move (60x1 bench)
WINDOW = 60
# A member uses a run ahead's answer (``run_ahead``: read before the member's step began) only this
# long after that run began. A change made in Azure between the read and the step is then no older
# than a change made while the step runs, which a snapshot misses just the same (cleanup's own
# discovery reads the source again and stops at SourceChanged); a step that comes later -- a queue
# backlog, a held message -- joins a run of its own
AHEAD_FRESH = 120.0
AHEAD_RUNNER = "(ahead)"  # who ``run_ahead``'s runs are logged as run by
AHEAD_OPENS = 16  # numbers ``open_ahead`` tries (a 300x10 bench's ten at once lost three races)
AHEAD_TRIES = 3  # runs of a throttled generation ahead in the ``starts`` step's thread  # ``run_ahead``: runs of a throttled generation in the ``starts`` step's thread
# seconds of Retry-After the ``starts`` step waits out in its thread, after starting its moves, to run
# its generation ahead again: a decommission's ``starts`` messages all run at once, and Resource
# Graph's quota (15 per window) refuses those past it until the window turns (5 s in Azure, 25 s in
# the bench's slowed time). Past it, the run stays Paused for its owner's visit (which came 60-90 s
# later in the 300x10 bench: its retry behind hundreds of queued steps)
AHEAD_WAIT = 30.0
MAX_GENERATIONS = 2_000  # snapshots and cleanups share one series; cleanups arrive spread out
CHUNK = 30_000  # characters per property (64 KB as UTF-16)
PROPERTIES = 12  # chunks per row (well under 1 MB)
BATCH = 100  # operations per entity-group transaction
WIDTH = 8  # a run's independent reads side by side (``Parts.steps``)
TRANSACTION_CHARACTERS = 3_000_000  # of JSON per transaction (Table Storage allows a 4 MB payload)
LINKS = "link"
log = logging.getLogger(__name__)


class Stats:
    """What the callers count transactions with (``shared.store.StoreStats`` fits)."""

    def add(self, name: str, n: int = 1) -> None: ...


def _now() -> datetime:
    return datetime.now(UTC)


def _sleep(seconds: float) -> None:
    time.sleep(seconds)


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True, default=str)


def _rows_of(pk: str, name: str, value: Any) -> list[dict[str, Any]]:
    text = _dumps(value)
    chunks = [text[i : i + CHUNK] for i in range(0, len(text), CHUNK)] or [""]
    rows = []
    for r in range(0, len(chunks), PROPERTIES):
        row: dict[str, Any] = {"PartitionKey": pk, "RowKey": f"{name}|{r // PROPERTIES:04d}"}
        for i, chunk in enumerate(chunks[r : r + PROPERTIES]):
            row[f"D{i:02d}"] = chunk
        rows.append(row)
    rows[0]["Rows"] = len(rows)
    return rows


def _value_of(rows: list[dict[str, Any]]) -> Any:
    if not rows or int(rows[0].get("Rows") or 0) != len(rows):
        return None  # absent, or a blob cut short
    text = "".join(str(row.get(f"D{i:02d}") or "") for row in rows for i in range(PROPERTIES))
    return json.loads(text)


class FleetStore:
    """The ``{prefix}fleet`` table (see the module docstring); every call counted in ``stats``."""

    def __init__(self, table: TableClient, stats: Any = None) -> None:
        self.table = table
        self.stats = stats or Stats()
        self._created = False
        self._links: OrderedDict[str, str | None] = OrderedDict()
        self._newest: dict[tuple[str, str], int] = {}  # (fleet, kind) -> the newest generation seen
        self._lock = threading.Lock()

    @classmethod
    def for_settings(cls, settings: Settings, stats: Any = None) -> FleetStore:
        safe = "".join(ch for ch in settings.table_prefix if ch.isalnum())
        service = settings.storage.table_service()
        return cls(service.get_table_client(f"{safe}fleet"), stats)

    def _ensure(self, again: bool = False) -> None:
        if again or not self._created:
            self.stats.add("table.create")
            with contextlib.suppress(ResourceExistsError):
                self.table.create_table()
            self._created = True

    def _write(self, action: Callable[[], Any]) -> Any:
        try:
            return action()
        except (ResourceNotFoundError, TableTransactionError) as exc:  # a transaction says it its way
            if "TableNotFound" not in str(exc):
                raise
            # the first write of any thread creates the table (threads racing here all do: the
            # create of all but one answers "exists"), then writes again once
            self._ensure(again=True)
            return action()

    def _query(self, flt: str, **parameters: Any) -> list[dict[str, Any]]:
        self.stats.add("table.query")
        try:
            return list(self.table.query_entities(flt, parameters=parameters))
        except ResourceNotFoundError:
            return []

    # ---- links -------------------------------------------------------------------------------
    def link(self, move_id: str, fleet: str) -> None:
        entity = {"PartitionKey": LINKS, "RowKey": move_id, "Fleet": fleet}
        self.stats.add("table.upsert")
        self._write(lambda: self.table.upsert_entity(entity, mode=UpdateMode.REPLACE))

    def link_all(self, move_ids: list[str], fleet: str) -> None:
        """``link`` for many moves at once: upserts in entity-group transactions of ``BATCH`` (the
        links share their partition), e.g. one per decommission ``starts`` message."""
        unique = list(dict.fromkeys(move_ids))
        for start in range(0, len(unique), BATCH):
            ops: list[Any] = [
                ("upsert", {"PartitionKey": LINKS, "RowKey": m, "Fleet": fleet}, {"mode": UpdateMode.REPLACE})
                for m in unique[start : start + BATCH]
            ]
            self.stats.add("table.transaction")
            self._write(partial(self.table.submit_transaction, ops))

    def fleet_of(self, move_id: str) -> str | None:
        """The fleet a move belongs to (never changes once written: kept by this process)."""
        with self._lock:
            if move_id in self._links and self._links[move_id] is not None:
                return self._links[move_id]
        self.stats.add("table.get")
        try:
            fleet: str | None = str(self.table.get_entity(LINKS, move_id)["Fleet"])
        except ResourceNotFoundError:
            fleet = None
        with self._lock:
            self._links[move_id] = fleet
            while len(self._links) > 10_000:
                self._links.popitem(last=False)
        return fleet

    # ---- generations and members ---------------------------------------------------------------
    def state(self, fleet: str, kind: str, member: str) -> tuple[dict[int, Any], Any]:
        """The recent generations of ``kind`` and the member's own row, in one query (and the
        member's own generation, if older, in a second read). Recent: from ``WINDOW`` below the newest this
        process has seen -- generations are only ever added, so the newest is always among them --
        not all of them: a fleet's series grows by one every couple of seconds while cleanups
        arrive, and every waiting member reads this at each visit."""
        with self._lock:
            low = max(0, self._newest.get((fleet, kind), 0) - WINDOW)
        rows = self._query(
            "PartitionKey eq @pk and ((RowKey ge @lo and RowKey lt @hi ) or RowKey eq @me )",
            pk=fleet,
            lo=f"g|{kind}|{low:06d}",
            hi=f"g|{kind}}}",
            me=f"m|{kind}|{member}",
        )
        gens = {int(r["RowKey"].rsplit("|", 1)[-1]): r for r in rows if r["RowKey"].startswith("g|")}
        mine = next((r for r in rows if r["RowKey"].startswith("m|")), None)
        if mine is not None and int(mine["Gen"]) not in gens:
            self.stats.add("table.get")
            with contextlib.suppress(ResourceNotFoundError):
                gens[int(mine["Gen"])] = self.table.get_entity(fleet, f"g|{kind}|{int(mine['Gen']):06d}")
        if gens:
            with self._lock:
                self._newest[(fleet, kind)] = max(self._newest.get((fleet, kind), 0), max(gens))
        return gens, mine

    def create_generation(
        self, fleet: str, kind: str, n: int, owner: str, start_at: datetime, ahead: bool = False
    ) -> bool:
        entity: dict[str, Any] = {
            "PartitionKey": fleet,
            "RowKey": f"g|{kind}|{n:06d}",
            "Status": "Gathering",
            "Owner": owner,
            "StartAt": start_at.isoformat(),
            "Beat": start_at.isoformat(),
        }
        if ahead:
            entity["Ahead"] = True  # ``run_ahead``'s: its members joined before they came
        self.stats.add("table.create")
        try:
            self._write(lambda: self.table.create_entity(entity))
        except ResourceExistsError:
            return False
        return True

    def update_generation(self, gen: Any, **fields: Any) -> bool:
        """ETag-guarded merge; False when another writer changed it first."""
        entity = {"PartitionKey": gen["PartitionKey"], "RowKey": gen["RowKey"], **fields}
        self.stats.add("table.update")
        return merge_if_unchanged(self.table, entity, gen.metadata["etag"])

    @staticmethod
    def _beat_row(fleet: str, kind: str, n: int) -> dict[str, Any]:
        """Generation n's heartbeat, merged into its row (``put_blobs``'s ``beat``)."""
        return {"PartitionKey": fleet, "RowKey": f"g|{kind}|{n:06d}", "Beat": _now().isoformat()}

    def finish(self, fleet: str, kind: str, n: int, status: str, resume_at: datetime | None = None) -> None:
        """``status``; Paused with ``resume_at``: no one runs it again before then (its throttle's
        Retry-After), its owner included."""
        entity: dict[str, Any] = {"PartitionKey": fleet, "RowKey": f"g|{kind}|{n:06d}", "Status": status}
        if status == "Done":  # how long runs take: the members' first look (``_run_guess``)
            entity["Ended"] = _now().isoformat()
        if resume_at is not None:
            entity["ResumeAt"] = resume_at.isoformat()
        self.stats.add("table.update")
        self.table.upsert_entity(entity, mode=UpdateMode.MERGE)

    def join(self, fleet: str, kind: str, n: int, member: str, data: dict[str, Any], wake: str = "") -> None:
        """The member's row: the generation it joined, what the run needs of it, and (``wake``) the
        handle of its waiting retry message, all in one write."""
        entity = {"PartitionKey": fleet, "RowKey": f"m|{kind}|{member}", "Gen": n, "Data": _dumps(data)}
        if wake:
            entity["Wake"] = wake
        self.stats.add("table.upsert")
        self._write(lambda: self.table.upsert_entity(entity, mode=UpdateMode.REPLACE))

    def join_all(self, fleet: str, kind: str, n: int, members: list[tuple[str, dict[str, Any]]]) -> None:
        """``join`` for many members at once (``run_ahead``): one transaction per ``BATCH`` (they share
        their partition)."""
        rows = [
            {"PartitionKey": fleet, "RowKey": f"m|{kind}|{member}", "Gen": n, "Data": _dumps(data)}
            for member, data in dict(members).items()
        ]
        self._spread(rows)

    def generation(self, fleet: str, kind: str, n: int) -> Any:
        self.stats.add("table.get")
        try:
            return self.table.get_entity(fleet, f"g|{kind}|{n:06d}")
        except ResourceNotFoundError:
            return None

    def keep_wake(self, fleet: str, kind: str, member: str, handle: str) -> None:
        """The member's waiting retry message (``Wake``): merged into its row, ``Data`` untouched."""
        entity = {"PartitionKey": fleet, "RowKey": f"m|{kind}|{member}", "Wake": handle}
        self.stats.add("table.update")
        self.table.update_entity(entity, mode=UpdateMode.MERGE)

    def wakes(self, fleet: str, kind: str, n: int) -> dict[str, str]:
        """``member -> Wake`` of generation ``n``'s members that kept one."""
        self.stats.add("table.query")
        rows = self.table.query_entities(
            "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi and Gen eq @n",
            parameters={"pk": fleet, "lo": f"m|{kind}|", "hi": f"m|{kind}}}", "n": n},
            select=["RowKey", "Wake"],
        )
        prefix = f"m|{kind}|"
        return {str(r["RowKey"]).removeprefix(prefix): str(r["Wake"]) for r in rows if r.get("Wake")}

    def members(self, fleet: str, kind: str, n: int) -> list[tuple[str, dict[str, Any]]]:
        rows = self._query(
            "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi and Gen eq @n",
            pk=fleet,
            lo=f"m|{kind}|",
            hi=f"m|{kind}}}",
            n=n,
        )
        prefix = f"m|{kind}|"
        return sorted((r["RowKey"].removeprefix(prefix), json.loads(r["Data"])) for r in rows)

    # ---- values of any size ----------------------------------------------------------------------
    def put_blobs(self, fleet: str, blobs: dict[str, Any], beat: tuple[str, int] | None = None) -> None:
        """Each ``name -> value`` as rows ``{name}|{k}``; as few transactions as fit (a blob's rows in
        one). A blob too big for one transaction (4 MB, 100 operations: e.g. a Resource Graph answer
        of thousands of resources) is written over several, its first row (which says how many rows
        there are) last: read before that, it is absent, never cut short. ``beat`` (kind, n): generation
        n's heartbeat (its ``Beat``, what a member's takeover checks) in the transaction of the first
        blob that fits beside it, else alone after the others (the generation row shares the
        partition): a run's stored read and its heartbeat were two transactions until 2026-12-02."""
        ops: list[Any] = []
        size = 0
        if beat is not None:
            ops.append(("upsert", self._beat_row(fleet, *beat), {"mode": UpdateMode.MERGE}))
        for name, value in blobs.items():
            rows = _rows_of(fleet, name, value)
            weight = sum(len(_dumps(r)) for r in rows)
            if len(rows) > BATCH or weight > TRANSACTION_CHARACTERS:
                self._spread(rows[1:] + rows[:1])
                continue
            if ops and (len(ops) + len(rows) > BATCH or size + weight > TRANSACTION_CHARACTERS):
                self._submit(ops)
                ops, size = [], 0
            ops += [("upsert", r, {"mode": UpdateMode.REPLACE}) for r in rows]
            size += weight
        if ops:
            self._submit(ops)

    def _spread(self, rows: list[dict[str, Any]], mode: UpdateMode = UpdateMode.REPLACE) -> None:
        """``rows`` upserted in order (``mode``), in as few transactions as fit."""
        ops: list[Any] = []
        size = 0
        for row in rows:
            weight = len(_dumps(row))
            if ops and (len(ops) == BATCH or size + weight > TRANSACTION_CHARACTERS):
                self._submit(ops)
                ops, size = [], 0
            ops.append(("upsert", row, {"mode": mode}))
            size += weight
        if ops:
            self._submit(ops)

    def _submit(self, ops: list[Any]) -> None:
        self.stats.add("table.transaction")
        self._write(lambda: self.table.submit_transaction(ops))

    def put_results(self, fleet: str, kind: str, n: int, results: dict[str, Any]) -> None:
        """Each member's result of generation ``n``, merged into its member row (``ResultGen`` = n,
        JSON over ``R00``…), in as few transactions as fit (the rows share their partition); one too
        big for a row goes to ``r|{kind}|{n}|{member}`` blob rows and its row says so (``ResultRows``)."""
        merges: list[dict[str, Any]] = []
        big: dict[str, Any] = {}
        for member, value in results.items():
            text = _dumps(value)
            # every property of a result, each time: a merge keeps what it does not name, so a
            # shorter result written over a longer one (two runs of one generation) would leave the
            # longer one's last chunks behind
            entity: dict[str, Any] = {
                "PartitionKey": fleet,
                "RowKey": f"m|{kind}|{member}",
                "ResultGen": n,
                "ResultRows": len(text) > CHUNK * PROPERTIES,
                **{f"R{i:02d}": "" for i in range(PROPERTIES)},
            }
            if entity["ResultRows"]:
                big[f"r|{kind}|{n:06d}|{member}"] = value
            else:
                for i in range(0, len(text), CHUNK):
                    entity[f"R{i // CHUNK:02d}"] = text[i : i + CHUNK]
            merges.append(entity)
        if big:
            self.put_blobs(fleet, big)  # before the rows that point to them
        self._spread(merges, UpdateMode.MERGE)

    def result_of(self, fleet: str, kind: str, n: int, row: Any) -> Any:
        """The member's result of generation ``n`` from its row (read by ``state``), or from its blob
        rows; None: there is none for ``n`` (an older layout, or not written yet)."""
        member = str(row["RowKey"]).removeprefix(f"m|{kind}|")
        if row.get("ResultGen") != n:
            return self.get_blob(fleet, f"r|{kind}|{n:06d}|{member}")  # results before put_results
        if row.get("ResultRows"):
            return self.get_blob(fleet, f"r|{kind}|{n:06d}|{member}")
        try:
            return json.loads("".join(str(row.get(f"R{i:02d}") or "") for i in range(PROPERTIES)))
        except ValueError:  # not whole: none (the member reads its row again, or joins a newer run)
            return None

    def get_blob(self, fleet: str, name: str) -> Any:
        rows = self._query(
            "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi", pk=fleet, lo=f"{name}|", hi=f"{name}}}"
        )
        return _value_of(sorted(rows, key=lambda r: str(r["RowKey"])))

    def get_blobs(self, fleet: str, prefix: str) -> dict[str, Any]:
        """Every blob whose name starts with ``prefix`` (name without the prefix -> value)."""
        rows = self._query(
            "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi",
            pk=fleet,
            lo=prefix,
            hi=prefix[:-1] + "}",
        )
        grouped: dict[str, list[dict[str, Any]]] = {}
        for row in sorted(rows, key=lambda r: str(r["RowKey"])):
            grouped.setdefault(str(row["RowKey"]).rsplit("|", 1)[0], []).append(row)
        found = {name.removeprefix(prefix): _value_of(rs) for name, rs in grouped.items()}
        return {name: value for name, value in found.items() if value is not None}


class Parts:
    """A run's finished reads, stored as they finish (``step``), so that a run cut short by a throttle
    resumes where it stopped; each stored read is also the run's heartbeat."""

    def __init__(self, store: FleetStore, fleet: str, kind: str, n: int) -> None:
        self.store, self.fleet, self.kind, self.n = store, fleet, kind, n
        self.prefix = f"p|{kind}|{n:06d}|"
        self.done = store.get_blobs(fleet, self.prefix)

    def step(self, name: str, read: Callable[[], Any]) -> Any:
        if name not in self.done:
            value = read()
            self.store.put_blobs(self.fleet, {self.prefix + name: value}, beat=(self.kind, self.n))
            self.done[name] = value
        return self.done[name]

    def steps(self, reads: dict[str, Callable[[], Any]]) -> dict[str, Any]:
        """``step`` for independent reads, up to ``WIDTH`` side by side (each Resource Graph batch, each
        subscription's role assignments: one after the other they made a generation's run last
        ~13 s in the 300x10 bench, every member waiting). Each is stored as it finishes, with a
        heartbeat; if any raises, the others still end and are kept, then an error is raised: one
        that is not a ``TransientError`` first (the run fails rather than pauses on it)."""
        pending = {name: read for name, read in reads.items() if name not in self.done}
        if len(pending) <= 1:
            return {name: self.step(name, read) for name, read in reads.items()}
        lock = threading.Lock()

        def one(name: str, read: Callable[[], Any]) -> None:
            value = read()
            # each stored read is the run's heartbeat, in the same transaction
            self.store.put_blobs(self.fleet, {self.prefix + name: value}, beat=(self.kind, self.n))
            with lock:
                self.done[name] = value

        with ThreadPoolExecutor(min(WIDTH, len(pending))) as pool:
            errors = [
                e for e in (f.exception() for f in [pool.submit(one, *p) for p in pending.items()]) if e
            ]
        if errors:
            raise next((e for e in errors if not isinstance(e, TransientError)), errors[0])
        return {name: self.done[name] for name in reads}


Run = Callable[[list[tuple[str, dict[str, Any]]], Parts], dict[str, Any]]


def _at(value: Any) -> datetime:
    return datetime.fromisoformat(str(value))


def _run_guess(gens: dict[int, dict[str, Any]]) -> float:
    """Seconds from a gathering's end to its run's Done, as the fleet's latest runs took (runs ahead
    apart: they have no gathering), plus a margin; ``RUN_GUESS`` while none is known."""
    took = [
        (_at(g["Ended"]) - _at(g["StartAt"])).total_seconds()
        for _, g in sorted(gens.items())
        if g.get("Status") == "Done" and g.get("Ended") and not g.get("Ahead")
    ][-GUESS_FROM:]
    if not took:
        return RUN_GUESS
    low, high = GUESS_BOUNDS
    return min(high, max(low, sorted(took)[len(took) // 2] + GUESS_MARGIN))


def shared_result(
    store: FleetStore,
    fleet: str,
    kind: str,
    member: str,
    data: dict[str, Any],
    run: Run,
    wake: Callable[[str], bool] | None = None,
) -> Any:
    """The member's result from a generation it joined (see the module docstring); ``None``: do your
    own discovery. Raises a throttled ``TransientError`` while the generation gathers or runs, and
    whatever ``run`` raises (a throttled read: its finished reads are kept; a short Retry-After is
    waited out here and the run goes on, else whichever member comes first after it resumes).

    ``wake`` (``PhaseContext.wake``): makes a waiting member's retry message visible now. With it, a
    member waiting for another's run keeps its retry's handle (the error's ``on_scheduled``) and the
    run, when Done, wakes it: members wait for the run rather than poll, their retry coming by
    itself only after ``POLL_SECONDS``, as a fallback."""
    slept = False  # the owner waits out its gathering in its thread once per visit at most
    paused = False  # a run it ran that was paused, likewise
    waited = 0.0  # what a member has waited in its thread this visit (``INLINE_WAIT``)
    # turns: each wait in the thread is one (a second at most after the first), and a visit must end
    # in a result, a wait on the queue or its own discovery -- never run out of turns while waiting
    for _ in range(int(INLINE_WAIT) + 16):
        gens, mine = store.state(fleet, kind, member)
        now = _now()
        if gens and gens[max(gens)]["Status"] == "Failed":
            return None
        joined = gens.get(int(mine["Gen"])) if mine is not None else None
        if (
            joined is not None
            and joined.get("Ahead")
            and now - _at(joined["StartAt"]) > timedelta(seconds=AHEAD_FRESH)
        ):
            # a run ahead read Azure before the member's step began: its answer serves only a step
            # that comes soon after; a later one (``AHEAD_FRESH``) joins a run of its own, below
            joined = None
        if joined is not None:
            status = joined["Status"]
            n = int(mine["Gen"])
            if status == "Done":
                result = store.result_of(fleet, kind, n, mine)
                if result is None and mine.get("ResultGen") != n:
                    # the member row may have been read before the run merged the results into it
                    # and the generation after its Done (``state`` reads an old one apart): once more
                    with contextlib.suppress(ResourceNotFoundError):
                        store.stats.add("table.get")
                        again = store.table.get_entity(fleet, f"m|{kind}|{member}")
                        if int(again.get("Gen", -1)) == n:
                            result = store.result_of(fleet, kind, n, again)
                if result is not None:
                    return result
            elif status in ("Gathering", "Running", "Paused"):
                if now - _at(joined["StartAt"]) > timedelta(seconds=WAIT_LIMIT_SECONDS):
                    return None
                stale = now - max(_at(joined["Beat"]), _at(joined["StartAt"])) > timedelta(
                    seconds=LEASE_SECONDS
                )
                gathering = (_at(joined["StartAt"]) - now).total_seconds()
                if status == "Paused" and joined.get("ResumeAt"):
                    # throttled: not again before its Retry-After (a run ahead's owner came at once
                    # and spent Resource Graph's quota again, every 1-2 s, while it was still out)
                    gathering = max(gathering, (_at(joined["ResumeAt"]) - now).total_seconds())
                # who runs: the owner once the gathering is over, any member once a paused run may
                # go on (its owner's retry may be a minute late behind a queue's backlog: in a 300x10
                # bench a run paused for 3.5 s went on after 28 s, and its 9 waiting members came
                # back ~60 s after that), anyone once the owner has stopped beating; one claim wins
                # (ETag), so a duplicate of the owner's message, or two takers, never run it twice
                may_run = (joined["Owner"] == member or status == "Paused") and gathering <= 0
                if (
                    (may_run and status != "Running") or (stale and gathering <= 0)
                ) and store.update_generation(joined, Status="Running", Owner=member, Beat=now.isoformat()):
                    try:
                        own = _run(store, fleet, kind, n, run, member, wake)
                    except TransientError as exc:
                        # paused for a short Retry-After (Resource Graph's quota): waited out here,
                        # once a visit, then run on, not sent behind the queue's backlog
                        pause = exc.retry_after or 0.0
                        if not exc.throttled or paused or waited + pause > INLINE_WAIT:
                            raise
                        paused = True
                        waited += pause + 0.05
                        _sleep(pause + 0.05)
                        continue
                    if own is not None:
                        return own  # its own run's answer: no read of its row
                    continue
                # the owner waits out a short gathering in its thread, then runs (``INLINE_GATHER``):
                # its retry, sent to the queue, came 30-50 s late in the 300x10 bench, behind the
                # steps queued for their write budget, every member waiting for it; a longer one on
                # the queue. The others keep their retry's handle for the run to wake, or poll
                if (
                    not slept
                    and joined["Owner"] == member
                    and status == "Gathering"
                    and 0 < gathering <= INLINE_GATHER
                ):
                    slept = True
                    _sleep(gathering + 0.05)
                    continue
                pause = gathering + _run_guess(gens) if gathering > 0 else 1.0
                if status == "Paused":
                    # until it may go on: then this member runs it, if nobody has (above)
                    pause = max(0.1, gathering + 0.05)
                # not its own run to start (another member's, or Running in its name: the decommission's
                # ``starts`` step runs a run ahead for its first member)
                waits_here = joined["Owner"] != member or status in ("Running", "Paused")
                if waits_here and waited + pause < INLINE_WAIT:
                    waited += pause  # a run about to end: waited out here, not on the queue
                    _sleep(pause)
                    continue
                scheduled: Callable[[str], None] | None = None
                if joined["Owner"] == member and status != "Running":
                    wait = max(1.0, gathering + 0.5)
                elif wake is not None:
                    wait = max(gathering + 2.0, POLL_SECONDS)
                    scheduled = partial(store.keep_wake, fleet, kind, member)
                else:
                    wait = max(1.0, gathering + 2.0)
                raise TransientError(
                    "FleetDiscoveryRunning",
                    f"waiting for fleet discovery {fleet} {kind} #{n}",
                    fleet,
                    wait,
                    throttled=True,
                    on_scheduled=scheduled,
                )
            # Failed, or Done without this member (it joined after the run read its list): a newer one
        if max(gens, default=0) >= MAX_GENERATIONS:
            return None
        open_ = [
            n
            for n, g in gens.items()
            if g["Status"] == "Gathering" and _at(g["StartAt"]) - now > timedelta(seconds=0.5)
        ]
        if open_:
            # joins, then waits at once: no second read of what it just read. The join is written
            # here, not with the retry's handle (``keep_wake``, a write of its own): a join that
            # fails must reach ``lookup``'s fallback (the move discovers alone), where a callback's
            # failure would only be logged and the move come back every 30 s without a generation
            n = max(open_)
            gathering = (_at(gens[n]["StartAt"]) - now).total_seconds()
            store.join(fleet, kind, n, member, data)
            guess = _run_guess(gens)
            if waited + gathering + guess < INLINE_WAIT:  # then its run, in this thread
                waited += gathering + guess
                _sleep(gathering + guess)
                continue
            raise TransientError(
                "FleetDiscoveryRunning",
                f"waiting for fleet discovery {fleet} {kind} #{n}",
                fleet,
                max(gathering + 2.0, POLL_SECONDS) if wake is not None else max(1.0, gathering + 2.0),
                throttled=True,
                on_scheduled=partial(store.keep_wake, fleet, kind, member) if wake is not None else None,
            )
        n = max(gens, default=0) + 1
        gather = GATHER_SECONDS.get(kind, GATHER_DEFAULT)
        if store.create_generation(fleet, kind, n, member, now + timedelta(seconds=gather)):
            log.info("fleet discovery %s %s #%d: opened by %s", fleet, kind, n, member)
            store.join(fleet, kind, n, member, data)
            if gather <= INLINE_GATHER:
                slept = True
                _sleep(gather + 0.05)  # then runs it (the loop's next turn), see above
                continue
            raise TransientError(  # the owner waits out its gathering; its retry runs the generation
                "FleetDiscoveryRunning",
                f"waiting for fleet discovery {fleet} {kind} #{n}",
                fleet,
                max(1.0, gather + 0.5),
                throttled=True,
            )
    return None


def open_ahead(
    store: FleetStore, fleet: str, kind: str, members: list[tuple[str, dict[str, Any]]]
) -> int | None:
    """A generation whose members are known before they come (a decommission's ``starts`` message:
    its moves' snapshots, before the moves exist), opened with all of them joined; ``run_ahead`` runs
    it. Each member then finds it Done with its result in its own row at its first visit: no join, no
    wait, no wake (each of those visits cost ~7 storage transactions and seconds). The rule holds: the
    run reads Azure after the member rows are written. Its owner is the first member: a run left
    Paused is resumed, like any other, by the first member that comes after its Retry-After, and a
    run cut short by a crash is taken over once it stops beating. The generation's number, None when
    none was opened (lost races: the members join one the usual way)."""
    if not members:
        return None
    owner = members[0][0]
    gens, _ = store.state(fleet, kind, owner)
    n = max(gens, default=0)
    for _ in range(AHEAD_OPENS):  # another ``starts`` message may open the same number first: the next
        n += 1
        if n > MAX_GENERATIONS:
            return None
        if store.create_generation(fleet, kind, n, owner, _now(), ahead=True):  # no gathering
            break
    else:
        return None
    store.join_all(fleet, kind, n, members)
    log.info("fleet discovery %s %s #%d: opened ahead, %d members", fleet, kind, n, len(members))
    return n


def run_ahead(
    store: FleetStore,
    fleet: str,
    kind: str,
    n: int,
    owner: str,
    run: Run,
    wake: Callable[[str], bool] | None = None,
) -> float | None:
    """One run of generation ``n`` (``open_ahead``), claimed like any other. None: it is over (Done,
    Failed, or someone else runs it); else the Retry-After of the throttle that Paused it. ``wake``:
    members that came meanwhile wait for it (their retry's handle kept), and are woken when it is done."""
    gen = store.generation(fleet, kind, n)
    if gen is None or gen["Status"] in ("Done", "Failed", "Running"):
        return None
    if _now() - _at(gen["StartAt"]) > timedelta(seconds=AHEAD_FRESH):
        return None  # its members no longer take its answer (they run their own): nothing to run for
    if gen["Status"] == "Paused" and gen.get("ResumeAt"):
        left = (_at(gen["ResumeAt"]) - _now()).total_seconds()
        if left > 0:  # paused again meanwhile (a member resumed it and was throttled): not before then
            return left
    if not store.update_generation(gen, Status="Running", Owner=owner, Beat=_now().isoformat()):
        return None
    try:
        # run here in the owner's name, not by it: every member is woken, the owner too (it may be
        # waiting for this very run, its handle kept)
        _run(store, fleet, kind, n, run, AHEAD_RUNNER, wake)
    except TransientError as exc:
        return exc.retry_after or 1.0
    return None


def _run(
    store: FleetStore,
    fleet: str,
    kind: str,
    n: int,
    run: Run,
    me: str = "",
    wake: Callable[[str], bool] | None = None,
) -> Any:
    """A claimed run of generation ``n`` (Running): read the member list (kept with the run's reads),
    then Azure (``run``), then write each member's result, then Done, then wake the other members'
    waiting messages (their handles read afresh). Throttled: Paused, the reads so far kept, the
    runner waits a short Retry-After out (``shared_result``) or a member resumes it after it (or a
    taker after the lease). Returns ``me``'s own result as stored (None: not a member, or the run
    did not end Done): the runner needs no read of its row."""
    began = _now()
    parts = Parts(store, fleet, kind, n)
    members = parts.step("members", lambda: [list(m) for m in store.members(fleet, kind, n)])
    log.info(
        "fleet discovery %s %s #%d: run by %s, %d members, %d reads kept",
        fleet,
        kind,
        n,
        me,
        len(members),
        len(parts.done) - 1,
    )
    try:
        results = run([(str(m), dict(d)) for m, d in members], parts)
    except (ServiceRequestError, ServiceResponseError) as exc:
        # the connection dropped (storage or Azure), not a refusal: paused like a throttle, resumed
        # from its stored reads, rather than failed (every member would then discover alone)
        with contextlib.suppress(AzureError):
            store.finish(fleet, kind, n, "Paused")
        log.info("fleet discovery %s %s #%d: paused, connection lost (%s)", fleet, kind, n, exc)
        raise TransientError(
            "FleetDiscoveryInterrupted",
            f"fleet discovery {fleet} {kind} #{n}: {exc}",
            fleet,
            2.0,
            throttled=True,
        ) from exc
    except TransientError as exc:
        store.finish(fleet, kind, n, "Paused", _now() + timedelta(seconds=exc.retry_after or 0.0))
        log.info(
            "fleet discovery %s %s #%d: paused after %.1fs (%s, retry in %.1fs)",
            fleet,
            kind,
            n,
            (_now() - began).total_seconds(),
            exc.code,
            exc.retry_after or 0,
        )
        raise
    except Exception:  # e.g. a read refused: every member does its own discovery, which reports it
        log.warning("fleet discovery %s %s #%d failed", fleet, kind, n, exc_info=True)
        store.finish(fleet, kind, n, "Failed")
        return None
    store.put_results(fleet, kind, n, results)
    store.finish(fleet, kind, n, "Done")
    log.info("fleet discovery %s %s #%d: done in %.1fs", fleet, kind, n, (_now() - began).total_seconds())
    own = json.loads(_dumps(results[me])) if me in results else None  # as a reader of its row gets it
    if wake is None or all(m == me for m, _ in members):
        return own
    try:
        handles = store.wakes(fleet, kind, n)  # read now: handles kept since the list was read count
    except Exception:
        log.warning("fleet discovery %s %s #%d: members not woken", fleet, kind, n, exc_info=True)
        return own
    woken = 0
    for m, handle in handles.items():
        if m == me:
            continue
        try:  # False: that message was delivered (it runs now) or is gone; a member not woken polls
            woken += bool(wake(handle))
        except Exception:
            log.warning("fleet discovery %s %s #%d: %s not woken", fleet, kind, n, m, exc_info=True)
    log.info(
        "fleet discovery %s %s #%d: woke %d of %d members (%d handles)",
        fleet,
        kind,
        n,
        woken,
        len(members) - 1,
        len(handles),
    )
    return own
