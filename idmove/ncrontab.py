"""NCRONTAB schedules as Azure Functions timer triggers read them, for the local host.

Six fields - ``{second} {minute} {hour} {day} {month} {day-of-week}`` - each ``*``, a number, a
range ``a-b``, a step ``*/n`` or ``a-b/n``, or a comma list of those. Day-of-week 0 is Sunday.
A ``hh:mm:ss`` TimeSpan (App Service plans) means "every that long".

Example::

    Schedule.parse("0 */5 * * * *").next_after(datetime(2026, 1, 1, 10, 2, 7))
    # -> datetime(2026, 1, 1, 10, 5, 0)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

_RANGES = ((0, 59), (0, 59), (0, 23), (1, 31), (1, 12), (0, 6))
_NAMES = ("second", "minute", "hour", "day", "month", "day-of-week")


def _field(text: str, low: int, high: int, name: str) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        match = re.fullmatch(r"(\*|\d+(?:-\d+)?)(?:/(\d+))?", part.strip())
        if match is None:
            raise ValueError(f"bad {name} field {text!r} in NCRONTAB schedule")
        span, step = match[1], int(match[2] or 1)
        if span == "*":
            start, stop = low, high
        elif "-" in span:
            start, stop = (int(x) for x in span.split("-"))
        else:
            start = int(span)
            stop = high if match[2] else start
        if not low <= start <= stop <= high or step < 1:
            raise ValueError(f"{name} field {text!r} out of range {low}-{high}")
        values.update(range(start, stop + 1, step))
    return frozenset(values)


@dataclass(frozen=True)
class Schedule:
    fields: tuple[frozenset[int], ...] = ()
    every: timedelta | None = None

    @classmethod
    def parse(cls, text: str) -> Schedule:
        text = text.strip()
        span = re.fullmatch(r"(\d{1,2}):(\d{2}):(\d{2})", text)
        if span:
            every = timedelta(hours=int(span[1]), minutes=int(span[2]), seconds=int(span[3]))
            if every <= timedelta(0):
                raise ValueError(f"TimeSpan schedule {text!r} must be positive")
            return cls(every=every)
        parts = text.split()
        if len(parts) != 6:
            raise ValueError(
                f"NCRONTAB schedule {text!r} needs 6 fields (second minute hour day month day-of-week)"
            )
        return cls(
            fields=tuple(_field(p, lo, hi, n) for p, (lo, hi), n in zip(parts, _RANGES, _NAMES, strict=True))
        )

    def matches(self, at: datetime) -> bool:
        second, minute, hour, day, month, weekday = self.fields
        return (
            at.second in second
            and at.minute in minute
            and at.hour in hour
            and at.day in day
            and at.month in month
            and (at.isoweekday() % 7) in weekday
        )

    def next_after(self, after: datetime) -> datetime:
        """The first firing time strictly after ``after`` (searched second by second, within a year)."""
        if self.every is not None:
            return after + self.every
        at = after.replace(microsecond=0) + timedelta(seconds=1)
        limit = at + timedelta(days=366)
        while at < limit:
            if (
                at.month not in self.fields[4]
                or at.day not in self.fields[3]
                or at.isoweekday() % 7 not in self.fields[5]
            ):
                at = (at + timedelta(days=1)).replace(hour=0, minute=0, second=0)
                continue
            if at.hour not in self.fields[2]:
                at = (at + timedelta(hours=1)).replace(minute=0, second=0)
                continue
            if at.minute not in self.fields[1]:
                at = (at + timedelta(minutes=1)).replace(second=0)
                continue
            if self.matches(at):
                return at
            at += timedelta(seconds=1)
        raise ValueError("schedule never fires within a year")
