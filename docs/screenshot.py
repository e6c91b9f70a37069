"""Regenerates docs/dashboard.png: a local stack, the sample estate, three moves, the dashboard.

PYTHONPATH=. .venv/bin/python docs/screenshot.py   # needs Debian's chromium (make test installs it)
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
import time
from pathlib import Path

import httpx
from playwright.sync_api import expect, sync_playwright

from idmove.estate import clients_for, seed
from idmove.stack import Stack
from tests.test_dashboard_browser import ARGS, CHROMIUM

OUT = Path(__file__).with_name("dashboard.png")


def wait(api: httpx.Client, move_id: str, statuses: set[str]) -> None:
    deadline = time.monotonic() + 120
    while api.get(f"/api/moves/{move_id}").json()["status"] not in statuses:
        assert time.monotonic() < deadline, move_id
        time.sleep(0.5)


def main() -> int:
    settings = {"IDMOVE_BACKOFF_SCALE": "0.05", "IDMOVE_HOST_KEY": ""}
    with (
        tempfile.TemporaryDirectory() as logs,
        Stack.start(host_settings=settings, log_dir=Path(logs)) as stack,
    ):
        httpx.put(f"{stack.emulator_url}/_emulator/config", json={"replicationDelaySeconds": 0}, timeout=10)
        clients = clients_for(stack.emulator_url)
        ids = [
            seed(clients, name=name).identity_id for name in ("payments-api", "orders-worker", "reports-job")
        ]
        with httpx.Client(base_url=stack.api_url, timeout=30) as api:
            moves = []
            for identity, extra in zip(ids, ({}, {}, {"dryRun": True}), strict=True):
                body = {"sourceIdentityId": identity, "targetRegion": "northeurope", **extra}
                moves.append(api.post("/api/moves", json=body).json()["id"])
            wait(api, moves[0], {"AwaitingCommit"})
            api.post(f"/api/moves/{moves[0]}/commit")
            for move_id in moves:
                wait(api, move_id, {"Completed", "AwaitingCommit", "Planned"})
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
            page = browser.new_page(viewport={"width": 1280, "height": 860})
            page.goto(f"{stack.api_url}/api/dashboard#/moves/{moves[1]}")
            expect(page.locator("#move-summary .badge")).to_have_text("AwaitingCommit", timeout=30_000)
            page.screenshot(path=str(OUT), full_page=False)
            page.goto(f"{stack.api_url}/api/dashboard#/")
            expect(page.locator("#moves tbody tr")).to_have_count(3, timeout=30_000)
            page.screenshot(path=str(OUT.with_name("dashboard-list.png")), full_page=False)
            with contextlib.suppress(Exception):
                browser.close()
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
