"""The fast engine: the same model as the reference, with far fewer events per request.

What makes it fast while exact:
* **Decode ahead, in bulk.** Requests of plain steady vCPUs (guests whose configuration never
  changes during the run) are decoded with the vectorised evaluator, many at a time, together
  with every duration that does not depend on other requests (the mutex hold included), and
  timed by :class:`hostsim.fleet.Fleet` (optimistic windows, or one at a time in plain Python
  where the mutex is contended). Guests that host events touch (attach,
  detach, reset, disable) are decoded one request at a time when the request reaches the
  relevant stage, exactly as the reference does.
* **Only shared resources make events.** A request that touches no lock (program check,
  userspace exit, and RC 01 without a writer in sight) is pure arithmetic on its draws, done
  inline. A request that takes the mutex costs one heap entry, keyed ``(request time, host before
  vCPU, id)``: popping them in key order *is* the FIFO mutex (Lindley's recursion
  ``grant = max(request, previous release)``, :func:`hostsim.fifo.grant`). The rwsem makes
  events only for guests whose writers (attach/detach) exist, and only while one of those
  programs may act; a blockable guest's issue and resume checks likewise.
* **The fleet stops only for what can overtake it.** The fleet is a SimPy process that yields
  before an entry that comes first; a one-at-a-time vCPU whose mutex no fleet vCPU takes
  (per-mdev locks) keeps its entries in a side heap while no host program runs, so the fleet
  does not stop for them.
* **No per-request SimPy events or objects** beyond the record tuple.

Ties follow the reference engine's rule (see :mod:`hostsim.engine_ref`), so both write the same
records.
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable, Generator
from functools import partial
from typing import Any

import numpy as np
from simpy.events import Event

from hostsim.chain import MUTEX, READ, UNLOCK
from hostsim.decode_memo import DecodeMemo
from hostsim.engine_fast_host import (
    _ADVANCE,
    _EFFECT,
    _ISSUE,
    _LOCK_DECIDE,
    _MREQ,
    _PROG,
    _READ,
    _RESUME,
    _RW_DECIDE,
    HostEvents,
)
from hostsim.fifo import FifoQueue, grant
from hostsim.fleet import INF, Fleet, worth_a_fleet
from hostsim.host_ops import HOOK_KINDS as _HOOK_KINDS
from hostsim.model import Model
from hostsim.request import Ask, record, start, steps
from hostsim.run_programs import host_event_rows, programs
from hostsim.rwsem import RwKnown
from hostsim.scenario_types import HostEventKind
from hostsim.sim_env import WAKE, HostEnv
from hostsim.sim_process import AnyProcess
from hostsim.sink import RecordSink
from hostsim.streams import (
    GuestState,
    VState,
    after,
    next_request,
    start_of,
)
from hostsim.ties import HOST, LATE, NORMAL, VCPU

#: How far (simulated ns) a vCPU may run ahead inline before it is parked in the heap.
HORIZON_NS = 2_000_000
#: How far (simulated ns) the fleet may run ahead of the side heap (so that the records it
#: commits wait in the sink for the side's vCPUs at most this long)
AHEAD_NS = 20_000_000
FLUSH_EVERY = 50_000


class FastEngine(HostEvents):
    """Simulate a scenario with a heap of shared-resource events (see module docstring)."""

    def __init__(
        self, model: Model, sink: RecordSink, processes: tuple[AnyProcess, ...] = ()
    ) -> None:
        self.m = model
        #: the one-at-a-time requests' decodes, remembered (a pure function of the input)
        self.decode = DecodeMemo()
        #: the SimPy Environment: its queue is this engine's heap (hostsim.sim_env)
        self.env = HostEnv(stop_at=model.s.duration_ns)
        self.env.native = self._native
        self.heap: list[tuple[Any, ...]] = self.env._queue
        self.progs = programs(model, processes, self.env)
        self.runners = self.progs.runners
        for r in self.runners:
            if r.channel is not None:  # a SimPy process posted steps: run them now
                r.channel.wake = partial(self._wake, r.ident)
        self.hlocks: dict[int, FifoQueue] = {}
        self.held: dict[int, Event] = {}
        self.sink = sink
        s = model.s
        topo = model.topo
        self.duration = s.duration_ns
        self.mutex_of_guest = model.mutex_of_guest.tolist()
        self.free = [0] * model.n_mutexes
        self.cur_issue: dict[int, int] = {}  # dynamic vCPUs: the issue of their next request
        self.inflight: dict[int, Any] = {}
        self.group_mdev = [g.mdev for g in s.guests]
        self.guest_mdev = [self.group_mdev[int(gi)] for gi in topo.guest_group]
        # Guests whose configuration changes during the run, and vCPUs whose stream is more
        # than a plain steady one, are simulated one request at a time.
        dyn_guest = [g in model.views for g in range(model.n_guests)]
        self.flips: dict[int, list[tuple[int, bool]]] = {}
        self.rw: dict[int, RwKnown] = {}
        for g in self.progs.blockable:  # a program may stop their vCPUs: one at a time
            dyn_guest[g] = True
        for ev in s.events:
            dyn_guest[ev.guest] = True
            if ev.kind in _HOOK_KINDS:
                if model.rwsem:
                    self.rw.setdefault(ev.guest, RwKnown())
                else:
                    self.flips.setdefault(ev.guest, []).append(
                        (ev.at_ns, ev.kind != HostEventKind.DETACH)
                    )
        self.gstate = [
            GuestState(mdev, model.initial_matrix[j]) for j, mdev in enumerate(self.guest_mdev)
        ]
        # A replayed vCPU is the fleet's too: its script rows are planned like steady requests.
        plain = [
            model.replay
            or (
                g.workload.kind in ("poisson", "bursty", "closed")
                and g.workload.retry in ("none", "on_idle")
            )
            for g in s.guests
        ]
        vdyn = np.array([plain[g] for g in range(len(s.guests))], bool)[topo.vcpu_group] ^ True
        vdyn |= np.array(dyn_guest, bool)[topo.vcpu_guest]
        for v, script in model.scripts.items():
            if not model.replay or (len(script) and int(script["t"].min()) < 0):
                vdyn[v] = True  # (a recording's times are never negative: the fleet's rule)
        if not worth_a_fleet(model, np.flatnonzero(~vdyn)):
            vdyn[:] = True  # a tiny fleet costs more than it saves: one request at a time
        dyn = np.flatnonzero(vdyn)
        # Where a few guests of a group are simulated one request at a time, their draws come
        # in blocks of one guest's vCPUs, not of the whole group (a cache shape: no value moves).
        n_dyn = np.bincount(topo.vcpu_group[dyn], minlength=len(s.guests))
        for grp, gg in enumerate(s.guests):
            if 0 < n_dyn[grp] < gg.count * gg.vcpus:
                model.shapes[grp] = (gg.vcpus, model.shapes[grp][1])
        #: the guest of each vCPU simulated one request at a time
        self.vguest = dict(zip(dyn.tolist(), topo.vcpu_guest[dyn].tolist(), strict=True))
        #: per guest of those, its hook pointer at a time (a request is run ahead of its time)
        self.hook_fn: dict[int, Callable[[int], bool]] = {
            g: self.gstate[g].hook_at if model.rwsem else partial(self._hook_at, g)
            for g in set(self.vguest.values())
        }
        #: the in-flight requests' programs (hostsim.request.steps), at their last wait
        self.runs: dict[int, Generator[Ask, int | None, None]] = {}
        self.vst: dict[int, VState] = {}
        for v in dyn.tolist():
            start = start_of(model, v)
            self.vst[v] = VState(resume=start, arrival=start)
            self.cur_issue[v] = start
        self.fleet = Fleet(model, np.flatnonzero(~vdyn), self.free)
        # Dynamic vCPUs whose mutex no fleet vCPU takes (per-mdev locks) touch nothing the
        # fleet reads: while no host program runs, their entries go to a heap of their own,
        # which the fleet need not stop for (the run loop merges both in key order).
        fleet_mx = set(model.mutex_of_guest[topo.vcpu_guest[~vdyn]].tolist())
        self.apart = {v for v, g in self.vguest.items() if self.mutex_of_guest[g] not in fleet_mx}
        self.side: list[tuple[int, ...]] = []
        self.running = 0  # host programs started and not finished
        self.parked: dict[int, Any] = {}
        self.timed: dict[int, deque[Any]] = {}  # program -> its section's blocks, in order
        self.checking: dict[int, Any] = {}  # blockable guests: requests at their issue check
        self.waiters: dict[int, list[tuple[int, int]]] = {}  # guest -> vCPUs waiting (v, kind)
        self._watch()
        self.now = 0
        self.flushable = True  # False while the fleet's process is inside a scalar stretch
        self.yields = 0

    # --- heap ---------------------------------------------------------------------------------
    def _push(self, t: int, prio: int, cls: int, ident: int, kind: int) -> None:
        apart = not self.running and cls == VCPU and ident in self.apart
        heapq.heappush(self.side if apart else self.heap, (t, prio, cls, ident, kind))

    def _program_started(self) -> None:
        """A host program may act on any lock from now on: the fleet stops for every entry
        again (the side heap's, moved into the main one)."""
        self.running += 1
        if self.side:
            self.heap.extend(self.side)
            heapq.heapify(self.heap)
            self.side.clear()

    def _wake(self, ident: int, t: int) -> None:
        self.env.at(t, NORMAL, HOST, ident, _PROG, self.held.pop(ident))

    def _native(self, entry: tuple[int, ...]) -> None:
        """One of this engine's own heap entries, popped by the environment."""
        t = self.now = entry[0]
        self._event(t, entry[3], entry[4])

    def run(self, progress: Any = None) -> np.ndarray:
        """Run to completion; returns the host-event records."""
        m = self.m
        #: the host programs' SimPy processes (host events, then user processes)
        self.program_procs = [
            self.env.process(self._program(r.ident, t0))
            for r, t0 in zip(self.runners, self.progs.starts, strict=True)
        ]
        for v, st in self.vst.items():
            self._push(st.resume, NORMAL, VCPU, v, _ADVANCE)
        self.progress = progress
        self.step = max(self.duration // 200, 1)
        self.next_progress = self.step
        #: the fleet's SimPy process; ``yields``: how often it let something else run first
        self.fleet_proc = self.env.process(self._fleet_process())
        heap, pop, env, sink, fleet = self.heap, heapq.heappop, self.env, self.sink, self.fleet
        side = self.side
        while heap or side:
            e = pop(side if side and (not heap or side[0] < heap[0]) else heap)
            t = e[0]
            if len(e) == 5:  # the engine's own entry: env.run_entry, inlined
                env._now = self.now = t
                self._event(t, e[3], e[4])
            else:
                env.run_entry(e)
            if self.flushable and fleet.n_done + len(sink.rows) >= FLUSH_EVERY:
                self._flush()
            if progress is not None and t >= self.next_progress:
                self._progress(t)
        self._flush(final=True)
        return host_event_rows(m, self.progs)

    def _progress(self, t: int) -> None:
        if self.progress is not None and t >= self.next_progress:
            self.progress.update(min(t, self.duration), self.sink.count + self.sink.pending())
            self.next_progress = t + self.step

    def _fleet_process(self) -> Generator[Event, Any, None]:
        """The fleet as a SimPy process: it commits, window by window (or one request at a
        time where windows fail), every request that nothing can still overtake, and yields to
        the environment whenever something else comes before its next request."""
        heap, env, fleet, sink, side = self.heap, self.env, self.fleet, self.sink, self.side
        pop = heapq.heappop

        def wake(key: int, v: int) -> Event:  # after the fleet's request (key, v)
            self.yields += 1
            return env.at(key, NORMAL, VCPU, v, WAKE)

        def before(key: int, v: int) -> Event | None:
            """Run what comes before the fleet's request (key, v): the engine's own entries
            here, as the run loop would pop them (the side heap's first, if earlier); an
            event to yield if a SimPy entry comes first, else None."""
            me = (key, NORMAL, VCPU, v, WAKE)
            while heap and heap[0] < me and len(heap[0]) == 5 and not (side and side[0] < heap[0]):
                e = pop(heap)
                env._now = self.now = e[0]
                self._event(e[0], e[3], e[4])
            if (heap and heap[0] < me) or (side and side[0] < me):
                return wake(key, v)
            return None

        while True:
            top = heap[0][0] if heap else 1 << 63
            lead = side[0][0] + AHEAD_NS if side else INF  # no further ahead of the side heap
            if fleet.optimistic and fleet.window(min(top, lead)):
                pass
            else:
                self.flushable = False  # a scalar stretch holds pool rows: no compaction
                n = yield from fleet.scalar(lead, heap, before)
                self.flushable = True
                if not n:  # one at a time: the fleet's next keys are all equal (or it is done)
                    kmin, vmin = fleet.min_key()
                    if kmin >= INF:
                        return  # the fleet is done (or empty): the heap alone from here
                    if kmin >= lead:  # the side heap catches up with the fleet first
                        yield wake(kmin, vmin)
                        continue
                    if heap and heap[0] < (kmin, NORMAL, VCPU, vmin, WAKE):
                        yield wake(kmin, vmin)
                        continue
                    fleet.process(np.array([vmin]))
            if fleet.n_done + len(sink.rows) >= FLUSH_EVERY:
                self._flush()
            self._progress(fleet.progress_time())

    def _flush(self, final: bool = False) -> None:
        """Hand on every record issued before anything still in flight."""
        col = self.fleet.records()
        if col is not None:
            self.sink.add_columns(col)
            self.fleet.compact()  # after the columns are used: they read the plan pool
        if final:
            self.sink.flush(None)
            return
        marks = [int(self.fleet.issue.min())]
        if self.cur_issue:
            marks.append(min(self.cur_issue.values()))
        self.sink.flush(min(marks))

    def _event(self, t: int, ident: int, kind: int) -> None:
        """One heap event (dynamic vCPUs, host events, the rwsem)."""
        if kind == _MREQ:
            self._mreq(ident, t)
        elif kind == _ADVANCE:
            self._advance(ident)
        elif kind == _READ:
            self._read(ident, t)
        elif kind == _EFFECT:
            self._effect(self.timed[ident].popleft(), t)
        elif kind == _ISSUE:
            self._issue(ident, t)
        elif kind == _RESUME:
            self._resume(ident, t)
        elif kind == _RW_DECIDE:
            self._rw_decide(ident, t)
        elif kind == _LOCK_DECIDE:
            self._lock_decide(ident, t)
        else:
            self._writer_grant(ident, t)

    # --- guests whose configuration changes: one request at a time ------------------------------
    def _hook_at(self, guest: int, t: int) -> bool:
        """Module-reference variants: the hook pointer at time t (flips at T <= t applied)."""
        state = self.guest_mdev[guest]
        for at, value in self.flips.get(guest, ()):
            if at <= t:
                state = value
        return state

    def _advance(self, v: int) -> None:
        """Requests of a vCPU whose stream or guest changes: one at a time, through the same
        stream and decode calls as the reference engine."""
        m = self.m
        guest = self.vguest[v]
        st = self.vst[v]
        horizon = self.now + HORIZON_NS
        while True:
            req = self.parked.pop(v, None) or next_request(m, v, st)
            if req is None:
                self.cur_issue.pop(v, None)
                return
            issue = req.issue
            self.cur_issue[v] = issue
            if issue > horizon:
                self.parked[v] = req
                self._push(issue, NORMAL, VCPU, v, _ADVANCE)
                return
            if self._may_block(guest, issue):  # its issue waits while the guest is blocked
                self.checking[v] = req
                self._push(issue, LATE, VCPU, v, _ISSUE)
                return
            if not self._begin(v, req):
                return

    def _begin(self, v: int, req: Any) -> bool:
        """Start a dynamic request at its issue; True if it is finished already."""
        guest = self.vguest[v]
        f = self.inflight[v] = start(req, self.decode)
        queues = self.progs.queues if guest in self.progs.stateful else None
        self.runs[v] = steps(self.m, v, f, self.gstate[guest], self.hook_fn[guest], queues, guest)
        return self._drive(v, None)

    def _drive(self, v: int, sent: int | None) -> bool:
        """Run request ``v``'s program (:func:`hostsim.request.steps`) from its last wait,
        granted at ``sent``, to its next wait (its heap event: False) or its end (True if it
        is recorded now, see :meth:`_finish`). A free delay is arithmetic here; a read side
        with no writer in sight is granted at once; the mutex is granted in key order, so its
        release is known at the grant."""
        run, guest = self.runs[v], self.vguest[v]
        rw = self.rw.get(guest)
        while True:
            try:
                step, t = run.send(sent)
            except StopIteration:
                del self.runs[v]
                return self._finish(v)
            sent = None
            if step is None:
                continue
            if step is READ:
                if rw is not None and self._may_act(self.writers[guest], t):
                    # a writer may hold it or wait for it then: decide in time order
                    self._push(t, LATE, VCPU, v, _READ)
                    return False
                sent = t
            elif step is MUTEX:
                if rw is not None:
                    rw.reader_in()  # its release is known at its mutex grant
                self._push(t, NORMAL, VCPU, v, _MREQ)
                return False
            elif step is UNLOCK:
                self.free[self.mutex_of_guest[guest]] = t
            elif rw is not None:  # the read side released
                mutex = self.inflight[v].grant >= 0
                rw.reader_out(t, known=mutex)
                if mutex:
                    self._maybe_grant_writer(guest, self.now)

    def _mreq(self, v: int, t: int) -> None:
        """The request asks for the mutex at ``t``: granted in FIFO order (key order here)."""
        if self._drive(v, grant(t, self.free[self.mutex_of_guest[self.vguest[v]]])):
            self._advance(v)

    def _finish(self, v: int) -> bool:
        """The request has its resume: recorded now (True), or, for a guest a program may
        block, when its SIE entry is not blocked (False: a check at the resume)."""
        if self._may_block(self.vguest[v], self.inflight[v].resume):
            self._push(self.inflight[v].resume, LATE, VCPU, v, _RESUME)
            return False
        self._record(v)
        return True

    def _record(self, v: int) -> None:
        f = self.inflight.pop(v)
        st = self.vst[v]
        self.sink.rows.append(record(f, v, self.vguest[v], st.k))
        after(self.m, v, st, f.req, f.d, f.resume)
