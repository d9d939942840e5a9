"""The keyed random draws of one host event: its costs and its hardware faults.

A host event's program (:mod:`hostsim.host_ops`) draws every cost by the event, its queue and
the call, and every hardware fault by the event, its queue and the call (the draw families of
:mod:`hostsim.draws`), so a cost's distribution never moves another cost's values. Kept apart
from the programs so the draws are read in one place, without the steps that use them.
"""

from __future__ import annotations

import numpy as np

from hostsim import arch, draws
from hostsim.hw_profiles import answers
from hostsim.intercept import AQIC_SLOTS, TAPQ_SLOTS
from hostsim.model import Model

SLOTS = 16  # keyed cost draws per queue and cost; more calls draw a further block of slots


class HostCosts:
    """The keyed cost draws of one host event: by cost name, queue and call."""

    def __init__(self, m: Model, index: int, nq: int) -> None:
        self.m, self.ek, self.nq = m, m.event_keys[index], max(nq, 1)
        self.cache: dict[tuple[str, int], np.ndarray] = {}

    def __call__(self, name: str, q: int = 0, k: int = 0) -> int:
        blk = k // SLOTS
        a = self.cache.get((name, blk))
        if a is None:
            lv = np.repeat(np.arange(self.nq, dtype=np.int64), SLOTS)
            kk = np.tile(np.arange(SLOTS, dtype=np.int64), self.nq) + blk * SLOTS
            gen = draws.keyed(self.m.s.seed, f"host-cost:{name}", self.ek, lv, kk)
            a = self.cache[(name, blk)] = (
                self.m.s.costs[name].sample(gen, gen.shape).reshape(self.nq, SLOTS)
            )
        return int(a[q, k % SLOTS])


class HostFaults:
    """Hardware faults of one host event's calls (the scenario's probabilities, through the
    model's own answer mapping): NORMAL unless a fault is drawn."""

    def __init__(self, m: Model, index: int, apqns: np.ndarray) -> None:
        s, ek, nq = m.s, m.event_keys[index], len(apqns)
        queues = np.arange(nq, dtype=np.int64)
        zero = np.zeros(nq, np.int64)
        au = draws.keyed(s.seed, draws.HOST_HW_AQIC, ek, queues, zero).random((nq, AQIC_SLOTS))
        tu = draws.keyed(s.seed, draws.HOST_HW_TAPQ, ek, queues, zero).random((nq, TAPQ_SLOTS))
        iu = draws.keyed(s.seed, draws.HOST_HW_IRQ, ek, queues, zero).random((nq, TAPQ_SLOTS))
        prof = m.profile_index(apqns)
        aq, self.trc, self.tirq, _ = answers(m.profiles, prof, au, tu, iu, np.ones(nq))
        self.arc = (aq >> arch.STATUS_RC_SHIFT) & 0xFF

    def aqic(self, q: int, j: int) -> int:
        return int(self.arc[q, j % AQIC_SLOTS])

    def tapq(self, q: int, j: int) -> tuple[int, bool]:
        return int(self.trc[q, j % TAPQ_SLOTS]), bool(self.tirq[q, j % TAPQ_SLOTS])
