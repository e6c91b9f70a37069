"""The event outbox: events are written with the state change they describe, published later.

``new_event`` adds an ``Event`` to a move's partition (same entity-group transaction as the move
record, see ``StateStore.save_move``). ``publish`` sends pending ones as CloudEvents 1.0 to
``IDMOVE_EVENTGRID_ENDPOINT`` and marks them published; unsent ones stay pending and are retried on
the next call (after each step and from the timer trigger). Event ids are ``{move id}/event|{seq}``:
stable across retries, so consumers can de-duplicate.

Types: ``IdentityMover.Move.{Started, PhaseCompleted, AwaitingCommit, Completed, Failed, Canceled,
Discarded}`` (subject ``moves/{id}``) and ``IdentityMover.RegionDecommissioning.Started`` (subject
``decommissions/{event id}``, data ``{started, skipped}``).
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from datetime import datetime
from typing import Any

from azure.core.exceptions import AzureError
from azure.core.messaging import CloudEvent

from shared.azure_clients import AzureClients
from shared.store import Event, MoveRecord, StateStore

SOURCE = "/identity-mover"
PREFIX = "IdentityMover.Move."
log = logging.getLogger(__name__)


def new_event(record: MoveRecord, kind: str, now: str, **data: Any) -> Event:
    record.event_seq += 1
    body = {"moveId": record.id, "status": record.status.value, "sourceIdentityId": record.source_id, **data}
    return Event(record.id, record.event_seq, PREFIX + kind, now, body)


def subject_for(partition: str) -> str:
    if partition.startswith("decommission-"):
        return f"decommissions/{partition.removeprefix('decommission-')}"
    return f"moves/{partition}"


def publish(store: StateStore, clients: AzureClients) -> int:
    client = clients.eventgrid()
    if client is None:
        return 0
    by_partition: dict[str, list[Any]] = defaultdict(list)
    for entity in store.pending_events():
        by_partition[entity["PartitionKey"]].append(entity)
    sent = 0
    for partition, entities in by_partition.items():
        events = [
            CloudEvent(
                source=SOURCE,
                type=e["Type"],
                data=json.loads(e["Data"]),
                subject=subject_for(partition),
                id=f"{partition}/{e['RowKey']}",
                time=datetime.fromisoformat(e["Time"]),
            )
            for e in entities
        ]
        try:
            client.send(events)
        except AzureError as exc:  # stays pending: the next publish retries it
            log.warning("publishing %d events of %s failed: %s", len(events), partition, type(exc).__name__)
            continue
        for entity in entities:
            store.mark_published(entity)
        sent += len(events)
    return sent
