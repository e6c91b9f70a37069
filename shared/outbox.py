"""The event outbox: events are written with the state change they describe, published later.

``new_event`` adds an ``Event`` to a move's partition (same entity-group transaction as the move
record, see ``StateStore.save_move``). ``publish`` sends pending ones as CloudEvents 1.0 to
``IDMOVE_EVENTGRID_ENDPOINT``. A row is born claimed by the thread that writes it (``ClaimedAt`` in the
same transaction, ``StateStore.claim_on_write``), and that thread sends it once its step is done
(``publish_written``: one send and one marking transaction per move, no query): until 2026-12-01
every step ended with a query for every unsent row of the table, and all instances raced to claim
the same rows, ~46 storage transactions per move in a 60-identity decommission. The timer's sweep
(``publish``) sends what a writer left: per partition it first *claims* the rows (ETag-guarded, so
of several sweepers only one sends a row), sends, then marks them published. A failed send gives the claim back; a claim older than ``CLAIM_LEASE_SECONDS`` (its
publisher died between send and mark) may be claimed again -- the one case that sends an event
twice. Unsent rows are sent by the timer trigger's sweep. Event
ids are ``{move id}/event|{seq}``: stable across retries, so consumers can de-duplicate.

Types: ``IdentityMover.Move.{Started, PhaseCompleted, AwaitingCommit, Completed, Failed, Canceled,
Discarded}`` (subject ``moves/{id}``) and ``IdentityMover.RegionDecommissioning.Started`` (subject
``decommissions/{event id}``, data ``{started, skipped}``).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from azure.core.exceptions import AzureError
from azure.core.messaging import CloudEvent

from shared import commit_policy
from shared.azure_clients import AzureClients
from shared.store import Event, MoveRecord, StateStore

SOURCE = "/identity-mover"
PREFIX = "IdentityMover.Move."
CLAIM_LEASE_SECONDS = 120.0  # longer than a send may take (azure-core's retries included)
OWN_SEND_SECONDS = CLAIM_LEASE_SECONDS / 2  # a writer sends its own rows only while this young
log = logging.getLogger(__name__)


def new_event(record: MoveRecord, kind: str, now: str, **data: Any) -> Event:
    record.event_seq += 1
    body = {"moveId": record.id, "status": record.status.value, "sourceIdentityId": record.source_id, **data}
    body.update(commit_policy.status_fields(record))  # commitDeadline, and the timer's outcome
    return Event(record.id, record.event_seq, PREFIX + kind, now, body)


def subject_for(partition: str) -> str:
    if partition.startswith("decommission-"):
        return f"decommissions/{partition.removeprefix('decommission-')}"
    return f"moves/{partition}"


def claimable(entity: Any, now: datetime) -> bool:
    """Not claimed, or claimed longer ago than the lease (its publisher died before marking it)."""
    at = str(entity.get("ClaimedAt") or "")
    return not at or (now - datetime.fromisoformat(at)).total_seconds() >= CLAIM_LEASE_SECONDS


def publish_written(
    store: StateStore,
    clients: AzureClients,
    entities: list[Any],
    crashpoint: Callable[[str], None] | None = None,
) -> int:
    """Send the outbox rows this thread wrote itself (born claimed, ``StateStore.claim_on_write``):
    per partition one send and one transaction marking them published -- no query, no claim. A
    failed send gives the claim back, so the timer's sweep (``publish``) sends them at its next
    run; a writer that dies first leaves them claimed, and the sweep sends them once the claim is
    older than ``CLAIM_LEASE_SECONDS``.

    Only rows claimed less than ``OWN_SEND_SECONDS`` ago are sent here: an older claim (a long
    chain of steps on one message, or rows an exception left on the thread) may be near the lease,
    past which the sweep may claim and send the row too; such rows are the sweep's alone."""
    client = clients.eventgrid()
    if client is None or not entities:
        return 0
    now = datetime.now(UTC)  # the clock that stamped them (``StateStore._event_entities``)
    by_partition: dict[str, list[Any]] = defaultdict(list)
    for entity in entities:
        at = str(entity.get("ClaimedAt") or "")
        if at and (now - datetime.fromisoformat(at)).total_seconds() < OWN_SEND_SECONDS:
            by_partition[entity["PartitionKey"]].append(entity)
    return sum(_send(store, client, p, written, crashpoint) for p, written in by_partition.items())


def _send(
    store: StateStore,
    client: Any,
    partition: str,
    entities: list[Any],
    crashpoint: Callable[[str], None] | None,
) -> int:
    """Send one partition's claimed rows, then mark them published; a failed send gives the claim
    back (the next publish retries them). The number sent."""
    events = [_cloud_event(store, partition, e) for e in entities]
    try:
        client.send(events)
    except AzureError as exc:
        log.warning("publishing %d events of %s failed: %s", len(events), partition, type(exc).__name__)
        store.release_events(entities)
        return 0
    if crashpoint is not None:
        crashpoint("outbox:after-send")
    store.mark_published(entities)
    return len(events)


def _cloud_event(store: StateStore, partition: str, e: Any) -> CloudEvent[Any]:
    return CloudEvent(
        source=SOURCE,
        type=e["Type"],
        data=store.event_data(e),  # chunked rows too (a large decommission summary)
        subject=subject_for(partition),
        id=f"{partition}/{e['RowKey']}",
        time=datetime.fromisoformat(e["Time"]),
    )


def publish(
    store: StateStore,
    clients: AzureClients,
    now: datetime | None = None,
    crashpoint: Callable[[str], None] | None = None,
) -> int:
    """Send what is pending, each row by the one publisher that claimed it; the number sent.

    ``crashpoint("outbox:after-send")`` is called between a send and its mark (tests stop there).
    """
    client = clients.eventgrid()
    if client is None:
        return 0
    now = now or datetime.now(UTC)
    by_partition: dict[str, list[Any]] = defaultdict(list)
    for entity in store.pending_events(keep=lambda e: claimable(e, now)):
        by_partition[entity["PartitionKey"]].append(entity)
    sent = 0
    for partition, pending in by_partition.items():
        entities = store.claim_events(pending, now.isoformat())
        if entities:  # else another publisher is sending them
            sent += _send(store, client, partition, entities, crashpoint)
    return sent
