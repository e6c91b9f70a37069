"""What fleet discovery reads, once for many moves, and how it is shared out (DESIGN.md "Fleet discovery").

Needs: a move of a region decommission (``shared/fleet_discovery.py`` links it to its fleet). Changes
in Azure: nothing. A generation's run reads, for all its members at once:

* the visible subscriptions (``GET /subscriptions``, listed afresh);
* Resource Graph, ONE query per batch of ``BATCH`` identities: the resources that use any of them
  (snapshot's ``ARG_QUERY`` predicate per identity) ORed with the candidates of every kind of access
  (``ARG_CANDIDATES``' predicates: per identity where a kind has a needle, and once, in the first
  batch, where it has none -- every Cosmos DB account or SQL server in scope is a candidate of every
  identity), projecting ``tostring(identity)``, ``tostring(properties)``, the issuer and each needle
  expression. Rows of all batches are then given to each identity whose own predicates they meet --
  the same ``contains`` and type tests, case-insensitive, on the same text, every batch's copy of a
  row tested (a throttled run may read its batches minutes apart) -- so a member gets the rows its
  own two queries would have returned at one of those reads. A generation of up to ``BATCH`` members
  costs one query (it was two: uses and candidates apart), a pass's quota being what bounds a fleet.
  Such an answer can outgrow a transaction (every candidate's properties): ``FleetStore.put_blobs``
  spreads it;
* every role assignment of each subscription, once (kept only for the members' principals; the
  subscription's count goes to ``ctx.cache`` for snapshot's headroom check).

Each finished read is stored (``Parts``): a throttled run resumes from it. A move waiting for
another's run waits on its own retry message, which the run wakes when it is done (``ctx.wake``,
see ``shared_result``). ``lookup`` returns ``{"subscriptions", "rows", "candidates",
"assignments"}`` for one move, or ``None`` (per-move discovery: a move started by HTTP, a failed
run, a wait too long).

Example::

    shared = lookup(ctx, source, "snapshot")   # None, or the move's share of its fleet's discovery
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from datetime import UTC, datetime
from functools import partial
from typing import Any

from azure.core.exceptions import HttpResponseError

from activities._azure import classify
from activities.access import KINDS
from activities.access.role_assignments import raw_assignment
from shared.azure_clients import AzureClients, subscription_of
from shared.context import Cache, PhaseContext
from shared.fleet_discovery import FleetStore, Parts, open_ahead, run_ahead, shared_result
from shared.models import MoveRequest
from shared.settings import Settings

BATCH = 40  # identities per Resource Graph query (~550 characters of predicates each: ~22 KB a query)
SERIES = "discovery"  # the one kind of generation snapshots and cleanups share
USES_COLUMNS = ("id", "name", "type", "location", "resourceGroup", "subscriptionId")
CANDIDATE_COLUMNS = (*USES_COLUMNS, "issuer")
_stores: dict[tuple[str, str], FleetStore] = {}
log = logging.getLogger(__name__)


def store_for(ctx: PhaseContext) -> FleetStore:
    """One ``FleetStore`` per table per process, counted with the engine's ``StoreStats`` (``ctx.stats``)."""
    settings = ctx.settings
    key = (settings.storage_connection_string or repr(settings.storage), settings.table_prefix)
    if key not in _stores:
        _stores[key] = FleetStore.for_settings(settings, ctx.stats)
    return _stores[key]


def lookup(ctx: PhaseContext, source: dict[str, Any], kind: str) -> dict[str, Any] | None:
    """The move's share of a fleet discovery read after this step began (see ``shared_result``)."""
    try:
        if uuid.UUID(ctx.move_id).version != 5:  # decommission moves are uuid5(event | identity)
            return None
    except ValueError:
        return None
    try:
        return _lookup(ctx, source, kind)
    except HttpResponseError:  # the fleet's table, not Azure (Azure's errors are classified inside)
        log.warning("fleet discovery unavailable for %s: discovering alone", ctx.move_id, exc_info=True)
        return None


def _lookup(ctx: PhaseContext, source: dict[str, Any], kind: str) -> dict[str, Any] | None:
    store = store_for(ctx)
    fleet = ctx.fleet or store.fleet_of(ctx.move_id)  # named by the move's start, else its link
    if fleet is None:
        return None
    member, data = member_of(ctx, source, kind)

    def run(members: list[tuple[str, dict[str, Any]]], parts: Parts) -> dict[str, Any]:
        # the subscriptions' counts go to the shared cache only for a snapshot's headroom check:
        # cleanup's re-read checks none, and a run of cleanups wrote ~1.5 of a move's ~40 storage
        # transactions there (300x10 bench); the members' results carry the counts either way
        return discover(ctx, members, parts, count=any(_step_of(m) == "snapshot" for m, _ in members))

    # snapshots and cleanups join the same generations (``SERIES``): a run reads the same things for
    # both, and the fleet's Resource Graph quota is spent once for those that wait at the same time;
    # the run wakes the members waiting for it (each one's own retry message) instead of their polling
    found: dict[str, Any] | None = shared_result(store, fleet, SERIES, member, data, run, ctx.wake)
    if found is None or not _same_identity(found, source):
        return None
    return found


def _step_of(member: str) -> str:
    """The step a member is (``member_of``: "{move id}|{snapshot or cleanup}|{state}")."""
    parts = member.split("|")
    return parts[1] if len(parts) > 2 else ""


def member_of(ctx: PhaseContext, source: dict[str, Any], kind: str) -> tuple[str, dict[str, Any]]:
    """The member this step of this move is, and what a run needs of it. A member is this step of this
    move in this round: a retry after a blocked plan, cleanup again after SourceChanged (another
    plan/snapshot), or a retry of a failed cleanup hours later (a new round, ctx.epoch) must not
    reuse what an earlier round read."""
    state = hashlib.sha256(
        json.dumps([ctx.plan, ctx.snapshot, ctx.epoch], sort_keys=True, default=str).encode()
    )
    request = ctx.request
    mapped = [subscription_of(i) for i in [*request.resource_map, *request.resource_map.values()]]
    data = {
        "id": source["id"],
        "principalId": source["principalId"],
        "clientId": source["clientId"],
        "subscriptions": sorted({request.identity.subscription_id.lower(), *(s for s in mapped if s)}),
    }
    return f"{ctx.move_id}|{kind}|{state.hexdigest()[:16]}", data


class Ahead:
    """The first snapshots' share of fleet discovery, run by a decommission's ``starts`` message before
    it starts its moves (``open_ahead``, ``run_ahead``): ``moves`` are (move id, request, the identity
    as ARM listed it: ``id``, ``principalId``, ``clientId``). Each move's first snapshot is the member
    its ``lookup`` will name (a new move: no plan, no snapshot, round 0), so it finds its result at
    its first visit.

    Example::

        ahead = Ahead(clients, settings, stats, cache, fleet, moves, queue.wake)
        wait = ahead.run() if ahead.open() else None   # None: done (or not ours); else throttled for
    """

    def __init__(
        self,
        clients: AzureClients,
        settings: Settings,
        stats: Any,
        cache: Cache,
        fleet: str,
        moves: list[tuple[str, MoveRequest, dict[str, Any]]],
        wake: Callable[[str], bool] | None = None,
    ) -> None:
        self.contexts = [
            PhaseContext(
                clients=clients,
                settings=settings,
                move_id=m,
                request=r,
                cache=cache,
                stats=stats,
                fleet=fleet,
            )
            for m, r, _ in moves
        ]
        self.members = [
            member_of(ctx, source, "snapshot")
            for ctx, (_, _, source) in zip(self.contexts, moves, strict=True)
        ]
        self.fleet, self.wake, self.n = fleet, wake, 0

    def open(self) -> bool:
        if not self.contexts:
            return False
        self.n = open_ahead(store_for(self.contexts[0]), self.fleet, SERIES, self.members) or 0
        return bool(self.n)

    def run(self) -> float | None:
        """One run (``run_ahead``): None when it is over, else the seconds its throttle asks to wait."""

        def run(listed: list[tuple[str, dict[str, Any]]], parts: Parts) -> dict[str, Any]:
            return discover(self.contexts[0], listed, parts, count=True)

        store, owner = store_for(self.contexts[0]), self.members[0][0]
        return run_ahead(store, self.fleet, SERIES, self.n, owner, run, self.wake)


def _same_identity(found: dict[str, Any], source: dict[str, Any]) -> bool:
    return str(found.get("principalId", "")).lower() == str(source["principalId"]).lower()


def discover(
    ctx: PhaseContext, members: list[tuple[str, dict[str, Any]]], parts: Parts, count: bool
) -> dict[str, Any]:
    """One run for every member: ``member -> {subscriptions, rows, candidates, assignments, principalId}``."""
    from activities.snapshot import ARG_QUERY, _query, subscriptions_from  # no cycle at import

    clients = ctx.clients
    since = time.monotonic()  # after the members joined: a listing begun since serves this run too
    try:
        visible = parts.step("visible", lambda: _visible(ctx))
        subs = {m: subscriptions_from(ctx, d["subscriptions"], visible) for m, d in members}
        scope = sorted({s for each in subs.values() for s in each})
        results: dict[str, dict[str, Any]] = {
            m: {"subscriptions": subs[m], "principalId": d["principalId"], "rows": [], "candidates": []}
            for m, d in members
        }
        # ONE Resource Graph query per batch: the batch's identities' uses and needle candidates ORed
        # with (first batch only) the candidates no identity narrows (every Cosmos DB account, SQL
        # server, ... in scope: the same rows for all); each member's rows are then told apart by the
        # same predicates, case-insensitive, on the projected text, over the rows of every batch
        needles = sorted({k.candidate_needle[0] for k in KINDS if k.candidate_needle})
        shared = [f"({k.candidates})" for k in KINDS if k.candidates and not k.candidate_needle]
        queries: dict[str, Callable[[], Any]] = {}
        for start in range(0, len(members), BATCH):
            batch = members[start : start + BATCH]
            predicates = [
                "("
                + ARG_QUERY.split(" | ")[1].removeprefix("where ").format(id=d["id"], client_id=d["clientId"])
                + ")"
                for _, d in batch
            ]
            predicates += list(
                dict.fromkeys(
                    f"({k.candidates.format(**_fields(d))})"
                    for _, d in batch
                    for k in KINDS
                    if k.candidates and k.candidate_needle
                )
            )
            if start == 0:
                predicates += shared
            query = (
                f"Resources | where {' or '.join(predicates)} | project {', '.join(USES_COLUMNS)}, "
                "identityText = tostring(identity), propertiesText = tostring(properties), "
                "issuer = tostring(properties.oidcIssuerProfile.issuerURL)"
                + "".join(f", n{i} = {e}" for i, e in enumerate(needles))
                + " | order by id asc"
            )
            queries[f"rows|{start}"] = partial(_query, clients, scope, query)
        found = [row for answer in parts.steps(queries).values() for row in answer]  # side by side
        # every batch's copy of a row is tested (a throttled run may read its batches minutes apart,
        # and a resource may change in between): a member gets a row if any copy meets its predicate
        rows = sorted(found, key=lambda r: str(r.get("id")))
        for m, d in members:
            fields = _fields(d)
            uses: dict[str, dict[str, Any]] = {}
            mine: dict[str, dict[str, Any]] = {}
            for r in rows:
                if not _in(r, subs[m]):
                    continue
                if _uses(r, d):
                    uses.setdefault(str(r.get("id")), {c: r.get(c) for c in USES_COLUMNS})
                texts = {e: str(r.get(f"n{i}") or "") for i, e in enumerate(needles)}
                if any(k.candidates and k.candidate_match(r, fields, texts) for k in KINDS):
                    mine.setdefault(str(r.get("id")), {c: r.get(c) for c in CANDIDATE_COLUMNS})
            results[m]["rows"] = list(uses.values())
            results[m]["candidates"] = list(mine.values())
        principals = {str(d["principalId"]).lower() for _, d in members}
        lists = parts.steps(  # one listing per subscription, side by side (each has its own budget)
            {
                f"roleAssignments|{sub}": partial(_assignments, ctx, sub, principals, count, since)
                for sub in scope
            }
        )
        listed: dict[str, list[dict[str, Any]]] = {}
        counts: dict[str, list[Any]] = {}  # sub -> [assignments made in it, when listed]
        for sub in scope:
            value = lists[f"roleAssignments|{sub}"]
            if isinstance(value, dict):
                listed[sub], counts[sub] = value["kept"], [value["count"], value["at"]]
            else:  # a listing stored by a run before counts were kept with it
                listed[sub] = value
    except HttpResponseError as exc:
        raise classify(exc, "fleet discovery") from exc
    for m, d in members:
        principal = str(d["principalId"]).lower()
        results[m]["assignments"] = [
            ra for sub in subs[m] for ra in listed.get(sub, []) if ra["principalId"].lower() == principal
        ]
        # snapshot's headroom check reads these, not ``ctx.cache`` (``Known``): one table read less
        results[m]["counts"] = {sub: counts[sub] for sub in subs[m] if sub in counts}
    return results


class Known:
    """``ctx.cache`` in front of the counts a fleet run listed (``discover``'s ``counts``: subscription
    -> [assignments made in it, when listed]), which snapshot's headroom check reads from here rather
    than from the cache's table, with the same age limit."""

    def __init__(self, cache: Cache, counts: dict[str, list[Any]]) -> None:
        self.cache = cache
        self.known = {f"roleAssignmentCount|{sub}": (int(c), str(at)) for sub, (c, at) in counts.items()}

    def get(self, key: str, max_age: float) -> Any:
        if key in self.known:
            count, at = self.known[key]
            if 0 <= (datetime.now(UTC) - datetime.fromisoformat(at)).total_seconds() <= max_age:
                return count
        return self.cache.get(key, max_age)

    def put(self, key: str, value: Any) -> None:
        self.known.pop(key, None)
        self.cache.put(key, value)


def _visible(ctx: PhaseContext) -> list[str] | None:
    """The visible subscriptions, listed now; ``None`` when the mover may not list them."""
    try:
        return ctx.clients.subscription_ids(ctx.request.identity.subscription_id, 0)
    except HttpResponseError as exc:
        if exc.status_code not in (401, 403):
            raise
        return None


def _fields(d: dict[str, Any]) -> dict[str, str]:
    return {"principal_id": d["principalId"], "client_id": d["clientId"], "id": d["id"]}


def _in(row: dict[str, Any], subs: list[str]) -> bool:
    return str(row.get("subscriptionId") or "").lower() in subs


def _uses(row: dict[str, Any], d: dict[str, Any]) -> bool:
    """``ARG_QUERY``'s predicate for one identity, on the row's projected text (``contains``: case-insensitive)."""
    identity, properties = (
        str(row.get("identityText") or "").lower(),
        str(row.get("propertiesText") or "").lower(),
    )
    ident, client = str(d["id"]).lower(), str(d["clientId"]).lower()
    return ident in identity or ident in properties or client in properties


def _assignments(
    ctx: PhaseContext, sub: str, principals: set[str], count: bool, since: float | None = None
) -> dict[str, Any]:
    """Every role assignment listed for ``sub`` once; those of ``principals`` kept (``kept``). The
    subscription's own count (assignments made in it: ``count``, listed ``at``) goes to ``ctx.cache``
    like snapshot's headroom check counts it, and to the members' results.
    ``since`` (the run's start, ``time.monotonic``): a listing of this process that began after it
    serves this run too (``_listing``)."""
    (listed, made_here, at), listed_here = _listing(ctx, sub, since)
    kept = [ra for ra in listed if ra["principalId"].lower() in principals]
    if count and listed_here:  # a listing shared with the run that made it was put by that run
        ctx.cache.put(f"roleAssignmentCount|{sub}", made_here)
    return {"kept": kept, "count": made_here, "at": at}


# A subscription's role assignments as one run of this process listed them, for runs that run beside
# it: a decommission's ``starts`` messages run their discovery ahead all at once, each listing every
# visible subscription (an identity may hold a role anywhere), 10 x 10 listings at once in the 300x10
# bench, which ARM's read budget refused (20 read 429s, first writes 20 s late). A run uses a listing
# that began after the run did (so read after its members joined: ``shared_result``'s rule), waiting
# for it if it is still going; otherwise it lists afresh.
Listing = tuple[list[dict[str, Any]], int, str]  # every assignment, how many made in the sub, when
_listings: dict[tuple[str, str], tuple[float, Future[Listing]]] = {}
_listings_lock = threading.Lock()
LISTINGS_KEPT = 60.0  # seconds a finished listing stays for runs that began before it


def _listing(ctx: PhaseContext, sub: str, since: float | None) -> tuple[Listing, bool]:
    """(every role assignment listed in ``sub``, how many were made in it, when), from a listing that began
    after ``since``: one of this process's in flight or just done, else a new one (None: always new);
    and whether it was listed by this call."""
    key = (ctx.settings.arm_endpoint, sub.lower())
    now = time.monotonic()
    with _listings_lock:
        for k, (began, _) in list(_listings.items()):
            if now - began > LISTINGS_KEPT:
                del _listings[k]
        found = _listings.get(key)
        mine = since is None or found is None or found[0] < since
        if mine:
            future: Future[Listing] = Future()
            if since is not None:
                _listings[key] = (now, future)
        else:
            future = found[1]  # type: ignore[index]
    if not mine:
        return future.result(), False
    try:
        listed, made_here, at = [], 0, datetime.now(UTC).isoformat()
        for ra in ctx.clients.authorization(sub).role_assignments.list_for_subscription():
            made_here += subscription_of(str(ra.scope)) == sub
            listed.append(raw_assignment(ra, sub))
    except BaseException as exc:
        with _listings_lock:
            if _listings.get(key, (0.0, None))[1] is future:
                del _listings[key]  # a failed listing serves no one: the next run lists again
        future.set_exception(exc)
        raise
    future.set_result((listed, made_here, at))
    return (listed, made_here, at), True
