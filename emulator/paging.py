"""ARM-style paging: ``{"value": [...], "nextLink": <full URL>}`` with an opaque ``$skiptoken``."""

from __future__ import annotations

import base64
from typing import Any

from emulator.errors import ArmError
from emulator.wire import Request


def encode_token(offset: int) -> str:
    return base64.urlsafe_b64encode(f"o:{offset}".encode()).decode().rstrip("=")


def decode_token(token: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        if not raw.startswith("o:"):
            raise ValueError(raw)
        return int(raw[2:])
    except (ValueError, UnicodeDecodeError) as exc:
        raise ArmError(400, "InvalidSkipToken", f"The skip token '{token}' is not valid.") from exc


def page_size(request: Request, default: int) -> int:
    top = request.query.get("$top")
    if top is None or top == "":
        return default
    try:
        value = int(top)
    except ValueError as exc:
        raise ArmError(
            400, "InvalidQueryParameterValue", f"Invalid value '{top}' for query parameter '$top'."
        ) from exc
    if value < 1:
        raise ArmError(
            400, "InvalidQueryParameterValue", f"Invalid value '{top}' for query parameter '$top'."
        )
    return value


def page(
    request: Request, items: list[Any], default_size: int, token_name: str = "$skiptoken"
) -> dict[str, Any]:
    """One page of ``items`` (already in a stable order) and the link to the next one."""
    token = request.query.get(token_name.lower()) or request.query.get("$skiptoken")
    offset = decode_token(token) if token else 0
    size = page_size(request, default_size)
    body: dict[str, Any] = {"value": items[offset : offset + size]}
    if offset + size < len(items):
        body["nextLink"] = request.next_link(token_name, encode_token(offset + size))
    return body
