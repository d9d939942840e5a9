"""The timing functions both engines share: a decision and its draws turned into durations.

The latency path a decision takes (:func:`path_of`), its mutex hold (:func:`hold_ns`) and the
cost after the handler of a request that skips the mutex (:func:`exit_cost`). Both engines call
them, so the arithmetic is the same integer arithmetic in both. Split from
:mod:`hostsim.model`, which makes the draws (:class:`hostsim.request_draws.Block`) they read.
"""

from __future__ import annotations

from hostsim.decode import Decision
from hostsim.records import Path
from hostsim.request_draws import Block
from hostsim.rules import Kind


def path_of(d: Decision) -> Path:
    """The latency path a decision takes."""
    if d.kind == Kind.USERSPACE_EXIT:
        return Path.USERSPACE_EXIT
    if d.kind == Kind.PROGRAM_INTERRUPT:
        return Path.PROGRAM_CHECK
    if d.kind == Kind.NO_HOOK_RC01:
        return Path.NO_HOOK_RC01
    if d.rule == "disable.done":
        return Path.HOOK_DISABLE
    if d.hw_aqic_calls:
        return Path.HOOK_ENABLE
    return Path.HOOK_SOFTWARE


def hold_ns(d: Decision, blk: Block, r: int, c: int) -> int:
    """Mutex hold of a hook-served decision: every step the hook takes under the mutex."""
    cost = blk.costs
    h = int(cost["mutex_acquire"][r, c]) + int(cost["lookup"][r, c])
    if d.pin:
        h += int(cost["pin"][r, c])
    if d.gisc:
        h += int(cost["gisc_register"][r, c])
    for name, n in (
        ("host_aqic", d.hw_aqic_calls),
        ("host_tapq", d.hw_tapq_calls),
        ("msleep20", d.sleeps),
    ):
        for j in range(n):
            h += int(cost.slot(name, j)[r, c])
    return h


def exit_cost(d: Decision, blk: Block, r: int, c: int) -> int:
    """Cost after the handler for a request that did not go through the mutex."""
    if d.kind == Kind.USERSPACE_EXIT:
        return int(blk.costs["userspace_exit"][r, c])
    if d.kind == Kind.PROGRAM_INTERRUPT:
        return int(blk.costs["pgm_inject"][r, c])
    return 0
