"""The fast engine's host side: host programs, host-only mutexes and the rwsem's writers.

A mixin of :class:`hostsim.engine_fast.FastEngine`, which owns the heap and the state these
methods read. Host programs (host events and user processes, :mod:`hostsim.program`) run their
steps here at heap events: a ``mdevs_lock`` section is granted in closed form when its request
is popped (every earlier request is in by then: FIFO), a host-only mutex (``ap_perms_mutex``,
``guests_lock``, ``kvm_lock``) is a FIFO queue of :func:`hostsim.ties.lock_key` keys, and the
``pqap_hook_rwsem`` write side waits until every reader granted before it has released. The
event kinds, in the order they break exact ties after ``(time, priority, class, id)``, are
defined here once for the whole engine.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from simpy.events import Event

from hostsim.locks import WRITE
from hostsim.program import Drop, Idle, Section, Take, Wait
from hostsim.streams import reconfigure
from hostsim.ties import HOST, LATE, NORMAL, RESUME, VCPU, lock_key

if TYPE_CHECKING:
    from hostsim.model import Model
    from hostsim.program import Runner
    from hostsim.sim_env import HostEnv
    from hostsim.streams import GuestState

# Event kinds, in the order they break exact ties after (time, priority, class, id).
(
    _ADVANCE,
    _EFFECT,
    _PROG,
    _MREQ,
    _READ,
    _RW_DECIDE,
    _WRITER_GRANT,
    _LOCK_DECIDE,
    _RESUMED,
    _ISSUE,
    _RESUME,
) = range(11)


class _Rw:
    """Writer state of one guest's pqap_hook_rwsem (only guests with attach/detach events)."""

    __slots__ = ("active", "blocked", "grant_pending", "max_release", "unknown", "waiting")

    def __init__(self) -> None:
        self.waiting: list[tuple[int, int]] = []  # (host event index, request time), FIFO
        self.active = False
        self.grant_pending = False
        self.unknown = 0  # readers granted whose release is not known yet
        self.max_release = 0
        self.blocked: list[int] = []  # vCPUs waiting for the read side


class _HostLock:
    """A mutex only host programs take (ap_perms_mutex, guests_lock, kvm_lock): FIFO."""

    __slots__ = ("busy", "pending", "queue")

    def __init__(self) -> None:
        self.queue: list[tuple[int, int, int, int]] = []  # ties.lock_key order
        self.busy = False
        self.pending = False


class HostEvents:
    """Host programs, host-only mutexes and rwsem writers at the fast engine's heap events."""

    m: Model
    runners: list[Runner]
    rw: dict[int, _Rw]
    hlocks: dict[int, _HostLock]
    free: list[int]
    gstate: list[GuestState]
    timed: dict[int, deque[Any]]
    waiters: dict[int, list[tuple[int, int]]]
    vguest: dict[int, int]
    env: HostEnv
    #: per program: the event it waits on for a lock grant or its SimPy process's next post
    held: dict[int, Event]

    if TYPE_CHECKING:

        def _push(self, t: int, prio: int, cls: int, ident: int, kind: int) -> None: ...
        def _after_read(self, v: int, t_rw: int) -> bool: ...
        def _advance(self, v: int) -> None: ...
        def _program_started(self) -> None: ...

    running: int

    # --- the rwsem of guests with writers -------------------------------------------------------
    def _read(self, v: int, t: int) -> None:
        rw = self.rw[self.vguest[v]]
        if rw.active or rw.waiting:
            rw.blocked.append(v)
            return
        if self._after_read(v, t):
            self._advance(v)

    def _maybe_grant_writer(self, guest: int, now: int) -> None:
        rw = self.rw[guest]
        if rw.waiting and not rw.active and not rw.grant_pending and rw.unknown == 0:
            rw.grant_pending = True
            first = rw.waiting[0][1]
            self._push(max(now, first, rw.max_release), LATE, HOST, guest, _WRITER_GRANT)

    def _writer_grant(self, guest: int, t: int) -> None:
        rw = self.rw[guest]
        rw.grant_pending = False
        rw.active = True
        ident = rw.waiting[0][0]
        self.runners[ident].granted(self.m.locks.instance("pqap_hook_rwsem", guest), t)
        self.env.at(t, RESUME, HOST, ident, _RESUMED, self.held.pop(ident))

    def _rw_decide(self, guest: int, t: int) -> None:
        rw = self.rw[guest]
        if rw.active:
            return
        if rw.waiting:
            self._maybe_grant_writer(guest, t)
            return
        blocked, rw.blocked = rw.blocked, []
        for v in blocked:
            if self._after_read(v, t):
                self._advance(v)

    # --- host programs: host events and user processes (hostsim.program) -----------------------
    def _held(self, ident: int) -> Event:
        """The event a program waits on until a lock is granted or its SimPy process posts
        again; whoever ends the wait schedules it with :meth:`HostEnv.at`."""
        ev = self.held[ident] = Event(self.env)
        return ev

    def _program(self, ident: int, start: int) -> Generator[Event, Any, None]:
        """A host program as a SimPy process: each of its actions at the key the tie rule
        gives it, ``(t, NORMAL, HOST, ident, _PROG)`` (after a lock grant: ``RESUME`` and
        ``_RESUMED``), against the engine's locks below."""
        r, env = self.runners[ident], self.env
        yield env.at(start, NORMAL, HOST, ident, _PROG)
        self._program_started()
        while True:
            t = int(env.now)
            act = r.next(t)
            if act is None:
                self.running -= 1
                return
            if isinstance(act, Idle):  # a SimPy process: its channel's wake ends the wait
                yield self._held(ident)
            elif isinstance(act, Wait):
                if act.ns:
                    yield env.at(t + act.ns, NORMAL, HOST, ident, _PROG)
            elif isinstance(act, Section):
                # Run in key order: every earlier request is in, so the FIFO grant is known.
                mx = act.inst
                grant = max(t, self.free[mx])
                res = r.section(mx, grant)
                rel = grant + res.hold
                self.free[mx] = rel
                reconfigure(self.m, res.effects, self.gstate)
                for at, step in res.timed:  # blocks and unblocks at their own times
                    self.timed.setdefault(ident, deque()).append(step)
                    self._push(at, NORMAL, HOST, ident, _EFFECT)
                yield env.at(rel, NORMAL, HOST, ident, _PROG)
            elif isinstance(act, Take):
                if act.mode == WRITE:
                    self.rw[act.guest].waiting.append((ident, t))
                    self._push(t, LATE, HOST, act.guest, _RW_DECIDE)
                else:
                    lk = self.hlocks.setdefault(act.inst, _HostLock())
                    heapq.heappush(lk.queue, lock_key(t, r.phase(t), HOST, ident))
                    if not lk.busy and not lk.pending:
                        lk.pending = True
                        self._push(t, LATE, HOST, act.inst, _LOCK_DECIDE)
                yield self._held(ident)
            elif isinstance(act, Drop):
                if act.mode == WRITE:
                    rw = self.rw[act.guest]
                    rw.active = False
                    rw.waiting.pop(0)
                    self._push(t, LATE, HOST, act.guest, _RW_DECIDE)
                else:
                    lk = self.hlocks[act.inst]
                    lk.busy = False
                    if lk.queue and not lk.pending:
                        lk.pending = True
                        self._push(t, LATE, HOST, act.inst, _LOCK_DECIDE)
            else:
                self._effect(act.step, t)

    def _effect(self, step: Any, t: int) -> None:
        """A program's hook flip (under the rwsem's write side), block or unblock of a guest."""
        if self.gstate[step.guest].apply(step):
            # the waiting vCPUs check again after every step of this nanosecond
            for v, kind in self.waiters.pop(step.guest, ()):
                self._push(t, LATE, VCPU, v, kind)

    def _lock_decide(self, inst: int, t: int) -> None:
        """Grant a host-only mutex to its first waiter, as the reference's FIFO lock does."""
        lk = self.hlocks[inst]
        lk.pending = False
        if not lk.busy and lk.queue:
            lk.busy = True
            ident = heapq.heappop(lk.queue)[3]
            self.runners[ident].granted(inst, t)
            self.env.at(t, RESUME, HOST, ident, _RESUMED, self.held.pop(ident))
