"""Several instances share one ARM write budget per subscription (``shared/write_budget.py``).

Real Azurite (the budget record) and the emulator with ARM's throttling on. What is asserted is a
count, not a time: with the shared budget below ARM's (rate and burst), no write is refused however
many instances write at once.
"""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from azure.mgmt.resource.resources.models import ResourceGroup

from shared.azure_clients import AzureClients
from shared.storage import as_access
from shared.store import StoreStats
from shared.write_budget import SharedBudget, SharedWriteLimiter, headroom
from tests.plugins.emulator import configure
from tests.plugins.engine import make_settings

TIME_SCALE = 5  # ARM's writes bucket: 200 tokens, refilled at 10/s x 5


def _budget_table(settings: Any) -> Any:
    return as_access(settings.storage).table_service().get_table_client(f"{settings.table_prefix}budget")


def _on_fake_time(
    storage_connection_string: str, rate: float, burst: float, lease: int, max_wait: float
) -> tuple[Any, StoreStats, SharedWriteLimiter, Any]:
    """A limiter of one process whose clock and sleep are a ``FakeTime``'s (returned: set its ``now``)."""
    from tests.test_engine_pacing import FakeTime

    table = _budget_table(make_settings(storage_connection_string))
    t = FakeTime()
    stats = StoreStats()
    budget = SharedBudget(table, stats, rate=rate, burst=burst, wall=lambda: 1_000_000 + t.now)
    limiter = SharedWriteLimiter(budget, lease=lease, clock=t.clock, sleep=t.sleep, max_wait=max_wait)
    return table, stats, limiter, t


def _write_from(
    emu: str, clients: list[AzureClients], subscription: str, jobs: list[tuple[int, int]]
) -> list[Any]:
    """Each job (instance, n) creates a resource group through that instance's clients, 16 at once;
    the emulator's log of the subscription's PUTs."""
    configure(httpx.Client(base_url=emu), throttling={"enabled": True, "timeScale": TIME_SCALE})
    before = len(httpx.get(f"{emu}/_emulator/requests", timeout=30).json())

    def write(job: tuple[int, int]) -> None:
        index, n = job
        clients[index].resources(subscription).resource_groups.create_or_update(
            f"rg-budget-{index}-{n}", ResourceGroup(location="westeurope")
        )

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(write, jobs))
    log = httpx.get(f"{emu}/_emulator/requests", timeout=30).json()[before:]
    return [r for r in log if r["method"] == "PUT" and subscription in r["path"]]


def test_four_instances_sharing_the_budget_draw_no_write_429s(
    storage_connection_string: str, emu: str
) -> None:
    settings = make_settings(storage_connection_string, emu)
    subscription = str(uuid.uuid4())
    table = _budget_table(settings)
    instances = []
    for _ in range(4):  # each with its own clients, limiter and storage counters, like 4 processes
        stats = StoreStats()
        budget = SharedBudget(table, stats, rate=9 * TIME_SCALE, burst=150)
        limiter = SharedWriteLimiter(budget, lease=5)
        instances.append((AzureClients(settings, write_limiter=limiter), limiter, stats))
    jobs = [(i, n) for i in range(4) for n in range(100)]
    puts = _write_from(emu, [clients for clients, _, _ in instances], subscription, jobs)
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


def test_a_lease_further_away_than_max_wait_is_not_taken_and_its_writes_go_back_to_the_queue(
    storage_connection_string: str,
) -> None:
    from shared.arm_pacing import WriteBudgetBusy, begin_unit

    table, stats, limiter, t = _on_fake_time(
        storage_connection_string, rate=1, burst=2, lease=2, max_wait=0.9
    )
    subscription = str(uuid.uuid4())
    key = f"{subscription}|writes"

    def first_write() -> float:  # of a new step or item
        begin_unit()
        return limiter.acquire(subscription)

    assert [first_write(), first_write()] == [0, 0]  # the first lease
    writes = stats.counts["table.update"] + stats.counts["table.create"]
    for _ in range(2):  # the next token is 1 s away: nothing taken, not waited for
        with pytest.raises(WriteBudgetBusy) as busy:
            first_write()
        # back when the step's first token is there (not the lease's last, 2 s away)
        assert busy.value.retry_after == pytest.approx(1.0)
    assert limiter.leases == 1 and limiter.busy == 2
    assert stats.counts["table.update"] + stats.counts["table.create"] == writes
    assert table.get_entity("budget", key)["Tokens"] == pytest.approx(0)  # nothing reserved for them
    t.now = 1.1
    begin_unit()
    # a lease of 2 (both tokens within max_wait): its first token is there now, the second 0.9 s
    # later as the record refills, slept by the same step's next write (the fake clock moves on).
    # (Until 2026-12-02 both waited for the last: 0.9 s, then 0.)
    assert limiter.acquire(subscription) == 0
    assert limiter.acquire(subscription) == pytest.approx(0.9)
    assert limiter.leases == 2 and limiter.acquired == 4
    assert table.get_entity("budget", key)["Tokens"] == pytest.approx(-0.9)


def test_a_first_write_reserves_only_the_tokens_there_within_max_wait(storage_connection_string: str) -> None:
    """A step's first write within reach of its token takes a lease of the tokens there within
    ``max_wait``, not a full one: the rest would be held past it by this process, for steps that
    may go back to the queue rather than wait for them. A later write of the step waits for its
    token, whatever the wait (the step has written)."""
    from shared.arm_pacing import begin_unit

    table, _, limiter, _ = _on_fake_time(storage_connection_string, rate=1, burst=10, lease=10, max_wait=3)
    subscription = str(uuid.uuid4())
    key = f"{subscription}|writes"
    for _ in range(10):  # the burst, one full lease
        limiter.acquire(subscription)
    begin_unit()
    assert limiter.acquire(subscription) == pytest.approx(1.0)  # the record is empty: 1 s away
    assert limiter.leases == 2
    assert table.get_entity("budget", key)["Tokens"] == pytest.approx(-3)  # 3 reserved, of 10
    assert [limiter.acquire(subscription) for _ in range(3)] == pytest.approx([1.0, 1.0, 1.0])
    assert limiter.leases == 3  # the fourth write: a new, full lease (no ``within``: the step wrote)
    assert table.get_entity("budget", key)["Tokens"] == pytest.approx(-10)


def test_a_later_write_of_a_step_waits_for_a_far_lease_rather_than_leave_its_step_half_done(
    storage_connection_string: str,
) -> None:
    from shared.arm_pacing import begin_unit

    _, _, limiter, _ = _on_fake_time(storage_connection_string, rate=0.5, burst=1, lease=1, max_wait=1.5)
    subscription = str(uuid.uuid4())
    begin_unit()
    assert limiter.acquire(subscription) == 0
    # the step has written: it waits 2 s, past max_wait, rather than go back with a write done
    assert limiter.acquire(subscription) == pytest.approx(2.0)
    assert limiter.acquire(subscription) == pytest.approx(2.0)
    assert limiter.busy == 0 and limiter.leases == 3


def test_writing_at_arms_rate_drops_no_lease(storage_connection_string: str, emu: str) -> None:
    """The shared budget is ARM's own (the default, less its ``headroom``), so ARM's remaining count is low while the
    instances write at its rate. That is no sign of another writer: no lease is dropped, each lease's
    tokens are all written, and ARM refuses nothing. (Each low count dropped the lease of the
    instance that saw it, until 2026-12-02: a lease of 5 bought 1-2 writes once ARM's bucket was
    low, and ARM's budget went unspent.)"""
    settings = make_settings(storage_connection_string, emu)
    subscription = str(uuid.uuid4())
    table = _budget_table(settings)
    instances = []
    for _ in range(4):
        budget = SharedBudget(
            table, StoreStats(), rate=10 * TIME_SCALE, burst=200, headroom=headroom(10 * TIME_SCALE)
        )
        limiter = SharedWriteLimiter(budget, lease=5)
        instances.append((AzureClients(settings, write_limiter=limiter), limiter))
    jobs = [(i, n) for n in range(120) for i in range(4)]  # 480: ARM's bucket of 200 runs low
    puts = _write_from(emu, [clients for clients, _ in instances], subscription, jobs)
    assert [r for r in puts if r["status"] >= 300] == [] and len(puts) == 480
    leases = sum(limiter.leases for _, limiter in instances)
    assert 480 / 5 <= leases <= 480 / 5 + 4, leases  # no lease given up unspent


def test_another_writer_lowers_the_record_and_drops_the_lease(
    storage_connection_string: str, emu: str
) -> None:
    settings = make_settings(storage_connection_string, emu)
    subscription = str(uuid.uuid4())
    table = _budget_table(settings)
    budget = SharedBudget(table, StoreStats(), rate=10, burst=200)
    limiter = SharedWriteLimiter(budget, lease=10)
    ours = AzureClients(settings, write_limiter=limiter)
    # a pipeline writing to the same subscription, not through our budget
    theirs = AzureClients(settings.with_(arm_writes_per_second=1000.0, arm_writes_burst=1000.0))
    configure(httpx.Client(base_url=emu), throttling={"enabled": True, "timeScale": 0.01})
    ours.resources(subscription).resource_groups.create_or_update(
        "rg-ours-0", ResourceGroup(location="westeurope")
    )
    assert table.get_entity("budget", f"{subscription}|writes")["Tokens"] == pytest.approx(190, abs=1)
    with ThreadPoolExecutor(8) as pool:
        list(
            pool.map(
                lambda n: theirs.resources(subscription).resource_groups.create_or_update(
                    f"rg-theirs-{n}", ResourceGroup(location="westeurope")
                ),
                range(185),
            )
        )
    ours.resources(subscription).resource_groups.create_or_update(
        "rg-ours-1", ResourceGroup(location="westeurope")
    )
    record = table.get_entity("budget", f"{subscription}|writes")["Tokens"]
    assert record <= 14 - 5 + 1  # ARM has ~14 left: the record follows it, less the reserve
    assert limiter._leased[(subscription, "writes")] == 0  # our lease is no longer counted on


def test_a_lease_is_what_the_running_moves_still_write_so_no_token_is_left_out_of_the_record(
    storage_connection_string: str,
) -> None:
    """A process whose moves have ended holds no tokens of the record that it will not spend: after
    one move taught it that a move writes 3, a lease is no larger than the running moves' rest. (A
    full lease of 10 each time, until 2026-12-02: four moves of 3 writes took 20 tokens for 12.)
    The record holds fewer than ``PLENTY_LEASES`` leases: where it holds more, see the next tests."""
    from shared.arm_pacing import one_move

    table, _, limiter, _ = _on_fake_time(
        storage_connection_string, rate=0.001, burst=40, lease=10, max_wait=60
    )
    subscription = str(uuid.uuid4())
    for _ in range(4):
        with one_move():
            for _ in range(3):
                limiter.acquire(subscription)
    assert limiter.writes_per_move(subscription) == 3
    # 10 for the first move (nothing learned yet): 7 of them spent by the next two moves and the
    # fourth's first write; then a lease of what the fourth still needs, 2, not another 10
    assert limiter.leases == 2
    record = table.get_entity("budget", f"{subscription}|writes")["Tokens"]
    assert record == pytest.approx(40 - 12, abs=0.1)  # taken: exactly the 12 written


def test_a_lease_covers_every_running_move_of_the_process_not_only_the_one_asking(
    storage_connection_string: str,
) -> None:
    import threading

    from shared.arm_pacing import one_move

    table, _, limiter, _ = _on_fake_time(
        storage_connection_string, rate=0.001, burst=40, lease=10, max_wait=60
    )
    subscription = str(uuid.uuid4())
    with one_move():  # teaches 4 writes a move, leaves 6 of the first lease
        for _ in range(4):
            limiter.acquire(subscription)
    wrote, finish = threading.Event(), threading.Event()

    def other_move() -> None:
        with one_move():
            limiter.acquire(subscription)  # 5 of the lease left
            wrote.set()
            finish.wait(30)

    other = threading.Thread(target=other_move)
    other.start()
    assert wrote.wait(30)
    with one_move():
        for _ in range(5):  # spends the rest of the lease
            limiter.acquire(subscription)
        # a new lease: this move wrote more than a move's 4, so it needs 1; the other move needs 3 more
        limiter.acquire(subscription)
    finish.set()
    other.join(30)
    assert limiter.leases == 2
    assert table.get_entity("budget", f"{subscription}|writes")["Tokens"] == pytest.approx(
        40 - 10 - 4, abs=0.1
    )


def test_writes_outside_a_move_take_full_leases(storage_connection_string: str) -> None:
    from shared.arm_pacing import one_move

    table, _, limiter, _ = _on_fake_time(
        storage_connection_string, rate=0.001, burst=40, lease=10, max_wait=60
    )
    subscription = str(uuid.uuid4())
    with one_move():
        limiter.acquire(subscription)
    for _ in range(10):  # 9 left, then a new lease: nothing says how much more will be written
        limiter.acquire(subscription)
    assert limiter.leases == 2
    assert table.get_entity("budget", f"{subscription}|writes")["Tokens"] == pytest.approx(20, abs=0.1)


def test_a_record_with_plenty_of_tokens_gives_full_leases_whatever_the_moves_still_write(
    storage_connection_string: str,
) -> None:
    """Sizing a lease to the moves' rest costs storage; where the record is not what binds (it holds
    ``PLENTY_LEASES`` full leases or more when read for the take) a lease is full."""
    from shared.arm_pacing import one_move
    from shared.write_budget import PLENTY_LEASES

    table, _, limiter, _ = _on_fake_time(
        storage_connection_string, rate=0.001, burst=PLENTY_LEASES * 10 + 11, lease=10, max_wait=60
    )
    subscription = str(uuid.uuid4())
    for _ in range(4):  # as in the test above, but the second take reads 51 tokens: plenty
        with one_move():
            for _ in range(3):
                limiter.acquire(subscription)
    assert limiter.writes_per_move(subscription) == 3
    assert limiter.leases == 2
    assert table.get_entity("budget", f"{subscription}|writes")["Tokens"] == pytest.approx(41, abs=0.1)
    with one_move():  # 8 left; then the take reads 41: what the move needs, 1
        for _ in range(9):
            limiter.acquire(subscription)
    assert limiter.leases == 3
    assert table.get_entity("budget", f"{subscription}|writes")["Tokens"] == pytest.approx(40, abs=0.1)


def test_four_instances_whose_moves_write_little_draw_no_write_429s(
    storage_connection_string: str, emu: str
) -> None:
    """Leases sized to the moves' rest (1-3 tokens here, moves of 3 writes) leave the instances
    little unspent: nothing stands between the record and ARM's bucket but the record itself, and
    ARM still refuses nothing."""
    from shared.arm_pacing import one_move

    settings = make_settings(storage_connection_string, emu)
    subscription = str(uuid.uuid4())
    table = _budget_table(settings)
    instances = []
    for _ in range(4):
        budget = SharedBudget(
            table, StoreStats(), rate=10 * TIME_SCALE, burst=200, headroom=headroom(10 * TIME_SCALE)
        )
        limiter = SharedWriteLimiter(budget, lease=10)
        instances.append((AzureClients(settings, write_limiter=limiter), limiter))
    configure(httpx.Client(base_url=emu), throttling={"enabled": True, "timeScale": TIME_SCALE})
    before = len(httpx.get(f"{emu}/_emulator/requests", timeout=30).json())

    def move(job: tuple[int, int]) -> None:
        index, n = job
        with one_move():
            for k in range(3):
                instances[index][0].resources(subscription).resource_groups.create_or_update(
                    f"rg-move-{index}-{n}-{k}", ResourceGroup(location="westeurope")
                )

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(move, [(i, n) for n in range(60) for i in range(4)]))
    log = httpx.get(f"{emu}/_emulator/requests", timeout=30).json()[before:]
    puts = [r for r in log if r["method"] == "PUT" and subscription in r["path"]]
    assert [r for r in puts if r["status"] >= 300] == [] and len(puts) == 720
    assert all(limiter.writes_per_move(subscription) == 3 for _, limiter in instances)
    leases = sum(limiter.leases for _, limiter in instances)
    assert leases > 720 / 10 + 4, leases  # smaller leases than 10 were taken
