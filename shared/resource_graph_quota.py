"""What Resource Graph last said of this process's query quota (FACTS.md: about 15 queries per 5 s
per user, in ``x-ms-user-quota-remaining`` and ``x-ms-user-quota-resets-after`` (``hh:mm:ss``), and
``Retry-After`` on a 429).

Fleet discovery reads it to size its generations (``shared/fleet_discovery.py``): a generation whose
query could not run before the quota resets gathers members until then, for free, instead of
running as a small query that is refused or leaves the next generation nothing to run with. One per
process; the quota is the user's, so another process's queries spend it too: what this process saw
last is a lower bound of the wait, which is all a gathering needs.

Example::

    QUOTA.observe(response.http_response.headers)
    QUOTA.free_at()   # None, or when the next query may run (UTC)
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta


def _now() -> datetime:
    return datetime.now(UTC)


def _seconds(text: str) -> float | None:
    """``hh:mm:ss`` (Resource Graph's ``resets-after``) or plain seconds (``Retry-After``)."""
    try:
        if ":" in text:
            h, m, s = (float(p) for p in text.split(":"))
            return h * 3600 + m * 60 + s
        return float(text)
    except ValueError:
        return None


class Quota:
    def __init__(self, clock: Callable[[], datetime] = _now) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._free_at: datetime | None = None

    def observe(self, headers: Mapping[str, str], refused: bool = False) -> None:
        """An answer's headers: no quota left (or refused, 429) means none until it resets."""
        remaining = headers.get("x-ms-user-quota-remaining")
        wait = _seconds(str(headers.get("x-ms-user-quota-resets-after") or ""))
        if refused:
            wait = max(wait or 0.0, _seconds(str(headers.get("Retry-After") or "")) or 0.0)
        elif remaining is None or not str(remaining).strip().isdigit() or int(remaining) > 0:
            with self._lock:
                self._free_at = None
            return
        if wait:
            with self._lock:
                self._free_at = self.clock() + timedelta(seconds=wait)

    def free_at(self) -> datetime | None:
        """When the next query may run, if not now."""
        with self._lock:
            at = self._free_at
        return at if at is not None and at > self.clock() else None


QUOTA = Quota()
