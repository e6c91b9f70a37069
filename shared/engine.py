"""The engine decides; phases act. One work message = one step, a pure function of stored state.

Step of a move (``Engine.handle``):

1. read the move; a message for a move at rest or for another phase is stale: acknowledge it (unless
   its token claims the current phase's step: a chained step whose handler died, see 4);
2. single-step phase: run it; fanned-out phase: without ``batch`` create the item entities (the
   phase's first time: inserted with the record saying so, ``itemsCreated``, in one transaction and
   no query; cleanup's record also says ``removing``, which refuses a discard from then on); at most
   ``IDMOVE_INLINE_ITEMS`` pending items run one after another in this step and are marked Done in
   the transaction that completes the phase (cleanup's too); more are sent out as one message per
   batch (at most ``IDMOVE_MAX_PARALLEL_ITEMS`` batches), and with ``batch`` a message runs its items
   one by one, each marked Done on its own entity (ETag-guarded);
3. a phase is complete when all its items are Done ("check all items done", idempotent);
4. completing a phase saves the move record with its outbox events in one transaction (ETag) that
   also claims the next phase's step for the same message (its token), and the handler goes on with
   that step: a move runs from snapshot to verify (and cleanup when committed) on ONE message, with
   one record save per phase and no record re-read. A crash after the save leaves the message
   undeleted: redelivered, its token claims the phase the record is in, so it hands that step to a
   fresh message with the same token (dequeue counts stay per step); nothing is lost and nothing runs
   twice at once. Commands (commit, retry, discard) and cleanup's way back to
   grant still send a message first and then save (the message waits for that save, see ``after``).

Crashpoints (``self.crashpoint(name)``) sit between every two writes; their names are declared in
``shared/crashpoints.py``, which the crash-anywhere suite walks.

Errors: ``TransientError`` -> the step is re-sent with a visibility delay (the phase's backoff, or
the ``Retry-After`` Azure asked for if longer) until the phase's ``max_attempts``; a throttled one
(429, or 503 with ``Retry-After``) waits ``Retry-After`` WITHOUT counting an attempt -- throttling is
not the step's fault -- and is bounded by the phase's timeout, checked at every step; the re-sent
message's handle goes to the error's ``on_scheduled``, so what the step waits for can wake that
message early (``WorkQueue.wake``; fleet discovery); ``PermanentError`` -> the move is Failed with
error code/message/target; anything else propagates so the queue redelivers it (poison after 5
dequeues -> ``fail_poisoned``).
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from shared.arm_pacing import begin_unit, one_move
from shared.azure_clients import AzureClients
from shared.context import ItemInput, ItemResult, ItemSpec, PhaseContext
from shared.errors import PermanentError, PhaseError, SourceChanged, TransientError
from shared.models import MoveRequest
from shared.outbox import new_event
from shared.phases import BY_NAME, Phase, next_phase
from shared.settings import Settings
from shared.side_by_side import side_by_side
from shared.statuses import Status
from shared.store import MAX_NEW_ITEMS, Conflict, Event, Item, MoveRecord, SharedCache, StateStore
from shared.work_queue import WorkMessage, WorkQueue

log = logging.getLogger(__name__)
THROTTLE_JITTER = 0.5
MAX_WAITS = 12  # ~1.5 min of looking again for a save a message overtook
MARKS_EVERY_SECONDS = 60.0  # a step running its own items saves their marks at least this often
Chain = tuple[MoveRecord, WorkMessage] | None  # the next phase's step, claimed by the same message


class Engine:
    def __init__(
        self,
        settings: Settings,
        store: StateStore,
        queue: WorkQueue,
        clients: Callable[[], AzureClients],
        clock: Callable[[], datetime],
        crashpoint: Callable[[str], None],
    ) -> None:
        self.settings = settings
        self.store = store
        self.queue = queue
        self._clients = clients
        self.clock = clock
        self.crashpoint = crashpoint

    def now(self) -> str:
        return self.clock().isoformat()

    # ---- one work message ----------------------------------------------------------------
    def handle(self, message: WorkMessage) -> None:
        with one_move():  # what the move writes, per subscription, sizes this process's budget leases
            self._handle(message)

    def _handle(self, message: WorkMessage) -> None:
        move = self.store.get_move(message.move_id)
        if message.after and (move is None or move.version < message.after):  # None: start sends first
            self._wait_for_save(message)
            return
        if move is not None:
            adopted = _adopted(move, message)
            if adopted is not message:
                # a chained step whose handler died: it goes on in a fresh message with the same token
                # (the claim stays), so the queue's dequeue count counts this step's failures, not
                # those of every phase the first message ran before
                self.queue.send(adopted)
                return
        while move is not None:
            chained = self._step(move, message)
            if chained is None:
                return
            move, message = chained  # the next phase's step, claimed by this message in that save

    def _step(self, move: MoveRecord, message: WorkMessage) -> Chain:
        # a new unit of work on this thread (a chained phase too): its first write may go back to the
        # queue, whatever the thread's last unit wrote (each item begins its own as well)
        begin_unit()
        if move.status not in (Status.PENDING, Status.RUNNING) or move.phase != message.phase:
            log.info("stale message for %s/%s: acknowledged", message.move_id, message.phase)
            return None
        phase = BY_NAME[move.phase]
        if phase.needs_commit and not (move.committed and move.verified):
            # never reached through the API (commit requires AwaitingCommit, which requires verify)
            self.fail(move, PermanentError("NotCommitted", f"{phase.name} needs a verified, committed move"))
            return None
        if self._timed_out(move, phase):
            self.fail(
                move, PermanentError("PhaseTimeout", f"{phase.name} exceeded {phase.timeout_seconds:.0f}s")
            )
            return None
        if not message.batch:
            claimed = self._claim(move, message)
            if claimed is None:
                return None
            move = claimed
        ctx = self._context(move, message)
        if not phase.items:
            return self._run_single(move, phase, ctx, message)
        if not message.batch:
            return self._fan_out(move, phase, ctx, message)
        return self._run_batch(move, phase, ctx, message)

    def _wait_for_save(self, message: WorkMessage) -> None:
        """The message overtook the save that sent it: look again shortly (bounded).

        If that save never lands (its writer crashed), the writer's own message is redelivered and
        sends a fresh one, so giving up after ``MAX_WAITS`` loses nothing.
        """
        if message.waits >= MAX_WAITS:
            log.warning(
                "%s/%s: state v%d never arrived; dropped", message.move_id, message.phase, message.after
            )
            return
        delay = min(0.2 * 2**message.waits, 10.0)
        self.queue.send(replace(message, waits=message.waits + 1), delay)

    def _claim(self, move: MoveRecord, message: WorkMessage) -> MoveRecord | None:
        """Make this message the one that runs its phase's step at its attempt; None = a duplicate.

        Two messages can ask for the same step: batches of a phase that complete at the same instant
        each send the next phase's message before one of their saves wins, and a queue delivers at
        least once. The first to save ``step`` = (attempt, token) in the phase entry runs the step;
        another message for that attempt or an earlier one is acknowledged without touching Azure.
        The claiming message itself may come again (its handler crashed): it runs again, as before.
        """
        for _ in range(3):
            entry = move.phase_entry(move.phase)
            if message.epoch < int(entry.get("epoch", 0)):
                log.info("%s/%s: a message of an earlier round; acknowledged", move.id, move.phase)
                return None
            step = entry.get("step") or {}
            if step.get("token") == message.token:
                return move
            if step and message.attempt <= int(step.get("attempt", -1)):
                log.info(
                    "%s/%s attempt %d: a duplicate of the claimed step; acknowledged",
                    move.id,
                    move.phase,
                    message.attempt,
                )
                return None
            entry["step"] = {"attempt": message.attempt, "token": message.token, "claimedAt": self.now()}
            entry["attempts"] = message.attempt + 1
            move.updated_at = self.now()  # the move is busy: resume_stalled leaves it alone
            try:
                self.store.save_move(move)
            except Conflict:
                fresh = self.store.get_move(move.id)
                if fresh is None or fresh.status not in (Status.PENDING, Status.RUNNING):
                    return None
                if fresh.phase != message.phase:
                    return None
                move = fresh
                continue
            self.crashpoint(f"{move.phase}:after-claim")
            return move
        raise TransientError("StepClaimContended", f"{move.phase}: the move kept changing", move.phase)

    def _timed_out(self, move: MoveRecord, phase: Phase) -> bool:
        started = move.phase_entry(phase.name).get("startedAt")
        if not started:
            return False
        return self.clock() - datetime.fromisoformat(started) > timedelta(seconds=phase.timeout_seconds)

    def _context(self, move: MoveRecord, message: WorkMessage) -> PhaseContext:
        snapshot = (
            self.store.load_snapshot(move.id, move.snapshot_chunks, move.snapshot_generation)
            if move.snapshot_chunks
            else {}
        )
        return PhaseContext(
            clients=self._clients(),
            settings=self.settings,
            move_id=move.id,
            request=MoveRequest.model_validate(move.request),
            snapshot=snapshot,
            target=dict(move.target),
            crashpoint=self.crashpoint,
            cache=SharedCache(self.store, self.clock),
            plan=dict(move.plan or {}),
            stats=self.store.stats,
            epoch=message.epoch,
            fleet=_fleet_of(move),
            wake=self.queue.wake,
        )

    # ---- single-step phases --------------------------------------------------------------
    def _run_single(self, move: MoveRecord, phase: Phase, ctx: PhaseContext, message: WorkMessage) -> Chain:
        try:
            begin_unit()
            result = phase.function()(ctx)
        except TransientError as exc:
            self._retry_later(move, phase, message, exc)
            return None
        except PermanentError as exc:
            self.fail(move, exc)
            return None
        self.crashpoint(f"{phase.name}:after-run")
        apply: Callable[[MoveRecord, Any, WorkMessage], Chain] = getattr(self, f"_apply_{phase.name}")
        return apply(move, result, message)

    def _retry_later(self, move: MoveRecord, phase: Phase, message: WorkMessage, exc: TransientError) -> None:
        attempt = message.attempt + (0 if exc.throttled else 1)
        if attempt >= phase.max_attempts:
            self.fail(
                move,
                PermanentError(exc.code, f"{exc.message} (gave up after {attempt} attempts)", exc.target),
            )
            return
        delay = self._delay(exc, phase, attempt)
        log.info("%s/%s transient %s: retry %d in %.1fs", move.id, phase.name, exc.code, attempt, delay)
        # a throttled step is the same attempt, still claimed by this message's token
        again = replace(message, attempt=attempt, waits=0) if exc.throttled else None
        fresh = WorkMessage(move.id, phase.name, message.batch, attempt, epoch=message.epoch)
        handle = self.queue.send(again or fresh, delay)
        if exc.on_scheduled is not None and handle:
            # whoever the step waits for may wake this very message early (fleet discovery): it stays
            # the step's only message; if they cannot, it comes after its delay all the same
            try:
                exc.on_scheduled(handle)
            except Exception:
                log.warning("%s/%s: could not keep the retry's handle", move.id, phase.name, exc_info=True)

    def _apply_snapshot(self, move: MoveRecord, result: Any, message: WorkMessage) -> Chain:
        # the snapshot is persisted before anything else happens (separate transactions: it may be large)
        # a generation of its own: a second run of the step (a resent message) cannot mix its chunks
        # into these; the record names the generation only when its save wins
        generation = _new_generation()
        move.snapshot_chunks = self.store.save_snapshot(move.id, result.snapshot, generation)
        move.snapshot_generation = generation
        self.crashpoint("snapshot:after-save")
        move.source = result.source
        move.target = result.target
        move.plan = result.plan
        blocking = result.plan.get("blocking") or []
        if move.dry_run:
            return self._complete_phase(move, "snapshot", message, rest=Status.PLANNED)
        if blocking:
            first = blocking[0]
            error = PermanentError(
                "PlanBlocked",
                f"the plan has {len(blocking)} blocker(s): {first['message']}",
                first.get("target"),
            )
            return self._complete_phase(move, "snapshot", message, fail_with=error)
        return self._complete_phase(move, "snapshot", message)

    def _apply_create(self, move: MoveRecord, result: Any, message: WorkMessage) -> Chain:
        move.target = {**move.target, **result.target}
        return self._complete_phase(move, "create", message)

    def _apply_verify(self, move: MoveRecord, result: Any, message: WorkMessage) -> Chain:
        move.verified = True
        move.phase_entry("verify")["checked"] = dict(getattr(result, "checked", {}) or {})  # the report's
        # steps a person must take (plan.actionsRequired) hold autoCommit unless the request acknowledged them
        unacknowledged = (move.plan or {}).get("actionsRequired") and not move.request.get(
            "acknowledgeActionsRequired"
        )
        if move.committed:  # verifying again what cleanup found added to the source: on to cleanup
            return self._complete_phase(move, "verify", message)
        if move.auto_commit and not unacknowledged:
            move.committed = True
            return self._complete_phase(move, "verify", message)
        return self._complete_phase(move, "verify", message, rest=Status.AWAITING_COMMIT)

    def _apply_discard(self, move: MoveRecord, result: Any, message: WorkMessage) -> Chain:
        return self._complete_phase(move, "discard", message, rest=Status.DISCARDED)

    # ---- fanned-out phases ---------------------------------------------------------------
    def _fan_out(self, move: MoveRecord, phase: Phase, ctx: PhaseContext, message: WorkMessage) -> Chain:
        try:
            specs: list[ItemSpec] = phase.items_function()(ctx)
        except SourceChanged as exc:
            self._copy_first(move, exc)
            return None
        except TransientError as exc:  # e.g. cleanup's re-read of the source was throttled
            self._retry_later(move, phase, message, exc)
            return None
        except PermanentError as exc:  # e.g. cleanup may no longer read the source: nothing deleted
            self.fail(move, exc)
            return None
        stored = self._add_items(
            move,
            phase,
            message,
            [
                Item(move.id, phase.name, spec.key, spec.kind, {**spec.data, "_serial": spec.serial})
                for spec in specs
            ],
        )
        if stored is None:
            return None
        move, items = stored
        self.crashpoint(f"{phase.name}:after-items")
        pending = [i for i in items if i.status == "Pending" and not i.data.get("_final")]
        if len(pending) <= self.settings.inline_items:
            return self._run_inline(move, phase, ctx, message, items)
        for batch in self._batches(pending):
            self.queue.send(WorkMessage(move.id, phase.name, tuple(i.row_key for i in batch)))
            self.crashpoint(f"{phase.name}:after-send-batch")
        return None

    def _add_items(
        self, move: MoveRecord, phase: Phase, message: WorkMessage, items: list[Item]
    ) -> tuple[MoveRecord, list[Item]] | None:
        """The phase's items as stored, new ones created; cleanup's ``removing`` mark on the record
        (``MoveService._discard``). None: the record changed meanwhile and the step is not this
        message's any more (a cancel, a later attempt's claim): nothing runs.

        The first time the phase creates its items (no ``itemsCreated`` in its entry: no earlier
        round or attempt created them by this path, which says so in the same transaction; items
        created by the fallback below, or more than ``MAX_NEW_ITEMS``, leave no mark, so a later
        attempt tries the insert again, fails whole and falls back) they are inserted, with the
        record saying so, in ONE transaction and no query. An insert that meets
        an existing item (a record from before ``itemsCreated``) or a changed record fails whole:
        then the record is read again, and the phase's items are listed and only new ones added,
        as every later round does."""
        entry = move.phase_entry(phase.name)
        if not entry.get("itemsCreated") and len(items) <= MAX_NEW_ITEMS:
            if not items and not phase.needs_commit:
                return move, []  # nothing to create, and nothing was ever created
            entry["itemsCreated"] = True
            if phase.needs_commit:
                entry.setdefault("removing", message.epoch)
            move.updated_at = self.now()
            try:
                self.store.create_items(move, items)
                return move, sorted(items, key=lambda i: i.row_key)  # as listed: in RowKey order
            except Conflict:
                fresh = self._still_mine(move.id, phase, message)
                if fresh is None:
                    return None
                move = fresh
        if phase.needs_commit and "removing" not in move.phase_entry(phase.name):
            marked = self._mark_removing(move, phase, message)
            if marked is None:
                return None
            move = marked
        return move, self.store.add_items(move.id, phase.name, items)

    def _mark_removing(self, move: MoveRecord, phase: Phase, message: WorkMessage) -> MoveRecord | None:
        """Save ``removing`` = the round on cleanup's entry (ETag) before it deletes anything: from
        then on ``discard`` is refused, whatever the items' marks say (they are saved with the
        phase's completion, or every ``MARKS_EVERY_SECONDS``). None: the step is not ours any more."""
        for _ in range(3):
            move.phase_entry(phase.name).setdefault("removing", message.epoch)
            move.updated_at = self.now()
            try:
                self.store.save_move(move)
                return move
            except Conflict:
                fresh = self._still_mine(move.id, phase, message)
                if fresh is None:
                    return None
                move = fresh
        raise TransientError("StepClaimContended", f"{phase.name}: the move kept changing", phase.name)

    def _still_mine(self, move_id: str, phase: Phase, message: WorkMessage) -> MoveRecord | None:
        """The record read again after a lost ETag race: None unless its phase's step is still
        running and claimed by ``message``'s token."""
        fresh = self.store.get_move(move_id)
        if fresh is None or fresh.status != Status.RUNNING or fresh.phase != phase.name:
            return None
        step = fresh.phase_entry(phase.name).get("step") or {}
        return fresh if step.get("token") == message.token else None

    def _run_inline(
        self, move: MoveRecord, phase: Phase, ctx: PhaseContext, message: WorkMessage, items: list[Item]
    ) -> Chain:
        """Run the phase's few pending items in this step, one after another; one transaction marks
        them Done and completes the phase. Items are idempotent, so a crash before that save only
        runs them again. Final items (deleting the old identity) run after the others' marks are saved.
        Cleanup too keeps its marks for that transaction: what it may have removed from the source is
        on record before its first item runs (``removing``, saved with its items by ``_add_items``)."""
        marked: list[Item] = []
        if not any(i.status == "Failed" for i in items):
            pending = [i for i in items if i.status == "Pending" and not i.data.get("_final")]
            if not self._run_items(move, phase, ctx, message, pending, marked):
                return None
            finals = [i for i in items if i.status == "Pending"]
            if finals:
                if marked:  # the others are Done, on record, before anything final happens
                    self.store.save_items(marked)
                    marked = []
                if not self._run_items(move, phase, ctx, message, finals, marked):
                    return None
        move.phase_entry(phase.name)["items"] = item_counts(items)
        failed = [i for i in items if i.status == "Failed"]
        if failed:
            if marked:
                self.store.save_items(marked)
            self.fail(move, _failure(failed[0]))
            return None
        rest = Status.COMPLETED if phase.name == "cleanup" else None
        return self._complete_phase(move, phase.name, message, rest=rest, items=marked)

    def _batches(self, items: list[Item]) -> list[list[Item]]:
        serial: dict[str, list[Item]] = {}
        free: list[Item] = []
        for item in items:
            key = str(item.data.get("_serial") or "")
            if key:
                serial.setdefault(key, []).append(item)
            else:
                free.append(item)
        width = max(1, self.settings.max_parallel_items - len(serial))
        batches: list[list[Item]] = [[] for _ in range(min(width, len(free)))]
        for n, item in enumerate(free):
            batches[n % len(batches)].append(item)
        return [*serial.values(), *batches]

    def _run_batch(self, move: MoveRecord, phase: Phase, ctx: PhaseContext, message: WorkMessage) -> Chain:
        items = [self.store.get_item(move.id, row_key) for row_key in message.batch]
        if self._run_items(move, phase, ctx, message, [i for i in items if i is not None]):
            return self._check_done(move.id, phase, ctx, message)
        return None

    def _run_items(
        self,
        move: MoveRecord,
        phase: Phase,
        ctx: PhaseContext,
        message: WorkMessage,
        items: list[Item],
        marked: list[Item] | None = None,
    ) -> bool:
        """Run the pending ``items`` in order; False when the rest was re-sent for a later retry or the
        move failed. Each is marked on its own entity (ETag), or with ``marked`` (a step running its
        phase's items itself) kept in that list and saved on the way out of an error; such a step runs
        them side by side when they fall in more than one lane (``_run_lanes``)."""
        if marked is not None and phase.side_by_side and self.settings.step_width > 1:
            lanes = _lanes([i for i in items if i.status == "Pending"])
            if len(lanes) > 1:
                return self._run_lanes(move, phase, ctx, message, items, lanes, marked)
        run_item = phase.function()
        flushed = time.monotonic()
        for position, item in enumerate(items):
            if item.status != "Pending":
                continue
            if marked and time.monotonic() - flushed >= MARKS_EVERY_SECONDS:
                # a long step shows progress (resume_stalled looks at the items' last change)
                self.store.save_items(marked)
                flushed = time.monotonic()
            try:
                begin_unit()
                result: ItemResult = run_item(ItemInput(ctx, item.kind, item.key, item.data))
            except TransientError as exc:
                item.attempts += 0 if exc.throttled else 1
                if item.attempts >= phase.max_attempts:
                    suffix = f" (gave up after {item.attempts} attempts)"
                    self._record(item, "Failed", marked, error=_error(exc, suffix))
                    self._fail_current(
                        move.id, phase.name, PermanentError(exc.code, exc.message + suffix, exc.target)
                    )
                    return False
                if not exc.throttled:
                    self._record(item, "Pending", marked)  # its attempts
                if marked:
                    self.store.save_items(marked)
                rest = tuple(i.row_key for i in items[position:])
                delay = self._delay(exc, phase, item.attempts)
                log.info(
                    "%s/%s item %s transient %s: retry in %.1fs",
                    move.id,
                    phase.name,
                    item.key,
                    exc.code,
                    delay,
                )
                self.queue.send(WorkMessage(move.id, phase.name, rest, message.attempt + 1), delay)
                return False
            except PermanentError as exc:
                self._record(item, "Failed", marked, error=_error(exc))
                self._fail_current(move.id, phase.name, exc)
                return False
            except Exception:  # unforeseen: the queue redelivers; what was done stays on record
                if marked:
                    with contextlib.suppress(Exception):
                        self.store.save_items(marked)
                raise
            self.crashpoint(f"{phase.name}:item-done")
            self._record(item, "Done", marked, result={"outcome": result.outcome, **result.detail})
        return True

    def _run_lanes(
        self,
        move: MoveRecord,
        phase: Phase,
        ctx: PhaseContext,
        message: WorkMessage,
        items: list[Item],
        lanes: list[list[Item]],
        marked: list[Item],
    ) -> bool:
        """``_run_items`` for a step running its own items, the lanes side by side (``IDMOVE_STEP_
        WIDTH``): a lane is the items of one ``serial`` key in order, or one item alone, as ``_batches``
        splits them for messages. Each lane stops at its first error; a permanent or unforeseen one (or
        a crash) stops the others before their next item. Then, in the items' order as one after
        another would meet them, the first error that is not a transient one with attempts left
        decides: a permanent one or spent attempts fail the move, an unforeseen one is raised (the
        queue redelivers the step); else the items transient errors left pending (with what followed
        them in their lanes) go back to the queue in one message, after the longest of their delays.
        Marks go to ``marked`` as the items end, and are saved on the way out of an error."""
        run_item = phase.function()
        stopped = threading.Event()
        recording = threading.Lock()
        flushed = [time.monotonic()]

        def lane(queue: list[Item]) -> tuple[Item, Exception] | None:
            for item in queue:
                if stopped.is_set():
                    return None
                try:
                    begin_unit()
                    result: ItemResult = run_item(ItemInput(ctx, item.kind, item.key, item.data))
                except TransientError as exc:
                    return item, exc
                except Exception as exc:  # permanent, or unforeseen: the other lanes stop too
                    stopped.set()
                    return item, exc
                with recording:  # one lane at a time passes the crashpoint and marks its item
                    if stopped.is_set():
                        return None  # done in Azure, not marked: it runs again (items are idempotent)
                    try:
                        self.crashpoint(f"{phase.name}:item-done")
                    except BaseException:  # a crash stops every lane, as it would stop the process
                        stopped.set()
                        raise
                    self._record(item, "Done", marked, result={"outcome": result.outcome, **result.detail})
                    if time.monotonic() - flushed[0] >= MARKS_EVERY_SECONDS:
                        self.store.save_items(marked)  # a long step shows progress (see _run_items)
                        flushed[0] = time.monotonic()
            return None

        ended = side_by_side([partial(lane, queue) for queue in lanes], self.settings.step_width)
        order = {item.row_key: n for n, item in enumerate(items)}
        errors = sorted((e for e in ended if e is not None), key=lambda e: order[e[0].row_key])
        if not errors:
            return True
        # in the items' order, as one after another would have met them: the first error that is not
        # a transient one with attempts left decides; transient ones before it are counted
        failed: tuple[Item, PermanentError] | None = None
        delay = 0.0
        for item, exc in errors:
            if isinstance(exc, PermanentError):
                failed = item, exc
                break
            if not isinstance(exc, TransientError):  # unforeseen: the queue redelivers the step
                with contextlib.suppress(Exception):
                    self.store.save_items(marked)  # what was done stays on record
                raise exc
            item.attempts += 0 if exc.throttled else 1
            if item.attempts >= phase.max_attempts:
                suffix = f" (gave up after {item.attempts} attempts)"
                failed = item, PermanentError(exc.code, exc.message + suffix, exc.target)
                break
            if not exc.throttled:
                self._record(item, "Pending", marked)  # its attempts
            delay = max(delay, self._delay(exc, phase, item.attempts))
            log.info("%s/%s item %s transient %s", move.id, phase.name, item.key, exc.code)
        if failed is not None:
            item, error = failed
            self._record(item, "Failed", marked, error=_error(error))
            self._fail_current(move.id, phase.name, error)
            return False
        self.store.save_items(marked)
        rest = tuple(i.row_key for i in items if i.status == "Pending")
        log.info("%s/%s: %d items retry in %.1fs", move.id, phase.name, len(rest), delay)
        self.queue.send(WorkMessage(move.id, phase.name, rest, message.attempt + 1), delay)
        return False

    def _record(
        self, item: Item, status: str, marked: list[Item] | None, *, result: Any = None, error: Any = None
    ) -> None:
        """Mark an item: saved now (ETag) or, with ``marked``, kept for the step's own transaction."""
        if marked is None:
            self._mark(item, status, result=result, error=error)
            return
        item.status, item.result, item.error = status, result, error
        if item not in marked:
            marked.append(item)
        if status == "Failed":
            self.store.save_items(marked)

    def _delay(self, exc: TransientError, phase: Phase, attempt: int) -> float:
        """The phase's backoff, or what Azure asked for if longer (never scaled: it is Azure's clock).

        A throttled step waits ``Retry-After`` plus up to half as much again at random, so the steps
        a quota sent away do not all come back at the same instant and meet the quota again.
        """
        wait = exc.retry_after or 0
        if exc.throttled:
            wait *= 1 + THROTTLE_JITTER * random.random()
        return max(wait, phase.backoff(attempt, self.settings.backoff_scale))

    def _fail_current(self, move_id: str, phase_name: str, exc: PhaseError) -> None:
        """Stop the move now (other batches see it at their next step boundary)."""
        move = self.store.get_move(move_id)
        if move is not None and move.phase == phase_name and move.status == Status.RUNNING:
            self.fail(move, exc)

    def _mark(self, item: Item, status: str, *, result: Any = None, error: Any = None) -> None:
        item.status, item.result, item.error = status, result, error
        try:
            self.store.save_item(item)
        except Conflict:  # a duplicate delivery got there first; its outcome stands
            log.info("item %s changed meanwhile", item.row_key)

    def _check_done(self, move_id: str, phase: Phase, ctx: PhaseContext, message: WorkMessage) -> Chain:
        """Idempotent: complete the phase when all items are Done, fail the move on a Failed one.

        Items marked ``_final`` (e.g. deleting the old identity) run here, after all the others.
        """
        phase_name = phase.name
        items = self.store.list_items(move_id, phase_name)
        if any(i.status == "Pending" and not i.data.get("_final") for i in items):
            return None
        move = self.store.get_move(move_id)
        if move is None or move.phase != phase_name or move.status != Status.RUNNING:
            return None
        finals = [i for i in items if i.status == "Pending"]
        if finals and not any(i.status == "Failed" for i in items):
            if not self._run_items(move, phase, ctx, message, finals):
                return None
            items = self.store.list_items(move_id, phase_name)
        move.phase_entry(phase_name)["items"] = item_counts(items)  # kept for list(): no query per move
        failed = [i for i in items if i.status == "Failed"]
        if failed:
            self.fail(move, _failure(failed[0]))
            return None
        rest = Status.COMPLETED if phase_name == "cleanup" else None
        return self._complete_phase(move, phase_name, message, rest=rest)

    # ---- transitions ---------------------------------------------------------------------
    def _copy_first(self, move: MoveRecord, exc: SourceChanged) -> None:
        """Cleanup found access granted to the source after the snapshot: nothing is deleted until it
        is copied and verified too. The widened snapshot is saved, and the move goes back to grant
        (its done items stay done, the new ones run), rebind and verify, then on to cleanup again,
        still committed."""
        log.info("%s: %s", move.id, exc.message)
        generation = _new_generation()  # beside the old one until the record names it
        move.snapshot_chunks = self.store.save_snapshot(move.id, exc.snapshot, generation)
        move.snapshot_generation = generation
        for phase_name, key in exc.redo:  # re-created from the widened snapshot at the next fan-out
            self.store.delete_item(move.id, phase_name, key)
        self.crashpoint("cleanup:after-snapshot")
        now = self.now()
        for name in ("grant", "rebind", "verify", "cleanup"):
            entry = move.phase_entry(name)
            entry.pop("step", None)
            entry.update(status="NotStarted", startedAt=None, completedAt=None)
            entry["epoch"] = int(entry.get("epoch", 0)) + 1  # the first round's messages are stale
        move.phase_entry("grant").update(status="Running", startedAt=now)
        plan = dict(move.plan or {})
        warning = {"code": "SourceChangedBeforeCleanup", "message": exc.message, "target": exc.target}
        plan["warnings"] = [*(plan.get("warnings") or []), warning]
        move.plan, move.phase, move.verified = plan, "grant", False
        if exc.actions:  # steps a person must take that the commit did not know of: ask again
            plan["actionsRequired"] = [*(plan.get("actionsRequired") or []), *exc.actions]
            if not move.request.get("acknowledgeActionsRequired"):
                move.committed = False  # verify ends in AwaitingCommit; a person commits again
        epoch = int(move.phase_entry("grant")["epoch"])
        self.queue.send(WorkMessage(move.id, "grant", after=move.version + 1, epoch=epoch))
        self.crashpoint("cleanup:after-send-next")
        self._save(move, [], step="cleanup")

    def _complete_phase(
        self,
        move: MoveRecord,
        name: str,
        message: WorkMessage,
        *,
        rest: Status | None = None,
        fail_with: PhaseError | None = None,
        items: list[Item] | None = None,
    ) -> Chain:
        """Save the phase's completion (with ``items``' marks and the events) in one transaction; when
        there is a next phase, that save also claims its step for ``message``'s token, and the
        returned (record, message) is that step for ``handle`` to run at once."""
        now = self.now()
        entry = move.phase_entry(name)
        entry.update(status="Succeeded", completedAt=now)
        move.status = Status.RUNNING
        events: list[Event] = [new_event(move, "PhaseCompleted", now, phase=name)]
        next_name = None if rest or fail_with or name == "discard" else next_phase(name)
        chained: WorkMessage | None = None
        if fail_with is not None:
            self._set_failed(move, fail_with, now, events, phase_status=None)
        elif rest is not None:
            move.status = rest
            kind = {Status.AWAITING_COMMIT: "AwaitingCommit", Status.COMPLETED: "Completed"}.get(rest)
            kind = kind or {Status.DISCARDED: "Discarded"}.get(rest)
            if kind:
                events.append(new_event(move, kind, now))
        elif next_name is not None:
            move.phase = next_name
            following = move.phase_entry(next_name)
            following.update(status="Running", startedAt=now, completedAt=None)
            following["step"] = {"attempt": 0, "token": message.token, "claimedAt": now}
            following["attempts"] = 1
            epoch = int(following.get("epoch", 0))
            chained = WorkMessage(move.id, next_name, attempt=0, epoch=epoch, token=message.token)
        if not self._save(move, events, step=name, items=items or []) or chained is None:
            return None
        self.crashpoint(f"{chained.phase}:after-claim")
        return move, chained

    def fail(self, move: MoveRecord, exc: PhaseError) -> None:
        events: list[Event] = []
        self._set_failed(move, exc, self.now(), events, phase_status="Failed")
        self._save(move, events)

    def _set_failed(
        self, move: MoveRecord, exc: PhaseError, now: str, events: list[Event], phase_status: str | None
    ) -> None:
        move.status = Status.FAILED
        move.error = {"code": exc.code, "message": exc.message, "target": exc.target}
        if phase_status:
            move.phase_entry(move.phase).update(status=phase_status)
        events.append(new_event(move, "Failed", now, phase=move.phase, error=move.error))

    def _save(
        self, move: MoveRecord, events: list[Event], step: str | None = None, items: list[Item] | None = None
    ) -> bool:
        """Save the record with its events (and items' marks); ``step`` names the phase whose step this
        ends (crashpoint). False: the record changed meanwhile, the other writer's decision stands."""
        move.updated_at = self.now()
        self.crashpoint(f"{step or move.phase}:before-save")
        marks = list(items or [])
        if len(marks) > 90:  # one transaction holds at most 100 operations
            self.store.save_items(marks)
            marks = []
        try:
            self.store.save_move(move, events, marks)
        except Conflict:
            log.info("move %s changed meanwhile: the other writer's decision stands", move.id)
            done = [i for i in marks if i.status == "Done"]
            if done:  # the Azure work they record was done: keep it on record (nothing else: the
                self.store.save_items(done)  # other writer may have reset a Failed item to retry it)
            return False
        if move.status not in (Status.PENDING, Status.RUNNING, Status.AWAITING_COMMIT):
            self.store.release_lock(move.source_id, move.id)
        return True


def item_counts(items: list[Item]) -> dict[str, int]:
    """``{"total", "done", "failed"}`` of a fanned-out phase (the status body's per-item counts)."""
    return {
        "total": len(items),
        "done": sum(i.status == "Done" for i in items),
        "failed": sum(i.status == "Failed" for i in items),
    }


def _adopted(move: MoveRecord, message: WorkMessage) -> WorkMessage:
    """The message as the step its token claims: a step chained into a later phase (or a batch that
    completed its phase and chained) whose handler died comes again with its first phase's name;
    the record says which step it holds. Any other message is returned as it is."""
    if move.status not in (Status.PENDING, Status.RUNNING):
        return message
    entry = move.phase_entry(move.phase)
    step = entry.get("step") or {}
    if step.get("token") != message.token or (move.phase == message.phase and not message.batch):
        return message
    return replace(
        message,
        phase=move.phase,
        batch=(),
        attempt=int(step.get("attempt", 0)),
        epoch=int(entry.get("epoch", 0)),
        after=0,
        waits=0,
    )


def _lanes(items: list[Item]) -> list[list[Item]]:
    """The items of each ``serial`` key in order, in one lane; every other item in a lane of its own."""
    serial: dict[str, list[Item]] = {}
    lanes: list[list[Item]] = []
    for item in items:
        key = str(item.data.get("_serial") or "")
        if not key:
            lanes.append([item])
        elif key in serial:
            serial[key].append(item)
        else:
            serial[key] = [item]
            lanes.append(serial[key])
    return lanes


def _failure(item: Item) -> PermanentError:
    err = item.error or {}
    return PermanentError(str(err.get("code", "ItemFailed")), str(err.get("message", "")), err.get("target"))


def _error(exc: PhaseError, suffix: str = "") -> dict[str, Any]:
    return {"code": exc.code, "message": exc.message + suffix, "target": exc.target}


def _new_generation() -> int:
    """A snapshot generation no other run of the step will pick (its rows: ``snap{n}|…``)."""
    return random.getrandbits(31) | 1


def _fleet_of(move: MoveRecord) -> str | None:
    """The decommission a move was started by (``shared/decommission.py`` names the fleet after its
    event, and its moves' start audit entry carries that event's id): fleet discovery needs no
    lookup of the move's link."""
    from shared.decommission import partition_for

    start = next((a for a in move.audit or [] if a.get("command") == "start"), None)
    event_id = (start or {}).get("eventId")
    return partition_for(str(event_id)) if event_id else None
