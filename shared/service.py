"""``MoveService``: the engine's facade (see DESIGN.md "Engine facade").

Work in progress: signatures are stable, bodies land next.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from shared.settings import Settings

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def new_uuid() -> str:
    return str(uuid.uuid4())


class MoveService:
    def __init__(
        self, settings: Settings, *, clock: Clock = utc_now, new_id: Callable[[], str] = new_uuid
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.new_id = new_id

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> MoveService:
        return cls(settings, **kwargs)

    def start(self, body: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def get(self, move_id: str) -> dict[str, Any]:
        raise NotImplementedError

    def list(
        self,
        status: str | None = None,
        source_region: str | None = None,
        top: int = 50,
        skip_token: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        raise NotImplementedError

    def commit(self, move_id: str) -> dict[str, Any]:
        raise NotImplementedError

    def cancel(self, move_id: str) -> dict[str, Any]:
        raise NotImplementedError

    def retry(self, move_id: str) -> dict[str, Any]:
        raise NotImplementedError

    def discard(self, move_id: str) -> dict[str, Any]:
        raise NotImplementedError

    def handle_message(self, body: str, dequeue_count: int) -> None:
        raise NotImplementedError

    def handle_poison(self, body: str) -> None:
        raise NotImplementedError

    def publish_outbox(self) -> int:
        raise NotImplementedError

    def start_region_decommission(self, event_id: str, data: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError
