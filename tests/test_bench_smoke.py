"""The fan-out benchmark runs end to end with tiny parameters and writes a well-formed results file.

No timing is asserted: speed is measured by ``make bench``, never by the test suite.
"""

from __future__ import annotations

import json
from pathlib import Path

from bench import metrics
from bench.fanout import main


def test_fanout_benchmark_completes_and_writes_results(tmp_path: Path) -> None:
    code = main(
        ["--identities", "3", "--workers", "2", "--threads", "4", "--time-scale", "50", "--timeout", "120",
         "--drain-bucket", "off", "--latency", "0,0", "--sequential", "1", "--results-dir", str(tmp_path)]
    )  # fmt: skip

    assert code == 0
    latest = json.loads((tmp_path / "latest.json").read_text())
    stamped = list(tmp_path.glob("fanout-*.json"))
    assert len(stamped) == 1 and json.loads(stamped[0].read_text()) == latest
    assert latest["benchmark"] == "region-fanout"
    assert latest["parameters"]["identities"] == 3
    # CONTRACT.md "Benchmark results": the headline run's figures at the top level
    for key in ("ratio_to_lower_bound", "failed_moves", "speedup_vs_sequential",
                "storage_transactions_per_move", "write_429s"):  # fmt: skip
        assert key in latest, key
    assert latest["failed_moves"] == 0 and latest["write_429s"] >= 0
    assert latest["storage_transactions_per_move"] > 0 and latest["speedup_vs_sequential"] > 0
    assert latest["sequential"]["sampleMoves"] == 1 and latest["sequential"]["byStatus"] == {"Completed": 1}
    (run,) = latest["runs"]
    assert run["moves"]["started"] == run["moves"]["completed"] == 3
    assert run["moves"]["byStatus"] == {"Completed": 3}
    # every move creates an identity, grants, rebinds and deletes: ARM writes and deletes were seen
    assert run["arm"]["accepted"]["writes"] >= 3 * 5
    assert run["arm"]["accepted"]["deletes"] >= 3 * 2
    assert run["graph"]["accepted"] > 0 and run["resourceGraph"]["accepted"] >= 3
    assert run["storage"]["engineTransactions"] > 0
    assert set(run["latencySeconds"]) == {"p50", "p95", "max"}
    assert set(run["phaseSeconds"]) == {"snapshot", "create", "grant", "rebind", "verify", "cleanup"}
    assert run["floor"]["seconds"] >= 0
    assert set(run["perMove"]) >= {"reads", "resourceGraphQueries", "graphCalls", "storageTransactions"}
    assert run["ratio_to_lower_bound"] is None  # 3 moves stay inside the write bucket: no write floor


def test_floor_and_path_templates() -> None:
    floors = metrics.floor_seconds(
        {"reads": 300, "writes": 260, "deletes": 50}, {"reads": 250, "writes": 200, "deletes": 200}, 45
    )
    assert floors == {"reads": 2.0, "writes": 6.0, "deletes": 0.0, "resourceGraph": 10.0}
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
