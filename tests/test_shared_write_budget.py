"""Several instances share one ARM write budget per subscription (``shared/write_budget.py``).

Real Azurite (the budget record) and the emulator with ARM's throttling on. What is asserted is a
count, not a time: with the shared budget below ARM's (rate and burst), no write is refused however
many instances write at once.
"""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from azure.mgmt.resource.resources.models import ResourceGroup

from shared.azure_clients import AzureClients
from shared.storage import as_access
from shared.store import StoreStats
from shared.write_budget import SharedBudget, SharedWriteLimiter
from tests.plugins.emulator import configure
from tests.plugins.engine import make_settings

TIME_SCALE = 5  # ARM's writes bucket: 200 tokens, refilled at 10/s x 5


def test_four_instances_sharing_the_budget_draw_no_write_429s(
    storage_connection_string: str, emu: str
) -> None:
    settings = make_settings(storage_connection_string, emu)
    subscription = str(uuid.uuid4())
    table = as_access(settings.storage).table_service().get_table_client(f"{settings.table_prefix}budget")
    instances = []
    for _ in range(4):  # each with its own clients, limiter and storage counters, like 4 processes
        stats = StoreStats()
        budget = SharedBudget(table, stats, rate=9 * TIME_SCALE, burst=150)
        limiter = SharedWriteLimiter(budget, lease=5)
        instances.append((AzureClients(settings, write_limiter=limiter), limiter, stats))
    configure(httpx.Client(base_url=emu), throttling={"enabled": True, "timeScale": TIME_SCALE})
    before = len(httpx.get(f"{emu}/_emulator/requests", timeout=30).json())

    def write(job: tuple[int, int]) -> None:
        index, n = job
        clients = instances[index][0]
        clients.resources(subscription).resource_groups.create_or_update(
            f"rg-budget-{index}-{n}", ResourceGroup(location="westeurope")
        )

    jobs = [(i, n) for i in range(4) for n in range(100)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(write, jobs))

    log = httpx.get(f"{emu}/_emulator/requests", timeout=30).json()[before:]
    puts = [r for r in log if r["method"] == "PUT" and subscription in r["path"]]
    assert [r for r in puts if r["status"] == 429] == []  # 400 writes at once: none refused
    assert len(puts) == 400
    leases = sum(limiter.leases for _, limiter, _ in instances)
    assert 400 / 5 <= leases <= 400 / 5 + 4  # one lease per 5 writes (an instance may keep 4 unused)
    storage = sum(stats.total for _, _, stats in instances)
    assert storage <= 4 * leases, storage  # 2 per lease (read, ETag-guarded write), plus lost races


def test_the_setting_puts_the_shared_budget_into_the_service_clients(storage_connection_string: str) -> None:
    from shared.arm_pacing import WriteLimiter
    from shared.service import MoveService
    from shared.settings import Settings

    settings = make_settings(storage_connection_string)
    assert Settings.from_env({}).arm_shared_budget  # on by default: zero write 429s with any instances
    assert not Settings.from_env({"IDMOVE_ARM_SHARED_BUDGET": "false"}).arm_shared_budget
    assert (Settings.from_env({}).arm_shared_rate, Settings.from_env({}).arm_shared_burst) == (10.0, 200.0)
    assert isinstance(MoveService(settings).clients().write_limiter, SharedWriteLimiter)
    plain = MoveService(settings.with_(arm_shared_budget=False)).clients().write_limiter
    assert isinstance(plain, WriteLimiter) and not isinstance(plain, SharedWriteLimiter)


def test_a_lease_further_away_than_max_wait_is_kept_and_its_writes_go_back_to_the_queue(
    storage_connection_string: str,
) -> None:
    from shared.arm_pacing import WriteBudgetBusy, begin_unit
    from tests.test_engine_pacing import FakeTime

    settings = make_settings(storage_connection_string)
    table = as_access(settings.storage).table_service().get_table_client(f"{settings.table_prefix}budget")
    t = FakeTime()
    budget = SharedBudget(table, StoreStats(), rate=1, burst=2, wall=lambda: 1_000_000 + t.now)
    limiter = SharedWriteLimiter(budget, lease=2, clock=t.clock, sleep=t.sleep, max_wait=1.5)
    subscription = str(uuid.uuid4())

    def first_write() -> float:  # of a new step or item
        begin_unit()
        return limiter.acquire(subscription)

    assert [first_write(), first_write()] == [0, 0]  # the first lease
    with pytest.raises(WriteBudgetBusy) as busy:  # the second lease is 2 s away: taken, not waited for
        first_write()
    assert busy.value.retry_after == pytest.approx(2.0)
    with pytest.raises(WriteBudgetBusy):  # the same lease: no third one taken meanwhile
        first_write()
    assert limiter.leases == 2 and limiter.busy == 2
    t.now = 0.5
    assert first_write() == pytest.approx(1.5)  # within max_wait: slept (the fake clock moves on)
    assert first_write() == 0  # the lease's second token, ready now
    assert limiter.leases == 2 and limiter.acquired == 4
