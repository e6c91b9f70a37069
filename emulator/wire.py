"""The request and response objects handlers see, independent of the HTTP server underneath."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

from emulator.errors import ArmError


@dataclass
class Request:
    """One HTTP request. ``query`` keys are lower-cased (ARM reads ``$skipToken`` and ``$skiptoken`` alike)."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-cased names
    body: bytes
    base_url: str  # e.g. http://127.0.0.1:7070, from the Host header, for nextLink/Location

    @classmethod
    def build(cls, method: str, target: str, headers: dict[str, str], body: bytes) -> Request:
        path, _, raw_query = target.partition("?")
        query = {k.lower(): v for k, v in parse_qsl(raw_query, keep_blank_values=True)}
        host = headers.get("host", "127.0.0.1")
        return cls(method.upper(), path or "/", query, headers, body, f"http://{host}")

    @property
    def raw_query(self) -> str:
        return urlencode(self.query)

    def json(self, required: bool = True) -> Any:
        """The JSON body. ARM answers unreadable JSON with 400 ``InvalidRequestContent``."""
        if not self.body.strip():
            if required:
                raise ArmError(
                    400,
                    "InvalidRequestContent",
                    "The request content was invalid and could not be deserialized: the body is empty.",
                )
            return None
        try:
            return json.loads(self.body)
        except ValueError as exc:
            raise ArmError(
                400,
                "InvalidRequestContent",
                f"The request content was invalid and could not be deserialized: '{exc}'.",
            ) from exc

    def json_object(self) -> dict[str, Any]:
        value = self.json()
        if not isinstance(value, dict):
            raise ArmError(
                400,
                "InvalidRequestContent",
                "The request content was invalid and could not be deserialized: expected a JSON object.",
            )
        return value

    def next_link(self, token_name: str, token: str, extra: dict[str, str] | None = None) -> str:
        """Full URL of the next page: same path and query, plus the continuation token."""
        params = {k: v for k, v in self.query.items() if k not in ("$skiptoken", token_name.lower())}
        if extra:
            params.update(extra)
        params[token_name] = token
        return f"{self.base_url}{quote(self.path)}?{urlencode(params, safe='$')}"


@dataclass
class Response:
    status: int
    body: Any = None  # JSON-serialisable, or None for an empty body
    headers: dict[str, str] = field(default_factory=dict)

    def encode(self) -> bytes:
        if self.body is None:
            return b""
        return json.dumps(self.body, separators=(",", ":")).encode()
