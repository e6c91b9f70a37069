"""Who calls: the principal behind a request's bearer token (CONTRACT.md "Emulator", "Callers and
authorization").

A bearer token that is a JWT (``header.payload.signature``, base64url; the signature is neither
checked nor required, an unsigned ``header.payload.`` is fine) is read for its claims:

- ``oid``: the caller's principal (object) id, the id role assignments and app role assignments name;
- ``tid``: its tenant; ``appid`` (v1 tokens) or ``azp`` (v2): the client application id;
- ``idtyp``: ``app`` for an application token, ``user`` for a user;
- ``upn`` / ``unique_name``: a user's sign-in name, which ARM puts in its refusal messages.

A token that is not a JWT, or a JWT without ``oid``, is the *estate owner*: unrestricted, as the
emulator always was, so tests and demos can build an estate before they restrict anyone. Example::

    header = base64url('{"alg":"none","typ":"JWT"}')
    payload = base64url('{"oid":"1b4e…","tid":"…","appid":"…","idtyp":"app"}')
    Authorization: Bearer <header>.<payload>.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass

from emulator.wire import Request


@dataclass(frozen=True)
class Caller:
    """The principal of one request; ``object_id`` None = the estate owner."""

    object_id: str | None = None
    tenant_id: str | None = None
    app_id: str | None = None
    id_type: str | None = None
    name: str | None = None  # upn / unique_name of a user

    @property
    def is_owner(self) -> bool:
        return self.object_id is None

    @property
    def client(self) -> str:
        """What ARM calls "the client" in its messages: a user's sign-in name, else the object id."""
        return self.name or self.object_id or ""


OWNER = Caller()


def _b64url(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def claims_of(token: str) -> dict[str, object] | None:
    """The payload of a JWT, or None when ``token`` is not one."""
    parts = token.strip().split(".")
    if len(parts) != 3 or not parts[0] or not parts[1]:
        return None
    try:
        header = json.loads(_b64url(parts[0]))
        payload = json.loads(_b64url(parts[1]))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return None
    if not isinstance(header, dict) or not isinstance(payload, dict):
        return None
    return payload


def _text(value: object) -> str | None:
    return value.strip() if isinstance(value, str) and value.strip() else None


def caller_of(req: Request) -> Caller:
    """The caller of ``req`` from its ``Authorization: Bearer`` header."""
    auth = req.headers.get("authorization", "")
    if auth[:7].lower() != "bearer ":
        return OWNER
    claims = claims_of(auth[7:])
    if claims is None:
        return OWNER
    oid = _text(claims.get("oid"))
    if oid is None:
        return OWNER
    return Caller(
        object_id=oid.lower(),
        tenant_id=_text(claims.get("tid")),
        app_id=_text(claims.get("appid")) or _text(claims.get("azp")),
        id_type=_text(claims.get("idtyp")),
        name=_text(claims.get("upn")) or _text(claims.get("unique_name")),
    )
