"""Host operations as programs: what each host event of a scenario does, step by step.

Each host event becomes a generator of :mod:`hostsim.steps` that both engines interpret
(:mod:`hostsim.program`); it reads every hardware answer from the queue state
(:mod:`hostsim.queues`), so a reset's verification loops while the adapter is still resetting
and a disable loop sleeps while a reset is in progress. Upstream (``../shared/spec/
host-operations.md`` sections 1-3, with the kernel function each follows):

* ``attach`` (``vfio_ap_mdev_set_kvm``): the rwsem's write side publishes the hook; then
  ``guests_lock -> kvm->lock -> mdevs_lock``: the mdev walk and KVM reference
  (``mdev_kvm_update``) and an APCB update (``kvm_arch_crypto_set_masks``: every vCPU of the
  guest blocked for ``apcb_update``);
* ``reset`` (QEMU's ``VFIO_DEVICE_RESET`` -> ``vfio_ap_mdev_reset_queues``): under
  ``mdevs_lock``, a ZAPQ of every queue one after the other, then one ``apq_reset_check`` per
  queue *in parallel*: each sleeps ``reset_interval`` before its first TAPQ, sleeps again while
  the reset is in progress and re-ZAPQs if its ZAPQ answered 02, 05 or 0A; the lock is held
  until every check is done (``flush_work``). The hold is about one reset interval whatever
  the number of queues;
* ``start``: a guest start as QEMU does it: ``attach`` (the device open), then the machine
  reset's ``reset``; the guest's vCPUs do not run meanwhile (``Block(stopped=True)``: its APCB
  update needs no block of its own), then the guest boots (``delay_ms``) and its AP bus probes
  the queues (RAPQ, the 40 ms low poll): only then do its vCPUs run, and its enable burst issues;
* ``reboot``: the machine reset (``s390_machine_reset`` -> ``VFIO_DEVICE_RESET``), the vCPUs
  stopped, then the boot and the probe as for ``start``;
* ``detach`` / ``stop`` (``vfio_ap_mdev_unset_kvm``): the rwsem's write side clears the hook;
  ``guests_lock -> kvm->lock -> mdevs_lock``: clear the masks (an APCB update, vCPUs blocked),
  reset every queue, drop the KVM reference. No irq disable: resetting a queue disables its
  interrupts (removed in 2020, H11);
* ``irq_disable`` (``vfio_ap_mdev_dma_unmap``): ``vfio_ap_irq_disable`` of every queue whose
  interrupts are on: AQIC(IR=0), a sleep and a retry on 02/05, then TAPQ until the I bit clears;
* ``assign`` (``assign_domain_store``): ``ap_perms_mutex -> guests_lock -> kvm->lock ->
  mdevs_lock``: link and filter, an APCB update, the queues enter the configuration;
* ``unassign`` (``unassign_domain_store``): ``guests_lock -> kvm->lock -> mdevs_lock``: an APCB
  update (hot-unplug) and a reset of the removed queues;
* ``guest_reset``: the guest's own business (interpreted ZAPQ/RAPQ): no host lock, no steps.

The 2019 variants (``Variant.reset_style == "sync"``) take ``matrix_dev->lock`` alone and reset
the queues one after the other: ZAPQ, up to two ``msleep(20)`` + TAPQ until the queue is empty,
then ``vfio_ap_irq_disable`` of the queue; their detach is that reset (disable + reset).

Every cost is keyed by the event, its queue and the call (:mod:`hostsim.draws`), so a cost's
distribution never moves another cost's values. A queue's hardware faults (the scenario's
``[host.hardware]`` probabilities, keyed per event, queue and call) override the state's answer
when they draw something other than NORMAL: faults are an explicit option, not the default.
"""

from __future__ import annotations

import heapq
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import numpy as np

from hostsim import arch, draws
from hostsim.intercept import AQIC_SLOTS, TAPQ_SLOTS
from hostsim.locks import EXCLUSIVE, WRITE
from hostsim.model import Model
from hostsim.process import PROCESS_DTYPE, blocks_of
from hostsim.program import LOCK_DTYPE, Runner
from hostsim.queues import QueueAnswer, QueueState
from hostsim.records import HOST_EVENT_DTYPE
from hostsim.scenario_types import PLUG, UNPLUG, HostEvent, HostEventKind
from hostsim.steps import (
    Acquire,
    Block,
    Delay,
    HwCall,
    ProcessError,
    Reconfigure,
    Release,
    SetHook,
    Sleep,
    Step,
    Unblock,
)

K = HostEventKind
_RC = arch.RC
#: ZAPQ answers after which apq_reset_check issues ZAPQ again
_REZAP = (_RC.RESET_IN_PROGRESS, _RC.BUSY, _RC.STATE_CHANGE_IN_PROGRESS)
#: the kinds whose program takes the rwsem's write side (with an rwsem-guarded hook)
HOOK_KINDS = (K.ATTACH, K.DETACH, K.START)
#: the kinds whose program updates the guest's APCB (and so blocks its vCPUs), upstream
_APCB = (
    K.ATTACH,
    K.DETACH,
    K.START,
    K.ASSIGN,
    K.UNASSIGN,
    K.QUEUE_PROBE,
    K.QUEUE_REMOVE,
    K.CONFIG_CHANGED,
)
_STOPS = (K.START, K.REBOOT)  # the guest's vCPUs stopped from the event to its AP bus probe
SLOTS = 16  # keyed cost draws per queue and cost; more calls draw a further block of slots


@dataclass
class HostProgram:
    """A host event's program and what it did (hardware calls, sleeps), filled in as it runs."""

    steps: Any  # a generator of steps
    blocks: frozenset[int]  # the guests whose vCPUs it may block
    aqic: int = 0
    tapq: int = 0
    zapq: int = 0
    sleeps: int = 0


class _Costs:
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


class _Faults:
    """Hardware faults of one host event's calls (the scenario's probabilities, through the
    model's own answer mapping): NORMAL unless a fault is drawn."""

    def __init__(self, m: Model, index: int, apqns: np.ndarray) -> None:
        s, ek, nq = m.s, m.event_keys[index], len(apqns)
        queues = np.arange(nq, dtype=np.int64)
        zero = np.zeros(nq, np.int64)
        au = draws.keyed(s.seed, draws.HOST_HW_AQIC, ek, queues, zero).random((nq, AQIC_SLOTS))
        tu = draws.keyed(s.seed, draws.HOST_HW_TAPQ, ek, queues, zero).random((nq, TAPQ_SLOTS))
        iu = draws.keyed(s.seed, draws.HOST_HW_IRQ, ek, queues, zero).random((nq, TAPQ_SLOTS))
        aq, self.trc, self.tirq, _ = m._answers(m.profile_index(apqns), au, tu, iu, np.ones(nq))
        self.arc = (aq >> arch.STATUS_RC_SHIFT) & 0xFF

    def aqic(self, q: int, j: int) -> int:
        return int(self.arc[q, j % AQIC_SLOTS])

    def tapq(self, q: int, j: int) -> tuple[int, bool]:
        return int(self.trc[q, j % TAPQ_SLOTS]), bool(self.tirq[q, j % TAPQ_SLOTS])


Steps = Generator[Step, Any, None]


class _Op:
    """The program of one host event (see the module docstring)."""

    def __init__(self, m: Model, index: int, ev: HostEvent, hp: HostProgram) -> None:
        self.m, self.ev, self.hp, self.g = m, ev, hp, ev.guest
        apqns = m.event_queues[index]
        if ev.kind in PLUG + UNPLUG:
            apqns = np.array(sorted(m.changes[index]), np.uint16)
        self.apqns = [int(a) for a in apqns]
        self.index = index
        self.cost = _Costs(m, index, len(self.apqns))
        self.faults = _Faults(m, index, apqns)
        self.calls: dict[tuple[str, int], int] = {}  # (cost, queue) -> calls so far
        self.sync = m.variant.reset_style == "sync"
        self.stopped = False  # a start or reboot keeps the vCPUs stopped: APCB updates need not
        self.mdev = m.s.guests[int(m.topo.guest_group[self.g])].mdev

    def c(self, name: str, q: int = 0) -> int:
        k = self.calls.get((name, q), 0)
        self.calls[(name, q)] = k + 1
        return self.cost(name, q, k)

    # --- pieces -------------------------------------------------------------------------------
    def hook(self, value: bool) -> Steps:
        if self.m.rwsem:
            g, w = self.g, "pqap_hook_rwsem"
            yield Acquire(g, w, "w")
            yield Delay(self.c("rwsem_write"))
            yield SetHook(g, value)
            yield Release(w, g)

    def outer(self, perms: bool = False) -> Steps:
        if self.sync:
            return
        if perms:
            yield Acquire(self.g, "ap_perms_mutex")
        yield Acquire(self.g, "guests_lock")
        yield Acquire(self.g, "kvm_lock")

    def release_outer(self, perms: bool = False) -> Steps:
        if self.sync:
            return
        yield Release("kvm_lock", self.g)
        yield Release("guests_lock", self.g)
        if perms:
            yield Release("ap_perms_mutex", self.g)

    def apcb(self) -> Steps:
        """kvm_arch_crypto_set_masks / clear_masks: every vCPU of the guest stopped."""
        if self.stopped:
            yield Delay(self.c("apcb_update"))
            return
        yield Block(self.g)
        yield Delay(self.c("apcb_update"))
        yield Unblock(self.g)

    def hw(self, op: str, q: int, ns: int, **kw: Any) -> Generator[Step, Any, QueueAnswer]:
        a = yield HwCall(op, self.apqns[q], self.g, ns, **kw)
        return a

    def reset(self, queues: list[int]) -> Steps:
        if self.sync:
            yield from self.reset_sync(queues)
        else:
            yield from self.reset_async(queues)

    def reset_async(self, queues: list[int]) -> Steps:
        """vfio_ap_mdev_reset_queues: ZAPQ each queue, then the parallel apq_reset_check work
        items, flushed under the lock (section 3)."""
        first: dict[int, int] = {}
        for q in queues:
            a = yield from self.hw("zapq", q, self.c("zapq", q), reset_ns=self.c("queue_reset", q))
            self.hp.zapq += 1
            first[q] = a.rc
        if self.m.s.host.reset_verify == "async":
            return  # what-if: the checks are not waited for under the lock
        # The checks run in parallel: visit their TAPQs (and re-ZAPQs) in time order.
        now = 0
        heap = [(self.c("reset_interval", q), q) for q in queues]
        self.hp.sleeps += len(heap)
        heapq.heapify(heap)
        done = 0
        while heap:
            t, q = heapq.heappop(heap)
            if t > now:
                yield Sleep(t - now)
                now = t
            a = yield from self.hw("tapq", q, 0)
            self.hp.tapq += 1
            t += self.c("host_tapq", q)
            if a.reset_pending or a.rc in (_RC.RESET_IN_PROGRESS, _RC.BUSY):
                pass  # still resetting: sleep again
            elif first[q] in _REZAP:
                z = yield from self.hw("zapq", q, 0, reset_ns=self.c("queue_reset", q))
                self.hp.zapq += 1
                first[q] = z.rc
                t += self.c("zapq", q)
            else:
                done = max(done, t)
                continue
            heapq.heappush(heap, (t + self.c("reset_interval", q), q))
            self.hp.sleeps += 1
        if done > now:
            yield Delay(done - now)

    def reset_sync(self, queues: list[int]) -> Steps:
        """The 2019 vfio_ap_mdev_reset_queue: ZAPQ, up to two msleep(20) + TAPQ until the
        queue is empty, then vfio_ap_irq_disable of the queue; one queue after the other."""
        for q in queues:
            for _ in range(arch.DISABLE_MAX_AQIC):  # "retry" of the 2019 loop
                a = yield from self.hw(
                    "zapq", q, self.c("zapq", q), reset_ns=self.c("queue_reset", q)
                )
                self.hp.zapq += 1
                if a.rc == _RC.NORMAL:
                    for _ in range(2):  # retry2 = 2
                        if not a.reset_pending:
                            break
                        yield Sleep(self.c("msleep20", q))
                        self.hp.sleeps += 1
                        a = yield from self.hw("tapq", q, self.c("host_tapq", q))
                        self.hp.tapq += 1
                    break
                if a.rc not in (_RC.RESET_IN_PROGRESS, _RC.BUSY):
                    break
                yield Sleep(self.c("msleep20", q))
                self.hp.sleeps += 1
            yield from self.disable(q, force=True)

    def sleep(self, q: int) -> Steps:
        """One msleep(20) of the disable loop: under the lock, or (the ``disable_wait =
        "unlocked"`` what-if) with it dropped and taken again."""
        ns = self.c("msleep20", q)
        self.hp.sleeps += 1
        if self.m.s.host.disable_wait == "unlocked":
            yield Release()
            yield Sleep(ns)
            yield Acquire(self.g)
            yield Delay(self.c("mutex_acquire"))
        else:
            yield Sleep(ns)

    def disable(self, q: int, force: bool = False) -> Steps:
        """vfio_ap_irq_disable of queue ``q`` (only if its interrupts are on, unless
        ``force``): the AQIC(IR=0) loop, then vfio_ap_wait_for_irqclear."""
        if not force:
            peek = yield from self.hw("peek", q, 0)
            if not peek.irq:
                return
        for i in range(arch.DISABLE_MAX_AQIC):
            a = yield from self.hw("aqic_disable", q, self.c("host_aqic", q))
            self.hp.aqic += 1
            rc = self.faults.aqic(q, i) or a.rc
            if rc in (_RC.NORMAL, _RC.OTHERWISE_CHANGED):
                for j in range(arch.IRQCLEAR_MAX_TAPQ):
                    t = yield from self.hw("tapq", q, self.c("host_tapq", q))
                    self.hp.tapq += 1
                    frc, firq = self.faults.tapq(q, j)
                    trc = frc or t.rc
                    if trc in (_RC.NORMAL, _RC.RESET_IN_PROGRESS) and not (t.irq or firq):
                        return
                    if trc not in (_RC.NORMAL, _RC.RESET_IN_PROGRESS, _RC.BUSY):
                        return
                    if j < arch.IRQCLEAR_MAX_TAPQ - 1:
                        yield from self.sleep(q)
                return
            if rc not in (_RC.RESET_IN_PROGRESS, _RC.BUSY) or i == arch.DISABLE_MAX_AQIC - 1:
                return
            yield from self.sleep(q)

    # --- the operations -----------------------------------------------------------------------
    def open(self) -> Steps:
        yield from self.hook(True)
        yield from self.outer()
        yield Acquire(self.g)
        yield Delay(self.c("mutex_acquire"))
        yield Delay(self.c("mdev_kvm_update"))
        if not self.sync:
            yield from self.apcb()
        yield Reconfigure(self.index)
        yield Release()
        yield from self.release_outer()

    def machine_reset(self) -> Steps:
        yield Acquire(self.g)
        yield Delay(self.c("mutex_acquire"))
        yield from self.reset(list(range(len(self.apqns))))
        yield Release()

    def close(self) -> Steps:
        yield from self.hook(False)
        yield from self.outer()
        yield Acquire(self.g)
        yield Delay(self.c("mutex_acquire"))
        if not self.sync:
            yield from self.apcb()
        yield from self.reset(list(range(len(self.apqns))))
        yield Delay(self.c("mdev_kvm_update"))
        yield Reconfigure(self.index)
        yield Release()
        yield from self.release_outer()

    def dma_unmap(self) -> Steps:
        yield Acquire(self.g)
        yield Delay(self.c("mutex_acquire"))
        for q in range(len(self.apqns)):
            yield from self.disable(q)
        yield Reconfigure(self.index)
        yield Release()

    def assign(self, add: bool, perms: bool = True) -> Steps:
        perms = perms and add
        yield from self.outer(perms=perms)
        yield Acquire(self.g)
        yield Delay(self.c("mutex_acquire"))
        yield Delay(self.c("mdev_kvm_update"))
        if not self.sync:
            yield from self.apcb()
        if not add:
            yield from self.reset(list(range(len(self.apqns))))
        op = "config_add" if add else "config_remove"
        for q in range(len(self.apqns)):
            yield from self.hw(op, q, 0)
        yield Reconfigure(self.index)
        yield Release()
        yield from self.release_outer(perms=perms)

    def boot(self) -> Steps:
        """The guest runs again after QEMU's reset: its boot until the AP bus scan
        (``delay_ms``), the RAPQs, and the low poll (``probe_ms``, 40 ms) before its one
        tasklet pass enables every queue (host-operations.md section 5). The vCPUs stay
        stopped until then, so the enable burst (scripted at the event's time) issues at the
        probe."""
        g = self.m.s.guests[int(self.m.topo.guest_group[self.g])]
        yield Delay(round((self.ev.delay_ms + g.workload.probe_ms) * 1_000_000))
        yield Unblock(self.g)

    def sysfs_read(self) -> Steps:
        """A ``*_show`` attribute of the mdev (``matrix_show``, ``guest_matrix_show``, ...)."""
        yield Acquire(self.g)
        yield Delay(self.c("mutex_acquire"))
        yield Delay(self.c("sysfs_read"))
        yield Release()

    def mdev_create(self) -> Steps:
        """vfio_ap_mdev_probe: the new mdev joins matrix_dev's list."""
        yield Acquire(self.g)
        yield Delay(self.c("mutex_acquire"))
        yield Delay(self.c("mdev_list"))
        yield Release()

    def mdev_remove(self) -> Steps:
        """vfio_ap_mdev_remove: ``guests_lock -> mdevs_lock``, every queue reset, unlinked."""
        if not self.sync:
            yield Acquire(self.g, "guests_lock")
        yield Acquire(self.g)
        yield Delay(self.c("mutex_acquire"))
        yield from self.reset(list(range(len(self.apqns))))
        yield Delay(self.c("mdev_list"))
        yield Reconfigure(self.index)
        yield Release()
        if not self.sync:
            yield Release("guests_lock", self.g)

    def config_changed(self) -> Steps:
        """vfio_ap_on_cfg_changed / on_scan_complete: ``guests_lock``, then for every mdev
        ``kvm->lock -> mdevs_lock`` to filter its matrix; the event's guest gets an APCB update
        (its hot-plug or hot-unplug)."""
        m = self.m
        if not self.sync:
            yield Acquire(self.g, "guests_lock")
        for g in range(m.n_guests):
            if not m.s.guests[int(m.topo.guest_group[g])].mdev:
                continue
            if not self.sync:
                yield Acquire(g, "kvm_lock")
            yield Acquire(g)
            yield Delay(self.c("mutex_acquire"))
            yield Delay(self.c("mdev_list"))
            if g == self.g and not self.sync:
                yield from self.apcb()
            yield Release()
            if not self.sync:
                yield Release("kvm_lock", g)
        if not self.sync:
            yield Release("guests_lock", self.g)

    def steps(self) -> Steps:
        kind = self.ev.kind
        if kind in (K.START, K.REBOOT):  # the vCPUs do not run until QEMU's reset is done
            yield Block(self.g, stopped=True)
            self.stopped = True
            if self.mdev:  # (a guest without an mdev: no vfio-ap device to open or reset)
                if kind == K.START:
                    yield from self.open()
                yield from self.machine_reset()
            yield from self.boot()
        elif kind == K.ATTACH:
            yield from self.open()
        elif kind == K.DETACH:
            yield from self.close()
        elif kind == K.RESET:
            yield from self.machine_reset()
        elif kind == K.IRQ_DISABLE:
            yield from self.dma_unmap()
        elif kind in (K.ASSIGN, K.UNASSIGN):
            yield from self.assign(kind == K.ASSIGN)
        elif kind in (K.QUEUE_PROBE, K.QUEUE_REMOVE):  # as (un)assign, without ap_perms_mutex
            yield from self.assign(kind == K.QUEUE_PROBE, perms=False)
        elif kind == K.SYSFS_READ:
            yield from self.sysfs_read()
        elif kind == K.MDEV_CREATE:
            yield from self.mdev_create()
        elif kind == K.MDEV_REMOVE:
            yield from self.mdev_remove()
        elif kind == K.CONFIG_CHANGED:
            yield from self.config_changed()


def host_program(m: Model, index: int, ev: HostEvent) -> HostProgram:
    """The program of host event ``index`` (see module docstring)."""
    sync = m.variant.reset_style == "sync"
    apcb = not sync and ev.kind in _APCB
    blocks = frozenset({ev.guest}) if apcb or ev.kind in _STOPS else frozenset()
    hp = HostProgram(iter(()), blocks)
    if ev.kind != K.GUEST_RESET:
        hp.steps = _Op(m, index, ev, hp).steps()
    return hp


@dataclass
class Programs:
    """Every program of a run (host events first, then user processes) and what they share."""

    runners: list[Runner]
    starts: list[int]
    host: list[HostProgram]
    rows: list[tuple[int, ...]]  # lock sections (LOCK_DTYPE), appended as they end
    queues: QueueState
    blocked: list[tuple[int, ...]]  # block intervals (BLOCK_DTYPE), appended as they end
    blockable: frozenset[int]  # the guests some program may block
    #: the guests whose AQICs read and write the queue state (their queues see host operations)
    stateful: frozenset[int] = frozenset()


def programs(m: Model, processes: tuple[Any, ...] = ()) -> Programs:
    """The runners of a run's host events and user processes, ready for an engine."""
    resets: dict[int, list[int]] = {}
    for ev in m.s.events:
        if ev.kind == K.GUEST_RESET:
            resets.setdefault(ev.guest, []).append(ev.at_ns)
    queues = QueueState(list(m.initial_matrix), resets)
    rows: list[tuple[int, ...]] = []
    blocked: list[tuple[int, ...]] = []
    events = m.s.events
    host = [host_program(m, i, ev) for i, ev in enumerate(events)]
    blockable = {g for hp in host for g in hp.blocks}
    runners = [
        Runner(
            i,
            hp.steps,
            f"host event {i} ({ev.kind.name.lower()})",
            m.locks,
            queues,
            rows,
            True,
            blocked=blocked,
        )
        for i, (hp, ev) in enumerate(zip(host, events, strict=True))
    ]
    for u, proc in enumerate(processes):
        who = f"host process {u}"
        blocks = blocks_of(proc)
        bad = [g for g in blocks if not 0 <= g < m.n_guests]
        if bad:
            raise ProcessError(f"{who}: blocking({sorted(blocks)}): no guest {bad[0]}")
        blockable |= blocks
        r = Runner(
            len(events) + u, proc(), who, m.locks, queues, rows, blocks=blocks, blocked=blocked
        )
        r.stop_at = m.s.duration_ns
        runners.append(r)
    starts = [ev.at_ns for ev in events] + [0] * len(processes)
    stateful = frozenset({ev.guest for ev in events} | blockable)
    return Programs(runners, starts, host, rows, queues, blocked, frozenset(blockable), stateful)


def host_event_rows(m: Model, p: Programs) -> np.ndarray:
    """One row of :data:`HOST_EVENT_DTYPE` per host event whose program finished."""
    lock_of: dict[int, dict[int, tuple[int, int, int]]] = {}
    for owner, _, inst, mode, t_req, t_grant, t_rel in sorted(p.rows):
        if mode == WRITE or inst < m.n_mutexes:  # the rwsem's write side, or mdevs_lock
            sec = lock_of.setdefault(owner, {})
            first = sec.get(mode)  # several sections (start: open, reset): first to last
            sec[mode] = (t_req, t_grant, t_rel) if first is None else (*first[:2], t_rel)
    none = (-1, -1, -1)
    out = []
    for i, ev in enumerate(m.s.events):
        if not p.runners[i].done:
            continue
        sec = lock_of.get(i, {})
        hp = p.host[i]
        rw, mx = sec.get(WRITE, none), sec.get(EXCLUSIVE, none)
        out.append((i, int(ev.kind), ev.guest, ev.at_ns, *rw, *mx, hp.aqic, hp.tapq, hp.sleeps))
    return np.array(out, dtype=HOST_EVENT_DTYPE)


def host_mutex_sections(m: Model, p: Programs) -> np.ndarray:
    """One :data:`HOST_EVENT_DTYPE` row per ``mdevs_lock`` section of a host event (a start
    has two: the open's and the reset's): what the mutex statistics count, where a host-event
    row spans the event's first request to its last release."""
    out = []
    events = m.s.events
    for owner, _, inst, mode, t_req, t_grant, t_rel in sorted(p.rows):
        if owner < len(events) and mode != WRITE and inst < m.n_mutexes:
            ev = events[owner]
            out.append(
                (
                    owner,
                    int(ev.kind),
                    ev.guest,
                    ev.at_ns,
                    -1,
                    -1,
                    -1,
                    t_req,
                    t_grant,
                    t_rel,
                    0,
                    0,
                    0,
                )
            )
    return np.array(out, dtype=HOST_EVENT_DTYPE)


def process_rows(m: Model, p: Programs) -> np.ndarray:
    """The lock sections of the user processes (:data:`PROCESS_DTYPE`)."""
    e = len(m.s.events)
    rows = sorted(
        (owner - e, seq, inst, t_req, t_grant, t_rel)
        for owner, seq, inst, _, t_req, t_grant, t_rel in p.rows
        if owner >= e
    )
    return np.array(rows, dtype=PROCESS_DTYPE)


BLOCK_DTYPE = np.dtype(
    [
        ("owner", np.int32),  # host event index, or len(events) + user process index
        ("guest", np.int32),
        ("t_block", np.int64),
        ("t_unblock", np.int64),
        ("stopped", np.bool_),  # a start or reboot: not running until the AP bus probe
    ]
)


def block_rows(p: Programs) -> np.ndarray:
    """Every interval a program kept a guest's vCPUs blocked (:data:`BLOCK_DTYPE`)."""
    return np.array(sorted(p.blocked), dtype=BLOCK_DTYPE)


def lock_rows(p: Programs) -> np.ndarray:
    """Every program's lock sections (:data:`LOCK_DTYPE`), by owner and section."""
    return np.array(sorted(p.rows), dtype=LOCK_DTYPE)
