"""The work queue protocol: small JSON hints, base64-encoded like the Functions host expects.

The Functions host's queue trigger decodes base64 by default (host.json
``extensions.queues.messageEncoding`` = ``base64``), so messages are sent with azure-storage-queue's
``TextBase64EncodePolicy`` and ``idmove/queue_poller.py`` decodes with ``TextBase64DecodePolicy``.

A message names a move and a step; the state in Table Storage decides what happens, so a duplicate
or stale message is harmless::

    {"moveId": "<id>", "phase": "grant", "batch": ["item|grant|role-..."], "attempt": 0}

``batch`` is absent for the phase's own step (run it, or fan its items out).

``send`` returns the sent message's handle (``"{id}:{pop receipt}"``, what Put Message answers);
``wake(handle)`` makes that message visible now if it is still waiting out its delay (Update Message,
visibility 0: the same body, so the same token and attempt). A message already delivered (its pop
receipt changed: 400 ``PopReceiptMismatch``) or deleted (404 ``MessageNotFound``) is not woken:
``False``. Azure and Azurite answer both cases alike. E.g. fleet discovery wakes a step waiting for
its run through the step's own delayed retry, so the step never has a second message.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.storage.queue import QueueClient

from shared.storage import StorageAccess, as_access
from shared.store import StoreStats


@dataclass(frozen=True)
class WorkMessage:
    move_id: str
    phase: str
    batch: tuple[str, ...] = field(default=())
    attempt: int = 0
    # The move record version this message was sent for. A command or a phase transition sends the
    # next step's message before it saves the record (never a saved state without its message); a
    # worker that receives it before the save lands sees an older version and waits, see
    # ``Engine.handle``. 0 = no expectation.
    after: int = 0
    waits: int = 0
    # Who this message is: a fresh id per message sent (kept by its own waits and redeliveries). A
    # phase's step is claimed by one token (``Engine._claim``): a second message for the same
    # attempt, e.g. two batches completing the previous phase at the same instant, is a duplicate.
    token: str = field(default_factory=lambda: uuid.uuid4().hex[:16])
    # The phase entry's epoch the message was sent for: a command that runs a phase afresh (retry,
    # discard, commit) or cleanup's way back to grant bumps it, so messages of an earlier round
    # (a delayed retry, a stalled-move resend) are acknowledged instead of running the step again.
    epoch: int = 0

    def to_json(self) -> str:
        body: dict[str, Any] = {"moveId": self.move_id, "phase": self.phase, "attempt": self.attempt}
        if self.batch:
            body["batch"] = list(self.batch)
        if self.after:
            body["after"] = self.after
        if self.waits:
            body["waits"] = self.waits
        body["token"] = self.token
        if self.epoch:
            body["epoch"] = self.epoch
        return json.dumps(body, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> WorkMessage:
        body = json.loads(text)
        return cls(
            move_id=str(body["moveId"]),
            phase=str(body["phase"]),
            batch=tuple(str(k) for k in body.get("batch") or ()),
            attempt=int(body.get("attempt", 0)),
            after=int(body.get("after", 0)),
            waits=int(body.get("waits", 0)),
            # a message from before tokens: a stable one from its body, so its own redelivery runs
            token=str(body.get("token") or uuid.uuid5(uuid.NAMESPACE_URL, text).hex[:16]),
            epoch=int(body.get("epoch", 0)),
        )


def queue_client(connection: str | StorageAccess, queue_name: str) -> QueueClient:
    return as_access(connection).queue_client(queue_name)


class WorkQueue:
    def __init__(self, connection: str | StorageAccess, queue_name: str, stats: StoreStats) -> None:
        self.client = queue_client(connection, queue_name)
        self.stats = stats
        self._created = False

    def ensure(self) -> None:
        if not self._created:
            self.stats.add("queue.create")
            with contextlib.suppress(ResourceExistsError):
                self.client.create_queue()
            self._created = True

    def send(self, message: WorkMessage, delay_seconds: float = 0) -> str:
        """Send ``message``, visible after ``delay_seconds``; its handle (for ``wake``)."""
        return self.send_text(message.to_json(), delay_seconds)

    def send_text(self, text: str, delay_seconds: float = 0) -> str:
        """Any JSON body on the work queue (e.g. a region decommission's steps, ``shared/decommission.py``)."""
        self.ensure()
        self.stats.add("queue.send")
        sent = self.client.send_message(text, visibility_timeout=max(0, round(delay_seconds)) or None)
        return f"{sent.id}:{sent.pop_receipt}"

    def wake(self, handle: str) -> bool:
        """Make the message ``send`` returned ``handle`` for visible now; False when it is no longer
        waiting in the queue (delivered, or deleted), which is never an error."""
        message_id, _, pop_receipt = handle.partition(":")
        self.stats.add("queue.update")
        try:
            self.client.update_message(message_id, pop_receipt, visibility_timeout=0)
        except ResourceNotFoundError:  # 404 MessageNotFound: deleted (done with)
            return False
        except HttpResponseError as exc:  # 400 PopReceiptMismatch: delivered, maybe running now
            if exc.status_code == 400 and getattr(exc, "error_code", None) == "PopReceiptMismatch":
                return False
            raise
        return True
