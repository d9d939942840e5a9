"""Host operations as programs: what each host event of a scenario does, step by step.

A host event (attach, detach, reset, irq_disable, reboot, assign, unassign, guest_reset) becomes
a program of :mod:`hostsim.steps` that both engines interpret (:mod:`hostsim.program`):

* attach and detach with an rwsem-guarded hook: the rwsem's write side (its hold), the hook
  published or cleared, the rwsem released; then, as every other event,
* one ``mdevs_lock`` section: the lock's acquire cost, the mdev's KVM update (attach, detach,
  assign, unassign), each queue's disable loop (detach, irq_disable: its AQIC, TAPQ and sleep
  costs as one hardware call that clears the queue's interrupts), each queue's reset (detach,
  reset, reboot, unassign: a ZAPQ that lasts the queue's reset cost), the queues entering or
  leaving the configuration (assign, unassign), and the configuration change itself;
* a guest reset is the guest's own business: no host lock, no steps.

Every draw is keyed by the event's identity, its queue and call (:mod:`hostsim.draws`, one family
per cost and per hardware answer), so a cost's distribution never moves another cost's values or
the queues' answers. The hardware's answers to the disable loop are still independent draws (the
queue state is written, not yet read: issue 12).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from hostsim import arch, draws
from hostsim.decode import _disable_one
from hostsim.intercept import AQIC_SLOTS, TAPQ_SLOTS, Intercept
from hostsim.locks import EXCLUSIVE, WRITE
from hostsim.model import Model
from hostsim.process import PROCESS_DTYPE, blocks_of
from hostsim.program import LOCK_DTYPE, Runner
from hostsim.queues import QueueState
from hostsim.records import HOST_EVENT_DTYPE
from hostsim.scenario_types import HostEvent, HostEventKind
from hostsim.steps import (
    Acquire,
    Block,
    Delay,
    HwCall,
    ProcessError,
    Reconfigure,
    Release,
    SetHook,
    Step,
)

_HOOKED = (HostEventKind.ATTACH, HostEventKind.DETACH)
_KVM_UPDATE = (*_HOOKED, HostEventKind.ASSIGN, HostEventKind.UNASSIGN)
_DISABLE = (HostEventKind.DETACH, HostEventKind.IRQ_DISABLE)
_RESET = (
    HostEventKind.DETACH,
    HostEventKind.RESET,
    HostEventKind.REBOOT,
    HostEventKind.UNASSIGN,
)


@dataclass(frozen=True)
class HostProgram:
    """A host event's steps and its hardware call counts (AQIC, TAPQ, sleeps of its loops)."""

    steps: tuple[Step, ...]
    aqic: int
    tapq: int
    sleeps: int


def _disable_calls(m: Model, ek: int, apqns: np.ndarray) -> np.ndarray:
    """AQIC, TAPQ and sleep counts of each queue's disable loop, from its keyed answers."""
    s = m.s
    nq = len(apqns)
    queues = np.arange(nq, dtype=np.int64)
    zero = np.zeros(nq, np.int64)
    au = draws.keyed(s.seed, draws.HOST_HW_AQIC, ek, queues, zero).random((nq, AQIC_SLOTS))
    tu = draws.keyed(s.seed, draws.HOST_HW_TAPQ, ek, queues, zero).random((nq, TAPQ_SLOTS))
    iu = draws.keyed(s.seed, draws.HOST_HW_IRQ, ek, queues, zero).random((nq, TAPQ_SLOTS))
    prof_of = m.profile_index(apqns)
    calls = np.zeros((3, nq), np.int64)
    for qi in range(nq):
        p = m._profiles[int(prof_of[qi])]
        rc = p.aqic_rc[
            np.searchsorted(p.aqic_cdf, au[qi], side="right").clip(0, len(p.aqic_rc) - 1)
        ]
        trc = p.tapq_rc[
            np.searchsorted(p.tapq_cdf, tu[qi], side="right").clip(0, len(p.tapq_rc) - 1)
        ]
        x = Intercept(
            gpr0=int(apqns[qi]),
            hw_aqic=[int(v) << arch.STATUS_RC_SHIFT for v in rc],
            hw_tapq=[(int(a), bool(b)) for a, b in zip(trc, iu[qi] < p.tapq_irq, strict=True)],
        )
        _, calls[0, qi], calls[1, qi], calls[2, qi] = _disable_one(x, 0)
    return calls


def host_program(m: Model, index: int, ev: HostEvent) -> HostProgram:
    """The program of host event ``index`` (see module docstring)."""
    s = m.s
    ek = m.event_keys[index]
    c = s.costs

    def cost(name: str, lv: np.ndarray, k: np.ndarray | None = None) -> np.ndarray:
        kk = np.zeros(len(lv), np.int64) if k is None else k
        gen = draws.keyed(s.seed, f"host-cost:{name}", ek, lv, kk)
        return c[name].sample(gen, gen.shape)

    one = np.zeros(1, np.int64)
    rw = int(cost("rwsem_write", one)[0])
    kind, g = ev.kind, ev.guest
    if kind == HostEventKind.GUEST_RESET:
        return HostProgram((), 0, 0, 0)
    steps: list[Step] = []
    if kind in _HOOKED and m.rwsem:
        hook = kind == HostEventKind.ATTACH
        w = "pqap_hook_rwsem"
        steps += [Acquire(g, w, "w"), Delay(rw), SetHook(g, hook), Release(w, g)]
    steps += [Acquire(g), Delay(int(cost("mutex_acquire", one)[0]))]
    if kind in _KVM_UPDATE:
        steps.append(Delay(int(cost("mdev_kvm_update", one)[0])))
    apqns = m.event_queues[index]
    if kind in (HostEventKind.ASSIGN, HostEventKind.UNASSIGN):
        apqns = np.array(sorted(m.event_apqns(ev)), np.uint16)
    nq = len(apqns)
    queues = np.arange(nq, dtype=np.int64)
    counts = np.zeros(3, np.int64)
    if kind in _DISABLE and nq:
        calls = _disable_calls(m, ek, apqns)
        counts = calls.sum(axis=1)
        per_queue = np.zeros(nq, np.int64)
        for name, n in zip(("host_aqic", "host_tapq", "msleep20"), calls, strict=True):
            if n.sum():
                lv = np.repeat(queues, n)
                k = np.arange(len(lv)) - np.repeat(np.cumsum(n) - n, n)  # call j of queue
                np.add.at(per_queue, lv, cost(name, lv, k))
        steps += [
            HwCall("aqic_disable", int(a), g, int(ns))
            for a, ns in zip(apqns, per_queue, strict=True)
        ]
    if kind in _RESET and nq:
        steps += [
            HwCall("zapq", int(a), g, int(ns))
            for a, ns in zip(apqns, cost("queue_reset", queues), strict=True)
        ]
    if kind in (HostEventKind.ASSIGN, HostEventKind.UNASSIGN):
        op = "config_add" if kind == HostEventKind.ASSIGN else "config_remove"
        steps += [HwCall(op, int(a), g) for a in apqns]
    steps += [Reconfigure(index), Release()]
    aqic, tapq, sleeps = (int(n) for n in counts)
    return HostProgram(tuple(steps), aqic, tapq, sleeps)


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


def programs(m: Model, processes: tuple[Any, ...] = ()) -> Programs:
    """The runners of a run's host events and user processes, ready for an engine."""
    queues = QueueState(list(m.initial_matrix))
    rows: list[tuple[int, ...]] = []
    blocked: list[tuple[int, ...]] = []
    events = m.s.events
    host = [host_program(m, i, ev) for i, ev in enumerate(events)]
    blockable = {st.guest for hp in host for st in hp.steps if isinstance(st, Block)}
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
    return Programs(runners, starts, host, rows, queues, blocked, frozenset(blockable))


def host_event_rows(m: Model, p: Programs) -> np.ndarray:
    """One row of :data:`HOST_EVENT_DTYPE` per host event whose program finished."""
    lock_of: dict[int, dict[int, tuple[int, int, int]]] = {}
    for owner, _, inst, mode, t_req, t_grant, t_rel in p.rows:
        if mode == WRITE or inst < m.n_mutexes:  # the rwsem's write side, or mdevs_lock
            lock_of.setdefault(owner, {})[mode] = (t_req, t_grant, t_rel)
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
    ]
)


def block_rows(p: Programs) -> np.ndarray:
    """Every interval a program kept a guest's vCPUs blocked (:data:`BLOCK_DTYPE`)."""
    return np.array(sorted(p.blocked), dtype=BLOCK_DTYPE)


def lock_rows(p: Programs) -> np.ndarray:
    """Every program's lock sections (:data:`LOCK_DTYPE`), by owner and section."""
    return np.array(sorted(p.rows), dtype=LOCK_DTYPE)
