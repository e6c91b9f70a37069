"""Every crashpoint the engine and the phases declare: the registry the crash-anywhere suite walks.

A crashpoint is a named moment between two writes (``ctx.crashpoint(name)`` / ``Engine.crashpoint``)
where a test may stop the process. The names are generated here from the phase table, so a new
phase or a new point cannot be forgotten by the suite (``tests/test_engine_crashes.py`` also checks
that a real move passes through exactly the points declared for it).

==========================  ==============================================================
point                       between
==========================  ==============================================================
``start:after-send``        the first message and the move record (Pending + Started event)
``start:after-record``      the move record and answering the caller (publishing the event)
``{p}:after-claim``         claiming a phase's step for one message (or the previous phase's
                            completion claiming it, chained) and running it
``{p}:after-run``           a single-step phase's Azure work and saving its result
``snapshot:after-save``     the snapshot rows and the move record
``{p}:after-items``         a fanned-out phase's item rows and running its items (in its own step,
                            up to ``IDMOVE_INLINE_ITEMS``) or sending its batch messages
``{p}:after-send-batch``    one batch message and the next (more items than run in one step)
``{p}:item-done``           an item's Azure write and marking the item Done
``{p}:after-send-next``     the next phase's message and the move record saying so (cleanup's way
                            back to grant; phase completions claim the next step in their save)
``{p}:before-save``         everything of a step and saving the move record + its events
``discard:after-resource``  restoring one resource and the next
``cleanup:after-snapshot``  cleanup found new source access: the widened snapshot, back to grant
==========================  ==============================================================

A region decommission's steps (``shared/decommission.py``, ``Decommissions.crashpoint``):

===============================  =========================================================
point                            between
===============================  =========================================================
``decommission:after-record``    the decommission's row and its ``subscriptions`` message
``decommission:after-pending``   a page's ``pending|start|`` rows and its ``starts`` messages
``decommission:after-claim``     a ``starts`` message's claim and its links and moves
``decommission:after-move``      one move of a ``starts`` message and the next (or its marks)
``decommission:after-marks``     a ``starts`` message's marks (one transaction) and its check
``decommission:after-summary``   the summary event and the decommission's ``Done``
``decommission:after-start``     a ``start`` message's move and its mark (messages sent
                                 before ``starts``: ``for_decommission_start``)
===============================  =========================================================
"""

from __future__ import annotations

from shared.phases import DISCARD, PHASES


def for_move() -> list[str]:
    """The points a committed move (snapshot ... cleanup) passes through, in order, with its phases'
    items run in their own steps (the default for a few items)."""
    names = ["start:after-send", "start:after-record"]
    for phase in PHASES:
        names.append(f"{phase.name}:after-claim")
        if phase.items:
            names += [f"{phase.name}:after-items", f"{phase.name}:item-done"]
        else:
            names.append(f"{phase.name}:after-run")
        if phase.name == "snapshot":
            names.append("snapshot:after-save")
        names.append(f"{phase.name}:before-save")
    return names


def for_batches() -> list[str]:
    """What a move passes through beyond ``for_move`` when its phases' items go out as batch messages
    (``IDMOVE_INLINE_ITEMS`` = 0, or more items than that)."""
    return [f"{phase.name}:after-send-batch" for phase in PHASES if phase.items]


def for_discard() -> list[str]:
    return [
        f"{DISCARD.name}:after-claim",
        f"{DISCARD.name}:after-resource",
        f"{DISCARD.name}:after-run",
        f"{DISCARD.name}:before-save",
    ]


def for_source_changed() -> list[str]:
    """Cleanup found access granted to the source after the snapshot: back to grant first."""
    return ["cleanup:after-snapshot", "cleanup:after-send-next"]


def for_decommission() -> list[str]:
    """The points a region decommission passes through, in order (``tests/test_decommission_fanout.py``
    crashes at each and checks that a real one passes through exactly these)."""
    return [
        "decommission:after-record",
        "decommission:after-pending",
        "decommission:after-claim",
        "decommission:after-move",
        "decommission:after-marks",
        "decommission:after-summary",
    ]


def for_decommission_start() -> list[str]:
    """A one-identity ``start`` message's (sent before ``starts`` existed; still accepted)."""
    return ["decommission:after-start"]


ALL: frozenset[str] = frozenset(
    [
        *for_move(),
        *for_batches(),
        *for_discard(),
        *for_source_changed(),
        *for_decommission(),
        *for_decommission_start(),
    ]
)


def is_declared(name: str) -> bool:
    return name in ALL
