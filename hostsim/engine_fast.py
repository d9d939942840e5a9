"""The fast engine: the same model as the reference, with far fewer events per request.

What makes it fast while exact:
* **Decode by block.** Requests of guests whose configuration never changes during the run are
  decoded with the vectorised evaluator, a block of 64 vCPUs x 8 requests at a time, together
  with every duration that does not depend on other requests (the mutex hold included). Guests
  that host events touch (attach, detach, reset, disable) are decoded one request at a time when
  the request reaches the relevant stage, exactly as the reference does.
* **Only shared resources make events.** A request that touches no lock (program check,
  userspace exit, and RC 01 without a writer in sight) is pure arithmetic on its draws, done
  inline. A request that takes the mutex costs one heap entry, keyed ``(request time, host before
  vCPU, id)``: popping them in key order *is* the FIFO mutex (Lindley's recursion
  ``grant = max(request, previous release)``). The rwsem makes events only for guests whose
  writers (attach/detach) exist.
* **No SimPy, no per-request objects** beyond the record tuple.

Ties follow the reference engine's rule (see :mod:`hostsim.engine_ref`), so both write the same
records.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from heapq import heappush
from typing import Any

import numpy as np

from hostsim.decode import decode_batch, decode_one
from hostsim.intercept import InterceptBatch
from hostsim.model import Model, exit_cost, hold_ns, path_of
from hostsim.records import HOST_EVENT_DTYPE, RECORD_DTYPE, Path
from hostsim.rules import Kind, rule_code
from hostsim.scenario import HostEventKind
from hostsim.sink import RecordSink, record_tuple
from hostsim.streams import (
    GuestState,
    VState,
    after,
    apply_host_effect,
    intercept,
    next_request,
    start_of,
)

# Event kinds, in the order they break exact ties after (time, priority, class, id).
_ADVANCE, _HOST_START, _MREQ_HOST, _WRITER_RELEASE, _MREQ, _READ, _RW_DECIDE, _WRITER_GRANT = range(
    8
)
_TIME_FIELDS = RECORD_DTYPE.names[:12]  # vcpu ... t_resume
TAIL_DTYPE = np.dtype([(name, RECORD_DTYPE.fields[name][0]) for name in RECORD_DTYPE.names[12:]])
# Categories of a statically decoded request.
_CAT_EARLY, _CAT_NOHOOK, _CAT_HOOK_NOMUTEX, _CAT_MUTEX = range(4)
NORMAL, LATE = 1, 2
HOST, VCPU = 0, 1
#: How far (simulated ns) a vCPU may run ahead inline before it is parked in the heap.
HORIZON_NS = 2_000_000
PLAN_CACHE = 4096
FLUSH_EVERY = 50_000


class _Plan:
    """A statically decoded block: per request, a tuple of durations (gap, sie_exit,
    kvm_decode, category, rwsem_read, hook_entry, exit cost, sie_entry, mutex hold) and the
    id of the record's static tail (the decode's fields), kept in ``FastEngine.tails``."""

    __slots__ = ("id", "req")


class _Rw:
    """Writer state of one guest's pqap_hook_rwsem (only guests with attach/detach events)."""

    __slots__ = ("active", "blocked", "grant_pending", "max_release", "unknown", "waiting")

    def __init__(self) -> None:
        self.waiting: list[int] = []  # host event indices, FIFO
        self.active = False
        self.grant_pending = False
        self.unknown = 0  # readers granted whose release is not known yet
        self.max_release = 0
        self.blocked: list[int] = []  # vCPUs waiting for the read side


class FastEngine:
    """Simulate a scenario with a heap of shared-resource events (see module docstring)."""

    def __init__(self, model: Model, sink: RecordSink) -> None:
        self.m = model
        self.sink = sink
        s = model.s
        topo = model.topo
        n = model.n_vcpus
        self.duration = s.duration_ns
        self.vguest = topo.vcpu_guest.tolist()
        self.vgroup = topo.vcpu_group.tolist()
        self.vlocal = topo.vcpu_local.tolist()
        self.mutex_of_guest = model.mutex_of_guest.tolist()
        self.free = [0] * model.n_mutexes
        self.k = [0] * n
        self.resume = [0] * n
        self.arrival = [0] * n
        self.cur_issue = [0] * n
        self.inflight: list[Any] = [None] * n
        self.heap: list[tuple] = []
        self.poisson = [g.workload.kind == "poisson" for g in s.guests]
        self.vstat = []
        for v in range(n):
            group = self.vgroup[v]
            cv, kbn = model.shapes[group]
            chunk, row = divmod(self.vlocal[v], cv)
            self.vstat.append((self.vguest[v], group, chunk, row, kbn, self.poisson[group]))
        self.vplan: list[tuple[int, Any]] = [(-1, None)] * n
        self.rows: list[tuple] = []  # static-path rows: 12 times, plan id, index
        self.tails: dict[int, np.ndarray] = {}
        self.n_plans = 0
        self.plans: OrderedDict[tuple[int, int, int], _Plan] = OrderedDict()
        self.host_rows: list[tuple] = []
        self.group_mdev = [g.mdev for g in s.guests]
        self.guest_mdev = [self.group_mdev[int(gi)] for gi in topo.guest_group]
        # Guests whose configuration changes during the run, and vCPUs whose stream is more
        # than a plain steady one, are simulated one request at a time.
        dyn_guest = [g in model.views for g in range(model.n_guests)]
        self.flips: dict[int, list[tuple[int, bool]]] = {}
        self.rw: dict[int, _Rw] = {}
        for ev in s.events:
            dyn_guest[ev.guest] = True
            if ev.kind in (HostEventKind.ATTACH, HostEventKind.DETACH):
                if model.rwsem:
                    self.rw.setdefault(ev.guest, _Rw())
                else:
                    self.flips.setdefault(ev.guest, []).append(
                        (ev.at_ns, ev.kind == HostEventKind.ATTACH)
                    )
        self.gstate = [
            GuestState(mdev, model.initial_matrix[j]) for j, mdev in enumerate(self.guest_mdev)
        ]
        plain = [
            g.workload.kind in ("poisson", "closed")
            and g.workload.retry == "none"
            and not model.replay
            for g in s.guests
        ]
        self.vdyn = [
            dyn_guest[self.vguest[v]] or not plain[self.vgroup[v]] or v in model.scripts
            for v in range(n)
        ]
        self.vst: dict[int, VState] = {}
        for v in range(n):
            if self.vdyn[v]:
                start = start_of(model, v)
                self.vst[v] = VState(resume=start, arrival=start)
        self.parked: dict[int, Any] = {}
        self.host_work = [model.host_event_work(i, ev) for i, ev in enumerate(s.events)]
        self.host_times: dict[int, list[int]] = {}
        self.now = 0

    # --- heap ---------------------------------------------------------------------------------
    def _push(self, t: int, prio: int, cls: int, ident: int, kind: int) -> None:
        heapq.heappush(self.heap, (t, prio, cls, ident, kind))

    def run(self, progress: Any = None) -> np.ndarray:
        """Run to completion; returns the host-event records."""
        m = self.m
        for i, ev in enumerate(m.s.events):
            self._push(ev.at_ns, NORMAL, HOST, i, _HOST_START)
        for v in range(m.n_vcpus):
            g = m.s.guests[self.vgroup[v]]
            start = round(g.workload.start_ms * 1_000_000)
            self.resume[v] = self.arrival[v] = start
            self.cur_issue[v] = start
            self._push(start, NORMAL, VCPU, v, _ADVANCE)
        heap = self.heap
        pop = heapq.heappop
        step = max(self.duration // 200, 1)
        next_progress = step
        while heap:
            t, _, _, ident, kind = pop(heap)
            self.now = t
            if kind == _MREQ:
                self._mreq(ident, t)
            elif kind == _ADVANCE:
                self._advance(ident)
            elif kind == _READ:
                self._read(ident, t)
            elif kind == _MREQ_HOST:
                self._mreq_host(ident, t)
            elif kind == _HOST_START:
                self._host_start(ident, t)
            elif kind == _WRITER_RELEASE:
                self._writer_release(ident, t)
            elif kind == _RW_DECIDE:
                self._rw_decide(ident, t)
            else:
                self._writer_grant(ident, t)
            if len(self.rows) + len(self.sink.rows) >= FLUSH_EVERY:
                self._flush(min(self.cur_issue))
            if progress is not None and t >= next_progress:
                progress.update(t, self.sink.count + self.sink.pending())
                next_progress = t + step
        self._flush(None)
        return np.array(sorted(self.host_rows), dtype=HOST_EVENT_DTYPE)

    def _flush(self, watermark: int | None) -> None:
        """Turn static-path rows into records (times + the plan's tail), hand them on."""
        if self.rows:
            a = np.array(self.rows, np.int64)
            self.rows.clear()
            rec = np.empty(len(a), RECORD_DTYPE)
            for j, name in enumerate(_TIME_FIELDS):
                rec[name] = a[:, j]
            ids = a[:, 12]
            for pid in np.unique(ids).tolist():
                sel = ids == pid
                tail = self.tails[pid][a[sel, 13]]
                sub = rec[sel]
                for name in TAIL_DTYPE.names:
                    sub[name] = tail[name]
                rec[sel] = sub
            self.sink.add_array(rec)
            live = {p.id for p in self.plans.values()}
            live.update(p.id for _, p in self.vplan if p is not None)
            for pid in [p for p in self.tails if p not in live]:
                del self.tails[pid]
        self.sink.flush(watermark)

    # --- static decode by block ----------------------------------------------------------------
    def _plan(self, group: int, chunk: int, kblock: int) -> _Plan:
        key = (group, chunk, kblock)
        p = self.plans.get(key)
        if p is not None:
            return p
        m = self.m
        blk = m.block(group, chunk, kblock)
        g = m.s.guests[group]
        rows, kbn = blk.gap.shape
        n = rows * kbn
        regs = {name: a.reshape(n) for name, a in blk.regs.items()}
        gpr0, gpr1 = regs["gpr0"], regs["gpr1"]
        flags = {
            "ap_instructions_available": m.s.host.ap_instructions_available,
            "eca_apie": g.eca_apie,
            "eca_aiv": g.eca_aiv,
            "facility15": g.facility15,
            "facility65": g.facility65,
            "apxa": g.apxa,
            "hook_registered": g.mdev,
            "mdev_has_kvm": g.mdev,
            "pv_guest": g.pv,
        }
        batch = InterceptBatch(
            n,
            gpr0=gpr0,
            gpr1=gpr1,
            gpr2=regs["gpr2"],
            psw_mask=regs["psw_mask"],
            queue_assigned=blk.assigned.reshape(n),
            pin_ok=blk.pin_ok.reshape(n),
            hw_aqic=blk.aqic.reshape(n, -1),
            hw_tapq_rc=blk.tapq_rc.reshape(n, -1),
            hw_tapq_irq=blk.tapq_irq.reshape(n, -1),
            **{k: np.full(n, v, bool) for k, v in flags.items()},
        )
        d = decode_batch(batch, m.variant)
        c = {name: a.reshape(n, *a.shape[2:]) for name, a in blk.costs.items()}
        kind = d.kind
        hook_called = d.hook_called
        cat = np.full(n, _CAT_EARLY, np.int8)
        cat[kind == Kind.NO_HOOK_RC01] = _CAT_NOHOOK
        cat[hook_called & ~d.mutex] = _CAT_HOOK_NOMUTEX
        cat[d.mutex] = _CAT_MUTEX

        def firsts(cost: np.ndarray, count: np.ndarray) -> np.ndarray:
            cs = np.concatenate([np.zeros((n, 1), np.int64), np.cumsum(cost, axis=1)], axis=1)
            return np.take_along_axis(cs, count.astype(np.int64)[:, None], axis=1)[:, 0]

        hold = (
            c["mutex_acquire"]
            + c["lookup"]
            + np.where(d.pin, c["pin"], 0)
            + np.where(d.gisc, c["gisc_register"], 0)
            + firsts(c["host_aqic"], d.hw_aqic_calls)
            + firsts(c["host_tapq"], d.hw_tapq_calls)
            + firsts(c["msleep20"], d.sleeps)
        )
        exitc = np.where(
            kind == Kind.USERSPACE_EXIT,
            c["userspace_exit"],
            np.where(kind == Kind.PROGRAM_INTERRUPT, c["pgm_inject"], 0),
        )
        path = np.full(n, Path.HOOK_SOFTWARE, np.uint8)
        path[kind == Kind.USERSPACE_EXIT] = Path.USERSPACE_EXIT
        path[kind == Kind.PROGRAM_INTERRUPT] = Path.PROGRAM_CHECK
        path[kind == Kind.NO_HOOK_RC01] = Path.NO_HOOK_RC01
        served = kind == Kind.HOOK_HANDLED
        path[served & (d.hw_aqic_calls > 0)] = Path.HOOK_ENABLE
        path[served & (d.rule == rule_code("disable.done"))] = Path.HOOK_DISABLE
        tail = np.zeros(n, TAIL_DTYPE)
        tail["gpr0"] = gpr0
        tail["gpr1"] = gpr1
        tail["gpr2"] = regs["gpr2"]
        tail["psw_mask"] = regs["psw_mask"]
        tail["gpr1_out"] = d.gr1
        tail["apqn"] = blk.apqn.reshape(n)
        tail["kind"] = kind
        tail["path"] = path
        tail["rule"] = d.rule
        tail["response_code"] = d.response_code
        tail["guest_visible_rc"] = d.guest_visible_rc
        tail["cc"] = d.cc
        tail["pgm_code"] = d.pgm_code
        tail["hw_aqic_calls"] = d.hw_aqic_calls
        tail["hw_tapq_calls"] = d.hw_tapq_calls
        tail["sleeps"] = d.sleeps
        p = _Plan()
        p.req = list(
            zip(
                blk.gap.reshape(n).tolist(),
                c["sie_exit"].tolist(),
                c["kvm_decode"].tolist(),
                cat.tolist(),
                c["rwsem_read"].tolist(),
                c["hook_entry"].tolist(),
                exitc.tolist(),
                c["sie_entry"].tolist(),
                hold.tolist(),
                strict=True,
            )
        )
        self.n_plans += 1
        p.id = self.n_plans
        self.tails[p.id] = tail
        self.plans[key] = p
        if len(self.plans) > PLAN_CACHE:
            self.plans.popitem(last=False)
        return p

    # --- vCPUs ---------------------------------------------------------------------------------
    def _advance(self, v: int) -> None:
        """Issue vCPU ``v``'s requests until one needs a shared resource or runs ahead."""
        if self.vdyn[v]:
            self._advance_dynamic(v)
            return
        guest, group, chunk, row, kbn, poisson = self.vstat[v]
        rwsem = self.m.rwsem
        duration = self.duration
        horizon = self.now + HORIZON_NS
        rows = self.rows
        k = self.k[v]
        resume = self.resume[v]
        arrival = self.arrival[v]
        pblock, plan = self.vplan[v]
        while True:
            kb, col = divmod(k, kbn)
            if kb != pblock:
                plan = self._plan(group, chunk, kb)
                pblock = kb
                self.vplan[v] = (kb, plan)
            i = row * kbn + col
            gap, sie, kvm, cat, rw, he, exitc, entry, _ = plan.req[i]
            if poisson:
                arrival += gap
                issue = arrival if arrival > resume else resume
            else:
                issue = resume + gap
                arrival = issue
            if issue >= duration:
                self.cur_issue[v] = 1 << 62
                self.k[v], self.resume[v], self.arrival[v] = k, resume, arrival
                return
            t_exit = issue + sie
            t_decode = t_exit + kvm
            if cat == _CAT_MUTEX:
                t_rw = t_decode if rwsem else -1
                t_mreq = t_decode + rw + he
                self.cur_issue[v] = issue
                self.k[v], self.resume[v], self.arrival[v] = k, resume, arrival
                self.inflight[v] = (plan, i, arrival, issue, t_exit, t_decode, t_rw, t_mreq)
                heappush(self.heap, (t_mreq, NORMAL, VCPU, v, _MREQ))
                return
            if issue > horizon:
                # Requests that touch nothing shared are computed inline, but only up to the
                # horizon, so records wait in memory for a bounded time; park the rest.
                self.cur_issue[v] = issue
                self.k[v], self.resume[v] = k, resume
                self.arrival[v] = arrival - gap if poisson else arrival
                heappush(self.heap, (issue, NORMAL, VCPU, v, _ADVANCE))
                return
            if cat == _CAT_EARLY:
                resume = t_decode + exitc + entry
                rows.append(
                    (
                        v,
                        guest,
                        k,
                        arrival,
                        issue,
                        t_exit,
                        t_decode,
                        -1,
                        -1,
                        -1,
                        -1,
                        resume,
                        plan.id,
                        i,
                    )
                )
                k += 1
                continue
            t_rw = t_decode if rwsem else -1
            t_h = t_decode + rw
            # _CAT_NOHOOK: the read side only; _CAT_HOOK_NOMUTEX: the hook sent it elsewhere.
            resume = t_h + entry if cat == _CAT_NOHOOK else t_h + he + exitc + entry
            rows.append(
                (
                    v,
                    guest,
                    k,
                    arrival,
                    issue,
                    t_exit,
                    t_decode,
                    t_rw,
                    -1,
                    -1,
                    -1,
                    resume,
                    plan.id,
                    i,
                )
            )
            k += 1

    def _mreq(self, v: int, t: int) -> None:
        """Vcpu ``v``'s mutex request reaches the head of the FIFO: grant, hold, resume."""
        if self.vdyn[v]:
            self._mreq_dynamic(v, t)
            return
        guest = self.vstat[v][0]
        plan, i, arrival, issue, t_exit, t_decode, t_rw, t_mreq = self.inflight[v]
        mx = self.mutex_of_guest[guest]
        free = self.free[mx]
        grant = t if t > free else free
        req = plan.req[i]
        rel = grant + req[8]
        self.free[mx] = rel
        resume = rel + req[7]
        k = self.k[v]
        self.rows.append(
            (
                v,
                guest,
                k,
                arrival,
                issue,
                t_exit,
                t_decode,
                t_rw,
                t_mreq,
                grant,
                rel,
                resume,
                plan.id,
                i,
            )
        )
        self.k[v] = k + 1
        self.resume[v] = resume
        self._advance(v)

    # --- guests whose configuration changes: one request at a time ------------------------------
    def _hook_at(self, guest: int, t: int) -> bool:
        """Module-reference variants: the hook pointer at time t (flips at T <= t applied)."""
        state = self.guest_mdev[guest]
        for at, value in self.flips.get(guest, ()):
            if at <= t:
                state = value
        return state

    def _advance_dynamic(self, v: int) -> None:
        """Requests of a vCPU whose stream or guest changes: one at a time, through the same
        stream and decode calls as the reference engine."""
        m = self.m
        guest = self.vguest[v]
        gs = self.gstate[guest]
        st = self.vst[v]
        horizon = self.now + HORIZON_NS
        while True:
            req = self.parked.pop(v, None) or next_request(m, v, st)
            if req is None:
                self.cur_issue[v] = 1 << 62
                return
            issue = req.issue
            self.cur_issue[v] = issue
            if issue > horizon:
                self.parked[v] = req
                self._push(issue, NORMAL, VCPU, v, _ADVANCE)
                return
            blk, r, c = req.blk, req.r, req.c
            cost = blk.costs
            t_exit = issue + int(cost["sie_exit"][r, c])
            t_decode = t_exit + int(cost["kvm_decode"][r, c])
            hook = self._hook_at(guest, t_decode) if not m.rwsem else gs.hook
            x = intercept(m, v, req, hook, gs.mdev_kvm, False, gs.matrix)
            d = decode_one(x, m.variant)
            self.inflight[v] = [req, t_exit, t_decode, x, d, -1, -1]
            if not d.hook_called and d.kind != Kind.NO_HOOK_RC01:
                self._finish(v, t_decode + exit_cost(d, blk, r, c) + int(cost["sie_entry"][r, c]))
                continue
            if m.rwsem and guest in self.rw:
                # The read side may have to wait for a writer: decide in time order.
                self._push(t_decode, LATE, VCPU, v, _READ)
                return
            if not self._after_read(v, t_decode if m.rwsem else -1):
                return

    def _after_read(self, v: int, t_rw: int) -> bool:
        """Continue a dynamic request past the read side; False if it now waits for the mutex."""
        m = self.m
        guest = self.vguest[v]
        st = self.inflight[v]
        req, _, t_decode, x, d = st[:5]
        blk, r, c = req.blk, req.r, req.c
        cost = blk.costs
        rw = self.rw.get(guest)
        if m.rwsem:
            x.hook_registered = self.gstate[guest].hook
            d = st[4] = decode_one(x, m.variant)
        st[5] = t_rw
        t_h = (t_rw if m.rwsem else t_decode) + int(cost["rwsem_read"][r, c])
        entry = int(cost["sie_entry"][r, c])
        if d.kind == Kind.NO_HOOK_RC01:
            if rw is not None:
                rw.max_release = max(rw.max_release, t_h)
            self._finish(v, t_h + entry)
            return True
        if not d.mutex:
            t_back = t_h + int(cost["hook_entry"][r, c])
            if rw is not None:
                rw.max_release = max(rw.max_release, t_back)
            self._finish(v, t_back + exit_cost(d, blk, r, c) + entry)
            return True
        if rw is not None:
            rw.unknown += 1
        st[6] = t_h + int(cost["hook_entry"][r, c])
        self._push(st[6], NORMAL, VCPU, v, _MREQ)
        return False

    def _mreq_dynamic(self, v: int, t: int) -> None:
        m = self.m
        guest = self.vguest[v]
        gs = self.gstate[guest]
        st = self.inflight[v]
        req, x, t_mreq = st[0], st[3], st[6]
        blk, r, c = req.blk, req.r, req.c
        mx = self.mutex_of_guest[guest]
        grant = max(t, self.free[mx])
        x.mdev_has_kvm = gs.mdev_kvm
        x.hook_cleared_in_flight = not m.rwsem and not self._hook_at(guest, grant)
        x.queue_assigned = (x.gpr0 & 0xFFFF) in gs.matrix
        d = st[4] = decode_one(x, m.variant)
        rel = grant + hold_ns(d, blk, r, c)
        self.free[mx] = rel
        rw = self.rw.get(guest)
        if rw is not None:
            rw.max_release = max(rw.max_release, rel)
            rw.unknown -= 1
            self._maybe_grant_writer(guest, t)
        self._finish(v, rel + int(blk.costs["sie_entry"][r, c]), t_mreq, grant, rel)
        self._advance(v)

    def _finish(
        self, v: int, resume: int, t_mreq: int = -1, grant: int = -1, rel: int = -1
    ) -> None:
        req, t_exit, t_decode, x, d, t_rw = self.inflight[v][:6]
        st = self.vst[v]
        self.sink.rows.append(
            record_tuple(
                v,
                self.vguest[v],
                st.k,
                req.arrival,
                req.issue,
                t_exit,
                t_decode,
                t_rw,
                t_mreq,
                grant,
                rel,
                resume,
                x,
                d,
                path_of(d),
            )
        )
        self.inflight[v] = None
        after(self.m, v, st, req, d, resume)

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
            first = self.m.s.events[rw.waiting[0]].at_ns
            self._push(max(now, first, rw.max_release), LATE, HOST, guest, _WRITER_GRANT)

    def _writer_grant(self, guest: int, t: int) -> None:
        rw = self.rw[guest]
        rw.grant_pending = False
        rw.active = True
        i = rw.waiting[0]
        self.host_times[i] = [self.m.s.events[i].at_ns, t]
        self._push(t + self.host_work[i][0], NORMAL, HOST, i, _WRITER_RELEASE)

    def _writer_release(self, i: int, t: int) -> None:
        ev = self.m.s.events[i]
        rw = self.rw[ev.guest]
        self.gstate[ev.guest].hook = ev.kind == HostEventKind.ATTACH
        rw.active = False
        rw.waiting.pop(0)
        self.host_times[i].append(t)
        self._push(t, NORMAL, HOST, i, _MREQ_HOST)
        self._push(t, LATE, HOST, ev.guest, _RW_DECIDE)

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

    # --- host events ----------------------------------------------------------------------------
    def _host_start(self, i: int, t: int) -> None:
        ev = self.m.s.events[i]
        if ev.kind in (HostEventKind.ATTACH, HostEventKind.DETACH) and self.m.rwsem:
            rw = self.rw[ev.guest]
            rw.waiting.append(i)
            self._push(t, LATE, HOST, ev.guest, _RW_DECIDE)
            return
        self._mreq_host(i, t)

    def _mreq_host(self, i: int, t: int) -> None:
        ev = self.m.s.events[i]
        if ev.kind == HostEventKind.GUEST_RESET:  # the guest's own business: no host lock
            _, _, aqic, tapq, sleeps = self.host_work[i]
            self.host_rows.append(
                (i, int(ev.kind), ev.guest, ev.at_ns, -1, -1, -1, -1, -1, -1, aqic, tapq, sleeps)
            )
            return
        mx = self.mutex_of_guest[ev.guest]
        grant = max(t, self.free[mx])
        _, hold, aqic, tapq, sleeps = self.host_work[i]
        rel = grant + hold
        self.free[mx] = rel
        apply_host_effect(self.m, i, ev, self.gstate[ev.guest])
        rw_times = tuple(self.host_times.get(i, (-1, -1, -1)))
        self.host_rows.append(
            (i, int(ev.kind), ev.guest, ev.at_ns, *rw_times, t, grant, rel, aqic, tapq, sleeps)
        )
