"""``idmove seed``: the sample estate into a running emulator; each run a fresh identity to try."""

from __future__ import annotations

import json
import subprocess
import sys

import httpx

from idmove.estate import ESTATE_OWNER_TOKEN


def seed(emu: str, *extra: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "idmove", "seed", "--emulator", emu, *extra]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def test_seed_prints_identity_ids_to_try_and_can_run_again(emu: str) -> None:
    first = seed(emu, "--output", "json")
    assert first.returncode == 0, first.stderr
    seeded = json.loads(first.stdout)
    assert seeded["identityId"].endswith("/userAssignedIdentities/app-id")
    assert seeded["roleAssignments"] and seeded["federatedCredentials"] and seeded["attachedTo"]
    identity = httpx.get(
        f"{emu}{seeded['identityId']}",
        params={"api-version": "2023-01-31"},
        headers={"Authorization": f"Bearer {ESTATE_OWNER_TOKEN}"},
    )
    assert (
        identity.status_code == 200 and identity.json()["properties"]["principalId"] == seeded["principalId"]
    )

    again = seed(emu)
    assert again.returncode == 0, again.stderr
    assert "/userAssignedIdentities/app-id-2" in again.stdout
    assert "idmove plan /subscriptions/" in again.stdout and "--to northeurope" in again.stdout


def test_seed_without_an_emulator_says_what_to_do() -> None:
    done = seed("http://127.0.0.1:9")
    assert done.returncode != 0 and "idmove up" in done.stderr
