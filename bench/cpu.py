"""CPU-seconds of processes and their descendants, from ``/proc`` (Linux): no I/O beyond reading it.

``/proc/<pid>/stat`` gives utime and stime (the process's own threads) and cutime and cstime (its
children that have exited and were waited for), in clock ticks. A process's "tree" time adds every
live descendant's own stat too (Azurite is a node process; ``npx``-style wrappers would start it as
a child). Take a snapshot before and after a run and subtract.

Example::

    before = tree_seconds(pid)
    ...
    spent = tree_seconds(pid) - before
"""

from __future__ import annotations

import os
from pathlib import Path

TICK = float(os.sysconf("SC_CLK_TCK")) if hasattr(os, "sysconf") else 100.0


def _fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # gone, or not Linux
        return None
    return text[text.rindex(")") + 2 :].split()  # after "pid (comm) ": state ppid ...


def own_seconds(pid: int) -> float:
    """utime + stime + cutime + cstime of ``pid`` (0.0 when it is gone)."""
    fields = _fields(pid)
    if fields is None:
        return 0.0
    return sum(int(v) for v in fields[11:15]) / TICK


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _fields(int(entry.name))
            if fields is not None:
                children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def tree_seconds(pid: int) -> float:
    """CPU-seconds of ``pid`` and every live descendant (with their reaped children)."""
    return round(sum(own_seconds(p) for p in [pid, *descendants(pid)]), 3)


def snapshot(groups: dict[str, list[int]]) -> dict[str, float]:
    """``{"hosts": [pids], "emulator": [pid], ...}`` -> CPU-seconds per group, trees summed."""
    return {name: round(sum(tree_seconds(p) for p in pids), 3) for name, pids in groups.items()}
