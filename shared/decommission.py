"""A region decommission, fanned out through the work queue (DESIGN.md "Region decommission").

The Event Grid handler only records the event and sends one message, so it answers in a few storage
calls at any fleet size (Event Grid gives a webhook 30 s). Workers do the rest, one step a message:

=================  ==================================================================================
step               does
=================  ==================================================================================
handler            creates the ``decommission`` row (event id, request); sends ``subscriptions``
``subscriptions``  a ``pending|sub|{sub}`` row per allowed subscription (``done|sub|{sub}``, skipped,
                   for the others); one ``page`` message per subscription
``page``           ONE ARM list page of the subscription's identities; those in the region in groups
                   of up to 98 (``STARTS_PER_MESSAGE``, < 64 KB a message): a ``pending|start|{key}``
                   row per group (key: a hash of its identities, so a page listed again gives the
                   same keys), then one ``starts`` message each; then the next page's message, or
                   (last page) deletes ``pending|sub|{sub}`` and checks completion
``starts``         claims its ``pending|start|{key}`` row (``_claim_starts``); links its moves to the
                   fleet (one transaction); starts each move, id uuid5(event id | identity)
                   (``MoveService._start``: lock, first message, index, record; idempotent by that
                   id); then in ONE transaction the ``done|id|{hash}`` rows written, the
                   ``pending|start|{key}`` row deleted and ``ran|{key}`` written; checks completion
``start``          (one identity; sent before ``starts`` existed, still accepted) the move; then
                   ``done|id|{hash}`` written and ``pending|id|{hash}`` deleted in one transaction;
                   checks completion
check              no ``pending|`` row left: the summary ``IdentityMover.RegionDecommissioning.Started``
                   (``{eventId, started, skipped}``) from the ``done|`` rows, written once as a chunked
                   outbox event (``StateStore.create_chunked_event``: no 64 KB property limit); the
                   ``decommission`` row becomes ``Done``
=================  ==================================================================================

A decommission that cannot go on (a stored request that no longer parses, a poisoned
``subscriptions`` step) is ``Failed`` with why, never over ``Done``.

All rows live in partition ``decommission-{uuid5(event id)}`` of the moves table. Every step is
idempotent and may run twice: rows are upserts, moves are named by the event, the summary's event
row is created once (its content is a pure function of the ``done|`` rows, so two checks that both
find nothing pending write the same chunks). The last writer of a ``done|`` row (or of the last
page) sees no ``pending|`` row and writes the summary: a ``pending|`` row is always written before
the message that will remove it is sent. A redelivered event re-sends ``subscriptions`` unless the
decommission is ``Done``: the listing runs again, moves already written count as started.

A ``starts`` message is run by one claimant at a time: a second message of the same key (the page
listed again) or a second copy of the same message (same token, same dequeue count) finds the claim
and is acknowledged; the claimant's own redelivery (a higher dequeue count: it died) resumes at
once, reading each move before starting it; a claim older than ``CLAIM_SECONDS`` may be taken over.
A message's completion is one transaction, so a page listed again sees its ``pending|start|`` row
with all of it still to do, or ``ran|{key}`` (done: a row written again is deleted), never half. A
``starts`` message poisoned (5 failed deliveries) marks its identities whose move exists started
and the others ``Skipped`` (``StartFailed``); from its ``ISOLATE_FROM``-th delivery on, an identity
whose start fails with anything unforeseen is Skipped alone and the others go on. A listing that is
not the first (``again``: a redelivered event or ``page`` step) may have grouped a changed page under
new keys: its ``starts`` messages read each move before starting it.

Storage per identity (one ``starts`` message of 98): the move's lock, first message, index row and
record (4), plus the message's send, receive, delete, claim query and update, links, completion and
check shared by its identities (8 / 98). A ``start`` message cost ~13 per identity.

Example (what ``MoveService.start_region_decommission`` does)::

    fanout = Decommissions(store, queue, clients, settings, start_move, clock)
    fanout.accept("evt-1", request)   # 1 table write + 1 queue send
    fanout.handle(body)               # queue trigger, for bodies where is_step(body)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from itertools import islice
from typing import Any

from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
)
from azure.data.tables import TableTransactionError, UpdateMode

from shared import fleet_discovery
from shared.azure_clients import AzureClients
from shared.context import no_crash
from shared.errors import ApiError
from shared.fleet_discovery import FleetStore
from shared.models import MoveRequest, RegionDecommissionRequest
from shared.settings import Settings
from shared.storage import merge_if_unchanged
from shared.store import Conflict, Event, SharedCache, StateStore
from shared.work_queue import WorkQueue

log = logging.getLogger(__name__)
DECOMMISSION_NAMESPACE = uuid.UUID("6f1c1f3e-5b7a-4d0e-9a61-2f4b8d1c7e90")
SUMMARY_TYPE = "IdentityMover.RegionDecommissioning.Started"
RECORD_ROW = "decommission"
BATCH = 100  # operations per entity-group transaction
CLAIM_SECONDS = 120.0  # a claim (``_claim_starts``, ``_claim``) may be taken over after this
ISOLATE_FROM = 4  # from this delivery of a ``starts`` message on, one identity's failure is its own
# identities per ``starts`` message: their ``done|`` rows, the message's ``pending|start|`` row deleted
# and its ``ran|`` row written are ONE transaction (98 + 2 = BATCH operations)
STARTS_PER_MESSAGE = BATCH - 2
# identity ids per ``starts`` message, in characters of JSON, each with its principal and client ids
# (``principals``, ``PRINCIPAL_CHARS``): 98 ids of ARM's longest (~350 characters) are ~41,000; the
# queue takes 64 KB after base64 (x 4/3), so a body stays under ~55 KB
STARTS_MAX_CHARS = 42_000
PRINCIPAL_CHARS = 67  # ``"<64 hex digits>",``: an identity's entry in ``principals`` (``_pair``)

# MoveService._start: (request, move id, who asked -- recorded in the move's audit, seconds before
# its first message is visible)
StartMove = Callable[[MoveRequest, str, dict[str, Any], float], dict[str, Any]]
# A ``starts`` message's moves become visible one after another, the n-th after n x this many writes
# at the subscription's budget rate (``IDMOVE_ARM_SHARED_RATE``), within ``START_SPREAD_MAX`` s: all
# at once, each message's moves reached the queue as one block, and the queue (first in, first out)
# served whole subscriptions one after another. At 300 identities in 10 subscriptions the block
# whose ``starts`` step ran slowest (20 s against 5 s) waited ~150 s behind the other nine, and its
# subscription's writes began when the others' ended (2.0x the write floor, twice). Spaced, the
# subscriptions' moves interleave whatever their ``starts`` steps' order, and a move a subscription's
# budget cannot serve yet holds no handler thread. 3 writes: fewer than any move makes (create,
# grant, rebind, cleanup), so spacing never slows a fleet below its budget.
START_SPACING_WRITES = 3.0
START_SPREAD_MAX = 60.0  # seconds; the runs ahead serve snapshots for ``AHEAD_FRESH`` (120 s)

# what ``_claim_starts`` found
FRESH, RESUMED, BUSY, DONE, RELISTED = "fresh", "resumed", "busy", "done", "relisted"
POISONED = 1_000  # the dequeue count the poison trigger claims with: above any delivery's


def partition_for(event_id: str) -> str:
    return f"decommission-{uuid.uuid5(DECOMMISSION_NAMESPACE, event_id)}"


def move_id_for(event_id: str, identity_id: str) -> str:
    return str(uuid.uuid5(DECOMMISSION_NAMESPACE, f"{event_id}|{identity_id.lower()}"))


def is_step(body: str) -> bool:
    """A decommission step's message (else a move's ``WorkMessage``)."""
    return body.lstrip().startswith('{"decommission"')


def _hash(identity_id: str) -> str:
    return hashlib.sha256(identity_id.lower().encode()).hexdigest()[:40]


def starts_key(identities: list[str]) -> str:
    """A ``starts`` message's key: the same identities (a page listed again) give the same key."""
    return hashlib.sha256("\n".join(sorted(i.lower() for i in identities)).encode()).hexdigest()[:40]


def chunk_identities(identities: list[str]) -> list[list[str]]:
    """In listing order, at most ``STARTS_PER_MESSAGE`` and ``STARTS_MAX_CHARS`` (as JSON) each."""
    groups: list[list[str]] = []
    size = 0
    for identity_id in identities:
        cost = len(json.dumps(identity_id)) + 1 + PRINCIPAL_CHARS
        if not groups or len(groups[-1]) >= STARTS_PER_MESSAGE or size + cost > STARTS_MAX_CHARS:
            groups.append([])
            size = 0
        groups[-1].append(identity_id)
        size += cost
    return groups


def start_delay(position: int, rate: float) -> float:
    """Seconds before the first message of the subscription's ``position``-th identity (from 0) is
    visible: ``START_SPACING_WRITES`` writes at ``rate`` apart, wrapping around within
    ``START_SPREAD_MAX``. Capped instead, every identity past the cap (the 200th on at ARM's 10/s)
    would reach the queue at the same instant, one block per ``starts`` message."""
    return (position * START_SPACING_WRITES / max(0.01, rate)) % START_SPREAD_MAX


def _pair(principal_id: Any, client_id: Any) -> str:
    """An identity's principal and client ids in a ``starts`` message: 64 hex digits ("" if unknown)."""
    try:
        return uuid.UUID(str(principal_id)).hex + uuid.UUID(str(client_id)).hex
    except ValueError:
        return ""


def _unpair(pair: Any) -> tuple[str, str] | None:
    text = str(pair or "")
    if len(text) != 64:
        return None
    try:
        return str(uuid.UUID(text[:32])), str(uuid.UUID(text[32:]))
    except ValueError:
        return None


def _unique(identities: list[Any]) -> list[str]:
    """Each identity once (ARM ids compare case-insensitively), in order."""
    return list({str(i).lower(): str(i) for i in identities}.values())


def _done_row(pk: str, event_id: str, identity_id: str) -> dict[str, Any]:
    """An identity's ``done|`` row, as started (a skip adds ``Reason`` ...)."""
    row: dict[str, Any] = {"PartitionKey": pk, "RowKey": f"done|id|{_hash(identity_id)}"}
    row.update(Identity=identity_id, MoveId=move_id_for(event_id, identity_id), Outcome="Started")
    return row


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def move_template(request: RegionDecommissionRequest) -> dict[str, Any]:
    """The start body of each move, less ``sourceIdentityId``."""
    body: dict[str, Any] = {
        "targetRegion": request.target_region,
        "autoCommit": request.auto_commit,
        "acknowledgeActionsRequired": request.acknowledge_actions_required,
    }
    if request.target_resource_group:
        body["targetResourceGroup"] = request.target_resource_group
    if request.commit_policy is not None:
        body["commitPolicy"] = request.commit_policy.model_dump(by_alias=True)
    return body


class Decommissions:
    def __init__(
        self,
        store: StateStore,
        queue: WorkQueue,
        clients: Callable[[], AzureClients],
        settings: Settings,
        start_move: StartMove,
        clock: Callable[[], datetime],
    ) -> None:
        self.store = store
        self.table = store.moves
        self.stats = store.stats
        self.queue = queue
        self.clients = clients
        self.settings = settings
        self.start_move = start_move
        self.clock = clock
        self.crashpoint: Callable[[str], None] = no_crash
        self._fleet: FleetStore | None = None
        # ``starts`` runs its moves' first discovery before starting them (``_discover_ahead``); off:
        # every snapshot joins and waits for a generation (as cleanups and late snapshots still do)
        self.discover_ahead = True

    @property
    def fleet(self) -> FleetStore:
        if self._fleet is None:
            self._fleet = FleetStore.for_settings(self.settings, self.stats)
        return self._fleet

    def _now(self) -> str:
        return self.clock().isoformat()

    def _send(self, pk: str, event_id: str, step: str, **fields: Any) -> None:
        body = {"decommission": pk, "eventId": event_id, "step": step, **fields}
        self.queue.send_text(json.dumps(body, separators=(",", ":")))

    # ---- the handler ---------------------------------------------------------------------
    def accept(
        self, event_id: str, request: RegionDecommissionRequest, topic: str | None = None
    ) -> dict[str, Any]:
        """Record the event and send its first step: O(1) storage calls, no ARM call."""
        pk = partition_for(event_id)
        entity = {
            "PartitionKey": pk,
            "RowKey": RECORD_ROW,
            "EventId": event_id,
            "Topic": topic or "",
            "Request": _dumps(request.model_dump(by_alias=True)),
            "Status": "Starting",
            "CreatedAt": self._now(),
        }
        self.stats.add("table.create")
        try:
            self.table.create_entity(entity)
        except ResourceExistsError:
            existing = self._record(pk)
            if existing is not None and existing.get("Status") == "Done":
                return {"eventId": event_id, "decommissionId": pk, "status": "Done"}
            again = True  # a redelivered event: its identities are listed again (see ``_starts``)
        else:
            again = False
        self.crashpoint("decommission:after-record")
        self._send(pk, event_id, "subscriptions", topic=topic, **({"again": True} if again else {}))
        return {"eventId": event_id, "decommissionId": pk, "status": "Accepted"}

    def _record(self, pk: str) -> Any:
        self.stats.add("table.get")
        try:
            return self.table.get_entity(pk, RECORD_ROW)
        except ResourceNotFoundError:
            return None

    # ---- the queue steps -------------------------------------------------------------------
    def handle(self, body: str, delivery: int = 1) -> None:
        """One step; ``delivery`` is the queue message's dequeue count (1 on its first delivery)."""
        message = json.loads(body)
        step = message["step"]
        if step == "subscriptions":
            self._subscriptions(message, delivery)
        elif step == "page":
            self._page(message, delivery)
        elif step == "starts":
            self._starts(message, delivery)
        elif step == "start":  # one identity's, sent before ``starts`` existed: a queue may hold them
            self._start(message)
        else:
            log.warning("unknown decommission step %r: dropped", step)

    def _subscriptions(self, message: dict[str, Any], delivery: int = 1) -> None:
        pk, event_id = message["decommission"], message["eventId"]
        again = bool(message.get("again")) or delivery > 1
        record = self._record(pk)
        if record is None or record.get("Status") == "Done":
            return
        try:
            request = RegionDecommissionRequest.parse(json.loads(record["Request"]))
        except (ApiError, ValueError, KeyError) as exc:  # stored under rules it no longer passes (an
            # older version's), or not JSON: it never will
            why = exc.message if isinstance(exc, ApiError) else f"{type(exc).__name__}: {exc}"
            log.error("decommission %s: its stored request cannot be read: %s", pk, why)
            self._fail(pk, "StoredRequestInvalid", why)
            return
        allowed = [s for s in request.subscription_ids if self.settings.subscription_allowed(s)]
        rows = [{"PartitionKey": pk, "RowKey": f"pending|sub|{s}", "Subscription": s} for s in allowed]
        rows += [
            {
                "PartitionKey": pk,
                "RowKey": f"done|sub|{s}",
                "Identity": f"/subscriptions/{s}",
                "Outcome": "Skipped",
                "Reason": "SubscriptionNotAllowed",
            }
            for s in request.subscription_ids
            if s not in allowed
        ]
        self._upsert(rows)
        template = move_template(request)
        topic = record.get("Topic") or None
        for sub in allowed:
            self._send(
                pk,
                event_id,
                "page",
                subscription=sub,
                region=request.source_region,
                move=template,
                topic=topic,
                **({"again": True} if again else {}),
            )
        if not allowed:
            self._check(pk, event_id)

    def _page(self, message: dict[str, Any], delivery: int = 1) -> None:
        pk, event_id, sub = message["decommission"], message["eventId"], message["subscription"]
        region, template, topic = message["region"], message["move"], message.get("topic")
        # listed before (a redelivered event or page): the page may have changed since, so its groups,
        # and their keys, may be new while their moves exist already (``_starts`` reads them first)
        again = {"again": True} if message.get("again") or delivery > 1 else {}
        listing = self.clients().msi(sub).user_assigned_identities.list_by_subscription()
        pages = listing.by_page(continuation_token=message.get("next"))
        try:
            page = list(next(pages, []))
        except HttpResponseError as exc:
            if exc.status_code in (403, 404):  # the subscription is not ours to list: say so, go on
                self._finish_subscription(pk, event_id, sub, exc.error.code if exc.error else "ListFailed")
                return
            raise
        next_link = pages.continuation_token
        here = [i for i in page if (i.location or "").replace(" ", "").lower() == region]
        found = [str(identity.id) for identity in here]
        # what the ``starts`` step's discovery ahead needs of each (``activities/fleet.py`` ``ahead``)
        principals = {str(i.id).lower(): _pair(i.principal_id, i.client_id) for i in here}
        groups = chunk_identities(_unique(found))
        # how many of the subscription's identities came before this page's: each ``starts`` message
        # spaces its moves after those of the messages before it (``_starts``), not from zero
        offset = int(message.get("offset") or 0)
        # MERGE: a starts message's claim on its row stays when the page is listed again
        pending = [{"PartitionKey": pk, "RowKey": f"pending|start|{starts_key(g)}"} for g in groups]
        self._upsert(pending, UpdateMode.MERGE)
        self.crashpoint("decommission:after-pending")
        for group in groups:
            token = uuid.uuid4().hex[:16]  # the message's own: kept by its redeliveries
            self._send(
                pk,
                event_id,
                "starts",
                key=starts_key(group),
                identities=group,
                principals=[principals.get(i.lower(), "") for i in group],  # in the order of ``identities``
                move=template,
                topic=topic,
                token=token,
                offset=offset,
                **again,
            )
            offset += len(group)
        if next_link:
            more = {
                "region": region,
                "move": template,
                "topic": topic,
                "next": next_link,
                "offset": offset,
                **again,
            }
            self._send(pk, event_id, "page", subscription=sub, **more)
        else:
            self._finish_subscription(pk, event_id, sub, None)

    def _finish_subscription(self, pk: str, event_id: str, sub: str, failed: str | None) -> None:
        if failed:
            self._upsert(
                [
                    {
                        "PartitionKey": pk,
                        "RowKey": f"done|sub|{sub}",
                        "Identity": f"/subscriptions/{sub}",
                        "Outcome": "Skipped",
                        "Reason": failed,
                    }
                ]
            )
        self.stats.add("table.delete")
        self.table.delete_entity(pk, f"pending|sub|{sub}")  # absent: no error
        self._check(pk, event_id)

    def _starts(self, message: dict[str, Any], delivery: int) -> None:
        """Start the moves of one ``starts`` message (its identities, in listing order), then write
        what became of each, delete the message's ``pending|start|`` row and write its ``ran|`` row,
        in one transaction; then one completion check."""
        pk, event_id, key = message["decommission"], message["eventId"], str(message["key"])
        identities = _unique(message["identities"])
        state = self._claim_starts(pk, key, str(message.get("token") or ""), delivery)
        if state == BUSY:
            return  # another message (or a second copy of this one) is starting them now
        if state in (DONE, RELISTED):
            self._settled(pk, event_id, key, state)
            return
        self.crashpoint("decommission:after-claim")
        # before the moves exist, so that their snapshots find them: the moves of this decommission
        # share one discovery (shared/fleet_discovery.py, DESIGN.md "Fleet discovery")
        self.fleet.link_all([move_id_for(event_id, i) for i in identities], pk)
        done = []
        # RESUMED: an earlier run of this message (or a claimant taken over) may have started them;
        # ``again``: an earlier listing's message (other keys, if the page changed) may have
        known = state == RESUMED or bool(message.get("again"))
        began = time.monotonic()
        throttled = self._discover_ahead(pk, event_id, identities, message) if not known else None
        ahead = time.monotonic() - began
        rate = self.settings.arm_shared_rate  # ``start_delay`` clamps a rate of 0
        # the subscription's identities in earlier messages (``_page``): a subscription of more than
        # one message's identities had each message space its moves from zero, side by side
        before = int(message.get("offset") or 0)
        for index, identity_id in enumerate(identities):
            delay = start_delay(before + index, rate)
            done.append(self._isolated(pk, event_id, identity_id, message, known, delivery, delay))
            self.crashpoint("decommission:after-move")
        self._complete(pk, key, done)
        log.info(  # when a fleet's moves reached the queue, and in what order (bench/README.md)
            "decommission %s: starts %s (delivery %d, %s): %d moves in %.1fs after %.1fs of discovery ahead",
            pk,
            key[:8],
            delivery,
            state,
            len(identities),
            time.monotonic() - began - ahead,
            ahead,
        )
        self.crashpoint("decommission:after-marks")
        self._check(pk, event_id)
        if throttled is not None:
            self._finish_ahead(pk, *throttled)

    def _discover_ahead(
        self, pk: str, event_id: str, identities: list[str], message: dict[str, Any]
    ) -> tuple[Any, float] | None:
        """The moves' first snapshots' fleet discovery, run here before the moves start (``activities/
        fleet.py`` ``Ahead``): each snapshot then finds its share at its first visit instead of
        joining a generation and waiting for it. Only for moves not started before (a resumed or
        relisted message's may have snapshots of their own already) and identities the listing gave a
        principal for; anything that goes wrong here is logged, and the snapshots discover as before.
        A run throttled (Resource Graph's quota, when many ``starts`` messages run at once) is
        returned with its Retry-After: the moves start first (their snapshots wait for the run, to be
        woken by it), then ``_finish_ahead`` runs it again."""
        if not self.discover_ahead:
            return None
        from activities.fleet import Ahead  # shared never imports activities at import time

        listed, given = message["identities"], message.get("principals") or []
        principals = (
            {str(i).lower(): p for i, p in zip(listed, given, strict=False)}
            if len(listed) == len(given)
            else {}
        )
        moves = []
        for identity_id in identities:
            ids = _unpair(principals.get(identity_id.lower()))
            if ids is None:
                continue
            try:
                request = MoveRequest.parse({**message["move"], "sourceIdentityId": identity_id})
            except ApiError:
                continue  # its start says why
            source = {"id": identity_id, "principalId": ids[0], "clientId": ids[1]}
            moves.append((move_id_for(event_id, identity_id), request, source))
        if not moves:
            return None
        try:
            cache = SharedCache(self.store, self.clock)
            ahead = Ahead(self.clients(), self.settings, self.stats, cache, pk, moves, self.queue.wake)
            wait = ahead.run() if ahead.open() else None
        except Exception:
            log.warning(
                "decommission %s: discovery ahead failed, the moves discover as usual", pk, exc_info=True
            )
            return None
        return None if wait is None else (ahead, wait)

    def _finish_ahead(self, pk: str, ahead: Any, wait: float) -> None:
        """Runs a throttled discovery ahead again after its Retry-After, up to ``AHEAD_TRIES`` times while
        the wait is at most ``AHEAD_WAIT`` (``shared/fleet_discovery.py``); past that, it stays Paused
        for the first of its members' snapshots that comes after its Retry-After to resume."""
        for _ in range(fleet_discovery.AHEAD_TRIES):
            if wait > fleet_discovery.AHEAD_WAIT:
                log.info("decommission %s: discovery ahead left paused (retry in %.1fs)", pk, wait)
                return
            time.sleep(wait)
            try:
                again = ahead.run()
            except Exception:
                log.warning("decommission %s: discovery ahead failed", pk, exc_info=True)
                return
            if again is None:
                return
            wait = again

    def _settled(self, pk: str, event_id: str, key: str, state: str) -> None:
        """The message's identities are done: a row a later listing wrote again goes; then the
        completion check (again, if a crash cut the last one short)."""
        if state == RELISTED:
            self.stats.add("table.delete")
            self.table.delete_entity(pk, f"pending|start|{key}")
        self._check(pk, event_id)

    def _isolated(
        self,
        pk: str,
        event_id: str,
        identity_id: str,
        message: dict[str, Any],
        known: bool,
        delivery: int,
        delay: float = 0.0,
    ) -> dict[str, Any]:
        """``_start_one``; from the ``ISOLATE_FROM``-th delivery on, an identity whose start fails with
        anything unforeseen is Skipped (``StartFailed``, the error's text) and the others go on: one
        identity that fails every time must not take the rest of its message (up to 97) down with it
        when the message is poisoned."""
        if delivery < ISOLATE_FROM:
            return self._start_one(pk, event_id, identity_id, message, known, delay)
        try:
            return self._start_one(pk, event_id, identity_id, message, True, delay)
        except Exception as exc:  # recorded on the identity, not lost
            log.warning("decommission %s: %s could not be started", pk, identity_id, exc_info=True)
            done = _done_row(pk, event_id, identity_id)
            with contextlib.suppress(Exception):  # its record may have been written all the same
                if self.store.get_move(str(done["MoveId"])) is not None:
                    return done  # Started: the move exists and runs
            done.update(Outcome="Skipped", Reason="StartFailed", Message=str(exc)[:1000])
            return done

    def _start_one(
        self,
        pk: str,
        event_id: str,
        identity_id: str,
        message: dict[str, Any],
        known: bool,
        delay: float = 0.0,
    ) -> dict[str, Any]:
        """One identity's move (``MoveService._start``: lock, first message, index, record; a lock
        already naming this move means an earlier try: the record is read, not written twice). The
        ``done|`` row to write for it. ``known``: read the move first (a resumed message). ``delay``:
        the seconds before its first message is visible (``START_SPACING_WRITES``)."""
        done = _done_row(pk, event_id, identity_id)
        move_id = str(done["MoveId"])
        if known and self.store.get_move(move_id) is not None:
            return done
        who = {"by": f"Event Grid event {event_id}", "eventId": event_id, "topic": message.get("topic")}
        try:
            request = MoveRequest.parse({**message["move"], "sourceIdentityId": identity_id})
            self.start_move(request, move_id, who, delay)
        except ApiError as exc:
            done.update(Outcome="Skipped", Reason=exc.code, Message=exc.message, Location=exc.location or "")
        except Conflict:  # a duplicate wrote the move meanwhile: started
            pass
        return done

    def _claim_starts(self, pk: str, key: str, token: str, delivery: int) -> str:
        """Make this message the one that starts its identities: its ``pending|start|{key}`` row's
        ``Claim`` (ETag-guarded), read with the ``ran|{key}`` row in one query.

        A page listed twice sends a second message with the same key (and its own token); a message
        may also be delivered twice (two copies: same token, same dequeue count). Neither runs beside
        a live claim: BUSY. The claimant's own redelivery (same token, a higher dequeue count: its
        first delivery died) resumes at once; any claim older than ``CLAIM_SECONDS`` may be taken
        over (RESUMED). DONE: the row is gone (the message completed); RELISTED: completed, and a later
        listing wrote the row again. FRESH: claimed, nobody ran it before."""
        claim_key, ran_key = f"pending|start|{key}", f"ran|{key}"
        self.stats.add("table.query")
        rows = {
            str(r["RowKey"]): r
            for r in self.table.query_entities(
                "PartitionKey eq @pk and ( RowKey eq @claim or RowKey eq @ran )",
                parameters={"pk": pk, "claim": claim_key, "ran": ran_key},
            )
        }
        row = rows.get(claim_key)
        if ran_key in rows or row is None:
            return DONE if row is None else RELISTED
        claim, at = str(row.get("Claim") or ""), str(row.get("ClaimedAt") or "")
        young = bool(at) and (self.clock() - datetime.fromisoformat(at)).total_seconds() < CLAIM_SECONDS
        own_redelivery = bool(token) and claim == token and delivery > int(row.get("ClaimDelivery") or 0)
        if claim and young and not own_redelivery:
            return BUSY
        entity = {
            "PartitionKey": pk,
            "RowKey": claim_key,
            "Claim": token or uuid.uuid4().hex,
            "ClaimedAt": self._now(),
            "ClaimDelivery": delivery,
        }
        self.stats.add("table.update")
        if not merge_if_unchanged(self.table, entity, row.metadata["etag"]):
            return BUSY
        return RESUMED if claim else FRESH

    def _complete(self, pk: str, key: str, done: list[dict[str, Any]]) -> None:
        """The ``done|`` rows, the ``pending|start|{key}`` row deleted and ``ran|{key}`` written: one
        transaction. Row gone (another run of the same key completed first): its rows stand."""
        claim = {"PartitionKey": pk, "RowKey": f"pending|start|{key}"}
        ran = {"PartitionKey": pk, "RowKey": f"ran|{key}", "Identities": len(done)}
        ops: list[Any] = [("upsert", row, {"mode": UpdateMode.REPLACE}) for row in done]
        ops += [("delete", claim), ("upsert", ran, {"mode": UpdateMode.REPLACE})]
        self.stats.add("table.transaction")
        try:
            self.table.submit_transaction(ops)
        except TableTransactionError as exc:
            if exc.status_code != 404:
                raise

    def _start(self, message: dict[str, Any]) -> None:
        """A ``start`` message of one identity (sent by the ``page`` step before ``starts``)."""
        pk, event_id, identity_id = message["decommission"], message["eventId"], message["identity"]
        move_id = move_id_for(event_id, identity_id)
        done: dict[str, Any] = {"PartitionKey": pk, "RowKey": f"done|id|{_hash(identity_id)}"}
        done.update(Identity=identity_id, MoveId=move_id, Outcome="Started")
        claimed = self._claim(pk, identity_id, str(message.get("token") or ""))
        if claimed is None:  # done already; the check again, in case a crash cut the last one short
            self._check(pk, event_id)
            return
        if not claimed:
            return  # another start message of this identity is running it
        if self.store.get_move(move_id) is None:  # else an earlier delivery started it
            # before the move exists, so that its snapshot finds it: the moves of this decommission
            # share one discovery (shared/fleet_discovery.py, DESIGN.md "Fleet discovery")
            self.fleet.link(move_id, pk)
            who = {"by": f"Event Grid event {event_id}", "eventId": event_id, "topic": message.get("topic")}
            try:
                request = MoveRequest.parse({**message["move"], "sourceIdentityId": identity_id})
                self.start_move(request, move_id, who, 0.0)
            except ApiError as exc:
                done.update(
                    Outcome="Skipped", Reason=exc.code, Message=exc.message, Location=exc.location or ""
                )
            except Conflict:  # a duplicate of this message wrote the move meanwhile: started
                pass
        self.crashpoint("decommission:after-start")
        self._mark_done(done)
        self._check(pk, event_id)

    def _claim(self, pk: str, identity_id: str, token: str) -> bool | None:
        """Make this start message the one that starts the identity's move (its ``pending|`` row's
        ``Claim``, ETag-guarded). A listing run twice (a redelivered event) sends a second start
        message for the same identity; without the claim both could run ``start_move`` at the same
        instant. The claimant's own redelivery (it crashed) holds the same token and runs again; a
        claim older than ``CLAIM_SECONDS`` may be taken over. False: claimed by another; None: done."""
        key = f"pending|id|{_hash(identity_id)}"
        self.stats.add("table.get")
        try:
            row = self.table.get_entity(pk, key)
        except ResourceNotFoundError:
            return None  # pending rows are deleted when done
        claim, at = str(row.get("Claim") or ""), str(row.get("ClaimedAt") or "")
        if token and claim == token:
            return True
        if claim and at and (self.clock() - datetime.fromisoformat(at)).total_seconds() < CLAIM_SECONDS:
            return False
        entity = {
            "PartitionKey": pk,
            "RowKey": key,
            "Claim": token or uuid.uuid4().hex,
            "ClaimedAt": self._now(),
        }
        self.stats.add("table.update")
        return merge_if_unchanged(self.table, entity, row.metadata["etag"])

    def _mark_done(self, done: dict[str, Any]) -> None:
        """``done|…`` written and its ``pending|…`` deleted in one transaction (pending gone: upsert alone)."""
        pending = {
            "PartitionKey": done["PartitionKey"],
            "RowKey": "pending|" + done["RowKey"].removeprefix("done|"),
        }
        self.stats.add("table.transaction")
        try:
            self.table.submit_transaction(
                [("upsert", done, {"mode": UpdateMode.REPLACE}), ("delete", pending)]
            )
        except TableTransactionError as exc:
            if exc.status_code != 404:
                raise
            self._upsert([done])

    def fail_step(self, body: str) -> None:
        """Poison trigger: a step that failed 5 deliveries; its identities (or subscription) are
        skipped, or (the ``subscriptions`` step) the decommission is ``Failed``. A ``starts``
        message: each of its identities whose move exists counts as started, the others are
        ``Skipped`` (``StartFailed``); nothing, if the message had completed."""
        message = json.loads(body)
        pk, event_id = message["decommission"], message["eventId"]
        if message["step"] == "starts":
            self._fail_starts(message)
        elif message["step"] == "start":
            identity_id = message["identity"]
            done = {"PartitionKey": pk, "RowKey": f"done|id|{_hash(identity_id)}", "Identity": identity_id}
            done.update(MoveId=move_id_for(event_id, identity_id), Outcome="Skipped", Reason="StartFailed")
            self._mark_done(done)
            self._check(pk, event_id)
        elif message["step"] == "page":
            self._finish_subscription(pk, event_id, message["subscription"], "ListFailed")
        elif message["step"] == "subscriptions":
            # nothing listed: no move started, no summary; a later page's completion would still
            # mark it Done (a delivery that sent its pages, then failed)
            self._fail(pk, "StepPoisoned", "the subscriptions step failed 5 deliveries")

    def _fail(self, pk: str, code: str, message: str) -> None:
        """The decommission cannot go on: ``Failed``, with why (``status``), not ``Starting`` forever.
        Never over ``Done`` (a poisoned duplicate may come after the pages it sent have finished the
        decommission: it stays Done, so a redelivered event still starts nothing): ETag-guarded."""
        for _ in range(3):
            record = self._record(pk)
            if record is None or record.get("Status") == "Done":
                return
            error = f"{code}: {message}"[:1000]
            entity = {"PartitionKey": pk, "RowKey": RECORD_ROW, "Status": "Failed", "Error": error}
            self.stats.add("table.update")
            if merge_if_unchanged(self.table, entity, record.metadata["etag"]):
                return

    def _fail_starts(self, message: dict[str, Any]) -> None:
        pk, event_id, key = message["decommission"], message["eventId"], str(message["key"])
        # as the message's own last delivery; a live claim of another message will finish the work
        state = self._claim_starts(pk, key, str(message.get("token") or ""), POISONED)
        if state == BUSY:
            return
        if state in (FRESH, RESUMED):
            done = []
            for identity_id in _unique(message["identities"]):
                row = _done_row(pk, event_id, identity_id)
                if self.store.get_move(row["MoveId"]) is None:
                    row.update(Outcome="Skipped", Reason="StartFailed")
                done.append(row)
            self._complete(pk, key, done)
        self._settled(pk, event_id, key, state)

    # ---- completion ------------------------------------------------------------------------
    def _check(self, pk: str, event_id: str) -> None:
        """Nothing pending: write the summary (once) and mark the decommission Done."""
        self.stats.add("table.query")
        pending = self.table.query_entities(
            "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi",
            parameters={"pk": pk, "lo": "pending|", "hi": "pending}"},
            results_per_page=1,
            select=["RowKey"],
        )
        if any(True for _ in islice(pending, 1)):
            return
        summary = self.summary(pk, event_id)
        if summary["started"]:
            event = Event(pk, 1, SUMMARY_TYPE, self._now(), summary)
            with contextlib.suppress(Conflict):  # an earlier check wrote it
                self.store.create_chunked_event(event)
        self.crashpoint("decommission:after-summary")
        self.stats.add("table.update")
        self.table.upsert_entity(
            {
                "PartitionKey": pk,
                "RowKey": RECORD_ROW,
                "Status": "Done",
                "Started": len(summary["started"]),
                "Skipped": len(summary["skipped"]),
            },
            mode=UpdateMode.MERGE,
        )

    def summary(self, pk: str, event_id: str) -> dict[str, Any]:
        """``{eventId, started: [{id, moveId}], skipped: [{id, reason, ...}]}`` from the ``done|`` rows."""
        self.stats.add("table.query")
        rows = self.table.query_entities(
            "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi",
            parameters={"pk": pk, "lo": "done|", "hi": "done}"},
        )
        started: list[dict[str, Any]] = []
        skipped: list[dict[str, Any]] = []
        for row in rows:
            if row["Outcome"] == "Started":
                started.append({"id": row["Identity"], "moveId": row["MoveId"]})
                continue
            entry = {"id": row["Identity"], "reason": row["Reason"]}
            if row.get("MoveId"):
                entry["moveId"] = row["MoveId"]
            if row.get("Message"):
                entry["message"] = row["Message"]
            if row.get("Location"):
                entry["location"] = row["Location"]
            skipped.append(entry)
        return {"eventId": event_id, "started": started, "skipped": skipped}

    def status(self, event_id: str) -> dict[str, Any] | None:
        """The decommission as stored: its status and, so far, what started and what was skipped."""
        pk = partition_for(event_id)
        record = self._record(pk)
        if record is None:
            return None
        error = {"error": record["Error"]} if record.get("Status") == "Failed" and record.get("Error") else {}
        return {"decommissionId": pk, "status": record.get("Status"), **error, **self.summary(pk, event_id)}

    def _upsert(self, rows: list[dict[str, Any]], mode: UpdateMode = UpdateMode.REPLACE) -> None:
        for start in range(0, len(rows), BATCH):
            self.stats.add("table.transaction")
            ops: list[Any] = [("upsert", r, {"mode": mode}) for r in rows[start : start + BATCH]]
            self.table.submit_transaction(ops)
