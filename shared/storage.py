"""Storage clients from the Functions host's own setting, by connection string or by identity.

Locally (and in tests) ``AzureWebJobsStorage`` is a connection string for Azurite. In Azure the
app has no key: the Function App is configured with identity-based settings, exactly the ones the
Functions host itself reads (``AzureWebJobsStorage__credential=managedidentity``,
``__clientId``, ``__queueServiceUri``, ``__tableServiceUri``, or just ``__accountName``), and the
engine uses the same identity for its tables and queues.

Example::

    access = StorageAccess.from_env(os.environ)
    tables = access.table_service()
    queue = access.queue_client("idmove-work")
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, TableServiceClient, UpdateMode
from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

PREFIX = "AzureWebJobsStorage__"


class StorageSettingsError(ValueError):
    """The storage settings are missing or inconsistent; the message says which setting to add."""


@dataclass(frozen=True)
class StorageAccess:
    """Either a connection string, or service URIs reached with a token credential."""

    connection_string: str | None = None
    table_uri: str | None = None
    queue_uri: str | None = None
    client_id: str | None = None

    @property
    def uses_identity(self) -> bool:
        return self.connection_string is None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> StorageAccess:
        if env.get("AzureWebJobsStorage"):
            return cls(connection_string=env["AzureWebJobsStorage"])
        account = env.get(PREFIX + "accountName")
        table_uri = env.get(PREFIX + "tableServiceUri") or (
            f"https://{account}.table.core.windows.net" if account else None
        )
        queue_uri = env.get(PREFIX + "queueServiceUri") or (
            f"https://{account}.queue.core.windows.net" if account else None
        )
        if not (table_uri or queue_uri):
            return cls(connection_string="UseDevelopmentStorage=true")
        if not (table_uri and queue_uri):
            missing = "tableServiceUri" if not table_uri else "queueServiceUri"
            raise StorageSettingsError(
                f"identity-based storage needs {PREFIX}{missing} (or {PREFIX}accountName) as well"
            )
        return cls(table_uri=table_uri, queue_uri=queue_uri, client_id=env.get(PREFIX + "clientId"))

    def _credential(self) -> Any:
        from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

        if self.client_id:
            return ManagedIdentityCredential(client_id=self.client_id)
        return DefaultAzureCredential()

    def table_service(self) -> TableServiceClient:
        if self.connection_string is not None:
            return TableServiceClient.from_connection_string(self.connection_string)
        assert self.table_uri is not None
        return TableServiceClient(endpoint=self.table_uri, credential=self._credential())

    def queue_client(self, queue_name: str) -> QueueClient:
        """A queue client speaking base64 messages, as the Functions queue trigger expects by default."""
        policies: dict[str, Any] = {
            "message_encode_policy": TextBase64EncodePolicy(),
            "message_decode_policy": TextBase64DecodePolicy(),
        }
        if self.connection_string is not None:
            return QueueClient.from_connection_string(self.connection_string, queue_name, **policies)
        assert self.queue_uri is not None
        return QueueClient(self.queue_uri, queue_name, credential=self._credential(), **policies)


def as_access(connection: str | StorageAccess) -> StorageAccess:
    return (
        connection if isinstance(connection, StorageAccess) else StorageAccess(connection_string=connection)
    )


def merge_if_unchanged(table: TableClient, entity: dict[str, Any], etag: str | None) -> bool:
    """Merge ``entity`` into its row only if the row still has ``etag``; False when another writer
    changed (or deleted) it first -- the caller's claim lost."""
    try:
        table.update_entity(
            entity, mode=UpdateMode.MERGE, etag=etag, match_condition=MatchConditions.IfNotModified
        )
    except (ResourceModifiedError, ResourceNotFoundError):
        return False
    except HttpResponseError as exc:
        if exc.status_code == 412:
            return False
        raise
    return True
