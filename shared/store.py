"""State in Azure Table Storage: the move record, per-item progress, the snapshot, the event outbox.

Everything about one move lives in ONE partition (``PartitionKey`` = move id) of table
``{prefix}moves`` so a state change and its outbox events commit in one entity-group transaction:

==================  =========================================================================
RowKey              entity
==================  =========================================================================
``move``            the move record (status, phase, phases[], source, target, plan, error ...)
``item|{phase}|k``  one entity per item of a fanned-out phase (role assignment, credential ...)
``snap|{nnnn}``     the snapshot as JSON, chunked (<= 30,000 characters per property)
``event|{nnnnn}``   the outbox: one CloudEvent each, ``Published`` false until sent, ``ClaimedAt``
                    set (ETag-guarded) by the publisher sending it
==================  =========================================================================

Table ``{prefix}locks`` holds one entity per source identity (RowKey = sha256 of its lower-case
id) naming the move that holds it. Table ``{prefix}cache`` holds short-lived values shared by all
moves and instances (``SharedCache``: e.g. a subscription's role-assignment count); created on
first use. Writes to the move record and items are guarded by ETags
(``update_entity(mode=REPLACE, etag=..., match_condition=IfNotModified)``); a lost race raises
``Conflict`` and the caller re-reads. A fanned-out phase's first items are inserted in the
transaction that saves the record (``create_items``: no query; an existing item fails it whole).
``StoreStats`` counts every storage transaction.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import TableClient, TableTransactionError, UpdateMode

from shared.statuses import Status
from shared.storage import StorageAccess, as_access

CHUNK = 30_000
SNAPSHOT_CACHE = 256  # snapshot generations a process keeps in memory (load_snapshot)
MOVE_ROW = "move"
# newest first: one row per move in this partition of the moves table, RowKey = inverted creation
# time (ms) + id, so a query reads moves in creation order, newest first, without a scan
RECENT_PARTITION = "~recent"
RECENT_READ_BUDGET = 10  # a filtered page reads at most this many index rows per move it may return
MAX_NEW_ITEMS = 99  # ``create_items``: the record and its new items in one transaction (<= 100 operations)


def recent_row(created_at: str, move_id: str) -> str:
    millis = int(datetime.fromisoformat(created_at).timestamp() * 1000)
    return f"{10**14 - millis:014d}|{move_id}"


class Conflict(Exception):
    """An ETag-guarded write lost a race: re-read and decide again."""


class StoreStats:
    """Counts storage transactions (one HTTP request to Table or Queue storage = one)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()

    def add(self, kind: str, n: int = 1) -> None:
        with self._lock:
            self.counts[kind] += n

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


@dataclass
class MoveRecord:
    id: str
    status: Status
    phase: str
    request: dict[str, Any]
    created_at: str
    updated_at: str
    phases: list[dict[str, Any]] = field(default_factory=list)
    source: dict[str, Any] = field(default_factory=dict)
    target: dict[str, Any] = field(default_factory=dict)
    plan: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    event_seq: int = 0
    snapshot_chunks: int = 0
    snapshot_generation: int = 0  # a widened snapshot is written beside the old one, then named here
    committed: bool = False
    verified: bool = False
    attempt: int = 0
    version: int = 0  # +1 on every save: a work message names the version it was sent for
    # who asked for what, when: [{"command", "by", "at", ...}] (start, commit, cancel, ..., the
    # commit policy's timer); saved with the command's own state change (the report reads it)
    audit: list[dict[str, Any]] = field(default_factory=list)
    etag: str | None = None

    @property
    def dry_run(self) -> bool:
        return bool(self.request.get("dryRun"))

    @property
    def auto_commit(self) -> bool:
        return bool(self.request.get("autoCommit"))

    @property
    def source_id(self) -> str:
        return str(self.request["sourceIdentityId"])

    def phase_entry(self, name: str) -> dict[str, Any]:
        for entry in self.phases:
            if entry["name"] == name:
                return entry
        entry = {"name": name, "status": "NotStarted", "startedAt": None, "completedAt": None}
        self.phases.append(entry)
        return entry

    def to_entity(self) -> dict[str, Any]:
        return {
            "PartitionKey": self.id,
            "RowKey": MOVE_ROW,
            "Status": self.status.value,
            "Phase": self.phase,
            "SourceIdLower": self.source_id.lower(),
            "SourceRegion": str(self.source.get("location") or "").lower(),
            "Request": _dumps(self.request),
            "Phases": _dumps(self.phases),
            "Source": _dumps(self.source),
            "Target": _dumps(self.target),
            "Plan": _dumps(self.plan),
            "Error": _dumps(self.error),
            "CreatedAt": self.created_at,
            "UpdatedAt": self.updated_at,
            "EventSeq": self.event_seq,
            "SnapshotChunks": self.snapshot_chunks,
            "SnapshotGeneration": self.snapshot_generation,
            "Committed": self.committed,
            "Verified": self.verified,
            "Attempt": self.attempt,
            "Version": self.version,
            "Audit": _dumps(self.audit),
        }

    @classmethod
    def from_entity(cls, entity: Any) -> MoveRecord:
        return cls(
            id=entity["PartitionKey"],
            status=Status(entity["Status"]),
            phase=entity["Phase"],
            request=json.loads(entity["Request"]),
            created_at=entity["CreatedAt"],
            updated_at=entity["UpdatedAt"],
            phases=json.loads(entity["Phases"]),
            source=json.loads(entity["Source"]),
            target=json.loads(entity["Target"]),
            plan=json.loads(entity["Plan"]),
            error=json.loads(entity["Error"]),
            event_seq=int(entity["EventSeq"]),
            snapshot_chunks=int(entity["SnapshotChunks"]),
            snapshot_generation=int(entity.get("SnapshotGeneration", 0)),
            committed=bool(entity["Committed"]),
            verified=bool(entity["Verified"]),
            attempt=int(entity["Attempt"]),
            version=int(entity.get("Version", 0)),
            audit=json.loads(entity.get("Audit") or "[]"),
            etag=entity.metadata.get("etag"),
        )


@dataclass
class Item:
    """One unit of work of a fanned-out phase (e.g. one role assignment to copy)."""

    move_id: str
    phase: str
    key: str
    kind: str
    data: dict[str, Any]
    status: str = "Pending"  # Pending | Done | Failed
    attempts: int = 0
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    etag: str | None = None

    @property
    def row_key(self) -> str:
        return f"item|{self.phase}|{self.key}"

    def to_entity(self) -> dict[str, Any]:
        return {
            "PartitionKey": self.move_id,
            "RowKey": self.row_key,
            "Phase": self.phase,
            "Key": self.key,
            "Kind": self.kind,
            "Data": _dumps(self.data),
            "Status": self.status,
            "Attempts": self.attempts,
            "Result": _dumps(self.result),
            "Error": _dumps(self.error),
        }

    @classmethod
    def from_entity(cls, entity: Any) -> Item:
        return cls(
            move_id=entity["PartitionKey"],
            phase=entity["Phase"],
            key=entity["Key"],
            kind=entity["Kind"],
            data=json.loads(entity["Data"]),
            status=entity["Status"],
            attempts=int(entity["Attempts"]),
            result=json.loads(entity["Result"]),
            error=json.loads(entity["Error"]),
            etag=entity.metadata.get("etag"),
        )


@dataclass
class Event:
    """An outbox row: one CloudEvent, id ``{move id}/{row key}`` (stable across retries)."""

    move_id: str
    seq: int
    type: str
    time: str
    data: dict[str, Any]

    @property
    def row_key(self) -> str:
        return f"event|{self.seq:05d}"

    @property
    def event_id(self) -> str:
        return f"{self.move_id}/{self.row_key}"

    def to_entity(self) -> dict[str, Any]:
        return {
            "PartitionKey": self.move_id,
            "RowKey": self.row_key,
            "Type": self.type,
            "Time": self.time,
            "Data": _dumps(self.data),
            "Published": False,
        }


def _claim(entity: Any, now: str) -> dict[str, Any]:
    return {"PartitionKey": entity["PartitionKey"], "RowKey": entity["RowKey"], "ClaimedAt": now}


def _if_unchanged(entity: Any) -> dict[str, Any]:
    return {
        "mode": UpdateMode.MERGE,
        "etag": entity.metadata["etag"],
        "match_condition": MatchConditions.IfNotModified,
    }


def lock_key(source_id: str) -> str:
    return hashlib.sha256(source_id.lower().encode()).hexdigest()


def encode_token(token: Any) -> str | None:
    if not token:
        return None
    return base64.urlsafe_b64encode(_dumps(token).encode()).decode()


class InvalidToken(ValueError):
    """A continuation token that ``encode_token`` did not make (garbage, or base64 of something else)."""


TOKEN_KEYS = frozenset({"PartitionKey", "RowKey"})


def decode_token(token: str | None) -> Any:
    """The table continuation (``{"PartitionKey", "RowKey"}``) behind a token we issued; ``InvalidToken``
    for anything else, so a caller's bad ``$skipToken`` is a 400, never page 1 or a crash."""
    if not token:
        return None
    try:
        value = json.loads(base64.urlsafe_b64decode(token.encode("ascii")))
    except (ValueError, UnicodeError):
        raise InvalidToken(token) from None
    if (
        not isinstance(value, dict)
        or not value
        or set(value) - TOKEN_KEYS
        or not all(isinstance(v, str) or v is None for v in value.values())
        or not isinstance(value.get("PartitionKey"), str)
    ):
        raise InvalidToken(token)
    return value


class StateStore:
    """Typed access to the tables; every call counted in ``stats``."""

    def __init__(self, connection: str | StorageAccess, prefix: str, stats: StoreStats | None = None) -> None:
        self.stats = stats or StoreStats()
        service = as_access(connection).table_service()
        safe = "".join(ch for ch in prefix if ch.isalnum())
        self.moves: TableClient = service.get_table_client(f"{safe}moves")
        self.locks: TableClient = service.get_table_client(f"{safe}locks")
        self.cache: TableClient = service.get_table_client(f"{safe}cache")
        self._created = False
        self._snapshot_lock = threading.Lock()
        self._snapshots: OrderedDict[tuple[str, int, int], str] = OrderedDict()
        # Outbox rows born claimed by their writer (``claim_on_write``, set when events are
        # published): the writing thread sends them itself once its message or command is done
        # (``take_written``), with no query and no claim of its own, if still young; the timer's
        # sweep takes rows whose claim is older than the lease (a writer that died before sending,
        # or whose rows grew too old to send: ``outbox.publish_written``).
        self.claim_on_write = False
        self._written = threading.local()

    def _event_entities(self, events: Iterable[Event]) -> list[dict[str, Any]]:
        entities = [event.to_entity() for event in events]
        if self.claim_on_write:
            now = datetime.now(UTC).isoformat()
            for entity in entities:
                entity["ClaimedAt"] = now
        return entities

    def _wrote(self, entities: list[dict[str, Any]]) -> None:
        """Outbox rows this thread has just written (their transaction succeeded), to send."""
        if self.claim_on_write and entities:
            pending: list[dict[str, Any]] = getattr(self._written, "rows", [])
            self._written.rows = [*pending, *entities]

    def take_written(self) -> list[dict[str, Any]]:
        """The outbox rows this thread wrote (claimed) since it last asked; the list is emptied."""
        rows: list[dict[str, Any]] = getattr(self._written, "rows", [])
        self._written.rows = []
        return rows

    def ensure_tables(self) -> None:
        if self._created:
            return
        for table in (self.moves, self.locks):
            self.stats.add("table.create")
            with contextlib.suppress(ResourceExistsError):
                table.create_table()
        self._created = True

    # ---- move record + outbox, atomically -------------------------------------------------
    def create_move(self, record: MoveRecord, events: Iterable[Event] = ()) -> None:
        entities = self._event_entities(events)
        ops: list[Any] = [("create", record.to_entity())]
        ops += [("create", entity) for entity in entities]
        self._transact(ops)
        self._wrote(entities)

    def save_move(self, record: MoveRecord, events: Iterable[Event] = (), items: Iterable[Item] = ()) -> None:
        """Replace the move record if unchanged since read (ETag) and add its events; raise ``Conflict``."""
        guard = {
            "mode": UpdateMode.REPLACE,
            "etag": record.etag,
            "match_condition": MatchConditions.IfNotModified,
        }
        record.version += 1
        entities = self._event_entities(events)
        ops: list[Any] = [("update", record.to_entity(), guard)]
        ops += [("create", entity) for entity in entities]
        ops += [("upsert", item.to_entity(), {"mode": UpdateMode.REPLACE}) for item in items]
        results = self._transact(ops)
        record.etag = results[0].get("etag")
        self._wrote(entities)

    def _transact(self, ops: list[Any]) -> list[Any]:
        self.stats.add("table.transaction")
        try:
            return list(self.moves.submit_transaction(ops))
        except TableTransactionError as exc:
            if exc.status_code in (409, 412):
                raise Conflict(str(exc)) from exc
            raise

    def get_move(self, move_id: str) -> MoveRecord | None:
        self.stats.add("table.get")
        try:
            return MoveRecord.from_entity(self.moves.get_entity(move_id, MOVE_ROW))
        except ResourceNotFoundError:
            return None

    def list_moves(
        self, status: str | None, source_region: str | None, top: int, token: str | None
    ) -> tuple[list[MoveRecord], str | None]:
        clauses = ["RowKey eq @row"]
        params: dict[str, Any] = {"row": MOVE_ROW}
        if status:
            clauses.append("Status eq @status")
            params["status"] = status
        if source_region:
            clauses.append("SourceRegion eq @region")
            params["region"] = source_region.replace(" ", "").lower()
        pages = self.moves.query_entities(
            " and ".join(clauses), parameters=params, results_per_page=top
        ).by_page(continuation_token=decode_token(token))
        self.stats.add("table.query")
        page = next(pages, None)
        records = [MoveRecord.from_entity(e) for e in page] if page is not None else []
        return records, encode_token(pages.continuation_token)  # type: ignore[attr-defined]

    def index_move(self, record: MoveRecord) -> None:
        """The move's row in the newest-first index (written before the record: a crash between
        leaves an index row without a move, which ``list_recent`` skips; upsert, so idempotent)."""
        entity = {"PartitionKey": RECENT_PARTITION, "RowKey": recent_row(record.created_at, record.id)}
        self.stats.add("table.upsert")
        self.moves.upsert_entity({**entity, "MoveId": record.id})

    def list_recent(
        self, status: str | None, source_region: str | None, top: int, token: str | None
    ) -> tuple[list[MoveRecord], str | None]:
        """Moves newest first, from the index: one query for up to ``RECENT_READ_BUDGET * top`` index
        rows, then a point read per move until ``top`` match the filters. The token is the last
        index row read, so a filtered page may come back short, with a token to go on."""
        after = decode_token(token)
        if after is not None and after.get("PartitionKey") != RECENT_PARTITION:
            raise InvalidToken(str(token))
        region = source_region.replace(" ", "").lower() if source_region else None
        clauses, params = ["PartitionKey eq @pk"], {"pk": RECENT_PARTITION}
        if after is not None:
            clauses.append("RowKey gt @after")
            params["after"] = str(after["RowKey"])
        budget = RECENT_READ_BUDGET * top
        rows = self.moves.query_entities(
            " and ".join(clauses),
            parameters=params,
            select=["RowKey", "MoveId"],
            results_per_page=min(budget, 1000),
        )
        self.stats.add("table.query")
        records: list[MoveRecord] = []
        last: str | None = None
        more = False
        for n, row in enumerate(rows):
            if len(records) >= top or n >= budget:
                more = True
                break
            last = str(row["RowKey"])
            record = self.get_move(str(row["MoveId"]))
            if record is None:  # its start died between the index row and the record
                continue
            if status and record.status.value != status:
                continue
            if region and str(record.source.get("location") or "").replace(" ", "").lower() != region:
                continue
            records.append(record)
        token_out = (
            encode_token({"PartitionKey": RECENT_PARTITION, "RowKey": last}) if more and last else None
        )
        return records, token_out

    # ---- items -------------------------------------------------------------------------
    def list_items(self, move_id: str, phase: str) -> list[Item]:
        self.stats.add("table.query")
        lo, hi = f"item|{phase}|", f"item|{phase}}}"
        entities = self.moves.query_entities(
            "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi",
            parameters={"pk": move_id, "lo": lo, "hi": hi},
        )
        return [Item.from_entity(e) for e in entities]

    def last_item_change(self, move_id: str, phase: str) -> datetime | None:
        """When an item of the phase last changed (Table Storage's own timestamp), or None."""
        self.stats.add("table.query")
        lo, hi = f"item|{phase}|", f"item|{phase}}}"
        entities = self.moves.query_entities(
            "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi",
            parameters={"pk": move_id, "lo": lo, "hi": hi},
            select=["RowKey", "Timestamp"],
        )
        stamps = [e.metadata.get("timestamp") for e in entities]
        return max((t for t in stamps if t is not None), default=None)

    def add_items(self, move_id: str, phase: str, items: list[Item]) -> list[Item]:
        """Create items not yet stored (existing ones keep their progress); returns every item of
        the phase as stored: the existing ones as read, the new ones as written (one query and one
        transaction per 100 new items; a race with a concurrent worker reads the phase again)."""
        stored = self.list_items(move_id, phase)
        existing = {i.key for i in stored}
        fresh = [i for i in items if i.key not in existing]
        raced = False
        for start in range(0, len(fresh), 100):
            chunk = fresh[start : start + 100]
            batch = [("create", i.to_entity()) for i in chunk]
            try:
                results = self._transact(batch)
            except Conflict:  # a concurrent worker created some: fall back to one by one
                raced = True
                for op in batch:
                    self.stats.add("table.create")
                    with contextlib.suppress(ResourceExistsError):
                        self.moves.create_entity(op[1])
                continue
            for item, result in zip(chunk, results, strict=True):
                item.etag = (result or {}).get("etag")
        if raced:
            return self.list_items(move_id, phase)
        return sorted([*stored, *fresh], key=lambda i: i.row_key)

    def create_items(self, record: MoveRecord, items: list[Item]) -> None:
        """Save the move record (ETag) and create ``items`` (at most ``MAX_NEW_ITEMS``) in ONE
        transaction, no query: inserts, never upserts, so an item that exists (its progress kept) fails
        it whole, like a record changed meanwhile: ``Conflict``, nothing written."""
        if len(items) > MAX_NEW_ITEMS:
            raise ValueError(f"{len(items)} items: at most {MAX_NEW_ITEMS} fit beside the record")
        guard = {
            "mode": UpdateMode.REPLACE,
            "etag": record.etag,
            "match_condition": MatchConditions.IfNotModified,
        }
        record.version += 1
        ops: list[Any] = [("update", record.to_entity(), guard)]
        ops += [("create", item.to_entity()) for item in items]
        try:
            results = self._transact(ops)
        except Conflict:
            record.version -= 1
            raise
        record.etag = results[0].get("etag")
        for item, result in zip(items, results[1:], strict=True):
            item.etag = (result or {}).get("etag")

    def save_items(self, items: list[Item]) -> None:
        """Write items' progress as they are (no ETag: the caller holds the phase's step), 100 per
        transaction."""
        for start in range(0, len(items), 100):
            chunk = items[start : start + 100]
            ops: list[Any] = [("upsert", i.to_entity(), {"mode": UpdateMode.REPLACE}) for i in chunk]
            for item, result in zip(chunk, self._transact(ops), strict=True):
                item.etag = (result or {}).get("etag")

    def get_item(self, move_id: str, row_key: str) -> Item | None:
        self.stats.add("table.get")
        try:
            return Item.from_entity(self.moves.get_entity(move_id, row_key))
        except ResourceNotFoundError:
            return None

    def save_item(self, item: Item) -> None:
        self.stats.add("table.update")
        try:
            meta = self.moves.update_entity(
                item.to_entity(),
                mode=UpdateMode.REPLACE,
                etag=item.etag,
                match_condition=MatchConditions.IfNotModified,
            )
        except (ResourceModifiedError, ResourceExistsError) as exc:
            raise Conflict(str(exc)) from exc
        except HttpResponseError as exc:
            if exc.status_code == 412:
                raise Conflict(str(exc)) from exc
            raise
        item.etag = meta.get("etag")

    def delete_item(self, move_id: str, phase: str, key: str) -> None:
        """Forget an item (it is created afresh from the snapshot at its phase's next fan-out)."""
        self.stats.add("table.delete")
        self.moves.delete_entity(move_id, f"item|{phase}|{key}")  # absent: no error

    # ---- snapshot ------------------------------------------------------------------------
    def save_snapshot(self, move_id: str, snapshot: dict[str, Any], generation: int = 0) -> int:
        """Write the snapshot's chunks; a later ``generation`` goes beside the earlier ones, so the
        record keeps reading the old one until it is saved naming the new one."""
        text = _dumps(snapshot)
        chunks = [text[i : i + CHUNK] for i in range(0, len(text), CHUNK)] or [""]
        ops: list[Any] = [
            (
                "upsert",
                {"PartitionKey": move_id, "RowKey": _snapshot_row(generation, n), "Data": chunk},
                {"mode": UpdateMode.REPLACE},
            )
            for n, chunk in enumerate(chunks)
        ]
        for start in range(0, len(ops), 100):  # <= 100 operations and 4 MiB per transaction
            self._transact(ops[start : start + 100])
        self._remember_snapshot((move_id, generation, len(chunks)), text)
        return len(chunks)

    def load_snapshot(self, move_id: str, chunks: int, generation: int = 0) -> dict[str, Any]:
        """A snapshot generation is written once and never changed (a wider one is a new generation),
        so this process keeps the last ``SNAPSHOT_CACHE`` it read: a move's later steps read none."""
        key = (move_id, generation, chunks)
        with self._snapshot_lock:
            text = self._snapshots.get(key)
            if text is not None:
                self._snapshots.move_to_end(key)
        if text is None:
            parts = []
            for n in range(chunks):
                self.stats.add("table.get")
                parts.append(self.moves.get_entity(move_id, _snapshot_row(generation, n))["Data"])
            text = "".join(parts)
            self._remember_snapshot(key, text)
        loaded: dict[str, Any] = json.loads(text)  # a fresh copy per step: phases may change theirs
        return loaded

    def _remember_snapshot(self, key: tuple[str, int, int], text: str) -> None:
        with self._snapshot_lock:
            self._snapshots[key] = text
            self._snapshots.move_to_end(key)
            while len(self._snapshots) > SNAPSHOT_CACHE:
                self._snapshots.popitem(last=False)

    # ---- outbox --------------------------------------------------------------------------
    def create_move_event(self, event: Event) -> None:
        """An event with no move record (e.g. a region decommission summary); ``Conflict`` if it exists."""
        (entity,) = self._event_entities([event])
        self.stats.add("table.create")
        try:
            self.moves.create_entity(entity)
        except ResourceExistsError as exc:
            raise Conflict(str(exc)) from exc
        self._wrote([entity])

    def create_chunked_event(self, event: Event) -> None:
        """An event whose data may outgrow a property's 64 KB (e.g. the summary of a region's
        decommission): the data in ``eventdata|{seq}|{nnnn}`` rows (<= ``CHUNK`` characters each,
        upserted, so a second writer of the same data changes nothing), then the outbox row naming
        how many (``DataChunks``); ``Conflict`` if that row exists. ``event_data`` reads it back."""
        text = _dumps(event.data)
        chunks = [text[i : i + CHUNK] for i in range(0, len(text), CHUNK)] or [""]
        prefix = _event_data_prefix(event.row_key)
        ops: list[Any] = [
            (
                "upsert",
                {"PartitionKey": event.move_id, "RowKey": f"{prefix}{n:04d}", "Data": chunk},
                {"mode": UpdateMode.REPLACE},
            )
            for n, chunk in enumerate(chunks)
        ]
        for start in range(0, len(ops), 50):  # 50 x 30,000 UTF-16 characters < 4 MiB per transaction
            self._transact(ops[start : start + 50])
        (written,) = self._event_entities([event])
        entity = {**written, "Data": "", "DataChunks": len(chunks)}
        self.stats.add("table.create")
        try:
            self.moves.create_entity(entity)
        except ResourceExistsError as exc:
            raise Conflict(str(exc)) from exc
        self._wrote([entity])

    def event_data(self, entity: Any) -> Any:
        """An outbox row's data, also when ``create_chunked_event`` wrote it in chunks."""
        if not int(entity.get("DataChunks") or 0):
            return json.loads(entity["Data"])
        prefix = _event_data_prefix(entity["RowKey"])
        self.stats.add("table.query")
        rows = self.moves.query_entities(
            "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi",
            parameters={"pk": entity["PartitionKey"], "lo": prefix, "hi": prefix[:-1] + "}"},
        )
        return json.loads("".join(row["Data"] for row in sorted(rows, key=lambda r: r["RowKey"])))

    def pending_events(self, limit: int = 500, keep: Callable[[Any], bool] = lambda e: True) -> Iterator[Any]:
        """Unpublished outbox rows for which ``keep`` says yes, at most ``limit`` of them (rows it
        passes over, e.g. claims still young, do not count: they must not crowd out the others)."""
        self.stats.add("table.query")
        query = "RowKey ge @lo and RowKey lt @hi and Published eq false"
        entities = self.moves.query_entities(query, parameters={"lo": "event|", "hi": "event}"})
        n = 0
        for entity in entities:
            if not keep(entity):
                continue
            if n >= limit:
                return
            n += 1
            yield entity

    def claim_events(self, entities: list[Any], now: str) -> list[Any]:
        """Claim outbox rows (one partition) for sending: ``ClaimedAt`` = ``now``, ETag-guarded, so of
        two publishers that read the same pending rows only one sends each. One transaction; if
        another publisher got some of them first, row by row. Returns the rows this call won."""
        ops = [("update", _claim(e, now), _if_unchanged(e)) for e in entities]
        won: list[Any] = []
        for start in range(0, len(ops), 100):
            chunk = entities[start : start + 100]
            try:
                self._transact(ops[start : start + 100])
                won += chunk
                continue
            except Conflict:
                pass
            for entity in chunk:
                self.stats.add("table.update")
                try:
                    self.moves.update_entity(_claim(entity, now), **_if_unchanged(entity))
                except (ResourceModifiedError, ResourceNotFoundError):
                    continue
                except HttpResponseError as exc:
                    if exc.status_code == 412:
                        continue
                    raise
                won.append(entity)
        return won

    def release_events(self, entities: list[Any]) -> None:
        """Give claimed rows back (their send failed): the next publish may send them at once."""
        self._merge_events(entities, {"ClaimedAt": ""})

    def mark_published(self, entities: list[Any]) -> None:
        self._merge_events(entities, {"Published": True})

    def _merge_events(self, entities: list[Any], values: dict[str, Any]) -> None:
        ops: list[Any] = [
            (
                "update",
                {"PartitionKey": e["PartitionKey"], "RowKey": e["RowKey"], **values},
                {"mode": UpdateMode.MERGE},
            )
            for e in entities
        ]
        for start in range(0, len(ops), 100):
            self._transact(ops[start : start + 100])

    def events(self, move_id: str) -> list[Any]:
        self.stats.add("table.query")
        return list(
            self.moves.query_entities(
                "PartitionKey eq @pk and RowKey ge @lo and RowKey lt @hi",
                parameters={"pk": move_id, "lo": "event|", "hi": "event}"},
            )
        )

    # ---- per-identity lock -----------------------------------------------------------------
    def get_lock(self, source_id: str) -> Any:
        self.stats.add("table.get")
        try:
            return self.locks.get_entity("lock", lock_key(source_id))
        except ResourceNotFoundError:
            return None

    def create_lock(self, source_id: str, move_id: str, now: str) -> None:
        """Create the lock; raise ``Conflict`` if someone holds it."""
        self.stats.add("table.create")
        entity = {
            "PartitionKey": "lock",
            "RowKey": lock_key(source_id),
            "MoveId": move_id,
            "SourceId": source_id,
            "At": now,
        }
        try:
            self.locks.create_entity(entity)
        except ResourceExistsError as exc:
            raise Conflict(str(exc)) from exc

    def take_lock(self, lock: Any, move_id: str, now: str) -> None:
        """Take over a lock whose holder is at rest (ETag-guarded); raise ``Conflict`` on a race."""
        self.stats.add("table.update")
        entity = {
            "PartitionKey": "lock",
            "RowKey": lock["RowKey"],
            "MoveId": move_id,
            "SourceId": lock["SourceId"],
            "At": now,
        }
        try:
            self.locks.update_entity(
                entity,
                mode=UpdateMode.REPLACE,
                etag=lock.metadata["etag"],
                match_condition=MatchConditions.IfNotModified,
            )
        except (ResourceModifiedError, ResourceNotFoundError, HttpResponseError) as exc:
            raise Conflict(str(exc)) from exc

    def release_lock(self, source_id: str, move_id: str) -> None:
        lock = self.get_lock(source_id)
        if lock is None or lock["MoveId"] != move_id:
            return
        self.stats.add("table.delete")
        # someone else may have taken it meanwhile: then it is theirs now
        with contextlib.suppress(ResourceModifiedError, HttpResponseError):
            self.locks.delete_entity(
                "lock",
                lock["RowKey"],
                etag=lock.metadata["etag"],
                match_condition=MatchConditions.IfNotModified,
            )

    # ---- shared cache ------------------------------------------------------------------------
    def get_cached(self, key: str) -> tuple[Any, str] | None:
        """``(value, written at)`` of a cache entry, ``None`` if absent."""
        self.stats.add("table.get")
        try:
            entity = self.cache.get_entity("cache", lock_key(key))
        except ResourceNotFoundError:  # no entry, or no table yet
            return None
        return json.loads(entity["Value"]), str(entity["At"])

    def put_cached(self, key: str, value: Any, now: str) -> None:
        """Write a cache entry (last writer wins); the table is created on first use."""
        entity = {
            "PartitionKey": "cache",
            "RowKey": lock_key(key),
            "Key": key,
            "Value": _dumps(value),
            "At": now,
        }
        self.stats.add("table.upsert")
        try:
            self.cache.upsert_entity(entity, mode=UpdateMode.REPLACE)
        except ResourceNotFoundError:
            self.stats.add("table.create")
            with contextlib.suppress(ResourceExistsError):
                self.cache.create_table()
            self.stats.add("table.upsert")
            self.cache.upsert_entity(entity, mode=UpdateMode.REPLACE)


class SharedCache:
    """What a phase may keep for other moves: ``get(key, max_age)`` / ``put(key, value)`` over the
    ``{prefix}cache`` table. A cache never fails a step: a storage error is a miss, or a value not kept."""

    def __init__(self, store: StateStore, clock: Callable[[], datetime]) -> None:
        self.store = store
        self.clock = clock

    def get(self, key: str, max_age: float) -> Any:
        try:
            found = self.store.get_cached(key)
        except HttpResponseError:
            return None
        if found is None:
            return None
        value, at = found
        age = (self.clock() - datetime.fromisoformat(at)).total_seconds()
        return value if 0 <= age <= max_age else None

    def put(self, key: str, value: Any) -> None:
        with contextlib.suppress(HttpResponseError):
            self.store.put_cached(key, value, self.clock().isoformat())


def _snapshot_row(generation: int, n: int) -> str:
    return f"snap|{n:04d}" if not generation else f"snap{generation}|{n:04d}"


def _event_data_prefix(event_row: str) -> str:
    """``event|00001`` -> ``eventdata|00001|`` (outside the ``event|`` range the outbox queries)."""
    return f"eventdata|{event_row.removeprefix('event|')}|"
