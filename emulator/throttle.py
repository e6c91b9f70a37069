"""ARM request throttling and the Resource Graph user quota.

ARM (FACTS.md "Azure Resource Manager"): a token bucket per subscription and operation kind —
reads 250 / 25 per s, writes 200 / 10 per s, deletes 200 / 10 per s. Every answer carries
``x-ms-ratelimit-remaining-subscription-{reads|writes|deletes}`` (``-tenant-`` for tenant-level
calls); over budget it is 429 ``SubscriptionRequestsThrottled`` (``TenantRequestsThrottled``) with
``Retry-After`` and "Please try again after 'n' seconds", the code and wording ARM's own throttling
uses (public MicrosoftDocs/azure-docs threads #105248, #51431); ``TooManyRequests`` is what some
resource providers answer for their own limits, not ARM's buckets. ``timeScale`` multiplies
the refill rate so tests need not wait real seconds. Subscription-level answers also carry the second
generation, ``x-ms-ratelimit-remaining-subscription-global-{reads|writes|deletes}``: the budget of all
principals together, 15 times the per-principal one (recorded Azure traffic of 2025,
``tests/conformance/recordings/role-assignments/test_role_assignment_at_scope.yaml``: 2999 and 199
after one write, 3749 after one read).

Resource Graph (FACTS.md): about 15 queries per 5 s per user, reported in
``x-ms-user-quota-remaining`` / ``x-ms-user-quota-resets-after`` (``hh:mm:ss``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

from emulator.errors import ArmError


def kind_of(method: str) -> str:
    if method in ("GET", "HEAD"):
        return "reads"
    if method == "DELETE":
        return "deletes"
    return "writes"


GLOBAL_FACTOR = 15  # the global budget is 15x the per-principal one (FACTS.md)


@dataclass
class Bucket:
    tokens: float
    stamp: float


class Throttle:
    """Token buckets keyed by (subscription or 'tenant', kind). Call with the state lock held."""

    def __init__(self) -> None:
        self.buckets: dict[tuple[str, str], Bucket] = {}
        self.graph_windows: dict[str, tuple[float, int]] = {}  # caller -> (window start, used)

    def reset(self) -> None:
        self.buckets.clear()
        self.graph_windows.clear()

    def take(self, cfg: dict[str, Any], scope: str, kind: str) -> dict[str, str]:
        """Spend one token; returns the remaining-budget header, or raises 429."""
        scope_word = "tenant" if scope == "tenant" else "subscription"
        header = f"x-ms-ratelimit-remaining-{scope_word}-{kind}"
        spec = cfg[kind]
        capacity = float(spec["capacity"])
        rate = float(spec["refillPerSecond"]) * float(cfg["timeScale"])
        extra: dict[str, str] = {}
        if scope != "tenant":
            extra = self._take_global(cfg, scope, kind, capacity * GLOBAL_FACTOR, rate * GLOBAL_FACTOR)
        if not cfg["enabled"]:
            return {header: str(int(capacity) - 1), **extra}
        now = time.monotonic()
        bucket = self.buckets.get((scope, kind))
        if bucket is None:
            bucket = self.buckets[(scope, kind)] = Bucket(capacity, now)
        bucket.tokens = min(capacity, bucket.tokens + (now - bucket.stamp) * rate)
        bucket.stamp = now
        if bucket.tokens < 1.0:
            wait = (1.0 - bucket.tokens) / rate if rate > 0 else 3600.0
            from emulator.state import CALLER_ID  # local: state imports this module

            seconds = max(1, math.ceil(wait))
            raise ArmError(
                429,
                "TenantRequestsThrottled" if scope == "tenant" else "SubscriptionRequestsThrottled",
                f"Number of '{kind[:-1]}' requests for {scope_word} '{scope}' actor '{CALLER_ID}' exceeded. Please try "
                f"again after '{seconds}' seconds after additional tokens are available. Refer to "
                "https://aka.ms/arm-throttling",
                headers={
                    "Retry-After": str(seconds),
                    "retry-after-ms": str(max(1, math.ceil(wait * 1000))),
                    header: "0",
                },
            )
        bucket.tokens -= 1.0
        return {header: str(int(bucket.tokens)), **extra}

    def _take_global(
        self, cfg: dict[str, Any], scope: str, kind: str, capacity: float, rate: float
    ) -> dict[str, str]:
        """Spend one token of the all-principals bucket; only reported (the per-principal one runs out first)."""
        header = f"x-ms-ratelimit-remaining-subscription-global-{kind}"
        if not cfg["enabled"]:
            return {header: str(int(capacity) - 1)}
        now = time.monotonic()
        bucket = self.buckets.get((scope, f"global-{kind}"))
        if bucket is None:
            bucket = self.buckets[(scope, f"global-{kind}")] = Bucket(capacity, now)
        bucket.tokens = max(0.0, min(capacity, bucket.tokens + (now - bucket.stamp) * rate) - 1.0)
        bucket.stamp = now
        return {header: str(int(bucket.tokens))}

    def take_graph_query(self, cfg: dict[str, Any], caller: str) -> dict[str, str]:
        """Spend one Resource Graph query from the caller's window; 429 when exhausted."""
        spec = cfg["resourceGraph"]
        capacity = int(spec["capacity"])
        window = float(spec["windowSeconds"]) / float(cfg["timeScale"])
        now = time.monotonic()
        start, used = self.graph_windows.get(caller, (now, 0))
        if now - start >= window:
            start, used = now, 0
        resets = max(0.0, window - (now - start))
        hhmmss = time.strftime("%H:%M:%S", time.gmtime(math.ceil(resets)))
        if cfg["enabled"] and used >= capacity:
            raise ArmError(
                429,
                "RateLimiting",
                "Please provide below info when asking for support: timestamp, correlation id. "
                "Client application has been throttled and should not attempt to repeat the request until an amount "
                "of time has elapsed.",
                headers={
                    "Retry-After": str(max(1, math.ceil(resets))),
                    "retry-after-ms": str(max(1, math.ceil(resets * 1000))),
                    "x-ms-user-quota-remaining": "0",
                    "x-ms-user-quota-resets-after": hhmmss,
                },
            )
        used += 1
        self.graph_windows[caller] = (start, used)
        return {
            "x-ms-user-quota-remaining": str(max(0, capacity - used)),
            "x-ms-user-quota-resets-after": hhmmss,
            # recorded Resource Graph answers (2020, 2021) carry it too, with the same figure
            "x-ms-ratelimit-remaining-tenant-resource-requests": str(max(0, capacity - used)),
        }
