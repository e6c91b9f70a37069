"""The engine reads storage the way the Functions host does: connection string or identity-based."""

from __future__ import annotations

import pytest

from shared.settings import Settings
from shared.storage import StorageAccess, StorageSettingsError


def test_connection_string_wins_when_present() -> None:
    access = StorageAccess.from_env({"AzureWebJobsStorage": "UseDevelopmentStorage=true"})
    assert not access.uses_identity
    assert access.table_service().url.startswith("http://127.0.0.1:10002")


def test_identity_based_settings_as_deployed_by_infra() -> None:
    env = {
        "AzureWebJobsStorage__credential": "managedidentity",
        "AzureWebJobsStorage__clientId": "00000000-0000-0000-0000-000000000001",
        "AzureWebJobsStorage__queueServiceUri": "https://stidmove.queue.core.windows.net",
        "AzureWebJobsStorage__tableServiceUri": "https://stidmove.table.core.windows.net",
    }
    settings = Settings.from_env(env)
    assert settings.storage.uses_identity
    assert settings.storage.client_id == "00000000-0000-0000-0000-000000000001"
    queue = settings.storage.queue_client("idmove-work")
    assert queue.url == "https://stidmove.queue.core.windows.net/idmove-work"
    assert settings.storage.table_service().url.startswith("https://stidmove.table.core.windows.net")


def test_account_name_alone_derives_both_service_uris() -> None:
    access = StorageAccess.from_env({"AzureWebJobsStorage__accountName": "stidmove"})
    assert access.table_uri == "https://stidmove.table.core.windows.net"
    assert access.queue_uri == "https://stidmove.queue.core.windows.net"


def test_half_configured_identity_storage_says_what_is_missing() -> None:
    with pytest.raises(StorageSettingsError, match="tableServiceUri"):
        StorageAccess.from_env({"AzureWebJobsStorage__queueServiceUri": "https://x.queue.core.windows.net"})
