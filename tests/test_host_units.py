"""Pieces of the local host that need no running stack: schedules, routes, settings."""

from __future__ import annotations

from datetime import datetime

import pytest

from idmove.host import BindingError, _route_regex, load_host_json, resolve_bindings, resolve_storage
from idmove.ncrontab import Schedule


@pytest.mark.parametrize(
    ("schedule", "after", "expected"),
    [
        ("0 */1 * * * *", datetime(2026, 1, 1, 10, 2, 7), datetime(2026, 1, 1, 10, 3, 0)),
        ("0 */5 * * * *", datetime(2026, 1, 1, 10, 2, 7), datetime(2026, 1, 1, 10, 5, 0)),
        ("30 0 9 * * 1-5", datetime(2026, 1, 3, 8, 0, 0), datetime(2026, 1, 5, 9, 0, 30)),  # Sat -> Mon
        ("0 0 0 1 1 *", datetime(2026, 6, 1), datetime(2027, 1, 1)),
        ("00:00:30", datetime(2026, 1, 1, 10, 0, 0), datetime(2026, 1, 1, 10, 0, 30)),
    ],
)
def test_ncrontab_next_firing(schedule: str, after: datetime, expected: datetime) -> None:
    assert Schedule.parse(schedule).next_after(after) == expected


@pytest.mark.parametrize("bad", ["* * * * *", "61 * * * * *", "*/0 * * * * *", "a b c d e f"])
def test_ncrontab_rejects_bad_schedules(bad: str) -> None:
    with pytest.raises(ValueError):
        Schedule.parse(bad)


def test_route_templates_match_like_the_functions_host() -> None:
    catch_all = _route_regex("/api/{*route}")
    match = catch_all.match("/api/moves/abc/commit")
    assert match is not None and match["route"] == "moves/abc/commit"
    single = _route_regex("/api/moves/{id}")
    assert single.match("/api/moves/abc") is not None
    assert single.match("/api/moves/abc/commit") is None


def test_development_storage_means_azurite_default_ports() -> None:
    assert "QueueEndpoint=http://127.0.0.1:10001/devstoreaccount1" in resolve_storage(
        "UseDevelopmentStorage=true"
    )
    assert "TableEndpoint=http://127.0.0.1:10002/devstoreaccount1" in resolve_storage(None)
    assert (
        resolve_storage("DefaultEndpointsProtocol=https;AccountName=x")
        == "DefaultEndpointsProtocol=https;AccountName=x"
    )


def test_host_json_settings_can_be_overridden_like_app_settings() -> None:
    env = {"AzureFunctionsJobHost__extensions__queues__visibilityTimeout": "00:00:01"}
    assert load_host_json(env=env)["extensions"]["queues"]["visibilityTimeout"] == "00:00:01"
    assert load_host_json(env={})["extensions"]["queues"]["maxDequeueCount"] == 5


def test_binding_expressions_resolve_from_app_settings_like_the_functions_host() -> None:
    env = {"IDMOVE_QUEUE_NAME": "moves-eu"}
    assert resolve_bindings("%IDMOVE_QUEUE_NAME%", env) == "moves-eu"
    assert resolve_bindings("%IDMOVE_QUEUE_NAME%-poison", env) == "moves-eu-poison"
    assert resolve_bindings("idmove-work", env) == "idmove-work"
    with pytest.raises(BindingError, match="IDMOVE_QUEUE_NAME"):
        resolve_bindings("%IDMOVE_QUEUE_NAME%", {})
