"""Per-process, per-subscription pacing of ARM writes: a token bucket as an azure-core policy.

ARM throttles each subscription with token buckets (FACTS.md: writes 200 bucket / 10 per s, deletes
200 / 10 per s). Many moves at once (a region fan-out) share those buckets, so the one door to
Azure (``shared/azure_clients.py``) puts ``ArmWritePacingPolicy`` into every ARM client's pipeline,
after the ``RetryPolicy`` (a per-retry policy: every attempt is paced, retries included):

* PUT/PATCH/POST spend a token from the subscription's ``writes`` bucket, DELETE from ``deletes``;
  the subscription is parsed from the URL (``/subscriptions/{id}/...``); calls without one
  (management groups, Resource Graph, tenant-level) are not paced (they have other budgets);
* the rate is ``IDMOVE_ARM_WRITES_PER_SECOND`` (default 8: below ARM's 10/s refill, leaving room
  for other writers), the burst ``IDMOVE_ARM_WRITES_BURST`` (default 20, far below ARM's 200);
* every answer's ``x-ms-ratelimit-remaining-subscription-{writes|deletes}`` is read: when ARM says
  the budget is low (other processes or tools are writing too), the local bucket is lowered to match,
  so this process slows down before ARM answers 429;
* a 429 that happens anyway is retried by azure-core's ``RetryPolicy``, which sleeps for
  ``Retry-After`` / ``retry-after-ms`` / ``x-ms-retry-after-ms`` -- never a busy loop in the engine;
* the first write of a unit of work (a step, an item: ``begin_unit``) whose token is further away
  than ``max_wait`` seconds (``IDMOVE_ARM_MAX_PACING_WAIT``) is not waited for in the thread: the
  request is not sent and ``WriteBudgetBusy`` (a throttled ``TransientError``, ``retry_after`` =
  that wait) gives the step back to the queue, like a 429 with ``Retry-After`` would, the token left
  for whoever writes first. Its later writes wait in the thread: given back halfway, a unit would
  spend its first tokens again at every try (an item of three writes whose second token was never
  within reach went back to the queue thousands of times). A handler thread asleep for its
  subscription's budget runs nothing else: when every write of a fleet queued for the budget, the
  handlers of the Function App all slept, and steps that needed no write token at all (a fleet
  discovery run, a cleanup's deletes, which have their own budget) waited behind them for minutes.

Buckets live in one ``WriteLimiter`` per process (``shared_limiter``), shared by every client and
every move the process runs. Several processes (Functions scale-out) each pace themselves; ARM's
remaining-budget header is what couples them.

Example::

    limiter = WriteLimiter(rate=8, burst=20)
    limiter.acquire("2f7c...", "writes")      # returns the seconds it waited
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from azure.core.pipeline import PipelineRequest, PipelineResponse
from azure.core.pipeline.policies import HTTPPolicy

from shared.errors import TransientError

SUBSCRIPTION_IN_URL = re.compile(r"/subscriptions/([0-9a-fA-F-]{36})(?:[/?]|$)")
KIND_BY_METHOD = {"PUT": "writes", "PATCH": "writes", "POST": "writes", "DELETE": "deletes"}
LOW_REMAINING = 25  # below this many remaining ARM tokens, follow ARM's count
RESERVE = 5  # tokens left to other writers when ARM's budget is nearly spent


_unit = threading.local()


@dataclass(eq=False)
class _Unit:
    """A unit of work (``begin_unit``), shared by the threads ``carry`` runs its calls on."""

    wrote: bool = False


def begin_unit() -> None:
    """A new unit of work starts on this thread (the engine, before each step and item): its first
    write may be given back to the queue (``max_wait``), its later ones are waited for."""
    _unit.state = _Unit()


def _state() -> _Unit:
    state: _Unit | None = getattr(_unit, "state", None)
    if state is None:
        state = _unit.state = _Unit()
    return state


@dataclass(eq=False)
class MoveWrites:
    """The writes of one move's handler on one thread (``one_move``), per (subscription, kind):
    what a leasing limiter sizes its leases by (``SharedWriteLimiter``); ``ended`` is called with it
    when the handler returns."""

    counts: dict[tuple[str, str], int] = field(default_factory=dict)
    ended: list[Callable[[MoveWrites], None]] = field(default_factory=list)


@contextlib.contextmanager
def one_move() -> Iterator[MoveWrites]:
    """A move's steps run on this thread (``Engine.handle``: one message, the phases it chains)."""
    previous, writes = current_move(), MoveWrites()
    _unit.move = writes
    try:
        yield writes
    finally:
        _unit.move = previous
        for ended in writes.ended:
            ended(writes)


def current_move() -> MoveWrites | None:
    return getattr(_unit, "move", None)


T = TypeVar("T")


def carry(call: Callable[[], T]) -> Callable[[], T]:
    """``call`` to run on another thread as part of this thread's move and unit of work
    (``shared/side_by_side.py``): its writes count for the move (``one_move``), and they belong to
    this thread's unit -- once one of them, or this thread, has written, no later first write of the
    unit goes back to the queue (a call that begins a unit of its own, an item, has its own)."""
    move, state = current_move(), _state()

    def carried() -> T:
        before = current_move(), getattr(_unit, "state", None)
        _unit.move, _unit.state = move, state
        try:
            return call()
        finally:
            _unit.move, _unit.state = before

    return carried


def _may_give_back() -> bool:
    return not _state().wrote


def _wrote() -> None:
    _state().wrote = True


class WriteBudgetBusy(TransientError):
    """The subscription's write (or delete) budget has no token for ``retry_after`` seconds: the step
    goes back to the queue for that long (throttled: no attempt counted), its request not sent."""

    def __init__(self, subscription: str, kind: str, wait: float) -> None:
        super().__init__(
            "ArmWriteBudget",
            f"subscription {subscription}'s ARM {kind} budget has no token for {wait:.1f}s: retried then",
            subscription,
            retry_after=wait,
            throttled=True,
        )


@dataclass
class _Bucket:
    tokens: float
    stamp: float


class WriteLimiter:
    """Token buckets keyed by (subscription, kind); thread-safe; time and sleep injectable for tests."""

    def __init__(
        self,
        rate: float = 8.0,
        burst: float = 20.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        max_wait: float | None = None,
    ) -> None:
        self.rate = max(0.01, float(rate))
        self.burst = max(1.0, float(burst))
        self.max_wait = max_wait  # None: always wait in the thread
        self.busy = 0  # writes given back to the queue (``WriteBudgetBusy``)
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self.waited = 0.0  # total seconds spent waiting (observability, tests)
        self.acquired = 0

    def _bucket(self, key: tuple[str, str], now: float) -> _Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(self.burst, now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.stamp) * self.rate)
        bucket.stamp = now
        return bucket

    def acquire(self, subscription: str, kind: str = "writes") -> float:
        """Take one token, waiting until there is one; returns the seconds waited. Raises
        ``WriteBudgetBusy`` (no token taken) when that would be longer than ``max_wait``."""
        key = (subscription.lower(), kind)
        with self._lock:
            bucket = self._bucket(key, self._clock())
            bucket.tokens -= 1.0  # reserve now (may go negative): waiters queue up fairly
            wait = max(0.0, -bucket.tokens / self.rate)
            if self.max_wait is not None and wait > self.max_wait and _may_give_back():
                bucket.tokens += 1.0
                self.busy += 1
                raise WriteBudgetBusy(subscription, kind, wait)
            self.acquired += 1
            self.waited += wait
        _wrote()
        if wait > 0:
            self._sleep(wait)
        return wait

    def observe(self, subscription: str, kind: str, remaining: int) -> None:
        """ARM says ``remaining`` tokens are left for this subscription: never spend more than that."""
        if remaining >= LOW_REMAINING:
            return
        with self._lock:
            bucket = self._bucket((subscription.lower(), kind), self._clock())
            bucket.tokens = min(bucket.tokens, float(remaining - RESERVE))


_SHARED: dict[tuple[float, float, float | None], WriteLimiter] = {}
_SHARED_LOCK = threading.Lock()


def shared_limiter(rate: float, burst: float, max_wait: float | None = None) -> WriteLimiter:
    """The process's limiter for this rate/burst (one per process, so all moves share the budget)."""
    with _SHARED_LOCK:
        if (rate, burst, max_wait) not in _SHARED:
            _SHARED[(rate, burst, max_wait)] = WriteLimiter(rate, burst, max_wait=max_wait)
        return _SHARED[(rate, burst, max_wait)]


def subscription_in(url: str) -> str | None:
    match = SUBSCRIPTION_IN_URL.search(url)
    return match.group(1).lower() if match else None


class ArmWritePacingPolicy(HTTPPolicy[Any, Any]):
    """Paces ARM writes/deletes per subscription through a ``WriteLimiter`` (see the module docstring)."""

    def __init__(self, limiter: WriteLimiter) -> None:
        super().__init__()
        self.limiter = limiter

    def send(self, request: PipelineRequest[Any]) -> PipelineResponse[Any, Any]:
        http = request.http_request
        kind = KIND_BY_METHOD.get(http.method.upper())
        subscription = subscription_in(http.url) if kind else None
        if kind and subscription:
            self.limiter.acquire(subscription, kind)
        response = self.next.send(request)
        if kind and subscription:
            header = response.http_response.headers.get(f"x-ms-ratelimit-remaining-subscription-{kind}")
            if header and header.strip().isdigit():
                self.limiter.observe(subscription, kind, int(header))
        return response
