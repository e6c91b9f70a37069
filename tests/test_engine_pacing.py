"""ARM write pacing (``shared/arm_pacing.py``): the token bucket alone, then a move against a throttling emulator."""

from __future__ import annotations

import pytest

from idmove.estate import Estate, clients_for, seed
from shared.arm_pacing import WriteBudgetBusy, WriteLimiter, begin_unit, subscription_in
from shared.azure_clients import AzureClients
from shared.service import MoveService
from shared.settings import Settings
from tests.test_engine_failures import assert_no_duplicates, config
from tests.test_engine_moves import WRITE_METHODS, move_body, requests, run


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_bucket_allows_the_burst_then_paces_each_subscription_apart() -> None:
    t = FakeTime()
    limiter = WriteLimiter(rate=10, burst=3, clock=t.clock, sleep=t.sleep)
    waits = [limiter.acquire("sub-a") for _ in range(6)]
    assert waits[:3] == [0, 0, 0]
    assert waits[3:] == pytest.approx([0.1, 0.1, 0.1])  # each sleeps for its own token
    assert limiter.acquire("sub-b") == 0  # another subscription has its own bucket
    assert limiter.acquire("sub-a", "deletes") == 0  # and deletes their own budget


def test_low_remaining_budget_from_arm_slows_the_process_down() -> None:
    t = FakeTime()
    limiter = WriteLimiter(rate=10, burst=20, clock=t.clock, sleep=t.sleep)
    limiter.observe("sub-a", "writes", 100)  # plenty left: ignored
    assert limiter.acquire("sub-a") == 0
    limiter.observe("sub-a", "writes", 3)  # other writers nearly emptied ARM's bucket
    assert limiter.acquire("sub-a") > 0


def test_a_token_further_away_than_max_wait_is_not_waited_for_in_the_thread() -> None:
    t = FakeTime()
    slept: list[float] = []  # threads sleep side by side: the clock does not move with one
    limiter = WriteLimiter(rate=1, burst=1, clock=t.clock, sleep=slept.append, max_wait=2)

    def first_write(subscription: str = "sub-a") -> float:  # of a new step or item
        begin_unit()
        return limiter.acquire(subscription)

    assert [first_write() for _ in range(3)] == pytest.approx([0, 1, 2])
    with pytest.raises(WriteBudgetBusy) as busy:  # 3 s away: given back, not slept for
        first_write()
    assert busy.value.throttled and busy.value.retry_after == pytest.approx(3.0)
    assert busy.value.code == "ArmWriteBudget"
    assert limiter.busy == 1 and limiter.acquired == 3 and slept == pytest.approx([1, 2])
    with pytest.raises(WriteBudgetBusy):  # the refused one took no token: still 3 s away
        first_write()
    assert first_write("sub-b") == 0  # another subscription is not held back
    t.now = 1.0
    assert first_write() == pytest.approx(2.0)
    # a unit that has written waits for its next token, however far: given back now, it would
    # spend its first tokens again at its next try
    assert limiter.acquire("sub-a") == pytest.approx(3.0)
    assert limiter.busy == 2 and slept[-1] == pytest.approx(3.0)


def test_subscription_is_read_from_arm_urls() -> None:
    url = "https://management.azure.com/subscriptions/2F7C2B4E-1D3A-4C5B-9E8F-0A1B2C3D4E5F/resourceGroups/x?api-version=1"
    assert subscription_in(url) == "2f7c2b4e-1d3a-4c5b-9e8f-0a1b2c3d4e5f"
    assert subscription_in("https://management.azure.com/providers/Microsoft.ResourceGraph/resources") is None


@pytest.fixture
def estate(emu: str) -> Estate:
    return seed(clients_for(emu))


def test_paced_move_meets_no_write_throttling(emulated_settings: Settings, estate: Estate, emu: str) -> None:
    # ARM refills 10 writes/s (and deletes) with a bucket of 4; the mover paces at 8/s with a burst of 3
    bucket = {"capacity": 4, "refillPerSecond": 10}
    config(emu, {"throttling": {"enabled": True, "timeScale": 1, "writes": bucket, "deletes": bucket}})
    limiter = WriteLimiter(rate=8, burst=3)
    settings = emulated_settings.with_(max_parallel_items=8)
    service = MoveService(settings, clients=AzureClients(settings, write_limiter=limiter))
    before = len(requests(emu))
    status = run(service, move_body(estate, autoCommit=True))
    assert status["status"] == "Completed", status.get("error")
    arm = [r for r in requests(emu)[before:] if "/graph/" not in r["path"] and "eventgrid" not in r["path"]]
    throttled = [r for r in arm if r["status"] == 429 and r["method"] in WRITE_METHODS]
    assert throttled == []
    paced = [
        r for r in arm if r["method"] in WRITE_METHODS and r["path"].lower().startswith("/subscriptions/")
    ]
    assert limiter.acquired >= len(paced)  # management-group writes have no subscription budget
    assert_no_duplicates(clients_for(emu), estate, status["target"])


def test_a_move_whose_writes_go_back_to_the_queue_for_the_budget_completes_without_duplicates(
    emulated_settings: Settings, estate: Estate, emu: str
) -> None:
    """Steps given back for their token (``WriteBudgetBusy``) come again and finish: nothing twice."""
    limiter = WriteLimiter(rate=3, burst=2, max_wait=0.2)
    settings = emulated_settings.with_(max_parallel_items=8)
    service = MoveService(settings, clients=AzureClients(settings, write_limiter=limiter))
    before = len(requests(emu))
    status = run(service, move_body(estate, autoCommit=True))
    assert status["status"] == "Completed", status.get("error")
    assert limiter.busy > 0  # some writes did go back to the queue
    arm = [r for r in requests(emu)[before:] if "/graph/" not in r["path"] and "eventgrid" not in r["path"]]
    paced = [
        r
        for r in arm
        if r["method"] in {*WRITE_METHODS, "POST"} and r["path"].lower().startswith("/subscriptions/")
    ]
    assert limiter.acquired == len(paced)  # a write given back was never sent
    assert_no_duplicates(clients_for(emu), estate, status["target"])


def test_without_pacing_the_same_move_is_throttled_and_azure_core_honours_retry_after(
    emulated_settings: Settings, estate: Estate, emu: str
) -> None:
    bucket = {"capacity": 2, "refillPerSecond": 2}
    config(emu, {"throttling": {"enabled": True, "timeScale": 1, "writes": bucket, "deletes": bucket}})
    settings = emulated_settings.with_(max_parallel_items=8, arm_retry_total=10)
    unpaced = WriteLimiter(rate=10_000, burst=10_000)
    service = MoveService(settings, clients=AzureClients(settings, write_limiter=unpaced))
    status = run(service, move_body(estate, autoCommit=True))
    assert status["status"] == "Completed", status.get("error")
    assert any(r["status"] == 429 for r in requests(emu))  # ARM said no, Retry-After was waited out


def test_a_moves_handler_teaches_the_shared_budget_what_a_move_writes(
    emulated_settings: Settings, estate: Estate, emu: str
) -> None:
    """``Engine.handle`` runs a move's steps inside ``arm_pacing.one_move``: the process's shared
    limiter counts what the move wrote to its subscription, which sizes its next leases
    (``shared/write_budget.py``, ``_need``). The move runs on one handler here (autoCommit, no
    throttling, its items inline), so what is learned is exactly what it wrote."""
    from shared.write_budget import SharedWriteLimiter

    service = MoveService(emulated_settings.with_(arm_shared_budget=True))
    limiter = service.clients().write_limiter
    assert isinstance(limiter, SharedWriteLimiter)
    assert limiter.writes_per_move(estate.subscription_id) is None
    before = len(requests(emu))
    status = run(service, move_body(estate, autoCommit=True))
    assert status["status"] == "Completed", status.get("error")
    paced = [
        r
        for r in requests(emu)[before:]
        if r["method"] in {"PUT", "PATCH", "POST"}
        and r["path"].lower().startswith(f"/subscriptions/{estate.subscription_id}/")
    ]
    assert limiter.writes_per_move(estate.subscription_id) == len(paced)
