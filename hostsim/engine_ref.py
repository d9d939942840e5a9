"""The reference engine: the obvious SimPy model, one process per vCPU, scalar decode.

It exists to be obviously right, not fast: every request walks its stages as SimPy timeouts, the
intercept is decoded with :func:`hostsim.decode.decode_one` when it happens, and the locks are
SimPy-driven FIFO objects.

Tie rule (both engines follow it; see README "Determinism"):
* at one nanosecond, host-side state changes come first, then vCPU actions, then lock
  decisions: a lock is granted only after every request of that nanosecond is in;
* the global vfio_ap mutex (or a guest's mutex, per-mdev) is FIFO in the order
  ``(request time, host before vCPU, event index or global vCPU index)``;
* a guest's ``pqap_hook_rwsem``: a reader that asks while a writer waits or holds it waits until
  the writer releases; a writer waits until every reader that got in before it has left.
SimPy events carry a priority: URGENT (0) for host state flips, NORMAL (1) for process steps,
and :data:`LATE` (2) for lock decisions, so the rule holds whatever order SimPy created them in.
"""

from __future__ import annotations

import heapq
from collections.abc import Generator
from typing import Any

import numpy as np
import simpy
from simpy.events import EventPriority

from hostsim import ties
from hostsim.chain import MUTEX, READ, UNLOCK
from hostsim.fifo import FifoQueue
from hostsim.host_ops import HOOK_KINDS as _HOOK_KINDS
from hostsim.locks import WRITE
from hostsim.model import Model
from hostsim.program import Drop, Idle, Runner, Section, Take, Wait
from hostsim.request import record, start, steps
from hostsim.run_programs import host_event_rows, programs
from hostsim.rwsem import RwQueue
from hostsim.scenario_types import HostEventKind
from hostsim.sim_env import HostEnv
from hostsim.sim_process import AnyProcess, SimProcess
from hostsim.sink import RecordSink
from hostsim.streams import (
    GuestState,
    VState,
    after,
    next_request,
    reconfigure,
    start_of,
)
from hostsim.ties import HOST, VCPU, lock_key

#: The :mod:`hostsim.ties` priorities as SimPy's ``EventPriority`` (an int NewType: same values).
URGENT = EventPriority(ties.URGENT)
LATE = EventPriority(ties.LATE)
RESUME = EventPriority(ties.RESUME)


def _at(env: simpy.Environment, priority: EventPriority, callback: Any, delay: int = 0) -> None:
    ev = simpy.Event(env)
    ev._ok = True
    ev._value = None
    ev.callbacks.append(callback)
    env.schedule(ev, priority, delay)


class FifoLock:
    """A SimPy mutex: the FIFO rule's event-driven form (:class:`hostsim.fifo.FifoQueue`),
    decided at LATE priority."""

    def __init__(self, env: simpy.Environment) -> None:
        self.env = env
        self.q = FifoQueue()

    def request(self, cls: int, ident: int, phase: int = 0) -> simpy.Event:
        ev = simpy.Event(self.env)
        if self.q.ask(lock_key(int(self.env.now), phase, cls, ident), ev):
            _at(self.env, LATE, self._decide)
        return ev

    def release(self) -> None:
        if self.q.release():
            _at(self.env, LATE, self._decide)

    def _decide(self, _: Any) -> None:
        ev = self.q.decide()
        if ev is not None:
            ev.succeed()


class RwSem:
    """A guest's ``pqap_hook_rwsem``: the writer-preferring rule's event-driven form
    (:class:`hostsim.rwsem.RwQueue`), decided at LATE priority."""

    def __init__(self, env: simpy.Environment) -> None:
        self.env = env
        self.q = RwQueue()

    def read(self) -> simpy.Event:
        ev = simpy.Event(self.env)
        self._later(self.q.read(ev))
        return ev

    def write(self) -> simpy.Event:
        ev = simpy.Event(self.env)
        self._later(self.q.write(ev))
        return ev

    def read_release(self) -> None:
        self._later(self.q.read_release())

    def write_release(self) -> None:
        self._later(self.q.write_release())

    def _later(self, decide: bool) -> None:
        if decide:
            _at(self.env, LATE, self._decide)

    def _decide(self, _: Any) -> None:
        for ev in self.q.decide():
            ev.succeed()


class _Guest(GuestState):
    __slots__ = ("rwsem", "unblocked")

    def __init__(self, env: simpy.Environment, mdev: bool, matrix: frozenset[int]) -> None:
        super().__init__(mdev, matrix)
        self.rwsem = RwSem(env)
        self.unblocked = simpy.Event(env)  # succeeds at the next Unblock


class ReferenceEngine:
    """Simulate a scenario with one SimPy process per vCPU (see module docstring)."""

    def __init__(
        self, model: Model, sink: RecordSink, processes: tuple[AnyProcess, ...] = ()
    ) -> None:
        self.m = model
        self.sink = sink
        s = model.s
        owned = any(isinstance(p, SimProcess) for p in processes)
        self.env = HostEnv(stop_at=s.duration_ns, owned=owned)
        self.guests = [
            _Guest(self.env, s.guests[int(gi)].mdev, model.initial_matrix[j])
            for j, gi in enumerate(model.topo.guest_group)
        ]
        self.locks = [FifoLock(self.env) for _ in model.locks.labels]  # rwsem slots unused
        self.progs = programs(model, processes, self.env)
        self._resumes: list[tuple[int, simpy.Event]] = []
        self._resume_pending = False
        self.next_issue = np.full(model.n_vcpus, np.iinfo(np.int64).max, np.int64)

    def run(self, progress: Any = None) -> np.ndarray:
        """Run to completion; returns the host-event records."""
        m, env = self.m, self.env
        for ev in m.s.events:
            if not m.rwsem and ev.kind in _HOOK_KINDS:
                g = self.guests[ev.guest]
                value = ev.kind != HostEventKind.DETACH
                _at(env, URGENT, lambda _, g=g, v=value: setattr(g, "hook", v), ev.at_ns)
        for r, t0 in zip(self.progs.runners, self.progs.starts, strict=True):
            env.process(self._program(r, t0))
        for v in range(m.n_vcpus):
            env.process(self._vcpu(v))
        step = max(m.s.duration_ns // 200, 1)
        t = step
        peek, stepper = env.peek, env.step
        while peek() != float("inf"):
            t = max(t, int(peek()) + 1)
            while peek() < t:
                stepper()
            if progress is not None:
                progress.update(env.now, self.sink.count + self.sink.pending())
            self.sink.flush(int(self.next_issue.min()))
            t += step
        self.sink.flush(None)
        return host_event_rows(m, self.progs)

    def _vcpu(self, v: int) -> Generator[simpy.Event, Any, None]:
        m, env = self.m, self.env
        guest = int(m.topo.vcpu_guest[v])
        gs = self.guests[guest]
        lock = self.locks[int(m.mutex_of_guest[guest])]
        st = VState()
        st.resume = st.arrival = start_of(m, v)
        blockable = guest in self.progs.blockable
        queues = self.progs.queues if guest in self.progs.stateful else None
        while True:
            req = next_request(m, v, st)
            if req is None:
                self.next_issue[v] = np.iinfo(np.int64).max
                return
            self.next_issue[v] = req.issue
            if blockable:  # no issue while a program keeps the guest's vCPUs stopped
                yield env.timeout(req.issue - env.now)
                yield from self._unblocked(gs)
                gs.issued_after_block(req, int(env.now))
            f = start(req)
            yield env.timeout(f.t_decode - env.now)
            # the request's program, one step at a time (hostsim.request.steps)
            run = steps(m, v, f, gs, gs.hook_at, queues, guest)
            sent: int | None = None
            while True:
                try:
                    step, t = run.send(sent)
                except StopIteration:
                    break
                sent = None
                if step is None:  # a free delay
                    yield env.timeout(t - env.now)
                elif step is READ:
                    yield gs.rwsem.read()
                    sent = int(env.now)
                elif step is MUTEX:
                    yield lock.request(VCPU, v)
                    sent = int(env.now)
                elif step is UNLOCK:
                    lock.release()
                else:
                    gs.rwsem.read_release()
            yield env.timeout(f.resume - env.now)
            if blockable:  # nor an SIE entry
                yield from self._unblocked(gs)
                f.resume = int(env.now)
            self.sink.add(record(f, v, guest, st.k))
            assert f.d is not None  # decided (record checks it too)
            after(m, v, st, req, f.d, f.resume)

    def _unblocked(self, gs: _Guest) -> Generator[simpy.Event, Any, None]:
        """Wait, deciding at LATE priority (after every step of the nanosecond), until the
        guest's vCPUs are not blocked."""
        while True:
            ev = simpy.Event(self.env)
            ev._ok, ev._value = True, None
            self.env.schedule(ev, LATE)
            yield ev
            if not gs.blocked:
                return
            yield gs.unblocked

    def _resume(self, ident: int) -> simpy.Event:
        """Continue a host program after a grant: at RESUME priority, in identifier order."""
        ev = simpy.Event(self.env)
        heapq.heappush(self._resumes, (ident, ev))
        if not self._resume_pending:
            self._resume_pending = True
            _at(self.env, RESUME, self._dispatch)
        return ev

    def _dispatch(self, _: Any) -> None:
        ev = heapq.heappop(self._resumes)[1]
        ev.succeed()
        self._resume_pending = bool(self._resumes)
        if self._resumes:
            _at(self.env, RESUME, self._dispatch)

    def _program(self, r: Runner, start: int) -> Generator[simpy.Event, Any, None]:
        """A host event or user process (:mod:`hostsim.program`), as a SimPy process."""
        m, env = self.m, self.env
        yield env.timeout(start)
        while True:
            act = r.next(int(env.now))
            if act is None:
                return
            phase = r.phase(int(env.now))
            if isinstance(act, Wait):
                yield env.timeout(act.ns)
            elif isinstance(act, Section):
                lock = self.locks[act.inst]
                yield lock.request(HOST, r.ident, phase)
                res = r.section(act.inst, int(env.now))
                t_end = int(env.now) + res.hold
                for t, step in res.timed:
                    yield env.timeout(t - env.now)
                    self._effect(step)
                yield env.timeout(t_end - env.now)
                reconfigure(m, res.effects, self.guests)
                lock.release()
            elif isinstance(act, Take):
                if act.mode == WRITE:
                    yield self.guests[act.guest].rwsem.write()
                else:
                    yield self.locks[act.inst].request(HOST, r.ident, phase)
                r.granted(act.inst, int(env.now))
                yield self._resume(r.ident)
            elif isinstance(act, Idle):  # a SimPy process: wait for what it posts next
                posted = simpy.Event(env)
                r.channel.wake = lambda _t, ev=posted: ev.succeed()
                yield posted
            elif isinstance(act, Drop):
                if act.mode == WRITE:
                    self.guests[act.guest].rwsem.write_release()
                else:
                    self.locks[act.inst].release()
            else:
                self._effect(act.step)

    def _effect(self, step: Any) -> None:
        """A program's hook flip (under the rwsem's write side), block or unblock of a guest."""
        gs = self.guests[step.guest]
        if gs.apply(step):
            gs.unblocked.succeed()
            gs.unblocked = simpy.Event(self.env)
