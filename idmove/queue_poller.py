"""A Storage Queue poller with the Functions host's queue-trigger semantics, for tests and ``idmove host``.

``handler(body, dequeue_count)``: returns -> the message is deleted; raises -> the message stays and
becomes visible again after a short backoff (the real host uses ``visibilityTimeout``); a message
dequeued more than ``max_dequeue_count`` times is moved to ``<queue>-poison`` and deleted.
Messages are base64 text (``TextBase64EncodePolicy``/``DecodePolicy``), as the real host expects
by default (host.json ``extensions.queues.messageEncoding`` = ``base64``) and as ``shared.work_queue``
sends them.

Example::

    poller = QueuePoller(conn, "idmove-work", service.handle_message)
    poller.run_until_idle(timeout=60)   # in tests: until the queue stays empty
    poller.start(); ...; poller.stop()  # in the local host: background threads

``start_poller(conn, queue, handler, settings=host_json_queues, name=...)`` adapts a Functions-style
``handler(func.QueueMessage)`` and host.json's queue settings (used by ``idmove/host.py``).
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError
from azure.storage.queue import QueueClient, QueueMessage

from shared.work_queue import queue_client

log = logging.getLogger(__name__)
MIN_POLL_INTERVAL = 0.2  # the Functions host waits about this long after its first empty fetch
Handler = Callable[[str, int], None]


class _Lease:
    """Keeps a message invisible while its handler runs, as the Functions host does: the visibility
    timeout is renewed at half-time, so a long step is never handed to a second worker meanwhile.
    The message's pop receipt is updated in place, so the final delete or update still matches."""

    def __init__(self, queue: QueueClient, message: QueueMessage, visibility_timeout: int) -> None:
        self.queue, self.message, self.timeout = queue, message, visibility_timeout
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._renew, name=f"lease-{message.id}", daemon=True)

    def _renew(self) -> None:
        while not self._done.wait(self.timeout / 2):
            try:
                renewed = self.queue.update_message(self.message, visibility_timeout=self.timeout)
            except ResourceNotFoundError:
                return
            except HttpResponseError as exc:  # e.g. PopReceiptMismatch: a renewal came too late and
                # another worker received the message; the step's claim keeps the two apart
                log.warning(
                    "lease on message %s lost (%s): another worker has it", self.message.id, exc.reason
                )
                return
            self.message.pop_receipt = renewed.pop_receipt
            self.message.next_visible_on = renewed.next_visible_on

    def __enter__(self) -> _Lease:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()


class QueuePoller:
    def __init__(
        self,
        connection_string: str,
        queue_name: str,
        handler: Handler,
        *,
        max_dequeue_count: int = 5,
        visibility_timeout: int = 30,
        retry_visibility: int = 1,
        batch_size: int = 16,
        poll_interval: float = 0.2,
        min_poll_interval: float = MIN_POLL_INTERVAL,
        workers: int = 8,
        new_batch_threshold: int | None = None,
        name: str = "",
    ) -> None:
        self.queue: QueueClient = queue_client(connection_string, queue_name)
        self.poison: QueueClient = queue_client(connection_string, f"{queue_name}-poison")
        self.handler = handler
        self.max_dequeue_count = max_dequeue_count
        self.visibility_timeout = visibility_timeout
        self.retry_visibility = retry_visibility
        self.batch_size = min(32, batch_size)
        # after an empty fetch the host waits ``min_poll_interval``, twice as long after each further
        # empty one, up to ``poll_interval`` (host.json ``maxPollingInterval``)
        self.poll_interval = poll_interval
        self.min_poll_interval = min(min_poll_interval, poll_interval)
        self.workers = max(1, workers)
        # the host fetches again once this few of its messages are still running (host.json
        # ``newBatchThreshold``; the Functions host's default is half a batch)
        threshold = self.workers // 2 if new_batch_threshold is None else new_batch_threshold
        self.new_batch_threshold = max(0, min(self.workers - 1, threshold))
        self.name = name or queue_name
        self.handled = 0
        self.running = 0  # messages being handled now (the host's loop)
        self.failures = 0
        self.poisoned = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        for client in (self.queue, self.poison):
            with contextlib.suppress(ResourceExistsError):
                client.create_queue()

    # ---- one message ---------------------------------------------------------------------
    def _process(self, message: QueueMessage) -> None:
        count = int(message.dequeue_count or 1)
        if count > self.max_dequeue_count:
            self.poison.send_message(message.content)
            self._delete(message)
            self.poisoned += 1
            log.warning("%s: message %s moved to poison after %d dequeues", self.name, message.id, count - 1)
            return
        try:
            with _Lease(self.queue, message, self.visibility_timeout):
                self.handler(str(message.content), count)
        except Exception:
            self.failures += 1
            log.exception("%s: handler failed (dequeue %d); message will reappear", self.name, count)
            with contextlib.suppress(ResourceNotFoundError, HttpResponseError):  # lease lost: theirs now
                self.queue.update_message(message, visibility_timeout=self.retry_visibility)
            return
        self.handled += 1
        self._delete(message)

    def _delete(self, message: QueueMessage) -> None:
        try:
            self.queue.delete_message(message)
        except ResourceNotFoundError:
            pass
        except HttpResponseError as exc:  # PopReceiptMismatch: the lease was lost, another worker has it
            log.warning(
                "%s: message %s not deleted (%s): another worker has it", self.name, message.id, exc.reason
            )

    def poll_once(self, pool: ThreadPoolExecutor | None = None) -> int:
        """One batch, handled to its end (tests step the queue this way; the host runs ``_loop``)."""
        messages = self._receive(self.batch_size)
        if pool is None:
            for message in messages:
                self._process(message)
        else:
            list(pool.map(self._process, messages))
        return len(messages)

    # ---- tests: run until nothing is left -------------------------------------------------
    def run_until_idle(self, timeout: float = 60, idle_for: float = 1.5) -> None:
        """Process messages until the queue has been empty for ``idle_for`` seconds (delayed ones included)."""
        deadline = time.monotonic() + timeout
        idle_since: float | None = None
        with ThreadPoolExecutor(self.workers) as pool:
            while time.monotonic() < deadline:
                if self.poll_once(pool):
                    idle_since = None
                    continue
                if self._queue_empty():
                    idle_since = idle_since or time.monotonic()
                    if time.monotonic() - idle_since >= idle_for:
                        return
                time.sleep(self.poll_interval)
        raise TimeoutError(f"{self.name}: queue not idle after {timeout}s")

    def _queue_empty(self) -> bool:
        return int(self.queue.get_queue_properties().approximate_message_count or 0) == 0

    # ---- host: background threads ---------------------------------------------------------
    def start(self) -> QueuePoller:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name=f"poller-{self.name}", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        """The host's intake, as the Functions host's: a batch is fetched whenever no more than
        ``new_batch_threshold`` messages are still running, never waiting for a whole batch to end.
        A batch waiting on its slowest message (a step sleeping for its subscription's write budget,
        a fleet discovery run) held back every other message behind it: in the 300-identity bench,
        fleet discovery runs whose gathering had ended started 40-60 s late. Each fetch asks for no
        more messages than there are free threads, so a received message starts at once, under its
        lease, never waiting invisible in the pool's queue."""
        changed = threading.Condition()

        def finished(future: Any) -> None:
            with changed:
                self.running -= 1
                changed.notify()
            if future.exception() is not None:  # _process's own failures (its delete, the poison send)
                log.error("%s: handling a message failed", self.name, exc_info=future.exception())

        idle = self.min_poll_interval
        with ThreadPoolExecutor(self.workers) as pool:
            while not self._stop.is_set():
                with changed:
                    while self.running > self.new_batch_threshold and not self._stop.is_set():
                        changed.wait(0.5)
                    free = self.workers - self.running
                if self._stop.is_set():
                    break
                try:
                    messages = self._receive(min(self.batch_size, free))
                except Exception:
                    log.exception("%s: polling failed", self.name)
                    messages = []
                with changed:
                    self.running += len(messages)
                for message in messages:
                    pool.submit(self._process, message).add_done_callback(finished)
                if messages:
                    idle = self.min_poll_interval
                else:
                    # the Functions host's randomized exponential back-off: ~0.2 s after an empty fetch,
                    # doubling to maxPollingInterval; a fetch that finds work starts over. A fixed 1 s
                    # made each hop of a fleet's start (event, subscriptions, page, starts, moves)
                    # wait up to a second, where Azure's host polls again within ~0.2 s while busy
                    self._stop.wait(min(self.poll_interval, idle * random.uniform(0.8, 1.2)))
                    idle = min(self.poll_interval, idle * 2)

    def _receive(self, n: int) -> list[QueueMessage]:
        pages = self.queue.receive_messages(
            messages_per_page=max(1, n), visibility_timeout=self.visibility_timeout
        ).by_page()
        return list(next(pages, []))  # at most n: messages_per_page

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None


def _seconds(value: Any, default: float) -> float:
    """host.json durations ``"00:00:05"`` -> 5.0."""
    if value is None:
        return default
    if isinstance(value, int | float):
        return float(value)
    hours, minutes, seconds = (float(p) for p in str(value).split(":"))
    return timedelta(hours=hours, minutes=minutes, seconds=seconds).total_seconds()


def _threshold(value: Any) -> int | None:
    """host.json ``newBatchThreshold`` (None: ``QueuePoller``'s default, half its threads)."""
    return None if value is None else int(value)


def start_poller(
    connection_string: str,
    queue_name: str,
    handler: Callable[[Any], None],
    *,
    settings: dict[str, Any] | None = None,
    name: str = "",
) -> QueuePoller:
    """Start a background poller that hands ``azure.functions.QueueMessage`` objects to ``handler``."""
    import uuid

    from azure.functions.queue import QueueMessage as FunctionsQueueMessage

    settings = settings or {}

    def adapt(body: str, dequeue_count: int) -> None:
        message = FunctionsQueueMessage(id=str(uuid.uuid4()), body=body.encode(), dequeue_count=dequeue_count)  # type: ignore[no-untyped-call]
        handler(message)

    # host.json's visibilityTimeout is the Functions host's retry interval after a failed invocation.
    # Locally it is also the lease of a running message (renewed at half-time by ``_Lease``), so a
    # message whose host was killed comes back after that long, not after a fixed 30 s.
    visibility = max(1, round(_seconds(settings.get("visibilityTimeout"), 1)))
    poller = QueuePoller(
        connection_string,
        queue_name,
        adapt,
        max_dequeue_count=int(settings.get("maxDequeueCount", 5)),
        visibility_timeout=visibility,
        retry_visibility=visibility,
        batch_size=int(settings.get("batchSize", 16)),
        new_batch_threshold=_threshold(settings.get("newBatchThreshold")),
        poll_interval=_seconds(settings.get("maxPollingInterval"), 60.0),
        name=name,
    )
    return poller.start()
