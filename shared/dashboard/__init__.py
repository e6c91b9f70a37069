"""The operator's web page (``GET /api/dashboard``): plain HTML, CSS and JavaScript, no build step.

``index.html``, ``dashboard.css`` and ``dashboard.js`` sit next to this module (package data) and
are served as ONE response: the style and script are inlined, so the page needs no other route
(in Azure every ``/api`` request needs the function key, which the page carries only into its API
calls) and its Content-Security-Policy can forbid everything but this origin and the page's nonce.
The page gets the statuses and the command table (``shared/statuses.py``) from the server, so it
offers exactly the commands the API accepts.

Example::

    html, csp = page(api_base="/api")
"""

from __future__ import annotations

import json
import secrets
from functools import cache
from importlib import resources

from shared.statuses import COMMANDS, Status

__all__ = ["page"]


@cache
def _asset(name: str) -> str:
    return resources.files(__name__).joinpath(name).read_text(encoding="utf-8")


def page(api_base: str = "/api") -> tuple[str, str]:
    """The page and its Content-Security-Policy header (a fresh nonce per response)."""
    nonce = secrets.token_urlsafe(16)
    config = {
        "apiBase": api_base,
        "statuses": [status.value for status in Status],
        "commands": {name: sorted(s.value for s in allowed) for name, allowed in COMMANDS.items()},
        "pollMilliseconds": 2000,
        "pageSize": 25,
    }
    html = (
        _asset("index.html")
        .replace("__CSS__", _asset("dashboard.css"))
        .replace("__JS__", _asset("dashboard.js"))
        .replace("__CONFIG__", json.dumps(config).replace("</", "<\\/"))
        .replace("__NONCE__", nonce)
    )
    csp = (
        f"default-src 'none'; script-src 'nonce-{nonce}'; style-src 'nonce-{nonce}'; "
        "connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )
    return html, csp
