"""The local host's queue poller keeps a running message's lease, like the Functions host: a step
that runs longer than the visibility timeout is not handed to another instance meanwhile."""

from __future__ import annotations

import threading
import time
import uuid

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
