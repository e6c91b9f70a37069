"""The storage every other test stands on: tables and queues answer through the real SDKs."""

from __future__ import annotations

import uuid

from azure.data.tables import TableServiceClient
from azure.storage.queue import QueueClient


def test_tables_and_queues_round_trip(storage_connection_string: str) -> None:
    table_name = "t" + uuid.uuid4().hex[:12]
    service = TableServiceClient.from_connection_string(storage_connection_string)
    table = service.create_table(table_name)
    table.upsert_entity({"PartitionKey": "p", "RowKey": "r", "value": 42})
    assert table.get_entity("p", "r")["value"] == 42

    queue = QueueClient.from_connection_string(storage_connection_string, "q" + uuid.uuid4().hex[:12])
    queue.create_queue()
    queue.send_message("hello")
    messages = list(queue.receive_messages())
    assert [m.content for m in messages] == ["hello"]
    assert messages[0].dequeue_count == 1
