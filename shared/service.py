"""``MoveService``: the engine's facade (DESIGN.md "Engine facade"), used by function_app, the host, tests.

Example::

    service = MoveService.from_settings(Settings.from_env())
    accepted = service.start({"sourceIdentityId": "...", "targetRegion": "northeurope"})
    service.get(accepted["id"])["status"]     # "Pending" until a worker runs handle_message

Clock and ids are injected (``clock=``, ``new_id=``) so tests can skip time; ``crashpoint`` is a
hook called between writes (set it to a function that raises to simulate a crash there).
Commands and the statuses that allow them: ``shared/statuses.py``.
"""

from __future__ import annotations

import builtins
import functools
import json
import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from azure.core.exceptions import AzureError

from shared import commit_policy, outbox, report
from shared.azure_clients import AzureClients
from shared.context import no_crash
from shared.decommission import DECOMMISSION_NAMESPACE as DECOMMISSION_NAMESPACE  # re-exported
from shared.decommission import Decommissions
from shared.decommission import is_step as is_decommission_step
from shared.engine import Engine
from shared.errors import InvalidRequest, MoveConflict, MoveNotFound, PermanentError
from shared.models import MoveRequest, RegionDecommissionRequest
from shared.outbox import new_event
from shared.phases import BY_NAME, DISCARD, ORDER
from shared.settings import Settings
from shared.statuses import IN_FLIGHT, Status, allows
from shared.store import Conflict, Event, InvalidToken, MoveRecord, StateStore, StoreStats
from shared.work_queue import WorkMessage, WorkQueue
from shared.write_budget import shared_write_limiter

Clock = Callable[[], datetime]
log = logging.getLogger(__name__)
LOCK_ORPHAN_SECONDS = 60  # a lock naming a move that was never written is free after this
UNKNOWN_ACTOR = "unknown"  # a command through the service without a caller named (tests, scripts)


COMMAND_TRIES = 3  # a command that loses an ETag race to a worker reads the move again this often


class _Raced(MoveConflict):
    """The move changed between a command's read and its save (``MoveService._decide`` retries)."""


def _next_round(entry: dict[str, Any]) -> int:
    """A command runs a phase afresh: drop its step's claim and start a new round (epoch), so
    messages of the earlier round (a delayed retry, a resend) are acknowledged, not run again."""
    entry.pop("step", None)
    entry["epoch"] = int(entry.get("epoch", 0)) + 1
    return int(entry["epoch"])


def _cleanup_began(record: MoveRecord) -> bool:
    """Cleanup saved ``removing`` (``Engine._add_items``) before its first item ran. Its items' Done
    marks are saved only with the phase's end (or every 60 s) when it runs them in its own step (a
    batch message still marks each one), so after a worker died mid-cleanup this is the only record
    that the source may be partly removed. It stays through later rounds (a
    retry, a way back to grant): their removals came first. A cleanup that goes back to grant
    (``SourceChanged``) before it removes anything never saves it: discard stays possible."""
    entry = next((e for e in record.phases if e.get("name") == "cleanup"), {})
    return "removing" in entry


def utc_now() -> datetime:
    return datetime.now(UTC)


def new_uuid() -> str:
    return str(uuid.uuid4())


class MoveService:
    def __init__(
        self,
        settings: Settings,
        *,
        clock: Clock = utc_now,
        new_id: Callable[[], str] = new_uuid,
        clients: AzureClients | None = None,
        stats: StoreStats | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.new_id = new_id
        self.crashpoint: Callable[[str], None] = no_crash
        # "outbox:after-send" (between an event's send and its mark): apart from ``crashpoint``,
        # whose points are exactly those a move's steps pass through (shared/crashpoints.py)
        self.outbox_crashpoint: Callable[[str], None] = no_crash
        self.store = StateStore(settings.storage, settings.table_prefix, stats)
        self.store.claim_on_write = bool(settings.eventgrid_endpoint)
        self.stats = self.store.stats
        self.queue = WorkQueue(settings.storage, settings.queue_name, self.stats)
        self._clients = clients
        self.engine = Engine(settings, self.store, self.queue, self.clients, clock, self._crash)
        # a decommission publishes once per message (``handle_message``), not once per move it starts
        quiet_start = functools.partial(self._start, publish=False)
        self.decommissions = Decommissions(self.store, self.queue, self.clients, settings, quiet_start, clock)

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> MoveService:
        return cls(settings, **kwargs)

    def clients(self) -> AzureClients:
        if self._clients is None:
            shared = (
                shared_write_limiter(self.settings, self.stats) if self.settings.arm_shared_budget else None
            )
            self._clients = AzureClients(self.settings, write_limiter=shared)
        return self._clients

    def _crash(self, name: str) -> None:
        self.crashpoint(name)

    def _now(self) -> str:
        return self.clock().isoformat()

    # ---- start -----------------------------------------------------------------------------
    def start(self, body: dict[str, Any], by: str | None = None) -> dict[str, Any]:
        """Validate, claim the identity's lock, write the move (Pending + Started event), enqueue.

        ``by`` names who asked (the HTTP layer: the signed-in principal, "function key" or "local");
        it is recorded in the move's ``audit`` with every command, for the report."""
        request = MoveRequest.parse(body)  # 400 before anything is written
        sub = request.identity.subscription_id
        if not self.settings.subscription_allowed(sub):
            raise InvalidRequest(
                "SubscriptionNotAllowed", f"subscription {sub} is not in the allow-list", "sourceIdentityId"
            )
        for resource_id in [*request.resource_map, *request.resource_map.values()]:
            if not self.settings.subscription_allowed(resource_id.split("/")[2]):
                raise InvalidRequest(
                    "SubscriptionNotAllowed", f"{resource_id} is outside the allow-list", "resourceMap"
                )
        return self._start(request, self.new_id(), {"by": by or UNKNOWN_ACTOR})

    def _start(
        self,
        request: MoveRequest,
        move_id: str,
        who: dict[str, Any],
        delay: float = 0.0,
        publish: bool = True,
    ) -> dict[str, Any]:
        """Lock, first message, then the record: a crash never leaves a Pending move without its message.

        The message names version 1 (the record as created), so a worker that gets it before the
        record exists waits for it (bounded). A crash between the two leaves no move, only a lock
        naming a move that was never written: a retry is 409 (with that ``Location``) for at most
        ``LOCK_ORPHAN_SECONDS``, then the identity is free. A start run again with the same move id
        (a region decommission's, after a crash) that finds the lock already its own reads the move
        and, if the record exists, answers it as it is (nothing sent again); without the record, it
        goes on (message, then record). ``delay``: seconds before the first message is visible (a
        decommission's ``starts`` spaces its moves). ``publish=False``: the caller publishes the
        outbox itself.
        """
        self.store.ensure_tables()
        if self._claim_lock(request.source_identity_id, move_id):
            existing = self.store.get_move(move_id)
            if existing is not None:
                return {"id": move_id, "status": existing.status.value, "links": self.links(move_id)}
        now = self._now()
        ref = request.identity
        record = MoveRecord(
            id=move_id,
            status=Status.PENDING,
            phase=ORDER[0],
            request=request.to_body(),
            created_at=now,
            updated_at=now,
            phases=[
                {"name": n, "status": "NotStarted", "startedAt": None, "completedAt": None} for n in ORDER
            ],
            source={
                "id": ref.id,
                "name": ref.name,
                "resourceGroup": ref.resource_group,
                "subscriptionId": ref.subscription_id,
            },
            version=1,
            audit=[{"command": "start", "at": now, **who}],
        )
        record.phase_entry(ORDER[0]).update(status="Running", startedAt=now)
        self.queue.send(WorkMessage(move_id, ORDER[0], after=record.version), delay_seconds=delay)
        self.crashpoint("start:after-send")
        self.store.index_move(record)  # newest-first listing (``list``); harmless without the record
        self.store.create_move(record, [new_event(record, "Started", now)])
        self.crashpoint("start:after-record")
        if publish:
            self._publish_quietly()
        return {"id": move_id, "status": record.status.value, "links": self.links(move_id)}

    def _claim_lock(self, source_id: str, move_id: str) -> bool:
        """Every 409 ``MoveInProgress`` names (``location``) the move that holds the identity, also
        one still starting (its lock is written, its record not yet). True: the lock already named
        ``move_id`` (an earlier try of the same start wrote it); False: written now."""
        holder_id: str | None = None
        for _ in range(3):
            try:
                self.store.create_lock(source_id, move_id, self._now())
                return False
            except Conflict:
                pass
            lock = self.store.get_lock(source_id)
            if lock is None:
                continue
            holder_id = str(lock["MoveId"])
            if holder_id == move_id:  # ours: a redelivered decommission start whose first try got here
                return True
            holder = self.store.get_move(lock["MoveId"])
            if holder is not None and holder.status in IN_FLIGHT and holder.id != move_id:
                raise MoveConflict(
                    "MoveInProgress",
                    f"identity already has move {holder.id} ({holder.status.value})",
                    "sourceIdentityId",
                    location=self.links(holder.id)["self"],
                )
            if holder is None and holder_is_young(lock, self.clock()):
                raise MoveConflict(
                    "MoveInProgress",
                    f"move {holder_id} of this identity is starting",
                    "sourceIdentityId",
                    location=self.links(holder_id)["self"],
                )
            try:
                self.store.take_lock(lock, move_id, self._now())
                return False
            except Conflict:
                continue
        raise MoveConflict(
            "MoveInProgress",
            "could not claim the identity's lock" + (f" (held by move {holder_id})" if holder_id else ""),
            "sourceIdentityId",
            location=self.links(holder_id)["self"] if holder_id else None,
        )

    @staticmethod
    def links(move_id: str) -> dict[str, str]:
        return {"self": f"/api/moves/{move_id}"}

    # ---- read ------------------------------------------------------------------------------
    def _load(self, move_id: str) -> MoveRecord:
        self.store.ensure_tables()
        record = self.store.get_move(move_id)
        if record is None:
            raise MoveNotFound(move_id)
        return record

    def get(self, move_id: str, expand_inventory: bool = False) -> dict[str, Any]:
        """The status body; with ``expand_inventory`` also ``plan.inventory``: what the move copies
        (read from the stored snapshot, so only on request: a status poll stays one read + one query)."""
        record = self._load(move_id)
        body = view(record, self._live_counts(move_id))
        if expand_inventory and body.get("plan") is not None and record.snapshot_chunks:
            snapshot = self.store.load_snapshot(move_id, record.snapshot_chunks, record.snapshot_generation)
            body["plan"] = {**body["plan"], "inventory": inventory(snapshot)}
        return body

    def _live_counts(self, move_id: str, phase: str | None = None) -> dict[str, dict[str, int]]:
        """Per-item counts from the item entities (one query; only ``phase``'s items when given)."""
        lo, hi = (f"item|{phase}|", f"item|{phase}}}") if phase else ("item|", "item}")
        counts: dict[str, dict[str, int]] = {}
        for entity in self.store.moves.query_entities(
            "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi",
            parameters={"pk": move_id, "lo": lo, "hi": hi},
            select=["Phase", "Status"],
        ):
            c = counts.setdefault(entity["Phase"], {"total": 0, "done": 0, "failed": 0})
            c["total"] += 1
            c["done"] += entity["Status"] == "Done"
            c["failed"] += entity["Status"] == "Failed"
        self.stats.add("table.query")
        return counts

    def report(self, move_id: str) -> dict[str, Any]:
        """What the move did, by whom and when (``shared/report.py``): its partition only, no Azure call."""
        record = self._load(move_id)
        items = list(
            self.store.moves.query_entities(
                "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi",
                parameters={"pk": move_id, "lo": "item|", "hi": "item}"},
            )
        )
        self.stats.add("table.query")
        return report.build(record, items, self.store.events(move_id))

    def list(
        self,
        status: str | None = None,
        source_region: str | None = None,
        top: int = 50,
        skip_token: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        if status is not None and status not in {s.value for s in Status}:
            raise InvalidRequest("InvalidStatus", f"unknown status {status!r}", "status")
        if not 1 <= top <= 1000:
            raise InvalidRequest("InvalidTop", "top must be 1..1000", "top")
        self.store.ensure_tables()
        try:
            records, token = self.store.list_recent(status, source_region, top, skip_token)
        except InvalidToken:
            raise InvalidRequest(
                "InvalidQueryParameter",
                "$skipToken is not one this API issued: follow nextLink as it is",
                "$skipToken",
            ) from None
        items: builtins.list[dict[str, Any]] = []
        for record in records:
            # finished phases carry their counts in the record; only a move in flight in a
            # fanned-out phase costs one more query, for that phase's live counts
            live = BY_NAME.get(record.phase)
            running = record.status in (Status.PENDING, Status.RUNNING) and live is not None and live.items
            items.append(view(record, self._live_counts(record.id, record.phase) if running else {}))
        return items, token

    # ---- commands --------------------------------------------------------------------------
    def _command(self, move_id: str, command: str) -> MoveRecord:
        record = self._load(move_id)
        if not allows(command, record.status):
            raise MoveConflict(
                "InvalidMoveState",
                f"cannot {command} a move that is {record.status.value}",
                "status",
                self.links(move_id)["self"],
            )
        return record

    def _accepted(self, record: MoveRecord) -> dict[str, Any]:
        self._publish_quietly()
        return {"id": record.id, "status": record.status.value, "links": self.links(record.id)}

    def _save(self, record: MoveRecord, events: builtins.list[Event], items: Any = ()) -> None:
        record.updated_at = self._now()
        try:
            self.store.save_move(record, events, items)
        except Conflict:
            raise _Raced(
                "InvalidMoveState", "the move changed meanwhile; read it and try again", "status"
            ) from None

    def _decide(self, command: Callable[[str], dict[str, Any]], move_id: str) -> dict[str, Any]:
        """Run a command; if a worker's write (a step claim, a phase ending) lands between the
        command's read and its save, read the move again and decide again (the new status may not
        allow the command: 409 then). A person's click is not refused for a race they cannot see."""
        for attempt in range(COMMAND_TRIES):
            try:
                return command(move_id)
            except _Raced:
                if attempt == COMMAND_TRIES - 1:
                    raise
        raise AssertionError("unreachable")

    def commit(self, move_id: str, by: str | None = None) -> dict[str, Any]:
        return self._decide(lambda m: self._commit(m, {"by": by or UNKNOWN_ACTOR}), move_id)

    def cancel(self, move_id: str, by: str | None = None) -> dict[str, Any]:
        """Stop at the next step boundary; what exists in Azure is left as it is (discard undoes it)."""
        return self._decide(lambda m: self._cancel(m, {"by": by or UNKNOWN_ACTOR}), move_id)

    def retry(self, move_id: str, by: str | None = None) -> dict[str, Any]:
        """Resume the phase the move stopped in: its failed items go back to Pending."""
        return self._decide(lambda m: self._retry(m, {"by": by or UNKNOWN_ACTOR}), move_id)

    def discard(self, move_id: str, by: str | None = None) -> dict[str, Any]:
        """Undo what the move created; the source is left exactly as it was."""
        return self._decide(lambda m: self._discard(m, {"by": by or UNKNOWN_ACTOR}), move_id)

    def _audit(self, record: MoveRecord, command: str, who: dict[str, Any]) -> None:
        record.audit = [*record.audit, {"command": command, "at": self._now(), **who}]

    def _commit(self, move_id: str, who: dict[str, Any]) -> dict[str, Any]:
        record = self._command(move_id, "commit")
        self._audit(record, "commit", who)
        now = self._now()
        record.committed, record.status, record.phase = True, Status.RUNNING, "cleanup"
        entry = record.phase_entry("cleanup")
        entry.update(status="Running", startedAt=now)
        epoch = _next_round(entry)
        self.queue.send(WorkMessage(move_id, "cleanup", after=record.version + 1, epoch=epoch))
        self._save(record, [])
        return self._accepted(record)

    def _cancel(self, move_id: str, who: dict[str, Any]) -> dict[str, Any]:
        record = self._command(move_id, "cancel")
        self._audit(record, "cancel", who)
        record.status = Status.CANCELED
        self._save(record, [new_event(record, "Canceled", self._now(), phase=record.phase)])
        self.store.release_lock(record.source_id, record.id)
        return self._accepted(record)

    def _retry(self, move_id: str, who: dict[str, Any]) -> dict[str, Any]:
        record = self._command(move_id, "retry")
        self._audit(record, "retry", who)
        self._claim_lock(record.source_id, record.id)
        now = self._now()
        items = [i for i in self.store.list_items(move_id, record.phase) if i.status == "Failed"]
        for item in items:
            item.status, item.attempts, item.error = "Pending", 0, None
        record.status, record.error = Status.RUNNING, None
        entry = record.phase_entry(record.phase)
        entry.update(status="Running", startedAt=now, completedAt=None)
        epoch = _next_round(entry)  # the phase's step may be claimed afresh; older messages may not
        self.queue.send(WorkMessage(move_id, record.phase, after=record.version + 1, epoch=epoch))
        self._save(record, [], items)
        return self._accepted(record)

    def _discard(self, move_id: str, who: dict[str, Any]) -> dict[str, Any]:
        record = self._command(move_id, "discard")
        if _cleanup_began(record) or (
            record.committed and any(i.status == "Done" for i in self.store.list_items(move_id, "cleanup"))
        ):  # (a cleanup that went back to grant for new source access has deleted nothing)
            raise MoveConflict(
                "InvalidMoveState", "cleanup has begun: the source may be partly removed; retry it", "status"
            )
        self._audit(record, "discard", who)
        now = self._now()
        if record.status == Status.PLANNED or (
            not record.target.get("principalId") and record.phase in ("snapshot",)
        ):
            record.status = Status.DISCARDED
            self._save(record, [new_event(record, "Discarded", now)])
            self.store.release_lock(record.source_id, record.id)
            return self._accepted(record)
        self._claim_lock(record.source_id, record.id)
        record.status, record.error, record.phase = Status.RUNNING, None, DISCARD.name
        record.phase_entry(DISCARD.name).update(status="Running", startedAt=now, completedAt=None)
        epoch = _next_round(record.phase_entry(DISCARD.name))  # a discard that failed runs afresh
        self.queue.send(WorkMessage(move_id, DISCARD.name, after=record.version + 1, epoch=epoch))
        self._save(record, [])
        return self._accepted(record)

    # ---- triggers --------------------------------------------------------------------------
    def handle_message(self, body: str, dequeue_count: int = 1) -> None:
        """Queue trigger. Returns = done (delete the message); raises = redeliver later."""
        self.store.ensure_tables()
        if is_decommission_step(body):
            self.decommissions.handle(body, dequeue_count)
        else:
            self.engine.handle(WorkMessage.from_json(body))
        self._publish_quietly()

    def handle_poison(self, body: str) -> None:
        """Poison-queue trigger: the step failed 5 deliveries in a row; the move is Failed with the reason."""
        if is_decommission_step(body):  # an identity whose start kept failing: skipped, with the reason
            self.store.ensure_tables()
            self.decommissions.fail_step(body)
            self._publish_quietly()
            return
        try:
            message = WorkMessage.from_json(body)
        except (ValueError, KeyError):
            log.warning("poison message is not a work message; dropped")
            return
        self.store.ensure_tables()
        record = self.store.get_move(message.move_id)
        if (
            record is None
            or record.status not in (Status.PENDING, Status.RUNNING)
            or record.phase != message.phase
        ):
            return
        self.engine.fail(
            record,
            PermanentError(
                "StepPoisoned",
                f"step {message.phase} failed on 5 deliveries and was set aside",
                message.phase,
            ),
        )
        self._publish_quietly()

    def publish_outbox(self) -> int:
        self.store.ensure_tables()
        return outbox.publish(self.store, self.clients(), self.clock(), self.outbox_crashpoint)

    def _publish_quietly(self) -> None:
        """Send the outbox rows this thread wrote (``outbox.publish_written``); what it cannot send
        the timer's sweep (``publish_outbox``) sends."""
        if not self.settings.eventgrid_endpoint:
            return
        written = self.store.take_written()
        try:
            outbox.publish_written(self.store, self.clients(), written, self.outbox_crashpoint)
        except AzureError as exc:  # the timer trigger sends them once their claim is old
            log.warning("outbox publish failed: %s", type(exc).__name__)

    def resume_stalled(self, older_than_seconds: float = 600) -> int:
        """Timer trigger: re-send the step of Pending/Running moves idle for a while (lost messages)."""
        self.store.ensure_tables()
        resent = 0
        for status in (Status.PENDING, Status.RUNNING):
            token: str | None = None
            while True:
                records, token = self.store.list_moves(status.value, None, 100, token)
                for record in records:
                    if not self._idle(record, older_than_seconds):
                        continue
                    # a new attempt of the step: the claimed one (if any) is lost
                    entry = record.phase_entry(record.phase)
                    step = entry.get("step") or {}
                    attempt = int(step["attempt"]) + 1 if step else 0
                    epoch = int(entry.get("epoch", 0))
                    self.queue.send(WorkMessage(record.id, record.phase, attempt=attempt, epoch=epoch))
                    resent += 1
                if token is None:
                    break
        return resent

    def _idle(self, record: MoveRecord, seconds: float) -> bool:
        """Nothing happened to the move for ``seconds``: its record (a claim or a transition saves
        it) and, in a fanned-out phase, its items (each marked under its own ETag) are all older."""
        now = self.clock()
        if (now - datetime.fromisoformat(record.updated_at)).total_seconds() <= seconds:
            return False
        if BY_NAME[record.phase].items:
            changed = self.store.last_item_change(record.id, record.phase)
            if changed is not None and (now - changed).total_seconds() <= seconds:
                return False
        return True

    def enforce_commit_deadlines(self) -> int:
        """Timer trigger: AwaitingCommit moves past their commit policy's deadline are discarded or
        committed (``shared/commit_policy.py``); returns how many it acted on. A crash anywhere here
        leaves the move AwaitingCommit (the command's save is its only write that counts), so the
        next run decides again; a person's command that got there first wins (409, skipped)."""
        self.store.ensure_tables()
        acted = 0
        token: str | None = None
        while True:
            records, token = self.store.list_moves(Status.AWAITING_COMMIT.value, None, 100, token)
            for record in records:
                deadline = commit_policy.commit_deadline(record)
                if deadline is None or self.clock() < deadline:
                    continue
                rule = commit_policy.policy(record) or {}
                reason = f"commit deadline {deadline.isoformat()} passed"
                who = {"by": commit_policy.POLICY_ACTOR, "reason": reason, "outcome": rule.get("onTimeout")}
                try:
                    if rule.get("onTimeout") == "discard":
                        self._decide(functools.partial(self._discard, who=who), record.id)
                    elif not commit_policy.unacknowledged_actions(record):
                        self._decide(functools.partial(self._commit, who=who), record.id)
                    elif commit_policy.outcome(record) is None:  # say once why it waits
                        who["outcome"] = commit_policy.WAITING
                        self._audit(record, "commit", who)
                        self._save(record, [])
                        continue
                    else:
                        continue
                except MoveConflict:  # a person's command (or another timer) got there first
                    continue
                acted += 1
            if token is None:
                break
        return acted

    def start_region_decommission(
        self, event_id: str, data: dict[str, Any], topic: str | None = None
    ) -> dict[str, Any]:
        """One move per user-assigned identity in ``sourceRegion``; a redelivered event starts nothing new.

        Answers in a few storage calls at any fleet size: records the event and sends one message;
        the listing (one ARM page a message) and the starts (one message per up to 98 identities)
        run on the work queue (``shared/decommission.py``). Move ids are uuid5(namespace, event id +
        lower-case identity id), so a redelivery finishes what an earlier delivery began and starts
        nothing twice. The summary ``IdentityMover.RegionDecommissioning.Started`` is written once,
        in chunks, when the last start is done. Returns ``{eventId, decommissionId, status}`` (``Accepted`` or ``Done``).
        """
        request = RegionDecommissionRequest.parse(data)
        self.store.ensure_tables()
        return self.decommissions.accept(event_id, request, topic)

    def decommission(self, event_id: str) -> dict[str, Any] | None:
        """A decommission as stored: ``status`` (``Starting``/``Done``/``Failed``, then with ``error``),
        ``started``, ``skipped`` so far."""
        self.store.ensure_tables()
        return self.decommissions.status(event_id)


def holder_is_young(lock: Any, now: datetime) -> bool:
    at = datetime.fromisoformat(str(lock.get("At")))
    return (now - at).total_seconds() < LOCK_ORPHAN_SECONDS


INVENTORY_FIELDS = {
    "roleAssignments": ("roleName", "scope", "privileged", "condition", "conditionVersion", "description"),
    "federatedCredentials": ("name", "issuer", "subject", "audiences"),
    "groups": ("id", "displayName"),
    "appRoles": ("resourceDisplayName", "resourceId", "appRoleId"),
    "attachments": ("id", "type", "location", "attached", "identityType", "refs"),
    # data-plane grants services keep themselves (activities/access/)
    "keyVaultAccessPolicies": ("vault", "permissions"),
    "cosmosRoleAssignments": ("account", "roleDefinitionId", "scope"),
    "flexibleServerAdmins": ("server", "engine", "principalName", "reportOnly"),
    "appSettings": ("site", "appSettings", "connectionStrings"),
    "sqlServers": ("server", "admin", "login"),
}
NEW_CLIENT_ID = "<new clientId>"  # placeholder in plan.actionsRequired messages until the target exists


def inventory(snapshot: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """What a move copies, per kind, in the snapshot's own words (the plan report's tables)."""
    return {
        kind: [{key: item.get(key) for key in keys} for item in snapshot.get(kind) or []]
        for kind, keys in INVENTORY_FIELDS.items()
    }


# a phase entry's keys the engine keeps for itself (not in the status body)
ENGINE_KEYS = ("step", "epoch", "itemsCreated", "removing")


def view(record: MoveRecord, counts: dict[str, dict[str, int]]) -> dict[str, Any]:
    """The contract's status body (``get`` and each ``list`` item alike).

    ``phases[].items``: live counts where given, else the counts the engine stored when the phase
    ended, else a single-step phase counts as one item.
    """
    phases = []
    for entry in record.phases:
        item = {k: v for k, v in entry.items() if k not in ENGINE_KEYS}
        default = {
            "total": 1,
            "done": int(entry["status"] == "Succeeded"),
            "failed": int(entry["status"] == "Failed"),
        }
        item["items"] = counts.get(entry["name"]) or entry.get("items") or default
        phases.append(item)
    body: dict[str, Any] = {
        "id": record.id,
        "status": record.status.value,
        "phase": record.phase,
        "phases": phases,
        "source": _party(record.source),
        "target": _party(record.target) if record.target else None,
        "plan": _plan_view(record),
        "createdAt": record.created_at,
        "updatedAt": record.updated_at,
        "dryRun": record.dry_run,
        "autoCommit": record.auto_commit,
        "request": json.loads(json.dumps(record.request)),
    }
    if record.error:
        body["error"] = record.error
    body.update(commit_policy.status_fields(record))
    return body


def _plan_view(record: MoveRecord) -> dict[str, Any]:
    """The stored plan; ``actionsRequired`` messages name the new clientId once it is known."""
    plan = dict(record.plan or {"blocking": [], "warnings": []})
    client_id = (record.target or {}).get("clientId")
    if client_id and plan.get("actionsRequired"):
        plan["actionsRequired"] = [
            {**a, "message": str(a.get("message", "")).replace(NEW_CLIENT_ID, str(client_id))}
            for a in plan["actionsRequired"]
        ]
    return plan


def _party(data: dict[str, Any]) -> dict[str, Any]:
    keys = ("id", "name", "resourceGroup", "location", "principalId", "clientId")
    return {k: data.get(k) for k in keys}
