"""One ARM write budget per subscription, shared by every instance through Table Storage.

``WriteLimiter`` (``shared/arm_pacing.py``) paces one process; a scaled-out Function App runs many,
and N processes each allowed 8 writes/s spend ARM's 10/s refill N-fold (the bench drew 196 write
429s with 4 instances at 120 identities). ``SharedWriteLimiter`` keeps the per-process bucket as a
small cache in front of ONE budget record per (subscription, kind) in table ``{prefix}budget``:

* a process takes a *lease* of up to ``lease`` tokens at a time from the record (read, refill from
  its ``Stamp`` at ``rate``, subtract, ETag-guarded replace; a lost race reads again), then spends
  them locally; so the record costs 2 storage transactions per ``lease`` writes, not per write;
* where the record is low (fewer than ``PLENTY_LEASES`` leases' worth), a lease is no larger than
  what the moves this process is running still write to that subscription (``_need``: a move's
  handler writes about as much as this process's last ones did, ``arm_pacing.MoveWrites``): a
  lease's tokens are out of the record until spent, and those of a process whose moves of that
  subscription have ended were never spent. At 300 identities in 10 subscriptions, 4 instances
  holding leases of 10 left 20-30 tokens of the last subscription's budget unspent while its last
  moves waited on the record for them (10-15 s of a 180 s run at the bench's 2 writes/s);
* the record may go negative: a lease's tokens are then there one after another as it refills (the
  k-th of n ``(k - tokens before) / rate`` seconds after the take, as n takes of one would be), so
  processes queue up fairly, whatever their number; but a step's first write reserves only the
  tokens there within ``max_wait``, and nothing if its own is further away (it goes back to the
  queue until it is there), so a step that goes back to the queue leaves no lease behind;
* ``rate`` and ``burst`` are ARM's own (10/s, 200) by default: together all processes never write
  faster than ARM refills, and every write is granted here before it reaches ARM (later, so ARM has
  refilled at least as much), so none of their writes is refused (``write_429s`` = 0 with any number
  of instances), as long as no one else writes to the subscription. A margin below ARM's figures
  (the first design's 9.5/s and 180) cost the 300-identity bench ~20 s of its ~265 s, one token in
  twenty, for nothing: the headers below are what covers other writers;
* someone else writing (a pipeline, a person) shows in ARM's
  ``x-ms-ratelimit-remaining-subscription-{writes|deletes}`` header: when it is lower than the record
  can be, ``observe`` lowers the shared record to match, so every process slows down, not only the
  one that saw it. A low header alone is no sign of that: it is what writing at ARM's rate looks like.

A storage error never stops a write: the limiter falls back to its own per-process bucket.

Example::

    limiter = SharedWriteLimiter(table_client, stats, rate=9, burst=150, lease=5)
    AzureClients(settings, write_limiter=limiter)
"""

from __future__ import annotations

import contextlib
import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import TableClient, UpdateMode

from shared.arm_pacing import (
    LOW_REMAINING,
    RESERVE,
    MoveWrites,
    WriteBudgetBusy,
    WriteLimiter,
    _may_give_back,
    _wrote,
    current_move,
)
from shared.settings import Settings
from shared.store import StoreStats

PARTITION = "budget"
LEASE = 10  # tokens a process takes at a time, at most: 2 storage transactions per 10 writes
TRIES = 8  # ETag races before falling back to the local bucket for one lease
RACE_PAUSE = 0.005  # seconds: the first pause after a lost race is up to this, then doubling
CHECK_SECONDS = 5.0  # a process reads the record for signs of another writer at most this often per key
# The record refills from its first take, ARM from the writes' arrival: while ARM's bucket is full
# and a lease's writes are on their way, ARM drops refill the record counts (rate x their delay).
# Writing at ARM's rate, that was a 429 in about half the runs of 480 writes from 4 instances; the
# record's bucket is kept this many seconds of refill short of ARM's (10 tokens at ARM's 10/s), and
# never fewer than ``HEADROOM_TOKENS``. 0.5 s until the leases were sized to the moves' rest
# (``_need``): their unspent float had covered the rest of the lead. Runs that logged every take
# measured the lead, all of it gained in the first seconds while ARM's buckets were full, at 5.3
# tokens at 60x1 (0.53 s at ARM's 10/s) and 1.8-3.0 tokens at 300x10 (0.9-1.5 s at the bench's 2/s,
# where moves start 5x further apart and ARM's buckets stay full longer).
HEADROOM_SECONDS = 1.0
HEADROOM_TOKENS = 3.0
LEARN = 0.2  # weight of a handler's writes in a subscription's writes-per-move (a moving average)
# a record holding this many full leases' worth of tokens is not what binds: a full lease then (a
# lease sized to the moves' rest only costs storage where nobody waits, e.g. a fleet's deletes, ~4 a
# move, whose bucket never ran low in the 300x10 bench: +0.9 storage transactions per move)
PLENTY_LEASES = 5


@dataclass(frozen=True)
class Taken:
    """A ``take``'s answer: the seconds until the tokens are there (all of them: the k-th of n is
    there ``(n - k) / rate`` sooner; nothing reserved: until the first is); the record's tokens after
    the take (None: nothing was reserved); the record's clock (``wall``) when it was read; how many
    tokens were taken."""

    wait: float
    tokens: float | None
    at: float
    n: int = 0


class SharedBudget:
    """The budget records: ``take(sub, kind, n)`` reserves n tokens and returns the seconds to wait."""

    def __init__(
        self,
        table: TableClient,
        stats: StoreStats,
        rate: float,
        burst: float,
        wall: Callable[[], float] = time.time,
        headroom: float = 0.0,
    ) -> None:
        self.table = table
        self.stats = stats
        self.rate = max(0.01, float(rate))
        self.burst = max(1.0, float(burst))
        self.cap = max(1.0, self.burst - headroom)  # the record's most tokens (``headroom()``)
        self.wall = wall  # the record's Stamp is compared across processes: wall-clock seconds
        self._created = False

    def _ensure(self) -> None:
        if not self._created:
            self.stats.add("table.create")
            with contextlib.suppress(ResourceExistsError):
                self.table.create_table()
            self._created = True

    def _read(self, key: str) -> Any:
        self.stats.add("table.get")
        try:
            return self.table.get_entity(PARTITION, key)
        except ResourceNotFoundError:
            return None

    def _write(self, key: str, tokens: float, now: float, found: Any) -> bool:
        entity = {"PartitionKey": PARTITION, "RowKey": key, "Tokens": float(tokens), "Stamp": float(now)}
        try:
            if found is None:
                self.stats.add("table.create")
                self.table.create_entity(entity)
            else:
                self.stats.add("table.update")
                self.table.update_entity(
                    entity,
                    mode=UpdateMode.REPLACE,
                    etag=found.metadata["etag"],
                    match_condition=MatchConditions.IfNotModified,
                )
        except (ResourceExistsError, ResourceModifiedError):
            return False
        except HttpResponseError as exc:
            if exc.status_code in (409, 412):
                return False
            raise
        return True

    def _refilled(self, found: Any, now: float) -> float:
        if found is None:
            return self.cap
        elapsed = max(0.0, now - float(found["Stamp"]))
        return min(self.cap, float(found["Tokens"]) + elapsed * self.rate)

    def take(
        self, subscription: str, kind: str, n: int, within: float | None = None, need: int | None = None
    ) -> Taken | None:
        """Reserve ``n`` tokens (see ``Taken``); with ``need``, only that many (at least 1, at most
        ``n``) unless the record holds ``PLENTY_LEASES`` x ``n`` or more. With ``within``, tokens
        further away than that many seconds are not reserved (the first of them too far: one read,
        nothing written): a caller that will not wait for them holds nothing it might never spend.
        None: no agreement reached."""
        self._ensure()
        key = f"{subscription.lower()}|{kind}"
        for attempt in range(TRIES):
            found, now = self._read(key), self.wall()
            have = self._refilled(found, now)
            size = n if need is None or have >= PLENTY_LEASES * n else max(1, min(n, need))
            if within is not None:
                first = (1.0 - have) / self.rate  # the k-th token is there in (k - have) / rate
                if first > within:
                    return Taken(max(0.0, first), None, now, 0)
                # only the tokens there within ``within``: the rest would be held past it, for steps
                # of this process that may go back to the queue instead of waiting for them (1e-6:
                # the clocks' float rounding, as ``SharedWriteLimiter.acquire``)
                size = max(1, min(size, math.floor(have + (within + 1e-6) * self.rate)))
            tokens = have - size
            wait = max(0.0, -tokens / self.rate)
            if self._write(key, tokens, now, found):
                return Taken(wait, tokens, now, size)
            # another process took first: read again after a random pause, so that racers spread out
            # (without it, 4 instances writing at ARM's rate lost 8 races in a row about one run in
            # four, and that write went to the process's own bucket, unseen by the others: a 429)
            if attempt + 1 < TRIES:
                time.sleep(random.uniform(0.0, RACE_PAUSE * 2**attempt))
        return None

    def lower(self, subscription: str, kind: str, at_most: float) -> bool:
        """ARM says little is left: no process may count on more than ``at_most`` tokens. True if
        the record held more (someone else wrote) and was lowered."""
        self._ensure()
        key = f"{subscription.lower()}|{kind}"
        for _ in range(3):
            found, now = self._read(key), self.wall()
            if self._refilled(found, now) <= at_most:
                return False
            if self._write(key, at_most, now, found):
                return True
        return False


class SharedWriteLimiter(WriteLimiter):
    """``WriteLimiter`` whose tokens are leased from a ``SharedBudget`` (see the module docstring)."""

    def __init__(
        self,
        budget: SharedBudget,
        lease: int = 5,
        fallback_rate: float = 8.0,
        fallback_burst: float = 20.0,
        sleep: Callable[[float], None] = time.sleep,
        max_wait: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(fallback_rate, fallback_burst, clock=clock, sleep=sleep, max_wait=max_wait)
        self.budget = budget
        self.lease = max(1, int(lease))
        self._leased: dict[tuple[str, str], int] = {}
        self._ready: dict[tuple[str, str], float] = {}  # when the leased tokens may be spent (clock)
        self._key_locks: dict[tuple[str, str], threading.Lock] = {}
        self._seen: dict[tuple[str, str], tuple[float, float]] = {}  # record after our last take, when
        self._checked: dict[tuple[str, str], float] = {}  # when observe last read the record (clock)
        self._running: dict[tuple[str, str], set[MoveWrites]] = {}  # moves here that wrote to the key
        self._per_move: dict[tuple[str, str], float] = {}  # writes a move makes to the key, learned
        self.leases = 0

    def _key_lock(self, key: tuple[str, str]) -> threading.Lock:
        with self._lock:
            return self._key_locks.setdefault(key, threading.Lock())

    def _need(self, key: tuple[str, str], move: MoveWrites | None) -> int | None:
        """The tokens the running moves will still write to ``key``, at least 1 and at most
        ``lease`` (``SharedBudget.take``'s ``need``): each move's handler writes about
        ``_per_move`` (what this process's handlers wrote to it lately), less what it wrote already;
        the move asking needs one more at least. None (a full lease) while nothing is learned yet
        and for a write outside a move."""
        with self._lock:
            per_move = self._per_move.get(key)
            if move is None or per_move is None:
                return None
            need = max(1.0, per_move - move.counts.get(key, 0))
            need += sum(
                max(0.0, per_move - other.counts.get(key, 0))
                for other in self._running.get(key, ())
                if other is not move
            )
        return max(1, min(self.lease, math.ceil(need)))

    def _refilled(self, seen: tuple[float, float]) -> float:
        """The record's tokens after this process's take (``_seen``), refilled since: an upper bound
        of what it holds now (others' takes only lower it)."""
        tokens, at = seen
        return min(self.budget.cap, tokens + (self.budget.wall() - at) * self.budget.rate)

    def _count(self, key: tuple[str, str], move: MoveWrites | None) -> None:
        if move is None:
            return
        with self._lock:
            move.counts[key] = move.counts.get(key, 0) + 1
            self._running.setdefault(key, set()).add(move)
            if self._ended not in move.ended:
                move.ended.append(self._ended)

    def _ended(self, move: MoveWrites) -> None:
        """A move's handler returned: what it wrote teaches the writes-per-move of each key (a
        handler that did part of a move, e.g. a step given back for its budget, teaches too little:
        smaller leases, more storage, nothing unsafe)."""
        with self._lock:
            for key, n in move.counts.items():
                running = self._running.get(key)
                if running is None or move not in running:
                    continue
                running.discard(move)
                learned = self._per_move.get(key)
                self._per_move[key] = float(n) if learned is None else learned + LEARN * (n - learned)

    def writes_per_move(self, subscription: str, kind: str = "writes") -> float | None:
        """What this process's move handlers lately wrote to the subscription, each (None: none
        ended yet)."""
        with self._lock:
            return self._per_move.get((subscription.lower(), kind))

    def acquire(self, subscription: str, kind: str = "writes") -> float:
        """A token of this process's lease, or of a new lease; the wait for it is slept outside the
        key's lock (threads queue on the lease's ready time, not behind one another's sleep). A wait
        longer than ``max_wait`` raises ``WriteBudgetBusy`` for a unit's first write (``begin_unit``):
        no token is taken, and no lease either (``SharedBudget.take``'s ``within``): a lease taken
        for a step that then went back to the queue was spent only if this process happened to write
        to that subscription again, and otherwise stayed reserved in the record, unwritten at ARM."""
        key = (subscription.lower(), kind)
        move = current_move()
        alone = False
        wait = 0.0
        with self._key_lock(key):  # one lease at a time per key
            may_give_back = self.max_wait is not None and _may_give_back()
            if self._leased.get(key, 0) <= 0:
                need = self._need(key, move)
                try:
                    taken = self.budget.take(
                        key[0], kind, self.lease, within=self.max_wait if may_give_back else None, need=need
                    )
                except AzureError:
                    taken = None
                if taken is None:
                    alone = True
                elif taken.tokens is None:  # too far away, and this write may go back to the queue
                    with self._lock:
                        self.busy += 1
                    raise WriteBudgetBusy(subscription, kind, taken.wait)
                else:
                    with self._lock:
                        self.leases += 1
                        self._seen[key] = (taken.tokens, taken.at)
                    # the wait counts from the answer, not from before the table's round trips
                    self._leased[key], self._ready[key] = taken.n, self._clock() + taken.wait
            if not alone:
                # the lease's tokens are there one after another, as the record refills: its last at
                # ``_ready``, this one (the lease's ``_leased``-th from its end) that much sooner.
                # (The whole lease waited for its last token until 2026-12-02: a lease of 10 taken
                # from an empty record at 2/s slept 4.5 s before its first write for nothing.)
                now = self._clock()
                ready = self._ready.get(key, now) - (self._leased[key] - 1) / self.budget.rate
                wait = max(0.0, ready - now)
                # (a take within ``max_wait`` is spent here: 1e-6 s covers the clocks' float rounding)
                if may_give_back and self.max_wait is not None and wait > self.max_wait + 1e-6:
                    with self._lock:
                        self.busy += 1
                    raise WriteBudgetBusy(subscription, kind, wait)
                self._leased[key] -= 1
                with self._lock:
                    self.acquired += 1
                    self.waited += wait
                self._count(key, move)
        if alone:  # storage unreachable or too contended: pace this process alone (outside the lock)
            return super().acquire(subscription, kind)
        _wrote()
        if wait > 0:
            self._sleep(wait)
        return wait

    def observe(self, subscription: str, kind: str, remaining: int) -> None:
        """ARM's remaining count is low. That is the normal state of a subscription written at ARM's
        rate, so the record is read only if it could hold more than ARM has (its tokens after this
        process's last take, refilled since, are an upper bound: others' takes only lower it), and
        at most every ``CHECK_SECONDS`` (at 60 identities in one subscription a read per low count
        cost 7 storage transactions per move; another writer is noticed up to 5 s later). A
        record holding more means someone else writes: it is lowered, and this process's unspent
        lease dropped. Nothing else drops a lease: its tokens are already out of the record, and a
        lease dropped unspent is ARM's budget never used (each near-empty answer did so, until
        2026-12-02)."""
        if remaining >= LOW_REMAINING:
            return
        super().observe(subscription, kind, remaining)
        key = (subscription.lower(), kind)
        at_most = float(remaining - RESERVE)
        now = self._clock()
        with self._lock:
            seen = self._seen.get(key)
            if seen is not None and self._refilled(seen) <= at_most:
                return
            if now - self._checked.get(key, float("-inf")) < CHECK_SECONDS:
                return
            self._checked[key] = now
        with contextlib.suppress(AzureError):
            if self.budget.lower(key[0], kind, at_most):
                with self._key_lock(key):  # as ``acquire`` spends it: no decrement lands over the drop
                    self._leased[key] = 0  # what this process leased may not be there any more
                with self._lock:
                    self._seen[key] = (at_most, self.budget.wall())


def headroom(rate: float) -> float:
    """The tokens the record keeps short of ARM's bucket at ``rate`` (``HEADROOM_SECONDS``)."""
    return max(HEADROOM_TOKENS, max(0.0, rate) * HEADROOM_SECONDS)


def shared_write_limiter(settings: Settings, stats: StoreStats) -> SharedWriteLimiter:
    """The limiter a ``MoveService`` uses with ``IDMOVE_ARM_SHARED_BUDGET`` on (the default): table
    ``{prefix}budget``, ``IDMOVE_ARM_SHARED_RATE`` / ``_BURST`` (ARM's own 10/s and 200 by default)."""
    safe = "".join(ch for ch in settings.table_prefix if ch.isalnum())
    table = settings.storage.table_service().get_table_client(f"{safe}budget")
    rate, burst = settings.arm_shared_rate, settings.arm_shared_burst
    budget = SharedBudget(table, stats, rate, burst, headroom=headroom(rate))
    return SharedWriteLimiter(
        budget,
        fallback_rate=settings.arm_writes_per_second,
        fallback_burst=settings.arm_writes_burst,
        lease=LEASE,
        max_wait=settings.arm_max_pacing_wait,
    )
