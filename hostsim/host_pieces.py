"""The pieces every host operation's program is made of, and what a program did.

:class:`Pieces` holds one host event's state (its queues, keyed costs and faults, the variant)
and the step sequences the operations of :mod:`hostsim.host_ops` are assembled from: the
rwsem-guarded hook, the outer locks (``ap_perms_mutex -> guests_lock -> kvm->lock``), an APCB
update, a hardware call, the queue reset (``vfio_ap_mdev_reset_queues`` with its parallel
``apq_reset_check`` items, or the 2019 one-queue-after-the-other reset) and
``vfio_ap_irq_disable`` with its ``msleep(20)``. :class:`HostProgram` is a program and its
counts of hardware calls and sleeps. Kept apart from the operations so each reads on its own:
the operations say which locks and pieces an event takes, in order; the pieces say how.
"""

from __future__ import annotations

import heapq
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import numpy as np

from hostsim import arch
from hostsim.host_draws import HostCosts, HostFaults
from hostsim.model import Model
from hostsim.queues import QueueAnswer
from hostsim.scenario_types import PLUG, UNPLUG, HostEvent
from hostsim.steps import (
    Acquire,
    Block,
    Delay,
    HwCall,
    Release,
    SetHook,
    Sleep,
    Step,
    Unblock,
)

_RC = arch.RC
#: ZAPQ answers after which apq_reset_check issues ZAPQ again
_REZAP = (_RC.RESET_IN_PROGRESS, _RC.BUSY, _RC.STATE_CHANGE_IN_PROGRESS)


@dataclass
class HostProgram:
    """A host event's program and what it did (hardware calls, sleeps), filled in as it runs."""

    steps: Any  # a generator of steps
    blocks: frozenset[int]  # the guests whose vCPUs it may block
    aqic: int = 0
    tapq: int = 0
    zapq: int = 0
    sleeps: int = 0


Steps = Generator[Step, Any, None]


class Pieces:
    """One host event's state and the step sequences its operations are made of."""

    def __init__(self, m: Model, index: int, ev: HostEvent, hp: HostProgram) -> None:
        self.m, self.ev, self.hp, self.g = m, ev, hp, ev.guest
        apqns = m.event_queues[index]
        if ev.kind in PLUG + UNPLUG:
            apqns = np.array(sorted(m.changes[index]), np.uint16)
        self.apqns = [int(a) for a in apqns]
        self.index = index
        self.cost = HostCosts(m, index, len(self.apqns))
        self.faults = HostFaults(m, index, apqns)
        self.calls: dict[tuple[str, int], int] = {}  # (cost, queue) -> calls so far
        self.sync = m.variant.reset_style == "sync"
        self.stopped = False  # a start or reboot keeps the vCPUs stopped: APCB updates need not
        self.mdev = m.s.guests[int(m.topo.guest_group[self.g])].mdev

    def c(self, name: str, q: int = 0) -> int:
        k = self.calls.get((name, q), 0)
        self.calls[(name, q)] = k + 1
        return self.cost(name, q, k)

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
