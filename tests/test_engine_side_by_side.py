"""A step's independent calls side by side: ``shared/side_by_side.py``, cleanup's items in lanes
(``Engine._run_lanes``), snapshot's kinds of access."""

from __future__ import annotations

import threading
import time
from datetime import datetime
from typing import Any

import pytest

from activities.access import KINDS
from activities.access.base import resource_serial
from idmove.estate import Estate, clients_for, seed
from shared.arm_pacing import current_move, one_move
from shared.azure_clients import AzureClients
from shared.context import ItemSpec, PhaseContext
from shared.engine import _lanes
from shared.service import MoveService
from shared.settings import Settings
from shared.side_by_side import side_by_side
from shared.store import Item
from tests.plugins.engine import drain
from tests.test_engine_failures import assert_no_duplicates, capture_sends, config, faults
from tests.test_engine_moves import WRITE_METHODS, move_body, requests, run

STORAGE_ASSIGNMENTS = "stpayments01/providers/Microsoft.Authorization/roleAssignments/"
OVERLAP = 0.02  # seconds; each DELETE takes the emulator 150 ms here
INLINE = 64  # the seeded move's cleanup items all run in its own step (``IDMOVE_INLINE_ITEMS``)


@pytest.fixture
def estate(emu: str) -> Estate:
    return seed(clients_for(emu))


def _span(request: dict[str, Any]) -> tuple[float, float]:
    """When the emulator had the request: its log's ``time`` is when it answered (to the ms)."""
    end = datetime.fromisoformat(str(request["time"]).replace("Z", "+00:00")).timestamp()
    return end - float(request["durationMs"]) / 1000, end


def _cleanup_deletes(emu: str, estate: Estate) -> tuple[list[tuple[float, float]], tuple[float, float]]:
    """The spans of the old identity's role-assignment DELETEs, and of its own DELETE."""
    log = [r for r in requests(emu) if r["method"] == "DELETE" and r["status"] < 300]
    old = {a.lower() for a in estate.role_assignment_ids}
    assignments = [_span(r) for r in log if str(r["path"]).lower() in old]
    identity = [_span(r) for r in log if str(r["path"]).lower() == estate.identity_id.lower()]
    assert len(assignments) == len(old) and len(identity) == 1, (len(assignments), len(identity))
    return assignments, identity[0]


def _overlapping(spans: list[tuple[float, float]]) -> int:
    """Pairs that were in the emulator at once for more than ``OVERLAP`` (the log's ms rounding)."""
    return sum(
        1 for n, a in enumerate(spans) for b in spans[n + 1 :] if min(a[1], b[1]) - max(a[0], b[0]) > OVERLAP
    )


def test_side_by_side_keeps_the_order_raises_the_first_error_and_carries_the_move() -> None:
    seen: list[Any] = []
    gate = threading.Barrier(3, timeout=5)

    def call(n: int) -> int:
        gate.wait()  # all three at once, or the barrier breaks
        seen.append(current_move())
        return n * 10

    with one_move() as move:
        assert side_by_side([lambda n=n: call(n) for n in range(3)], 6) == [0, 10, 20]
    assert seen == [move, move, move]

    def fails(message: str, after: float) -> None:
        time.sleep(after)
        raise ValueError(message)

    ended: list[str] = []
    with pytest.raises(ValueError, match="first"):
        side_by_side(
            [
                lambda: fails("first", 0.2),  # ends last, raised first: the order of the calls
                lambda: fails("second", 0.0),
                lambda: ended.append("third"),  # the others still run to their end
            ],
            6,
        )
    assert ended == ["third"]


@pytest.mark.parametrize("width", [1, 6])
def test_cleanup_runs_its_deletes_side_by_side_and_deletes_the_identity_last(
    emulated_settings: Settings, estate: Estate, emu: str, width: int
) -> None:
    config(emu, {"latencyMs": {"read": 0, "write": 150}})
    service = MoveService(emulated_settings.with_(inline_items=INLINE, step_width=width))
    status = run(service, move_body(estate, autoCommit=True))
    assert status["status"] == "Completed", status.get("error")
    assignments, identity = _cleanup_deletes(emu, estate)
    if width == 1:
        assert _overlapping(assignments) == 0  # one after another
    else:
        assert _overlapping(assignments) >= 1, assignments
    # the old identity goes last, alone: no other write of the move was still in the emulator
    others = [
        _span(r)
        for r in requests(emu)
        if r["method"] in WRITE_METHODS and str(r["path"]).lower() != estate.identity_id.lower()
    ]
    assert identity[0] >= max(end for _, end in others) - OVERLAP


def test_a_throttled_cleanup_item_goes_back_alone_while_the_other_lanes_finish(
    emulated_settings: Settings, estate: Estate, emu: str
) -> None:
    emulated_service = MoveService(emulated_settings.with_(inline_items=INLINE))
    faults(
        emu,
        [
            {
                "method": "DELETE",
                "pathPattern": STORAGE_ASSIGNMENTS,
                "status": 429,
                "times": 1,
                "retryAfter": 30,
            }
        ],
    )
    sent = capture_sends(emulated_service)
    move_id = emulated_service.start(move_body(estate, autoCommit=True))["id"]
    drain(emulated_service)
    status = emulated_service.get(move_id)
    assert status["status"] == "Completed", status.get("error")
    again = [(m, d) for m, d in sent if m.phase == "cleanup" and m.batch]
    assert len(again) == 1 and again[0][1] >= 29, again
    # only the throttled delete went back; every other lane had ended and its marks were saved
    assert len(again[0][0].batch) == 1, again[0][0].batch
    deletes = [r for r in requests(emu) if r["method"] == "DELETE"]
    storage = [r for r in deletes if STORAGE_ASSIGNMENTS.lower() in str(r["path"]).lower()]
    assert [r["status"] for r in storage] == [429, 200]
    others = [r for r in deletes if r not in storage and r["status"] < 300]
    assert len({str(r["path"]).lower() for r in others}) == len(others)  # each answered once
    assert_no_duplicates(clients_for(emu), estate, status["target"])


def test_a_refused_cleanup_item_fails_the_move_and_the_identity_is_kept(
    emulated_settings: Settings, estate: Estate, emu: str
) -> None:
    emulated_service = MoveService(emulated_settings.with_(inline_items=INLINE))
    faults(emu, [{"method": "DELETE", "pathPattern": STORAGE_ASSIGNMENTS, "status": 403, "times": 1}])
    status = run(emulated_service, move_body(estate, autoCommit=True))
    assert status["status"] == "Failed" and status["phase"] == "cleanup", status
    assert status["error"]["code"] == "AuthorizationFailed"
    assert STORAGE_ASSIGNMENTS.lower() in str(status["error"]["target"]).lower()
    clients: AzureClients = clients_for(emu)
    source = clients.msi(estate.subscription_id).user_assigned_identities.get(
        estate.identity_id.split("/")[4], estate.identity_id.split("/")[-1]
    )
    assert source.principal_id  # the final delete never ran
    faults(emu, None)
    emulated_service.retry(status["id"])
    status = run(emulated_service, move_id=status["id"])
    assert status["status"] == "Completed", status.get("error")


def test_cleanup_items_that_write_to_one_resource_share_a_lane() -> None:
    """Cosmos DB refuses a second role-assignment operation on an account while one runs (412, an
    exclusive lock): two of them, or a grant's removal and its resource's detach, run one after the
    other; role assignments and Graph memberships each in a lane of their own."""
    sub = "/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg/providers"
    account = f"{sub}/Microsoft.DocumentDB/databaseAccounts/cosmos-payments"
    vault = f"{sub}/Microsoft.KeyVault/vaults/kv-payments"
    snapshot = {
        "cosmosRoleAssignments": [
            {"id": f"{account}/sqlRoleAssignments/{n}", "account": account} for n in ("a", "b")
        ],
        "keyVaultAccessPolicies": [{"vault": vault, "objectId": "p"}],
        "roleAssignments": [
            {"id": f"{sub}/Microsoft.Authorization/roleAssignments/{n}", "scope": sub} for n in ("c", "d")
        ],
        "groups": [{"id": "group-1"}],
    }
    ctx = PhaseContext(clients=None, settings=Settings(), move_id="m", request=None, snapshot=snapshot)  # type: ignore[arg-type]
    specs = [spec for kind in KINDS for spec in kind.remove_items(ctx)]
    specs.append(ItemSpec("detach", "detach-kv", {"id": vault}, serial=resource_serial(vault)))
    items = [Item("m", "cleanup", s.key, s.kind, {**s.data, "_serial": s.serial}) for s in specs]
    lanes = [[item.kind for item in lane] for lane in _lanes(items)]
    assert sorted(lanes) == sorted(
        [["uncosmosrole", "uncosmosrole"], ["unkvpolicy", "detach"], ["unassign"], ["unassign"], ["ungroup"]]
    )
