"""Listing moves newest first from the store's index (``StateStore.list_recent``), through the
service and ``idmove list`` (dates with times, full ids in JSON, a line when more pages exist)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import httpx
import pytest

from shared.errors import InvalidRequest
from shared.service import MoveService
from shared.settings import Settings
from tests.plugins.host import MakeIdentity
from tests.test_engine_requests import IDENTITY, body
from tests.test_engine_timers import Clock


@pytest.fixture
def service(engine_settings: Settings) -> MoveService:
    return MoveService(engine_settings, clock=Clock())


def test_moves_come_newest_first_across_pages_and_filters(service: MoveService) -> None:
    clock = service.clock
    assert isinstance(clock, Clock)
    started = []
    for n in range(5):
        clock.advance(60)
        started.append(service.start(body(sourceIdentityId=IDENTITY.replace("app-id", f"app-{n}")))["id"])
    service.cancel(started[1])
    service.cancel(started[3])

    seen, token = [], None
    while True:
        page, token = service.list(top=2, skip_token=token)
        assert len(page) <= 2
        seen += [m["id"] for m in page]
        if token is None:
            break
    assert seen == started[::-1]

    canceled, token = service.list(status="Canceled", top=1)
    assert [m["id"] for m in canceled] == [started[3]] and token is not None
    rest, token = service.list(status="Canceled", top=1, skip_token=token)
    assert [m["id"] for m in rest] == [started[1]]
    if token is not None:  # a short last page may still carry a token; it ends empty
        assert service.list(status="Canceled", top=1, skip_token=token)[0] == []

    with pytest.raises(InvalidRequest):
        service.list(skip_token="eyJQYXJ0aXRpb25LZXkiOiAieCIsICJSb3dLZXkiOiAibW92ZSJ9")  # another partition


def test_idmove_list_shows_dates_with_times_and_says_more_pages_exist(
    api: httpx.Client, host_url: str, make_identity: MakeIdentity
) -> None:
    ids = [
        api.post(
            "/api/moves", json={"sourceIdentityId": make_identity(), "targetRegion": "northeurope"}
        ).json()["id"]
        for _ in range(2)
    ]
    cli = [sys.executable, "-m", "idmove", "list", "--api", host_url, "--top", "1"]
    as_json = subprocess.run([*cli, "--output", "json"], capture_output=True, text=True, timeout=60)
    assert as_json.returncode == 0, as_json.stderr
    listed = json.loads(as_json.stdout)
    assert listed["value"][0]["id"] == ids[-1]  # the newest, its id in full
    assert listed["nextLink"].startswith(host_url)
    text = subprocess.run(
        cli, capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "200"}
    )
    assert text.returncode == 0, text.stderr
    assert re.search(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}", text.stdout), text.stdout
    assert ids[-1] in text.stdout
    assert "more moves on further pages" in text.stdout
