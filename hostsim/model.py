"""What both engines share: the random draws of every request, the register state, the timing.

Randomness is keyed, not consumed in event order: request ``k`` of vCPU ``v`` always gets the same
draws, whichever engine asks and in whatever order. The draws of a block of requests (64 vCPUs
of one group x 8 consecutive requests) come from generators seeded by
``SeedSequence(seed, spawn_key=(family, group, chunk, block))``, one per family (arrivals,
registers, hardware, and each named cost), so changing one cost's distribution does not move the
arrivals (common random numbers across variants and lock models). Blocks are cached and can be
regenerated at any time, so eviction never changes a result.

The timing functions turn a decision and its draws into durations; both engines call them, so
the arithmetic is the same integer arithmetic in both.
"""

from __future__ import annotations

import zlib
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from hostsim import arch
from hostsim.costs import COSTS, PER_CALL_COSTS
from hostsim.decode import Decision, _disable_one
from hostsim.intercept import AQIC_SLOTS, TAPQ_SLOTS, Intercept
from hostsim.records import Path
from hostsim.rules import Kind
from hostsim.scenario import Hardware, HostEvent, HostEventKind, Scenario, Topology, topology
from hostsim.variants import Variant, get_variant

MAX_CHUNK_VCPUS = 1024
BLOCK_TARGET = 8192  # requests per block (vCPUs x consecutive requests)


def block_shape(n_vcpus: int) -> tuple[int, int]:
    """(vCPUs per chunk, requests per block) for a group of ``n_vcpus`` vCPUs.

    Large groups get wide, shallow blocks (many vCPUs, few requests each: AQIC is rare per vCPU);
    small groups get deep ones. The shape is a function of the group size alone, so both engines
    and every run of the scenario see the same blocks.
    """
    chunk = max(1, min(n_vcpus, MAX_CHUNK_VCPUS))
    return chunk, max(4, min(512, BLOCK_TARGET // chunk))


CACHE_BYTES = 512 * 1024 * 1024


def _family(name: str) -> int:
    return zlib.crc32(name.encode())


def generator(seed: int, family: str, *key: int) -> np.random.Generator:
    """The generator of one named family of draws for one block (see module docstring)."""
    ss = np.random.SeedSequence(seed, spawn_key=(_family(family), *key))
    return np.random.Generator(np.random.PCG64(ss))


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


class Block:
    """Draws of ``rows`` vCPUs x consecutive requests (:func:`block_shape`): one array per
    column."""

    __slots__ = (
        "apqn",
        "aqic",
        "assigned",
        "costs",
        "enable",
        "gap",
        "nbytes",
        "pin_ok",
        "tapq_irq",
        "tapq_rc",
    )

    def __init__(self) -> None:
        self.costs: dict[str, np.ndarray] = {}


class Model:
    """A scenario made ready to simulate: topology, variant, keyed draws and the timing rules."""

    def __init__(self, scenario: Scenario) -> None:
        self.s = scenario
        self.topo: Topology = topology(scenario)
        self.variant: Variant = get_variant(scenario.host.variant)
        self.rwsem = self.variant.hook_guard == "rwsem"
        self.n_vcpus = len(self.topo.vcpu_guest)
        self.n_guests = len(self.topo.guest_group)
        self._cache: OrderedDict[tuple[int, int, int], Block] = OrderedDict()
        self._cache_bytes = 0
        self._queues: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self.shapes = [block_shape(g.count * g.vcpus) for g in scenario.guests]
        base = _profile(scenario.host.hardware)
        self._profiles = [base] + [_profile(o) for o in scenario.host.queue_overrides]
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
        self.mutex_of_guest = (
            np.zeros(self.n_guests, np.int32)
            if scenario.host.lock_model == "global"
            else np.arange(self.n_guests, dtype=np.int32)
        )
        self.n_mutexes = int(self.mutex_of_guest.max()) + 1 if self.n_guests else 0

    # --- keyed draws ----------------------------------------------------------------------
    def block(self, group: int, chunk: int, kblock: int) -> Block:
        """The draws of one block (cached; regenerated identically after eviction)."""
        key = (group, chunk, kblock)
        blk = self._cache.get(key)
        if blk is not None:
            self._cache.move_to_end(key)
            return blk
        blk = self._make_block(group, chunk, kblock)
        self._cache[key] = blk
        self._cache_bytes += blk.nbytes
        while self._cache_bytes > CACHE_BYTES and len(self._cache) > 1:
            _, old = self._cache.popitem(last=False)
            self._cache_bytes -= old.nbytes
        return blk

    def _make_block(self, group: int, chunk: int, kblock: int) -> Block:
        s = self.s
        g = s.guests[group]
        n_local = g.count * g.vcpus
        cv, kb = self.shapes[group]
        lo = chunk * cv
        rows = min(cv, n_local - lo)
        shape = (rows, kb)
        seed = s.seed
        key = (group, chunk, kblock)
        b = Block()
        w = g.workload
        wl = generator(seed, "arrival", *key)
        if w.kind == "poisson":
            b.gap = np.maximum(np.rint(wl.exponential(1e9 / w.rate_hz, shape)), 0).astype(np.int64)
        else:
            assert w.think is not None
            b.gap = w.think.sample(wl, shape)
        reg = generator(seed, "registers", *key)
        qidx_u = reg.random(shape)
        b.enable = reg.random(shape) < w.enable_fraction
        # Which of its guest's queues each request addresses.
        table, prof_table, nq = self._group_queues(group)
        local_guest = (np.arange(lo, lo + rows) // g.vcpus)[:, None]
        count = nq[local_guest]
        qi = np.minimum((qidx_u * count).astype(np.int64), np.maximum(count - 1, 0))
        b.apqn = table[local_guest, qi]
        prof = prof_table[local_guest, qi]
        b.assigned = np.broadcast_to(count > 0, shape).copy()
        hw = generator(seed, "hardware", *key)
        au = hw.random((*shape, AQIC_SLOTS))
        tu = hw.random((*shape, TAPQ_SLOTS))
        iu = hw.random((*shape, TAPQ_SLOTS))
        pu = hw.random(shape)
        b.aqic = np.zeros((*shape, AQIC_SLOTS), np.uint32)
        b.tapq_rc = np.zeros((*shape, TAPQ_SLOTS), np.uint8)
        b.tapq_irq = np.zeros((*shape, TAPQ_SLOTS), bool)
        b.pin_ok = np.ones(shape, bool)
        for pi, p in enumerate(self._profiles):
            m = prof == pi
            if not m.any():
                continue
            rc = p.aqic_rc[
                np.searchsorted(p.aqic_cdf, au[m], side="right").clip(0, len(p.aqic_rc) - 1)
            ]
            b.aqic[m] = rc << arch.STATUS_RC_SHIFT
            b.tapq_rc[m] = p.tapq_rc[
                np.searchsorted(p.tapq_cdf, tu[m], side="right").clip(0, len(p.tapq_rc) - 1)
            ]
            b.tapq_irq[m] = iu[m] < p.tapq_irq
            b.pin_ok[m] = pu[m] >= p.pin_fail
        nbytes = sum(
            a.nbytes for a in (b.gap, b.enable, b.apqn, b.aqic, b.tapq_rc, b.tapq_irq, b.pin_ok)
        )
        for name in COSTS:
            width = PER_CALL_COSTS.get(name)
            cg = generator(seed, f"cost:{name}", *key)
            arr = s.costs[name].sample(cg, shape if width is None else (*shape, width))
            b.costs[name] = arr
            nbytes += arr.nbytes
        b.nbytes = nbytes
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

    # --- registers and decode inputs --------------------------------------------------------
    def intercept(
        self, vcpu: int, blk: Block, r: int, c: int, hook: bool, mdev_kvm: bool, cleared: bool
    ) -> Intercept:
        """The decode input of one request, with the guest's configuration as it is now."""
        guest = int(self.topo.vcpu_guest[vcpu])
        g = self.s.guests[int(self.topo.guest_group[guest])]
        apqn = int(blk.apqn[r, c])
        enable = bool(blk.enable[r, c])
        w = g.workload
        return Intercept(
            gpr0=(arch.FunctionCode.AQIC << arch.GR0_FC_SHIFT) | apqn,
            gpr1=arch.make_gr1_aqic(int(enable), w.isc),
            gpr2=w.nib,
            psw_mask=arch.PSW_DEFAULT_SUPERVISOR,
            ap_instructions_available=self.s.host.ap_instructions_available,
            eca_apie=g.eca_apie,
            eca_aiv=g.eca_aiv,
            facility15=g.facility15,
            facility65=g.facility65,
            apxa=g.apxa,
            hook_registered=hook,
            hook_module_alive=True,
            hook_cleared_in_flight=cleared,
            mdev_has_kvm=mdev_kvm,
            queue_assigned=bool(blk.assigned[r, c]),
            nib_in_memslot=True,
            pin_ok=bool(blk.pin_ok[r, c]),
            pv_guest=g.pv,
            nib_shared=True,
            gisc_register_ok=True,
            hw_aqic=[int(x) for x in blk.aqic[r, c]],
            hw_tapq=[
                (int(a), bool(i))
                for a, i in zip(blk.tapq_rc[r, c], blk.tapq_irq[r, c], strict=True)
            ],
        )

    # --- host events --------------------------------------------------------------------------
    def host_event_work(self, index: int, ev: HostEvent) -> tuple[int, int, int, int, int]:
        """(rwsem write hold, mutex hold, AQIC calls, TAPQ calls, sleeps) of host event ``index``.

        The per-queue hardware answers and durations come from the event's own keyed draws.
        """
        s = self.s
        g = generator(s.seed, "host-event", index)
        apqns = self.topo.guest_apqns[ev.guest]
        c = s.costs
        rw = int(c["rwsem_write"].sample(g, 1)[0])
        hold = int(c["mutex_acquire"].sample(g, 1)[0])
        aqic = tapq = sleeps = 0
        if ev.kind in (HostEventKind.ATTACH, HostEventKind.DETACH):
            hold += int(c["mdev_kvm_update"].sample(g, 1)[0])
        per_queue_disable = ev.kind in (HostEventKind.DETACH, HostEventKind.IRQ_DISABLE)
        per_queue_reset = ev.kind in (HostEventKind.DETACH, HostEventKind.RESET)
        prof_of = self.queue_profile[ev.guest]
        for qi in range(len(apqns)):
            p = self._profiles[int(prof_of[qi])]
            if per_queue_disable:
                au = g.random(AQIC_SLOTS)
                tu = g.random(TAPQ_SLOTS)
                iu = g.random(TAPQ_SLOTS)
                rc = p.aqic_rc[
                    np.searchsorted(p.aqic_cdf, au, side="right").clip(0, len(p.aqic_rc) - 1)
                ]
                trc = p.tapq_rc[
                    np.searchsorted(p.tapq_cdf, tu, side="right").clip(0, len(p.tapq_rc) - 1)
                ]
                x = Intercept(
                    gpr0=int(apqns[qi]),
                    hw_aqic=[int(v) << arch.STATUS_RC_SHIFT for v in rc],
                    hw_tapq=[(int(a), bool(b)) for a, b in zip(trc, iu < p.tapq_irq, strict=True)],
                )
                _, a, t, sl = _disable_one(x, 0)
                aqic, tapq, sleeps = aqic + a, tapq + t, sleeps + sl
                hold += int(c["host_aqic"].sample(g, a).sum())
                hold += int(c["host_tapq"].sample(g, t).sum()) if t else 0
                hold += int(c["msleep20"].sample(g, sl).sum()) if sl else 0
            if per_queue_reset:
                hold += int(c["queue_reset"].sample(g, 1)[0])
        return rw, hold, aqic, tapq, sleeps


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
    if d.hw_aqic_calls:
        h += int(cost["host_aqic"][r, c, : d.hw_aqic_calls].sum())
    if d.hw_tapq_calls:
        h += int(cost["host_tapq"][r, c, : d.hw_tapq_calls].sum())
    if d.sleeps:
        h += int(cost["msleep20"][r, c, : d.sleeps].sum())
    return h


def exit_cost(d: Decision, blk: Block, r: int, c: int) -> int:
    """Cost after the handler for a request that did not go through the mutex."""
    if d.kind == Kind.USERSPACE_EXIT:
        return int(blk.costs["userspace_exit"][r, c])
    if d.kind == Kind.PROGRAM_INTERRUPT:
        return int(blk.costs["pgm_inject"][r, c])
    return 0
