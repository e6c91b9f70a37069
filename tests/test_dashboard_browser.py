"""The dashboard (``GET /api/dashboard``) in a real browser: Debian's headless ``chromium`` driven by
Playwright (``executable_path``; never ``playwright install``), against the local stack over HTTP.

Each test makes its own identities in a source region no other test uses and filters the list by
it, so tests are independent on a shared host. Every wait is one of Playwright's auto-waiting
expectations with a generous bound (the suite runs under load); a screenshot of each page goes to
the test's tmp folder.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.plugins.host import MakeIdentity, wait_for

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 30_000
PHASES = ["snapshot", "create", "grant", "rebind", "verify", "cleanup"]

pytestmark = pytest.mark.skipif(
    shutil.which("chromium") is None and not Path(CHROMIUM).exists(),
    reason="Debian's chromium is not installed (make test installs it)",
)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    with playwright_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    tab = context.new_page()
    tab.set_default_timeout(WAIT_MS)
    try:
        yield tab
    finally:
        context.close()


def start(api: httpx.Client, identity: str, **extra: Any) -> str:
    response = api.post(
        "/api/moves", json={"sourceIdentityId": identity, "targetRegion": "northeurope", **extra}
    )
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def phase_rows(page: Any) -> Any:
    return page.locator("#timeline li[data-phase]")


def test_the_list_shows_the_moves_of_a_seeded_run(
    page: Any, api: httpx.Client, host_url: str, make_identity: MakeIdentity, tmp_path: Path
) -> None:
    region = "koreasouth"  # this test's own source region: the filter shows only its moves
    planned = start(api, make_identity(location=region), dryRun=True)
    awaiting = start(api, make_identity(location=region))
    wait_for(api, planned, {"Planned"})
    wait_for(api, awaiting, {"AwaitingCommit"})

    page.goto(f"{host_url}/api/dashboard")
    expect(page.get_by_role("heading", name="Moves")).to_be_visible(timeout=WAIT_MS)
    page.get_by_label("Source region").fill(region)
    page.get_by_role("button", name="Apply").click()
    rows = page.locator("#moves tbody tr")
    expect(rows).to_have_count(2, timeout=WAIT_MS)
    expect(page.locator(f'tr[data-move-id="{planned}"] .badge')).to_have_text("Planned", timeout=WAIT_MS)
    expect(page.locator(f'tr[data-move-id="{awaiting}"] .badge')).to_have_text(
        "AwaitingCommit", timeout=WAIT_MS
    )
    expect(page.locator(f'tr[data-move-id="{awaiting}"]')).to_contain_text(f"({region})")
    expect(page.locator(f'tr[data-move-id="{awaiting}"]')).to_contain_text("(northeurope)")
    page.get_by_label("Status").select_option("Planned")
    page.get_by_role("button", name="Apply").click()
    expect(rows).to_have_count(1, timeout=WAIT_MS)
    page.screenshot(path=str(tmp_path / "moves.png"), full_page=True)

    page.get_by_role("link", name=planned).click()  # keyboard- and pointer-reachable link to the move
    expect(page.locator("#move-summary .badge")).to_have_text("Planned", timeout=WAIT_MS)


def test_a_move_page_shows_six_phases_and_commit_ends_completed(
    page: Any, api: httpx.Client, host_url: str, make_identity: MakeIdentity, tmp_path: Path
) -> None:
    move_id = start(api, make_identity(location="japanwest"))
    status = wait_for(api, move_id, {"AwaitingCommit"})

    page.goto(f"{host_url}/api/dashboard#/moves/{move_id}")
    expect(page.locator("#move-summary .badge")).to_have_text("AwaitingCommit", timeout=WAIT_MS)
    expect(phase_rows(page)).to_have_count(6, timeout=WAIT_MS)
    expect(phase_rows(page).locator(".name")).to_have_text(PHASES)
    expect(phase_rows(page).locator(".badge")).to_have_text(["Succeeded"] * 5 + ["NotStarted"])
    target = status["target"]
    assert isinstance(target, dict)
    expect(page.locator("#move-summary")).to_contain_text(str(target["name"]))
    expect(page.locator("#events tbody tr").first).to_contain_text("IdentityMover.Move.Started")
    # only what the status allows: commit, cancel, discard, not retry
    for command, shown in (("Commit", True), ("Cancel", True), ("Discard", True), ("Retry", False)):
        button = page.get_by_role("button", name=f"{command}…")
        if shown:
            expect(button).to_be_visible()
        else:
            expect(button).to_have_count(0)
    page.screenshot(path=str(tmp_path / "move-awaiting-commit.png"), full_page=True)

    page.get_by_role("button", name="Commit…").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("the old identity", timeout=WAIT_MS)
    expect(dialog).to_contain_text("its grants and its attachments will be deleted")
    page.screenshot(path=str(tmp_path / "confirm-commit.png"))
    dialog.get_by_role("button", name="Commit", exact=True).click()
    expect(page.locator("#move-summary .badge")).to_have_text("Completed", timeout=90_000)
    expect(phase_rows(page).locator(".badge")).to_have_text(["Succeeded"] * 6)
    expect(page.locator("#events tbody tr").last).to_contain_text("IdentityMover.Move.Completed")
    expect(page.locator("[data-command]:visible")).to_have_count(0)  # nothing is allowed on a Completed move
    page.screenshot(path=str(tmp_path / "move-completed.png"), full_page=True)
    assert wait_for(api, move_id, {"Completed"})["status"] == "Completed"


def test_a_forbidden_action_is_not_offered_and_the_key_rides_along(
    page: Any, api: httpx.Client, host_url: str, make_identity: MakeIdentity, tmp_path: Path
) -> None:
    move_id = start(api, make_identity(location="norwaywest"), dryRun=True)
    wait_for(api, move_id, {"Planned"})
    seen: list[str] = []
    page.on("request", lambda request: seen.append(request.url))

    page.goto(f"{host_url}/api/dashboard?code=page-key#/moves/{move_id}")
    expect(page.locator("#move-summary .badge")).to_have_text("Planned", timeout=WAIT_MS)
    expect(page.get_by_role("button", name="Discard…")).to_be_visible()
    for command in ("Commit", "Cancel", "Retry"):
        expect(page.get_by_role("button", name=f"{command}…")).to_have_count(0)
    report = page.get_by_role("link", name="Markdown")
    expect(report).to_have_attribute("href", re.compile(r"/report\?format=markdown&code=page-key$"))
    page.screenshot(path=str(tmp_path / "move-planned.png"), full_page=True)

    api_calls = [url for url in seen if "/api/moves" in url]
    assert api_calls and all("code=page-key" in url for url in api_calls), api_calls
    assert all(url.startswith(host_url) for url in seen), seen  # nothing fetched from elsewhere

    # keyboard: Discard is reachable with Tab and opens the confirmation, Escape keeps the move
    page.get_by_role("button", name="Discard…").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("dialog")).to_contain_text("The old identity is kept exactly as it was")
    page.keyboard.press("Escape")
    expect(page.get_by_role("dialog")).to_have_count(0)
    assert api.get(f"/api/moves/{move_id}").json()["status"] == "Planned"


def test_dashboard_is_one_self_contained_response(api: httpx.Client) -> None:
    response = api.get("/api/dashboard")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    csp = response.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "connect-src 'self'" in csp
    assert not re.search(r"""(src|href)=["']https?://""", response.text)  # no CDN, no external asset
