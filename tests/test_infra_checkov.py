"""checkov (from the tools venv) finds nothing wrong in infra/, and every skip says why."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHECKOV = ROOT / ".venv-tools" / "bin" / "checkov"

# Each skip is a `//checkov:skip=ID: reason` comment on the resource; this list makes a new one a conscious change.
EXPECTED_SKIPS = {
    ("CKV_AZURE_35", "Microsoft.Storage/storageAccounts.storage"),
    ("CKV_AZURE_59", "Microsoft.Storage/storageAccounts.storage"),
    ("CKV_AZURE_206", "Microsoft.Storage/storageAccounts.storage"),
    ("CKV_AZURE_225", "Microsoft.Web/serverfarms.plan"),
    ("CKV_AZURE_222", "Microsoft.Web/sites.functionApp"),
    ("CKV_AZURE_17", "Microsoft.Web/sites.functionApp"),
    ("CKV_AZURE_212", "Microsoft.Web/sites.functionApp"),
    ("CKV_AZURE_213", "Microsoft.Web/sites.functionApp"),
    ("CKV_AZURE_191", "Microsoft.EventGrid/topics.eventsTopic"),
    ("CKV_AZURE_193", "Microsoft.EventGrid/topics.eventsTopic"),
    ("CKV_AZURE_191", "Microsoft.EventGrid/topics.decommissionTopic"),
    ("CKV_AZURE_193", "Microsoft.EventGrid/topics.decommissionTopic"),
}


@pytest.fixture(scope="module")
def reports() -> list[dict[str, Any]]:
    if not CHECKOV.exists():
        pytest.fail("checkov is missing: run `make install` (it creates .venv-tools)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    done = subprocess.run(
        [str(CHECKOV), "--directory", "infra", "--skip-download", "--output", "json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )
    assert done.stdout.strip(), done.stderr
    parsed = json.loads(done.stdout)
    result: list[dict[str, Any]] = parsed if isinstance(parsed, list) else [parsed]
    return result


def test_checkov_scans_the_bicep_and_fails_nothing(reports: list[dict[str, Any]]) -> None:
    bicep = [r for r in reports if r.get("check_type") == "bicep"]
    assert len(bicep) == 1, [r.get("check_type") for r in reports]
    summary = bicep[0]["summary"]
    assert summary["parsing_errors"] == 0, bicep[0]["results"].get("parsing_errors")
    assert summary["passed"] > 0
    for report in reports:
        failed = report.get("results", {}).get("failed_checks", [])
        assert report.get("summary", {}).get("failed", 0) == 0 and not failed, [
            (f["check_id"], f["resource"], f["file_path"]) for f in failed
        ]


def test_every_skip_is_expected_and_gives_a_reason(reports: list[dict[str, Any]]) -> None:
    skipped = [s for r in reports for s in r.get("results", {}).get("skipped_checks", [])]
    assert {(s["check_id"], s["resource"]) for s in skipped} == EXPECTED_SKIPS
    for skip in skipped:
        reason = skip["check_result"].get("suppress_comment", "").strip()
        assert len(reason) > 20, f"{skip['check_id']} on {skip['resource']} needs a written reason"
