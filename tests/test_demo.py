"""``make demo`` runs ``idmove demo``: it must finish with exit 0 (the move completed and matches)."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.slow
def test_idmove_demo_completes_a_move_and_exits_0() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "idmove", "demo"], capture_output=True, text=True, timeout=240, check=False
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "Move completed" in result.stdout
    assert "✗" not in result.stdout
    assert "Microsoft Graph / User.Read.All" in result.stdout  # app roles by name, not by GUID
    for phase in ("snapshot", "create", "grant", "rebind", "verify", "cleanup"):
        assert phase in result.stdout
    # its speed is measured by the demo itself (it prints the move's timeline), not asserted here:
    # a timed assertion fails on a busy machine without anything being wrong
