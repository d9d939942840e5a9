"""The keyed random draws of one host event: its costs and its hardware faults.

A host event's program (:mod:`hostsim.host_ops`) draws every cost by the event, its queue and
the call, and every hardware fault by the event, its queue and the call (the draw families of
:mod:`hostsim.draws`), so a cost's distribution never moves another cost's values. Kept apart
from the programs so the draws are read in one place, without the steps that use them.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from hostsim import arch, draws
from hostsim.hw_profiles import answers
from hostsim.intercept import AQIC_SLOTS, TAPQ_SLOTS
from hostsim.model import Model

SLOTS = 16  # keyed cost draws per queue and cost; more calls draw a further block of slots
EVENTS_AT_ONCE = 64  # host events whose draws of one family are made together


def _chunk(
    m: Model,
    key: tuple[str, int],
    index: int,
    nq: int,
    draw: Callable[[np.ndarray, int], np.ndarray],
) -> np.ndarray:
    """Host event ``index``'s row of the block ``key`` (family, slot block) of its chunk of
    :data:`EVENTS_AT_ONCE` events, at least ``nq`` queues wide: ``draw(event keys, width)``
    makes the chunk's block (``(events, width, ...)``) on first use or when a wider one is
    asked for. Many events ask for the same draws: one numpy pass serves a chunk of them."""
    c = index // EVENTS_AT_ONCE
    a = m.host_draws.get((*key, c))
    if a is None or a.shape[1] < nq:
        events = np.array(m.event_keys[c * EVENTS_AT_ONCE : (c + 1) * EVENTS_AT_ONCE], np.int64)
        a = m.host_draws[(*key, c)] = draw(events, max(nq, 1 if a is None else 2 * a.shape[1]))
    return a[index - c * EVENTS_AT_ONCE]


def cost_block(m: Model, name: str, blk: int, index: int, nq: int) -> np.ndarray:
    """Call slots ``blk * SLOTS`` on of cost ``name`` for host event ``index``'s first ``nq``
    queues (or more): ``(queues, SLOTS)``, the values of the event's own keyed draws (its key,
    the queue, the call), drawn with its chunk of events."""

    def draw(events: np.ndarray, width: int) -> np.ndarray:
        shape = (len(events), width * SLOTS)
        lv = np.broadcast_to(np.repeat(np.arange(width, dtype=np.int64), SLOTS), shape)
        kk = np.tile(np.arange(SLOTS, dtype=np.int64), width) + blk * SLOTS
        gen = draws.keyed(m.s.seed, f"host-cost:{name}", events, lv, np.broadcast_to(kk, shape))
        return m.s.costs[name].sample(gen, gen.shape).reshape(len(events), width, SLOTS)

    return _chunk(m, (name, blk), index, nq, draw)


class HostCosts:
    """The keyed cost draws of one host event: by cost name, queue and call."""

    def __init__(self, m: Model, index: int, nq: int) -> None:
        self.m, self.index, self.nq = m, index, max(nq, 1)
        #: this event's rows of the chunk blocks (a program asks for each many times)
        self.cache: dict[tuple[str, int], np.ndarray] = {}

    def __call__(self, name: str, q: int = 0, k: int = 0) -> int:
        blk = k // SLOTS
        a = self.cache.get((name, blk))
        if a is None:
            a = self.cache[(name, blk)] = cost_block(self.m, name, blk, self.index, self.nq)
        return int(a[q, k % SLOTS])


def fault_block(m: Model, family: draws.Family, index: int, nq: int, slots: int) -> np.ndarray:
    """The uniforms of ``family`` for the ``slots`` calls of host event ``index``'s first
    ``nq`` queues (or more): ``(queues, slots)``, the event's own keyed draws (its key, the
    queue; the calls are sub-slots), drawn with its chunk of events."""

    def draw(events: np.ndarray, width: int) -> np.ndarray:
        shape = (len(events), width)
        lv = np.broadcast_to(np.arange(width, dtype=np.int64), shape)
        return draws.keyed(m.s.seed, family, events, lv, np.zeros(shape, np.int64)).random(
            (*shape, slots)
        )

    return _chunk(m, (family.name, -1), index, nq, draw)


class HostFaults:
    """Hardware faults of one host event's calls (the scenario's probabilities, through the
    model's own answer mapping): NORMAL unless a fault is drawn."""

    def __init__(self, m: Model, index: int, apqns: np.ndarray) -> None:
        nq = len(apqns)
        au = fault_block(m, draws.HOST_HW_AQIC, index, nq, AQIC_SLOTS)[:nq]
        tu = fault_block(m, draws.HOST_HW_TAPQ, index, nq, TAPQ_SLOTS)[:nq]
        iu = fault_block(m, draws.HOST_HW_IRQ, index, nq, TAPQ_SLOTS)[:nq]
        prof = m.profile_index(apqns)
        aq, self.trc, self.tirq, _ = answers(m.profiles, prof, au, tu, iu, np.ones(nq))
        self.arc = (aq >> arch.STATUS_RC_SHIFT) & 0xFF

    def aqic(self, q: int, j: int) -> int:
        return int(self.arc[q, j % AQIC_SLOTS])

    def tapq(self, q: int, j: int) -> tuple[int, bool]:
        return int(self.trc[q, j % TAPQ_SLOTS]), bool(self.tirq[q, j % TAPQ_SLOTS])
