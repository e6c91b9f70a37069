"""The local host's queue poller keeps a running message's lease, like the Functions host: a step
that runs longer than the visibility timeout is not handed to another instance meanwhile."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

from idmove.queue_poller import QueuePoller
from shared.work_queue import queue_client


def test_a_long_step_is_not_delivered_to_a_second_instance_while_it_runs(
    storage_connection_string: str,
) -> None:
    name = "lease-" + uuid.uuid4().hex[:10]
    calls: list[tuple[str, int]] = []
    lock = threading.Lock()

    def slow(body: str, dequeue_count: int) -> None:
        with lock:
            calls.append((body, dequeue_count))
        time.sleep(3.5)  # longer than the 2 s visibility timeout below

    instances = [
        QueuePoller(storage_connection_string, name, slow, visibility_timeout=2, poll_interval=0.1)
        for _ in range(2)
    ]
    queue_client(storage_connection_string, name).send_message("step")
    threads = [
        threading.Thread(target=p.run_until_idle, kwargs={"timeout": 30, "idle_for": 2.5}) for p in instances
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert calls == [("step", 1)]
    assert sum(p.handled for p in instances) == 1 and sum(p.failures for p in instances) == 0


POLLER_THAT_HANGS = """
import sys, threading
from idmove.queue_poller import start_poller
def hang(message):
    print("handling", message.dequeue_count, flush=True)
    threading.Event().wait()
start_poller(sys.argv[1], sys.argv[2], hang, settings={"visibilityTimeout": "00:00:02"})
threading.Event().wait()
"""


def test_a_message_of_a_killed_host_comes_back_after_host_json_visibility_timeout(
    storage_connection_string: str,
) -> None:
    """``start_poller`` (``idmove host``) leases a running message for host.json's visibilityTimeout
    (renewed while it runs), not for at least 30 s: a host killed mid-step loses it for 2 s here."""
    name = "killed-" + uuid.uuid4().hex[:10]
    queue = queue_client(storage_connection_string, name)
    queue.create_queue()
    queue.send_message("step")
    proc = subprocess.Popen(
        [sys.executable, "-c", POLLER_THAT_HANGS, storage_connection_string, name],
        stdout=subprocess.PIPE,
        cwd=Path(__file__).resolve().parent.parent,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().split() == [b"handling", b"1"]
        # while the handler runs the lease is renewed: the message stays invisible past 2 s
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            assert next(queue.receive_messages(visibility_timeout=1), None) is None
            time.sleep(0.2)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    killed = time.monotonic()
    while (message := next(queue.receive_messages(visibility_timeout=30), None)) is None:
        assert time.monotonic() - killed < 15, "the message did not come back within 15 s (was: 30 s)"
        time.sleep(0.1)
    assert message.dequeue_count == 2


def test_a_lost_lease_is_given_up_quietly_not_crashed_on(storage_connection_string: str) -> None:
    """Another consumer received the message meanwhile (a renewal came too late on a loaded machine:
    its pop receipt changed). Renewing and deleting answer PopReceiptMismatch; the poller leaves the
    message to its new owner instead of letting the error kill the lease thread or the handler's pool."""
    name = "lease-lost-" + uuid.uuid4().hex[:10]
    other = queue_client(storage_connection_string, name)
    handled: list[str] = []

    def taken_over(body: str, dequeue_count: int) -> None:
        # the message reappears and a second consumer takes it: its pop receipt is no longer ours
        mine = messages[0]
        other.update_message(mine.id, pop_receipt=mine.pop_receipt, visibility_timeout=0)
        assert len(list(other.receive_messages(visibility_timeout=30, max_messages=1))) == 1
        time.sleep(1.5)  # past the lease's half-time renewal
        handled.append(body)

    poller = QueuePoller(storage_connection_string, name, taken_over, visibility_timeout=2, poll_interval=0.1)
    other.send_message("step")
    messages = list(poller.queue.receive_messages(visibility_timeout=2, max_messages=1))
    assert len(messages) == 1
    poller._process(messages[0])
    assert handled == ["step"]
    assert poller.handled == 1 and poller.failures == 0
    assert other.peek_messages() == []  # invisible: the other consumer holds it, not deleted
    assert other.get_queue_properties().approximate_message_count == 1


def test_host_json_new_batch_threshold_sets_when_the_host_fetches_again(
    storage_connection_string: str,
) -> None:
    """host.json's ``newBatchThreshold`` (8, capped below the poller's 8 threads): a thread freed by
    one message that ends takes the next message while 7 still run (the default, half the threads,
    would wait until only 4 run, and a fleet's long moves held a quarter of the threads idle)."""
    from idmove.queue_poller import start_poller

    name = "threshold-" + uuid.uuid4().hex[:10]
    sender = queue_client(storage_connection_string, name)
    sender.create_queue()
    for n in range(10):
        sender.send_message(f"m{n}")
    release = {f"m{n}": threading.Event() for n in range(10)}
    started: list[str] = []

    def hold(message: object) -> None:
        body = message.get_body().decode()  # type: ignore[attr-defined]
        started.append(body)
        assert release[body].wait(30)

    settings = {"batchSize": 16, "newBatchThreshold": 8, "maxPollingInterval": "00:00:00.2"}
    poller = start_poller(storage_connection_string, name, hold, settings=settings)
    try:
        deadline = time.monotonic() + 10
        while len(started) < 8 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(started) == 8 and poller.new_batch_threshold == 7
        release[started[0]].set()
        deadline = time.monotonic() + 10
        while len(started) < 9 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(started) == 9, "a freed thread took no message while 7 ran"
    finally:
        for event in release.values():
            event.set()
        poller.stop()
