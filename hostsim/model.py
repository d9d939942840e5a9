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

The timing functions turn a decision and its draws into durations; both engines call them, so
the arithmetic is the same integer arithmetic in both.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np

from hostsim import arch, draws
from hostsim.costs import PER_CALL_COSTS
from hostsim.decode import Decision
from hostsim.dists import MAX_NS
from hostsim.intercept import AQIC_SLOTS, TAPQ_SLOTS
from hostsim.keyed import KeyedGen
from hostsim.locks import LockTable
from hostsim.records import Path
from hostsim.rules import Kind
from hostsim.scenario_types import (
    PLUG,
    UNPLUG,
    Hardware,
    HostEvent,
    HostEventKind,
    Scenario,
    Workload,
)
from hostsim.topology import Topology, topology
from hostsim.variants import Variant, get_variant
from workloads.bursts import boot_time, enable_burst, rescan_delay
from workloads.registers import compose
from workloads.steady import BURSTY_UNIT_MEAN_NS, BurstyClock

MAX_CHUNK_VCPUS = 1 << 20
BLOCK_TARGET = 1 << 20  # requests per block (vCPUs x consecutive requests)


def block_shape(n_vcpus: int, expected: float = 1e9) -> tuple[int, int]:
    """(vCPUs per block, requests per block) of the reference engine's draw cache for a group of
    ``n_vcpus`` vCPUs that each issue about ``expected`` requests in the run: about a third of
    what a vCPU issues, so that few cached draws go unused. A cache choice: values do not
    depend on it."""
    chunk = max(1, min(n_vcpus, MAX_CHUNK_VCPUS))
    per_block = math.ceil(max(expected, 1.0) / 3)
    return chunk, max(2, min(512, BLOCK_TARGET // chunk, per_block))


def expected_requests(w: Workload, duration_ns: int) -> float:
    """About how many requests one vCPU of a workload issues in the run (for block sizes)."""
    secs = duration_ns / 1e9
    if w.kind == "poisson":
        return w.rate_hz * secs
    if w.kind == "bursty":
        mean = (w.rate_on_hz * w.on_ms + w.rate_off_hz * w.off_ms) / max(w.on_ms + w.off_ms, 1e-9)
        return mean * secs
    if w.kind == "closed":
        assert w.think is not None
        return duration_ns / max(w.think.mean_ns, 1000.0)
    return 2.0


CACHE_BYTES = 512 * 1024 * 1024


@dataclass(frozen=True)
class _Profile:
    aqic_rc: np.ndarray
    aqic_cdf: np.ndarray
    tapq_rc: np.ndarray
    tapq_cdf: np.ndarray
    tapq_irq: float
    pin_fail: float


def _profile(h: Hardware) -> _Profile:
    def cdf(pairs: tuple[tuple[int, float], ...]) -> tuple[np.ndarray, np.ndarray]:
        rcs = np.array([rc for rc, _ in pairs], np.uint32)
        c = np.cumsum([p for _, p in pairs])
        c[-1] = 1.0
        return rcs, c

    a, ac = cdf(h.aqic_rc)
    t, tc = cdf(h.tapq_rc)
    return _Profile(a, ac, t, tc, h.tapq_irq_enabled, h.pin_fail)


class Costs:
    """The cost draws of one block, generated on first use, one keyed generator per column.

    ``costs[name]`` is ``(rows, requests)`` for a per-request cost and ``(rows, requests,
    slots)`` for a per-call cost (host AQIC, TAPQ, sleeps); :meth:`slot` gives one call slot
    alone, so a vectorised caller draws the later slots only when some request needs them.
    A fixed cost is a broadcast constant: no draw at all.
    """

    def __init__(self, model: Model, group: int, lv: np.ndarray, k: np.ndarray) -> None:
        self._m = model
        self._group = group
        self._lv = lv
        self._k = k
        self._shape = lv.shape
        self._cols: dict[str, np.ndarray] = {}
        self.nbytes = 0

    def _draw(self, family: str, name: str) -> np.ndarray:
        cached = self._cols.get(family)
        if cached is None:
            dist = self._m.s.costs[name]
            if dist.kind == "fixed":
                cached = np.broadcast_to(np.int64(dist.fixed_ns), self._shape)
            else:
                gen = draws.keyed(self._m.s.seed, family, self._group, self._lv, self._k)
                cached = dist.sample(gen, self._shape)
                self.nbytes += cached.nbytes
            self._cols[family] = cached
        return cached

    def subset(self, name: str, sel: np.ndarray | slice, j: int | None = None) -> np.ndarray:
        """Cost ``name`` (call slot ``j`` of a per-call cost) of the requests ``sel`` (an index
        or mask into 1-D keys) alone: the same values as the full column, drawn only there."""
        family = draws.cost_family(name, j)
        cached = self._cols.get(family)
        if cached is not None:
            return np.broadcast_to(cached, self._shape)[sel]
        dist = self._m.s.costs[name]
        lv, k = self._lv[sel], self._k[sel]
        if dist.kind == "fixed":
            return np.full(lv.shape, dist.fixed_ns, np.int64)
        return dist.sample(draws.keyed(self._m.s.seed, family, self._group, lv, k), lv.shape)

    def slot(self, name: str, j: int) -> np.ndarray:
        """Call slot ``j`` of a per-call cost."""
        return self._draw(draws.cost_family(name, j), name)

    def __getitem__(self, name: str) -> np.ndarray:
        width = PER_CALL_COSTS.get(name)
        if width is None:
            return self._draw(draws.cost_family(name), name)
        family = f"cost:{name}:*"
        cached = self._cols.get(family)
        if cached is None:
            cached = np.stack([self.slot(name, j) for j in range(width)], axis=-1)
            self._cols[family] = cached
        return cached


class Block:
    """Draws of a set of requests (a cache block of :func:`block_shape`, or the rows a fast
    engine plan needs): one array per column, each of the requests' shape. Hardware answers are
    kept as uniforms (``au`` ...; None when every queue answers deterministically) so that they
    can be mapped through the profile of whichever queue a request really addresses;
    ``aqic``/``tapq_*``/``pin_ok`` are that mapping for the block's own APQN choice."""

    __slots__ = (
        "apqn",
        "aqic",
        "assigned",
        "au",
        "costs",
        "enable",
        "gap",
        "iu",
        "nbytes",
        "pin_ok",
        "poll",
        "pu",
        "qu",
        "regs",
        "tapq_irq",
        "tapq_rc",
        "tu",
    )
    apqn: np.ndarray
    aqic: np.ndarray
    assigned: np.ndarray
    au: np.ndarray | None
    costs: Costs
    enable: np.ndarray
    gap: np.ndarray
    iu: np.ndarray | None
    nbytes: int
    pin_ok: np.ndarray
    poll: np.ndarray | None
    pu: np.ndarray | None
    qu: np.ndarray
    regs: dict[str, np.ndarray]
    tapq_irq: np.ndarray
    tapq_rc: np.ndarray
    tu: np.ndarray | None


class Model:
    """A scenario made ready to simulate: topology, variant, keyed draws and the timing rules."""

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
        self.shapes = [
            block_shape(g.count * g.vcpus, expected_requests(g.workload, scenario.duration_ns))
            for g in scenario.guests
        ]
        base = _profile(scenario.host.hardware)
        self._profiles = [base] + [_profile(o) for o in scenario.host.queue_overrides]
        #: every queue answers the same way every time: no hardware draws are needed
        self.deterministic_hw = all(
            len(p.aqic_rc) == 1
            and len(p.tapq_rc) == 1
            and p.tapq_irq in (0.0, 1.0)
            and p.pin_fail in (0.0, 1.0)
            for p in self._profiles
        )
        # Hardware profile of each guest's queues (later overrides win).
        self.queue_profile: list[np.ndarray] = []
        for apqns in self.topo.guest_apqns:
            prof = np.zeros(len(apqns), np.int16)
            for i, o in enumerate(scenario.host.queue_overrides, 1):
                ad = (apqns >> 8).astype(np.int64)
                dm = (apqns & 0xFF).astype(np.int64)
                sel = np.ones(len(apqns), bool)
                if o.adapters is not None:
                    sel &= np.isin(ad, o.adapters)
                if o.domains is not None:
                    sel &= np.isin(dm, o.domains)
                prof[sel] = i
            self.queue_profile.append(prof)
        self._profile_of: dict[int, int] = {}
        for apqns, prof in zip(self.topo.guest_apqns, self.queue_profile, strict=True):
            self._profile_of.update(zip(apqns.tolist(), prof.tolist(), strict=True))
        self._profile_lut = np.zeros(1 << 16, np.int16)
        for a, pidx in self._profile_of.items():
            self._profile_lut[a] = pidx
        self._build_dynamics()
        #: the host's lock instances (the per-mdev what-if is mdevs_lock's partition)
        self.locks = LockTable(self.n_guests, scenario.host.lock_model)
        self.mutex_of_guest = self.locks.mutex_of_guest
        self.n_mutexes = self.locks.n_mdevs

    # --- what changes during the run: scripts, matrices, views, bursty clocks -----------------
    def _build_dynamics(self) -> None:
        """Scripts (boot, reset and hot-plug bursts), the guests' matrices over the events, the
        guests' own views of them, and the bursty groups' on/off clocks."""
        s, topo = self.s, self.topo
        self.replay = False
        self._feed: Any = None
        rows: dict[int, list[np.ndarray]] = {}
        matrix = [set(a.tolist()) for a in topo.guest_apqns]
        self.initial_matrix = [frozenset(m) for m in matrix]
        #: per guest: [(time, frozenset of APQNs the guest uses from then on)]
        self.views: dict[int, list[tuple[int, frozenset[int]]]] = {}
        #: per host event: the guest's matrix when it runs (for its per-queue work)
        self.event_queues: list[np.ndarray] = []
        #: per (un)plugging host event: the APQNs it adds to or takes from the guest
        self.changes: dict[int, frozenset[int]] = {}

        def burst(guest: int, apqns: list[int], t: int, key: tuple[int, ...]) -> None:
            g = s.guests[int(topo.guest_group[guest])]
            w = g.workload
            assert w.gap is not None
            gaps = w.gap.sample(draws.seeded(s.seed, draws.SCRIPT_GAP, *key), max(len(apqns), 1))
            v0 = int(topo.guest_first_vcpu[guest])
            if w.kind == "linux":  # the AP poll timer fires on whichever vCPU
                v0 += int(draws.seeded(s.seed, draws.SCRIPT_VCPU, *key).integers(0, g.vcpus))
            arr = np.array(sorted(apqns), np.uint16)
            rows.setdefault(v0, []).append(enable_burst(arr, t, gaps[: len(arr)], w.isc, w.nib))

        for gi, g in enumerate(s.guests):
            if g.workload.kind != "boot":
                continue
            w = g.workload
            for j in range(g.count):
                guest = int(topo.group_first_guest[gi]) + j
                t = boot_time(
                    draws.seeded(s.seed, draws.BOOT, self.group_keys[gi], j),
                    round(w.boot_at_ms * 1e6),
                    round(w.spread_ms * 1e6),
                )
                burst(guest, sorted(matrix[guest]), t, (0, self.group_keys[gi], j))
        for i, ev in enumerate(s.events):
            gm = matrix[ev.guest]
            self.event_queues.append(np.array(sorted(gm), np.uint16))
            if ev.kind == HostEventKind.GUEST_RESET:
                burst(
                    ev.guest,
                    sorted(gm),
                    ev.at_ns + round(ev.delay_ms * 1e6),
                    (1, self.event_keys[i]),
                )
            elif ev.kind in (HostEventKind.REBOOT, HostEventKind.START):
                # the program keeps the vCPUs stopped until the guest's AP bus probes (host_ops)
                burst(ev.guest, sorted(gm), ev.at_ns, (1, self.event_keys[i]))
            elif ev.kind in PLUG + UNPLUG:
                changed = self.event_apqns(ev)
                if ev.kind == HostEventKind.QUEUE_REMOVE:  # the whole adapter leaves the guest
                    changed = {q for q in gm if (q >> 8) in ev.adapters}
                elif ev.kind == HostEventKind.MDEV_REMOVE:
                    changed = set(gm)
                self.changes[i] = frozenset(changed)
                if ev.kind in PLUG:
                    new = changed - gm
                    gm |= changed
                else:
                    new = set()
                    gm -= changed
                seen = ev.at_ns + rescan_delay(
                    draws.seeded(s.seed, draws.RESCAN, self.event_keys[i]), ev.rescan
                )
                self.views.setdefault(ev.guest, [(0, self.initial_matrix[ev.guest])]).append(
                    (seen, frozenset(gm))
                )
                if new:  # a Linux guest probes the new queues first: RAPQ, then the low poll
                    w = s.guests[int(topo.guest_group[ev.guest])].workload
                    probe = round(w.probe_ms * 1e6) if w.kind == "linux" else 0
                    burst(ev.guest, sorted(new), seen + probe, (1, self.event_keys[i]))
        for sched in self.views.values():
            sched.sort(key=lambda tv: tv[0])
        self.scripts: dict[int, np.ndarray] = {}
        for v, parts in rows.items():
            allrows = np.concatenate(parts)
            self.scripts[v] = allrows[np.argsort(allrows["t"], kind="stable")]
        self.clocks: dict[int, BurstyClock] = {}
        for gi, g in enumerate(s.guests):
            w = g.workload
            if w.kind == "bursty":
                self.clocks[gi] = BurstyClock(
                    draws.seeded(s.seed, draws.BURSTY, self.group_keys[gi]),
                    s.duration_ns,
                    w.on_ms * 1e6,
                    w.off_ms * 1e6,
                    w.rate_on_hz,
                    w.rate_off_hz,
                )
        #: vCPUs with a steady stream (boot and idle groups have none)
        self.steady_group = [g.workload.kind in ("poisson", "closed", "bursty") for g in s.guests]

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
        if self._feed is not None:
            return self._feed.row(v, pos)
        script = self.scripts.get(v)
        return script[pos] if script is not None and pos < len(script) else None

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

    def _answers(
        self,
        prof: np.ndarray,
        au: np.ndarray | None,
        tu: np.ndarray | None,
        iu: np.ndarray | None,
        pu: np.ndarray | None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Hardware answers (AQIC status words, TAPQ RCs and I bits, pin success) from uniforms
        through each request's queue profile."""
        shape = prof.shape
        if au is None and len(self._profiles) == 1:
            # One deterministic profile: the same answers everywhere (read-only broadcasts).
            p = self._profiles[0]
            return (
                np.broadcast_to(
                    np.uint32(p.aqic_rc[0] << arch.STATUS_RC_SHIFT), (*shape, AQIC_SLOTS)
                ),
                np.broadcast_to(np.uint8(p.tapq_rc[0]), (*shape, TAPQ_SLOTS)),
                np.broadcast_to(np.bool_(p.tapq_irq == 1.0), (*shape, TAPQ_SLOTS)),
                np.broadcast_to(np.bool_(p.pin_fail == 0.0), shape),
            )
        aqic = np.zeros((*shape, AQIC_SLOTS), np.uint32)
        trc = np.zeros((*shape, TAPQ_SLOTS), np.uint8)
        tirq = np.zeros((*shape, TAPQ_SLOTS), bool)
        pin_ok = np.ones(shape, bool)
        for pi, p in enumerate(self._profiles):
            m = prof == pi
            if not m.any():
                continue
            if au is None:  # deterministic: the one answer of each kind
                aqic[m] = p.aqic_rc[0] << arch.STATUS_RC_SHIFT
                trc[m] = p.tapq_rc[0]
                tirq[m] = p.tapq_irq == 1.0
                pin_ok[m] = p.pin_fail == 0.0
                continue
            assert tu is not None and iu is not None and pu is not None  # all or none are drawn
            rc = p.aqic_rc[
                np.searchsorted(p.aqic_cdf, au[m], side="right").clip(0, len(p.aqic_rc) - 1)
            ]
            aqic[m] = rc << arch.STATUS_RC_SHIFT
            trc[m] = p.tapq_rc[
                np.searchsorted(p.tapq_cdf, tu[m], side="right").clip(0, len(p.tapq_rc) - 1)
            ]
            tirq[m] = iu[m] < p.tapq_irq
            pin_ok[m] = pu[m] >= p.pin_fail
        return aqic, trc, tirq, pin_ok

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
        return np.rint(np.minimum(x, MAX_NS)).astype(np.int64)

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
        blk = self.draws(group, *np.broadcast_arrays(lv, k))
        self._cache[key] = blk
        self._cache_bytes += blk.nbytes
        while self._cache_bytes > CACHE_BYTES and len(self._cache) > 1:
            _, old = self._cache.popitem(last=False)
            self._cache_bytes -= old.nbytes
        return blk

    def draws(
        self, group: int, lv: np.ndarray, k: np.ndarray, gap: np.ndarray | None = None
    ) -> Block:
        """Every draw of requests ``k`` of local vCPUs ``lv`` of ``group`` (arrays of one
        shape), elementwise: the same values whatever the shape or grouping (:mod:`keyed`).
        ``gap``: the requests' gaps when the caller has them (:meth:`gaps` of the same keys)."""
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
        b.enable = gen(draws.REG_ENABLE).random() < w.enable_fraction
        # Which of its guest's queues each request addresses.
        table, _, nq = self._group_queues(group)
        local_guest = lv // g.vcpus
        count = nq[local_guest]
        qi = np.minimum((b.qu * count).astype(np.int64), np.maximum(count - 1, 0))
        b.apqn = table[local_guest, qi]
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
        b.assigned = (b.apqn == table[local_guest, qi]) & (count > 0)
        moved = np.flatnonzero((b.apqn != table[local_guest, qi]).reshape(-1))
        if len(moved):
            own = table[local_guest.reshape(-1)[moved]]  # (moved, width)
            valid = np.arange(own.shape[-1]) < count.reshape(-1)[moved][:, None]
            flat = b.assigned.reshape(-1)
            flat[moved] = ((own == b.apqn.reshape(-1)[moved][:, None]) & valid).any(-1)
            b.assigned = flat.reshape(shape)
        if self.deterministic_hw:
            b.au = b.tu = b.iu = b.pu = None
        else:
            b.au = gen(draws.HW_AQIC).random((*shape, AQIC_SLOTS))
            b.tu = gen(draws.HW_TAPQ).random((*shape, TAPQ_SLOTS))
            b.iu = gen(draws.HW_IRQ).random((*shape, TAPQ_SLOTS))
            b.pu = gen(draws.HW_PIN).random()
        b.aqic, b.tapq_rc, b.tapq_irq, b.pin_ok = self._answers(
            self.profile_index(b.apqn), b.au, b.tu, b.iu, b.pu
        )
        b.costs = Costs(self, gk, lv, k)
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

    # --- host events --------------------------------------------------------------------------
    def event_apqns(self, ev: HostEvent) -> set[int]:
        """The APQNs an assign, unassign or queue probe names: its domains on the guest's
        adapters (what an event really changes, by index: :attr:`changes`)."""
        g = self.s.guests[int(self.topo.guest_group[ev.guest])]
        return {(a << 8) | d for a in g.adapters for d in ev.domains}


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
