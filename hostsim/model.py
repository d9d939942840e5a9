"""What both engines share: the random draws of every request, the register state, the timing.

Randomness is keyed, not consumed in event order: request ``k`` of vCPU ``v`` always gets the same
draws, whichever engine asks, in whatever order and grouping. Every draw is a counter-based hash
of ``(seed, family, group, local vCPU, k)`` (:mod:`hostsim.keyed`), one declared family per kind
of draw (:mod:`hostsim.draws`: arrivals, each part of the registers, each hardware answer, each
named cost), so changing one cost's distribution does not move any other draw (common random
numbers across variants and lock models), and no draw is made for a request that never happens.
Groups are keyed by name and host events by identity, so adding one moves no other's draws.
The reference engine draws a block of requests at a time (64 vCPUs x a few requests, cached);
the fast engine draws exactly the requests it plans. Block shapes are a cache choice only: they
never change a value.

Here: :class:`Model`, a scenario made ready to simulate, and its draw cache. What it makes
lives beside it: the draws of a set of requests (:mod:`hostsim.request_draws`), the hardware
profiles and their answers (:mod:`hostsim.hw_profiles`), the scripts, matrices, views and clocks
of the run (:mod:`hostsim.dynamics`); the request's stage chain that turns a decision and its
draws into durations is :mod:`hostsim.chain`.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np

from hostsim import draws, hw_profiles
from hostsim.dists import MAX_NS
from hostsim.dynamics import build_dynamics
from hostsim.intercept import AQIC_SLOTS, TAPQ_SLOTS
from hostsim.keyed import KeyedGen
from hostsim.locks import LockTable
from hostsim.request_draws import Block, Costs, block_shape, expected_requests
from hostsim.scenario_types import Scenario
from hostsim.topology import Topology, topology
from hostsim.variants import Variant, get_variant
from workloads.bursts import SCRIPT_DTYPE
from workloads.registers import compose
from workloads.steady import BURSTY_UNIT_MEAN_NS

__all__ = ["CACHE_BYTES", "Model"]

CACHE_BYTES = 512 * 1024 * 1024


class Model:
    """A scenario made ready to simulate: topology, variant, hardware profiles, scripts and the
    keyed draws of every request (cached by block)."""

    def __init__(self, scenario: Scenario) -> None:
        self.s = scenario
        self.topo: Topology = topology(scenario)
        self.variant: Variant = get_variant(scenario.host.variant)
        self.rwsem = self.variant.hook_guard == "rwsem"
        self.n_vcpus = len(self.topo.vcpu_guest)
        self.n_guests = len(self.topo.guest_group)
        #: draw keys of the groups (by name) and host events (by identity): see hostsim.draws
        self.group_keys = [draws.group_key(g.name) for g in scenario.guests]
        draws.distinct_keys(self.group_keys, "guest groups")
        seen: dict[tuple[str, str, int], int] = {}
        self.event_keys = []
        for ev in scenario.events:
            ident = (ev.label, ev.kind.name, ev.at_ns)
            seen[ident] = seen.get(ident, -1) + 1
            self.event_keys.append(draws.event_key(*ident, seen[ident]))
        self._cache: OrderedDict[tuple[int, int, int], Block] = OrderedDict()
        self._cache_bytes = 0
        self._queues: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        #: the host events' draws, a chunk of events at once: by (cost, block of call slots,
        #: chunk) and (fault family, -1, chunk) (:func:`hostsim.host_draws.cost_block`)
        self.host_draws: dict[tuple[str, int, int], np.ndarray] = {}
        self.shapes = [
            block_shape(g.count * g.vcpus, expected_requests(g.workload, scenario.duration_ns))
            for g in scenario.guests
        ]
        base = hw_profiles.profile(scenario.host.hardware)
        overrides = scenario.host.queue_overrides
        #: the hardware profiles: the host's, then each override's (hw_profiles.answers reads them)
        self.profiles = [base] + [hw_profiles.profile(o) for o in overrides]
        #: every queue answers the same way every time: no hardware draws are needed
        self.deterministic_hw = hw_profiles.deterministic(self.profiles)
        # Hardware profile of each guest's queues (later overrides win).
        self.queue_profile, self._profile_lut = hw_profiles.queue_profiles(
            self.topo.guest_apqns, overrides
        )
        # What changes during the run: scripts, matrices, views, bursty clocks.
        self.replay = False
        self._feed: Any = None
        dyn = build_dynamics(scenario, self.topo, self.group_keys, self.event_keys)
        self.initial_matrix = dyn.initial_matrix
        self._matrix_keys: np.ndarray | None = None
        #: per guest: [(time, frozenset of APQNs the guest uses from then on)]
        self.views = dyn.views
        #: per host event: the guest's matrix when it runs (for its per-queue work)
        self.event_queues = dyn.event_queues
        #: per (un)plugging host event: the APQNs it adds to or takes from the guest
        self.changes = dyn.changes
        self.scripts = dyn.scripts
        self.clocks = dyn.clocks
        #: vCPUs with a steady stream (boot and idle groups have none)
        self.steady_group = dyn.steady_group
        #: the host's lock instances (the per-mdev what-if is mdevs_lock's partition)
        self.locks = LockTable(self.n_guests, scenario.host.lock_model)
        self.mutex_of_guest = self.locks.mutex_of_guest
        self.n_mutexes = self.locks.n_mdevs

    def use_replay(self, feed: Any) -> None:
        """Drive the model with recorded arrivals only: no steady streams, no generated bursts,
        no retries (they are in the recording). ``feed`` is a dict of per-vCPU script arrays or
        an object with ``row(vcpu, pos)`` (a streamed recording)."""
        self.replay = True
        self.scripts = feed if isinstance(feed, dict) else {}
        self._feed = None if isinstance(feed, dict) else feed
        self.steady_group = [False] * len(self.s.guests)

    def script_row(self, v: int, pos: int) -> Any:
        """Row ``pos`` of vCPU ``v``'s script, or None when it has no more."""
        got = self.script_rows(v, pos, 1)
        return None if got is None else got[0]

    def script_rows(self, v: int, pos: int, n: int) -> np.ndarray | None:
        """Up to ``n`` rows of vCPU ``v``'s script from row ``pos`` (at least one, or None when
        it has no more)."""
        if self._feed is not None:
            got = self._feed.rows_of(v, pos, n)
        else:
            script = self.scripts.get(v)
            got = script[pos : pos + n] if script is not None else script
        return got.astype(SCRIPT_DTYPE, copy=False) if got is not None and len(got) else None

    def matrix_keys(self) -> np.ndarray:
        """``guest << 16 | apqn`` of every queue in a guest's initial matrix, sorted (cached)."""
        if self._matrix_keys is None:
            keys = [g << 16 | a for g, mat in enumerate(self.initial_matrix) for a in mat]
            self._matrix_keys = np.array(sorted(keys), np.int64)
        return self._matrix_keys

    def view_at(self, guest: int, t: int) -> frozenset[int] | None:
        """The APQNs guest ``guest`` uses at time ``t`` (None: its initial matrix, unchanged)."""
        sched = self.views.get(guest)
        if sched is None:
            return None
        current = sched[0][1]
        for at, apqns in sched:
            if at <= t:
                current = apqns
        return current

    def profile_index(self, apqn: np.ndarray) -> np.ndarray:
        """Hardware profile of each APQN (queues not owned by anyone: the default)."""
        return self._profile_lut[apqn.astype(np.int64)]

    def profile_of(self, apqn: int) -> hw_profiles.Profile:
        """The hardware profile of one APQN (:meth:`profile_index`'s, for one)."""
        return self.profiles[int(self._profile_lut[apqn])]

    # --- keyed draws ----------------------------------------------------------------------
    def gaps(self, group: int, lv: np.ndarray, k: np.ndarray) -> np.ndarray:
        """The steady stream's gaps of requests ``k`` of local vCPUs ``lv`` (inter-arrival,
        unit-mean or think times): the only draws of the "arrival" family, so they can be made
        without the rest."""
        w = self.s.guests[group].workload
        wl = draws.keyed(self.s.seed, draws.ARRIVAL, self.group_keys[group], lv, k)
        if w.kind == "poisson":
            x = wl.exponential(1e9 / w.rate_hz)
        elif w.kind == "bursty":
            x = wl.exponential(BURSTY_UNIT_MEAN_NS)
        elif w.kind == "closed":
            assert w.think is not None
            return w.think.sample(wl, wl.shape)
        else:  # boot, idle: no steady stream
            return np.zeros(wl.shape, np.int64)
        np.minimum(x, MAX_NS, out=x)  # (x is the draw's own array: rounded in place)
        return np.rint(x, out=x).astype(np.int64)

    def block(self, group: int, chunk: int, kblock: int) -> Block:
        """The draws of one block (cached; regenerated identically after eviction)."""
        key = (group, chunk, kblock)
        blk = self._cache.get(key)
        if blk is not None:
            self._cache.move_to_end(key)
            return blk
        g = self.s.guests[group]
        cv, kb = self.shapes[group]
        lo = chunk * cv
        rows = min(cv, g.count * g.vcpus - lo)
        lv = np.arange(lo, lo + rows, dtype=np.int64)[:, None]
        k = kblock * kb + np.arange(kb, dtype=np.int64)[None, :]
        blv, bk = np.broadcast_arrays(lv, k)
        blk = self.draws(group, blv, bk)
        self._cache[key] = blk
        self._cache_bytes += blk.nbytes
        while self._cache_bytes > CACHE_BYTES and len(self._cache) > 1:
            _, old = self._cache.popitem(last=False)
            self._cache_bytes -= old.nbytes
        return blk

    def hw_uniforms(
        self, group: int, lv: np.ndarray, k: np.ndarray, slots: int | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The uniforms of the hardware's AQIC, TAPQ and I-bit answers of requests ``k`` of
        local vCPUs ``lv`` of ``group``: every call slot, or the first ``slots`` (the same
        values: a slot's draw does not depend on how many are drawn)."""
        gk = self.group_keys[group]
        shape = np.shape(lv)

        def uniforms(family: draws.Family, width: int) -> np.ndarray:
            gen = draws.keyed(self.s.seed, family, gk, lv, k)
            return gen.random((*shape, width if slots is None else min(slots, width)))

        return (
            uniforms(draws.HW_AQIC, AQIC_SLOTS),
            uniforms(draws.HW_TAPQ, TAPQ_SLOTS),
            uniforms(draws.HW_IRQ, TAPQ_SLOTS),
        )

    def draws(
        self,
        group: int,
        lv: np.ndarray,
        k: np.ndarray,
        gap: np.ndarray | None = None,
        hw_slots: int | None = None,
    ) -> Block:
        """Every draw of requests ``k`` of local vCPUs ``lv`` of ``group`` (arrays of one
        shape), elementwise: the same values whatever the shape or grouping (:mod:`keyed`).
        ``gap``: the requests' gaps when the caller has them (:meth:`gaps` of the same keys).
        ``hw_slots``: draw only the first hardware answers of each request (the later ones
        answer NORMAL, with the I bit off: a caller must draw them where they are read, see
        :func:`hostsim.plan.make_plan`)."""
        s = self.s
        g = s.guests[group]
        shape = lv.shape
        seed = s.seed
        gk = self.group_keys[group]
        b = Block()
        w = g.workload

        def gen(family: draws.Family | str) -> KeyedGen:
            return draws.keyed(seed, family, gk, lv, k)

        b.gap = self.gaps(group, lv, k) if gap is None else gap
        b.poll = None  # only a retrying guest waits for a poll
        if w.retry != "none" and w.retry_poll is not None:
            b.poll = w.retry_poll.sample(gen(draws.RETRY_POLL), shape)
        b.qu = gen(draws.REG_QUEUE).random()
        if 0.0 < w.enable_fraction < 1.0:
            b.enable = gen(draws.REG_ENABLE).random() < w.enable_fraction
        else:  # every uniform is below 1 and none below 0: the draw decides nothing
            b.enable = np.full(shape, w.enable_fraction >= 1.0)
        # Which of its guest's queues each request addresses.
        table, _, nq = self._group_queues(group)
        local_guest = (lv // g.vcpus).astype(np.intp, copy=False)  # (an intp index is fast)
        count = nq[local_guest]
        qi = np.minimum((b.qu * count).astype(np.int64), np.maximum(count - 1, 0))
        picked = b.apqn = table[local_guest, qi]
        b.regs = compose(
            lambda part: gen(f"registers:{part}").random(),
            shape,
            b.apqn,
            b.enable,
            w.isc,
            w.nib,
            w.fc_mix,
            w.adversarial,
        )
        b.apqn = (b.regs["gpr0"] & np.uint64(0xFFFF)).astype(np.uint16)
        # Assigned: the queue picked from the guest's own (unless the registers changed it).
        same = b.apqn == picked
        b.assigned = same & (count > 0)
        moved = np.flatnonzero(~same.reshape(-1))
        if len(moved):
            own = table[local_guest.reshape(-1)[moved]]  # (moved, width)
            valid = np.arange(own.shape[-1]) < count.reshape(-1)[moved][:, None]
            flat = b.assigned.reshape(-1)
            flat[moved] = ((own == b.apqn.reshape(-1)[moved][:, None]) & valid).any(-1)
            b.assigned = flat.reshape(shape)
        if self.deterministic_hw:
            b.au = b.tu = b.iu = b.pu = None
        else:
            b.au, b.tu, b.iu = self.hw_uniforms(group, lv, k, hw_slots)
            b.pu = gen(draws.HW_PIN).random()
        b.aqic, b.tapq_rc, b.tapq_irq, b.pin_ok = hw_profiles.answers(
            self.profiles, self.profile_index(b.apqn), b.au, b.tu, b.iu, b.pu
        )
        b.costs = Costs(s, gk, lv, k)
        b.nbytes = sum(
            a.nbytes
            for a in (
                b.gap,
                b.enable,
                b.apqn,
                b.aqic,
                b.tapq_rc,
                b.tapq_irq,
                b.pin_ok,
                b.qu,
                b.assigned,
                *b.regs.values(),
            )
        ) + sum(a.nbytes for a in (b.au, b.tu, b.iu, b.pu, b.poll) if a is not None)
        return b

    def _group_queues(self, group: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per guest of ``group``: its APQNs and their hardware profiles, padded to a matrix."""
        cached = self._queues.get(group)
        if cached is not None:
            return cached
        first = int(self.topo.group_first_guest[group])
        count = self.s.guests[group].count
        own = self.topo.guest_apqns[first : first + count]
        nq = np.array([len(a) for a in own], np.int64)
        width = max(1, int(nq.max()))
        table = np.zeros((count, width), np.uint16)
        prof = np.zeros((count, width), np.int16)
        for j, a in enumerate(own):
            table[j, : len(a)] = a
            prof[j, : len(a)] = self.queue_profile[first + j]
        self._queues[group] = (table, prof, nq)
        return table, prof, nq

    def locate(self, vcpu: int, k: int) -> tuple[Block, int, int]:
        """(block, row, column) of request ``k`` of global vCPU ``vcpu``."""
        group = int(self.topo.vcpu_group[vcpu])
        local = int(self.topo.vcpu_local[vcpu])
        cv, kb = self.shapes[group]
        blk = self.block(group, local // cv, k // kb)
        return blk, local % cv, k % kb
