"""Shared fixtures: real Azurite on free loopback ports, started once per test session.

Fixture families live in `tests/plugins/` (emulator, engine, host) so they can grow apart.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from idmove.azurite import Azurite

pytest_plugins = ["tests.plugins.emulator", "tests.plugins.engine", "tests.plugins.host"]


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    with Azurite.start() as running:
        yield running


@pytest.fixture(scope="session")
def storage_connection_string(azurite: Azurite) -> str:
    return azurite.connection_string
