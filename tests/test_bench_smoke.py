"""The fan-out benchmark runs end to end with tiny parameters and writes a well-formed results file.

No timing is asserted: speed is measured by ``make bench``, never by the test suite.
"""

from __future__ import annotations

import json
from pathlib import Path

from bench import capacity, cpu, metrics
from bench.fanout import main
from bench.seed import SUB, subscription_ids

CONTRACT_KEYS = ("ratio_to_lower_bound", "failed_moves", "speedup_vs_sequential",
                 "storage_transactions_per_move", "write_429s")  # fmt: skip


def test_fanout_benchmark_over_two_subscriptions_writes_results(tmp_path: Path) -> None:
    code = main(
        ["--identities", "4", "--subscriptions", "2", "--workers", "2", "--threads", "4", "--time-scale", "50",
         "--timeout", "120", "--latency", "0,0", "--sequential", "1", "--results-dir", str(tmp_path)]
    )  # fmt: skip

    assert code == 0
    latest = json.loads((tmp_path / "latest.json").read_text())
    stamped = list(tmp_path.glob("fanout-*.json"))
    assert len(stamped) == 1 and json.loads(stamped[0].read_text()) == latest
    assert latest["benchmark"] == "region-fanout"
    # CONTRACT.md "Benchmark results": the headline run's figures at the top level
    for key in CONTRACT_KEYS:
        assert key in latest, key
    assert latest["headline_run"] == "4x2"
    assert latest["failed_moves"] == 0 and latest["write_429s"] >= 0
    assert latest["storage_transactions_per_move"] > 0 and latest["speedup_vs_sequential"] > 0
    seq = latest["sequential"]
    assert seq["sampleMoves"] == 1 and seq["byStatus"] == {"Completed": 1} and seq["estate"] == "4x2"
    assert seq["perMove"]["writes"] > 0 and set(seq["cpuSecondsPerMove"]) == {"hosts", "emulator", "azurite"}
    (run,) = latest["runs"]
    for key in CONTRACT_KEYS:
        assert key in run, key
    assert run["fleet"] == {"identities": 4, "subscriptions": 2, "instances": 2, "timeScale": 50.0}
    assert run["moves"]["started"] == run["moves"]["completed"] == 4
    assert run["moves"]["byStatus"] == {"Completed": 4}
    # every move creates an identity, grants, rebinds and deletes: ARM writes and deletes were seen
    assert run["arm"]["accepted"]["writes"] >= 4 * 5
    assert run["arm"]["accepted"]["deletes"] >= 4 * 2
    assert run["graph"]["accepted"] > 0 and run["resourceGraph"]["accepted"] >= 1
    # both subscriptions' budgets were drawn on, and each has its own floors
    subs = {s.lower() for s in subscription_ids(2)}
    assert subs <= set(run["arm"]["perScope"])
    assert set(run["floor"]["perSubscriptionSeconds"]) == subs
    assert run["floor"]["writeFloorSubscription"] in subs
    assert set(run["floor"]["perBudgetSeconds"]) >= {
        "reads",
        "writes",
        "deletes",
        "resourceGraph",
        "graphWrites",
    }
    assert run["floor"]["binding"] in run["floor"]["perBudgetSeconds"]
    assert run["perMove"]["msiCreates"] == 1.0  # one target identity per move
    assert set(run["perMove"]) >= {"reads", "resourceGraphQueries", "graphCalls", "storageTransactions"}
    assert set(run["cpuSecondsPerMove"]) == {"hosts", "emulator", "azurite"}
    assert run["cpuSecondsPerMove"]["hosts"] > 0 and run["cpuSecondsPerMove"]["emulator"] > 0
    assert run["storage"]["engineTransactions"] > 0
    assert set(run["latencySeconds"]) == {"p50", "p95", "max"}
    assert set(run["phaseSeconds"]) == {"snapshot", "create", "grant", "rebind", "verify", "cleanup"}
    assert run["ratio_to_lower_bound"] is None  # 2 moves per subscription stay inside its write bucket
    # the capacity analysis of 100k / 500 from this run's costs
    cap = latest["capacity"]
    assert cap["fleet"] == {"identities": 100_000, "subscriptions": 500, "instances": 20}
    assert cap["binding"] == cap["limits"][0]["limit"]
    assert {row["limit"] for row in cap["limits"]} >= {
        "ARM writes",
        "Resource Graph",
        "storage account",
        "MSI creates",
    }


def test_capacity_limits_from_per_move_costs() -> None:
    run = {"name": "r", "config": {"headline": True},
           "perMove": {"reads": 20, "tenantReads": 0, "writes": 10, "deletes": 4, "msiCreates": 1,
                       "resourceGraphQueries": 0.01, "graphReads": 1, "graphWrites": 0,
                       "storageTransactions": 40, "queueMessages": 5},
           "cpuSecondsPerMove": {"hosts": 0.1}}  # fmt: skip
    result = capacity.analyse({"runs": [run]}, identities=1000, subscriptions=10, instances=4)
    seconds = {row["limit"]: row["seconds"] for row in result["limits"]}
    assert seconds["ARM writes"] == (100 * 10 - 200) / 10  # per subscription: 100 moves x 10 writes
    assert seconds["ARM reads"] == (100 * 20 - 250) / 25
    assert seconds["MSI creates"] == (100 - 80) / 4
    assert seconds["storage account"] == 1000 * 40 / 20_000
    assert seconds["host CPU"] == 1000 * 0.1 / 4
    assert result["binding"] == "ARM writes" and result["writeFloorSeconds"] == 80.0


def test_floors_per_subscription_and_path_templates() -> None:
    floors = metrics.floor_seconds(
        {"reads": 300, "writes": 260, "deletes": 50}, {"reads": 250, "writes": 200, "deletes": 200}, 45
    )
    assert floors == {"reads": 2.0, "writes": 6.0, "deletes": 0.0, "resourceGraph": 10.0}
    other = "11111111-2222-3333-4444-555555555555"
    log = [{"method": "PUT", "path": f"/subscriptions/{SUB}/resourceGroups/g", "status": 200}] * 230
    log += [{"method": "PUT", "path": f"/subscriptions/{other}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/i",
             "status": 201}] * 90  # fmt: skip
    log += [
        {"method": "GET", "path": "/subscriptions", "status": 200},
        {"method": "GET", "path": "/x", "status": 429},
    ]
    by_scope = metrics.arm_by_scope(log)
    assert (
        by_scope[SUB.lower()]["accepted"]["writes"] == 230 and by_scope["tenant"]["throttled"]["reads"] == 1
    )
    assert by_scope[other]["msiCreates"] == {"count": 90}
    per = metrics.scope_floors(by_scope, dict(metrics.ARM_BUDGET), {other: {"writes": 0.0}})
    assert (
        per[SUB.lower()]["writes"] == 3.0 and per[other]["writes"] == 9.0 and per[other]["msiCreates"] == 2.5
    )
    assert cpu.tree_seconds(1) >= 0.0
    assert (
        metrics.path_template(
            "/subscriptions/s/resourceGroups/rg/providers/Microsoft.KeyVault/vaults/kv/providers/Microsoft.Authorization/roleAssignments/g"
        )
        == "/subscriptions/{}/resourceGroups/{}/providers/Microsoft.KeyVault/vaults/{}/providers/Microsoft.Authorization/roleAssignments/{}"
    )
    assert (
        metrics.path_template("/graph/v1.0/servicePrincipals/p/memberOf")
        == "/graph/v1.0/servicePrincipals/{}/memberOf"
    )
    assert metrics.latency([1.0, 2.0, 3.0, 4.0]) == {"p50": 2.0, "p95": 4.0, "max": 4.0}


def test_budget_use_splits_unused_refill_into_before_between_and_tail() -> None:
    def put(t: float) -> dict[str, object]:
        stamp = f"2026-12-01T00:00:{t:06.3f}+00:00"
        return {"method": "PUT", "path": f"/subscriptions/{SUB}/x", "status": 200, "time": stamp}

    start = metrics.parse_time("2026-12-01T00:00:00+00:00")
    # bucket 4, refill 1/s: nothing asked for 3 s (all 3 s of refill lost, the bucket was full), then
    # 4 writes at 3.0..3.3 (the bucket's 4, 0.3 refilled meanwhile), a pause of 10.2 s of which all
    # but the 3.7 s it takes to refill the bucket are lost, then the last write at 13.5; the run ends at 20
    log = [put(3.0 + 0.1 * i) for i in range(4)] + [put(13.5)]
    log.append(
        {
            "method": "GET",
            "path": f"/subscriptions/{SUB}/x",
            "status": 200,
            "time": "2026-12-01T00:00:05+00:00",
        }
    )  # fmt: skip  (a read: not the writes budget)
    use = metrics.budget_use(log, start, start + 20, SUB.lower(), "writes", (4.0, 1.0))
    assert use["requests"] == 5 and use["firstSeconds"] == 3.0 and use["lastSeconds"] == 13.5
    assert use["idleBeforeFirst"] == 3.0
    assert abs(use["idleBetween"] - 6.5) < 0.01
    assert use["tail"] == 6.5
    assert metrics.budget_use(log, start, start + 20, "other", "writes", (4.0, 1.0)) == {"requests": 0}
