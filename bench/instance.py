"""One worker "instance": a process like one Functions host, polling the shared work queue.

Each instance owns what a scaled-out Function App instance owns: its ``MoveService``, its Azure
clients and so its own ``WriteLimiter`` (pacing is per process), and a ``QueuePoller`` with the
host.json queue settings. It counts what the emulator cannot see from its side:

* ``retries``: every azure-core retry (by status) and the ``Retry-After`` seconds it slept for 429s;
* ``engine``: the engine's own retries (a ``TransientError`` re-sent as a delayed message), stale
  messages and lost races, read from the engine's log records;
* ``storage``: ``StoreStats`` (every table/queue call the engine makes) plus the poller's receives,
  deletes and visibility updates, which ``StoreStats`` does not see;
* ``pacing``: seconds the instance's ``WriteLimiter`` made writes wait.

Example (the benchmark starts W of these with ``multiprocessing``)::

    serve(InstanceSpec(settings, index=0), ready, stop, results)
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from azure.core.pipeline import PipelineResponse
from azure.core.pipeline.policies import RetryPolicy

from idmove.queue_poller import QueuePoller
from shared.arm_pacing import WriteLimiter
from shared.azure_clients import AzureClients
from shared.service import MoveService
from shared.settings import Settings
from shared.store import StoreStats
from shared.write_budget import shared_write_limiter

ENGINE_LOGGER = "shared.engine"


class Observed:
    """Thread-safe counters an instance sends back when it stops."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.retry_after_seconds = 0.0

    def add(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.counts[key] += n

    def slept(self, seconds: float) -> None:
        with self._lock:
            self.retry_after_seconds += seconds


def _kind(method: str, url: str) -> str:
    low = url.lower()
    if "/graph/" in low or "graph.microsoft" in low:
        return "graph"
    if "/providers/microsoft.resourcegraph/" in low:
        return "resourceGraph"
    return {"GET": "reads", "HEAD": "reads", "DELETE": "deletes"}.get(method.upper(), "writes")


class ObservedRetryPolicy(RetryPolicy[Any, Any]):
    """azure-core's RetryPolicy, unchanged in behaviour, counting retries and honoured Retry-After."""

    def __init__(self, base: RetryPolicy[Any, Any], observed: Observed) -> None:
        self.__dict__.update(base.__dict__)  # the product's retry settings, whatever they are
        self.observed = observed

    def increment(self, settings: dict[str, Any], response: Any = None, error: Any = None) -> bool:
        if isinstance(response, PipelineResponse):
            http = response.http_request
            status = response.http_response.status_code
            self.observed.add(f"http.{status}.{_kind(http.method, http.url)}")
        elif error is not None:
            self.observed.add(f"error.{type(error).__name__}")
        return bool(super().increment(settings, response=response, error=error))

    def sleep(self, settings: dict[str, Any], transport: Any, response: Any = None) -> None:
        if response is not None and response.http_response.status_code == 429:
            retry_after = self.get_retry_after(response)
            if retry_after:
                self.observed.slept(float(retry_after))
        super().sleep(settings, transport, response)


class BenchClients(AzureClients):
    """The product's ``AzureClients`` with its retry policy observed (nothing else changes)."""

    def __init__(self, settings: Settings, observed: Observed, write_limiter: WriteLimiter) -> None:
        super().__init__(settings, write_limiter=write_limiter)
        self.observed = observed

    def _retry(self) -> RetryPolicy[Any, Any]:
        return ObservedRetryPolicy(super()._retry(), self.observed)


class CountingPoller(QueuePoller):
    """``QueuePoller`` that also counts its own queue calls into ``stats`` (``poller.*``)."""

    def __init__(self, *args: Any, stats: StoreStats, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stats = stats

    def _receive(self, n: int) -> list[Any]:
        self.stats.add("poller.receive")
        return super()._receive(n)

    def _delete(self, message: Any) -> None:
        self.stats.add("poller.delete")
        super()._delete(message)


class EngineLog(logging.Handler):
    """Counts the engine's log records that mark retries, stale messages and lost races."""

    def __init__(self, observed: Observed) -> None:
        super().__init__(logging.INFO)
        self.observed = observed

    def emit(self, record: logging.LogRecord) -> None:
        msg, args = str(record.msg), record.args if isinstance(record.args, tuple) else ()
        if "transient" in msg and "item" in msg and len(args) >= 4:
            self.observed.add(f"engine.retry.item.{args[1]}.{args[3]}")
        elif "transient" in msg and len(args) >= 3:
            self.observed.add(f"engine.retry.step.{args[1]}.{args[2]}")
        elif msg.startswith("stale message"):
            self.observed.add("engine.stale")
        elif "changed meanwhile" in msg:
            self.observed.add("engine.conflict")
        elif "never arrived" in msg:
            self.observed.add("engine.dropped")


@dataclass(frozen=True)
class InstanceSpec:
    settings: Settings
    index: int
    threads: int = 8  # QueuePoller's worker threads (the host runs a batch in parallel)
    poller: dict[str, Any] = field(default_factory=dict)
    log_file: str = ""


def poller_options() -> dict[str, Any]:
    """host.json's queue settings as ``idmove host`` applies them (``idmove/queue_poller.start_poller``)."""
    return {
        "max_dequeue_count": 5,
        "visibility_timeout": 30,
        "retry_visibility": 5,
        "batch_size": 16,
        "new_batch_threshold": 8,  # host.json: a new batch once no more than 8 run (capped below the threads)
        "poll_interval": 2.0,  # host.json maxPollingInterval: the most an idle instance waits
    }


def serve(spec: InstanceSpec, ready: Any, stop: Any, results: Any) -> None:
    """Process entry point: poll until ``stop`` is set, then put this instance's counters on ``results``."""
    if spec.log_file:  # the engine's INFO lines (retries, lost races) and every warning/error
        logging.basicConfig(
            filename=spec.log_file, level=logging.WARNING, format="%(asctime)s %(name)s %(message)s"
        )
    observed = Observed()
    engine_log = logging.getLogger(ENGINE_LOGGER)
    engine_log.setLevel(logging.INFO)
    engine_log.addHandler(EngineLog(observed))
    logging.getLogger("shared.fleet_discovery").setLevel(logging.INFO)  # generations: opened, run, woken
    logging.getLogger("shared.decommission").setLevel(logging.INFO)  # each starts step: when, how long
    settings = spec.settings
    stats = StoreStats()
    limiter = (  # IDMOVE_ARM_SHARED_BUDGET: one budget per subscription for all instances
        shared_write_limiter(settings, stats)
        if settings.arm_shared_budget
        else WriteLimiter(settings.arm_writes_per_second, settings.arm_writes_burst)
    )
    service = MoveService(settings, clients=BenchClients(settings, observed, limiter), stats=stats)
    poller = CountingPoller(
        settings.storage_connection_string,
        settings.queue_name,
        service.handle_message,
        stats=service.stats,
        workers=spec.threads,
        name=f"instance-{spec.index}",
        **(spec.poller or poller_options()),
    )
    # the Functions host's move_poison trigger: a step that failed 5 deliveries fails its move
    poison = QueuePoller(
        settings.storage_connection_string,
        settings.poison_queue_name,
        lambda body, count: service.handle_poison(body),
        workers=1,
        poll_interval=1.0,
        name=f"instance-{spec.index}-poison",
    )
    service.store.ensure_tables()
    poller.start()
    poison.start()
    ready.put(spec.index)
    running: list[int] = []  # handlers busy, sampled each second: are the threads what binds?
    while not stop.wait(1.0):
        running.append(poller.running)
    poller.stop()
    poison.stop()
    results.put(
        {
            "index": spec.index,
            "storage": dict(service.stats.counts),
            "observed": dict(observed.counts),
            "retryAfterSeconds": round(observed.retry_after_seconds, 3),
            "pacing": {
                "acquired": limiter.acquired,
                "waitedSeconds": round(limiter.waited, 3),
                "givenBack": limiter.busy,
            },
            "poller": {
                "handled": poller.handled,
                "failures": poller.failures,
                "poisoned": poller.poisoned,
                "running": running,
                "threads": poller.workers,
            },
        }
    )
