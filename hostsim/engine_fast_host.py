"""The fast engine's host side: host programs, host-only mutexes, the rwsem's writers, blocks.

A mixin of :class:`hostsim.engine_fast.FastEngine`, which owns the heap and the state these
methods read. Host programs (host events and user processes, :mod:`hostsim.program`) run their
steps here at heap events: a ``mdevs_lock`` section is granted in closed form when its request
is popped (every earlier request is in by then: :func:`hostsim.fifo.grant`), a host-only mutex
(``ap_perms_mutex``, ``guests_lock``, ``kvm_lock``) is a :class:`hostsim.fifo.FifoQueue`, and the
``pqap_hook_rwsem`` write side waits until every reader granted before it has released
(:class:`hostsim.rwsem.RwKnown`). The event kinds, in the order they break exact ties after
``(time, priority, class, id)``, are defined here once for the whole engine.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from simpy.events import Event

from hostsim.fifo import FifoQueue, grant
from hostsim.host_ops import HOOK_KINDS
from hostsim.locks import WRITE
from hostsim.program import Drop, Idle, Section, Take, Wait
from hostsim.streams import reconfigure
from hostsim.ties import HOST, LATE, NORMAL, RESUME, VCPU, lock_key

if TYPE_CHECKING:
    from hostsim.model import Model
    from hostsim.program import Runner
    from hostsim.run_programs import Programs
    from hostsim.rwsem import RwKnown
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


class HostEvents:
    """Host programs, host-only mutexes and rwsem writers at the fast engine's heap events."""

    m: Model
    runners: list[Runner]
    rw: dict[int, RwKnown]
    hlocks: dict[int, FifoQueue]
    free: list[int]
    gstate: list[GuestState]
    timed: dict[int, deque[Any]]
    waiters: dict[int, list[tuple[int, int]]]
    vguest: dict[int, int]
    env: HostEnv
    #: per program: the event it waits on for a lock grant or its SimPy process's next post
    held: dict[int, Event]

    progs: Programs
    checking: dict[int, Any]
    inflight: dict[int, Any]

    if TYPE_CHECKING:

        def _push(self, t: int, prio: int, cls: int, ident: int, kind: int) -> None: ...
        def _drive(self, v: int, sent: int | None) -> bool: ...
        def _advance(self, v: int) -> None: ...
        def _program_started(self) -> None: ...
        def _begin(self, v: int, req: Any) -> bool: ...
        def _record(self, v: int) -> None: ...

    running: int

    # --- when a program may act: block checks and read sides as events only then ----------------
    def _watch(self) -> None:
        """Which host events may act on each guest: its rwsem's writers (``writers``) and the
        programs that may block its vCPUs (``blockers``; None where a user process may, whose
        times are not known ahead)."""
        self.writers: dict[int, list[int]] = {}
        by_event: dict[int, list[int]] = {}
        for i, (ev, hp) in enumerate(zip(self.m.s.events, self.progs.host, strict=True)):
            if ev.kind in HOOK_KINDS and self.m.rwsem:
                self.writers.setdefault(ev.guest, []).append(i)
            for g in hp.blocks:
                by_event.setdefault(g, []).append(i)
        self.blockers: dict[int, list[int] | None] = dict(by_event)
        for r in self.runners[len(self.progs.host) :]:
            for g in r.blocks or ():
                self.blockers[g] = None

    # --- guests whose vCPUs a program blocks: the issue and the resume wait while blocked ---------
    def _may_block(self, guest: int, t: int) -> bool:
        """Whether the guest's vCPUs may be blocked at ``t`` (no earlier than now): then a
        check at ``t`` is a heap event (``_ISSUE``, ``_RESUME``); else nothing can block them
        by then (no program that may has started, or each has ended with nothing pending)
        and the check is passed now."""
        if guest not in self.blockers:  # (its keys: the guests some program may block)
            return False
        ids = self.blockers[guest]
        return ids is None or self.gstate[guest].blocked or self._may_act(ids, t)

    def _may_act(self, ids: list[int], t: int) -> bool:
        """Whether one of the host events ``ids`` may act at ``t`` (no earlier than now): its
        program has started by then and not ended (or has effects still to come)."""
        starts, runners, timed = self.progs.starts, self.runners, self.timed
        return any(starts[i] <= t and (not runners[i].done or timed.get(i)) for i in ids)

    def _blocked(self, v: int, kind: int) -> bool:
        guest = self.vguest[v]
        if self.gstate[guest].blocked:
            self.waiters.setdefault(guest, []).append((v, kind))
            return True
        return False

    def _issue(self, v: int, t: int) -> None:
        if self._blocked(v, _ISSUE):
            return
        req = self.checking.pop(v)
        self.gstate[self.vguest[v]].issued_after_block(req, t)
        if self._begin(v, req):
            self._advance(v)

    def _resume(self, v: int, t: int) -> None:
        if self._blocked(v, _RESUME):
            return
        self.inflight[v].resume = t
        self._record(v)
        self._advance(v)

    # --- the rwsem of guests with writers -------------------------------------------------------
    def _read(self, v: int, t: int) -> None:
        if not self.rw[self.vguest[v]].reader_asks(v):
            return
        if self._drive(v, t):  # the read side granted at t
            self._advance(v)

    def _maybe_grant_writer(self, guest: int, now: int) -> None:
        at = self.rw[guest].writer_grant_at(now)
        if at is not None:
            self._push(at, LATE, HOST, guest, _WRITER_GRANT)

    def _writer_grant(self, guest: int, t: int) -> None:
        ident = self.rw[guest].writer_granted()
        self.runners[ident].granted(self.m.locks.instance("pqap_hook_rwsem", guest), t)
        self.env.at(t, RESUME, HOST, ident, _RESUMED, self.held.pop(ident))

    def _rw_decide(self, guest: int, t: int) -> None:
        readers = self.rw[guest].decide()
        if readers is None:
            self._maybe_grant_writer(guest, t)
            return
        for v in readers:
            if self._drive(v, t):  # the read side granted at t
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
                granted = grant(t, self.free[mx])
                res = r.section(mx, granted)
                rel = granted + res.hold
                self.free[mx] = rel
                reconfigure(self.m, res.effects, self.gstate)
                for at, step in res.timed:  # blocks and unblocks at their own times
                    self.timed.setdefault(ident, deque()).append(step)
                    self._push(at, NORMAL, HOST, ident, _EFFECT)
                yield env.at(rel, NORMAL, HOST, ident, _PROG)
            elif isinstance(act, Take):
                if act.mode == WRITE:
                    self.rw[act.guest].writer_asks(ident, t)
                    self._push(t, LATE, HOST, act.guest, _RW_DECIDE)
                else:
                    lk = self.hlocks.setdefault(act.inst, FifoQueue())
                    if lk.ask(lock_key(t, r.phase(t), HOST, ident), ident):
                        self._push(t, LATE, HOST, act.inst, _LOCK_DECIDE)
                yield self._held(ident)
            elif isinstance(act, Drop):
                if act.mode == WRITE:
                    self.rw[act.guest].writer_release()
                    self._push(t, LATE, HOST, act.guest, _RW_DECIDE)
                else:
                    if self.hlocks[act.inst].release():
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
        ident = self.hlocks[inst].decide()
        if ident is not None:
            self.runners[ident].granted(inst, t)
            self.env.at(t, RESUME, HOST, ident, _RESUMED, self.held.pop(ident))
