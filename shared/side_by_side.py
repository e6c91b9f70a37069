"""A step's independent calls, side by side on a few threads: the step waits for the slowest, not for
their sum (a move's discovery of each kind of access, the items a step runs itself).

Each call runs on its thread as part of the calling thread's move and unit of work
(``arm_pacing.carry``): the writes it makes count for the move's budget leases, and its first write
may go back to the queue only if the caller's unit could still give one back. Every call runs to its
end; then the first exception, in the order of ``calls``, is raised, so which error a step reports
does not depend on which thread finished first.

Example::

    found = side_by_side([partial(read, kind) for kind in KINDS])   # results in the order of the calls
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from shared.arm_pacing import carry

T = TypeVar("T")


def side_by_side(calls: Sequence[Callable[[], T]], width: int) -> list[T]:
    """Each call's result, in the order of ``calls``, on up to ``width`` threads (``Settings.
    step_width``, ``IDMOVE_STEP_WIDTH``); one call (or ``width`` 1) runs on this thread."""
    if len(calls) <= 1 or width <= 1:
        return [call() for call in calls]
    with ThreadPoolExecutor(min(width, len(calls))) as pool:
        futures = [pool.submit(carry(call)) for call in calls]
    for future in futures:
        error = future.exception()
        if error is not None:
            raise error
    return [future.result() for future in futures]
