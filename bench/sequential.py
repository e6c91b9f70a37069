"""The sequential baseline: the same moves one at a time, as a script would do them.

Same estate (``bench/seed.py``), same ARM budgets (throttling on) and the same emulator latency as
the fan-out runs (``--latency``, default 80 ms reads / 300 ms writes), but ONE move at a time: start
it (``MoveService.start`` with ``autoCommit``), work its queue with one thread until it is at rest,
then the next, each call after the one before (``IDMOVE_STEP_WIDTH`` 1: a script's calls do not
overlap, where the fan-out's steps make their independent calls side by side). The moves make
exactly the calls the fan-out's moves make, so the difference is concurrency alone. Running all N moves this way would take minutes, so a sample of ``--sequential``
moves is timed and the total for N is estimated as N x the sample's mean (``estimatedSeconds``).

Example::

    result = run_sequential(settings, sample_identities, total=60)   # emulator configured by the caller
    result["estimatedSeconds"]
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench.instance import CountingPoller
from bench.seed import TARGET_REGION
from shared.service import MoveService
from shared.settings import Settings
from shared.statuses import Status

IN_FLIGHT = {Status.PENDING.value, Status.RUNNING.value}


def run_sequential(
    settings: Settings, identities: list[str], total: int, timeout: float = 300
) -> dict[str, Any]:
    """Time the moves of ``identities`` one after another; estimate ``total`` moves from their mean."""
    service = MoveService(settings.with_(step_width=1))
    poller = CountingPoller(  # its receives and deletes count as the instances' do
        settings.storage_connection_string,
        settings.queue_name,
        service.handle_message,
        stats=service.stats,
        workers=1,
        batch_size=1,
        poll_interval=0.02,
        retry_visibility=1,
        name="sequential",
    )
    seconds: list[float] = []
    statuses: dict[str, int] = {}
    with ThreadPoolExecutor(1) as pool:
        for identity_id in identities:
            began = time.monotonic()
            move_id = service.start(
                {
                    "sourceIdentityId": identity_id,
                    "targetRegion": TARGET_REGION,
                    "autoCommit": True,
                    "acknowledgeActionsRequired": True,
                }
            )["id"]
            deadline = began + timeout
            status = Status.PENDING.value
            while time.monotonic() < deadline:
                if not poller.poll_once(pool):
                    status = str(service.get(move_id)["status"])
                    if status not in IN_FLIGHT:
                        break
                    time.sleep(0.02)
            seconds.append(time.monotonic() - began)
            statuses[status] = statuses.get(status, 0) + 1
    mean = sum(seconds) / len(seconds) if seconds else 0.0
    return {
        "name": "sequential",
        "sampleMoves": len(seconds),
        "moveSeconds": [round(s, 2) for s in seconds],
        "meanMoveSeconds": round(mean, 2),
        "moves": total,
        "estimatedSeconds": round(mean * total, 1),
        "byStatus": statuses,
        "storageTransactions": service.stats.total,
    }
