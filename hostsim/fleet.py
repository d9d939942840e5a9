"""The vectorised core of the fast engine: every plain steady vCPU, processed in batches.

A *plain* vCPU has a steady Poisson or closed-loop stream and a guest whose configuration never
changes, so every request it will ever issue can be decoded in advance, a block at a time
(:class:`Plan`), with every duration that does not depend on other requests (the mutex hold
included). Each such vCPU has exactly one *pending* request, kept in arrays indexed by vCPU:
its key (mutex request time, or issue time when it takes no lock) and a lower bound ``lb`` on
the key of the vCPU's request after it.

A batch is every pending request whose key is below ``B = min(lb)``: no request that is not yet
known can have a smaller key, so nothing can overtake the batch (conservative lookahead). The
batch is processed in key order ``(time, vCPU)``: requests that touch no lock are pure
arithmetic; the mutex is the FIFO recursion ``release_i = max(request_i, release_{i-1}) +
hold_i``, which has the closed form ``release_i = S_i + max(free, max_{j<=i}(request_j -
S_{j-1}))`` with ``S`` the running sum of holds (segmented per mutex for the per-mdev lock
model). Then every vCPU of the batch takes its next request from the plans, all at once.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import numpy as np

from hostsim import arch
from hostsim.decode import decode_batch
from hostsim.intercept import InterceptBatch
from hostsim.model import Model
from hostsim.records import RECORD_DTYPE, Path
from hostsim.rules import Kind, rule_code

INF = np.iinfo(np.int64).max
TAIL_DTYPE = np.dtype([(name, RECORD_DTYPE.fields[name][0]) for name in RECORD_DTYPE.names[12:]])
CAT_EARLY, CAT_NOHOOK, CAT_HOOK_NOMUTEX, CAT_MUTEX = range(4)
PLAN_CACHE = 64
_SEG = np.int64(1 << 46)  # larger than any |request - S| within a batch (times < 9.7 h)


#: Per-request durations a plan fixes, kept by a pending request too.
_DURATIONS = [
    ("rw", np.int64),
    ("rwhe", np.int64),
    ("entry", np.int64),
    ("exitc", np.int64),
    ("hold", np.int64),
    ("cat", np.int8),
]
REQ_DTYPE = np.dtype(
    [
        ("gap", np.int64),
        ("ngap", np.int64),  # the gap of the vCPU's request after this one (the lookahead)
        ("sie", np.int64),
        ("kvm", np.int64),
        *_DURATIONS,
    ]
)
#: A vCPU's stream state and pending request.
STATE_DTYPE = np.dtype(
    [
        ("k", np.int64),
        ("resume", np.int64),
        ("arrival", np.int64),
        ("arr", np.int64),
        ("issue", np.int64),
        ("exit", np.int64),
        ("dec", np.int64),
        ("pid", np.int64),
        ("idx", np.int64),
        *_DURATIONS,
    ]
)
_DURATION_NAMES = tuple(name for name, _ in _DURATIONS)


class Plan:
    """One block of requests decoded in advance, indexed ``row * kbn + col``: the durations
    (``req``, :data:`REQ_DTYPE`) and the record fields the decode fixed (``tail``)."""

    __slots__ = ("req", "tail")


def _firsts(slot: Any, count: np.ndarray, width: int) -> np.ndarray:
    """Sum of the first ``count[i]`` call slots of a per-call cost, drawing only needed slots."""
    total = np.zeros(len(count), np.int64)
    for j in range(min(width, int(count.max()) if len(count) else 0)):
        need = count > j
        total[need] += slot(j)[need]
    return total


def make_plan(m: Model, group: int, chunk: int, kblock: int) -> Plan:
    """Decode block ``(group, chunk, kblock)`` with the vectorised evaluator and precompute
    every duration of each request that does not depend on other requests."""
    blk = m.block(group, chunk, kblock, cache=False)  # decoded once: the raw draws can go
    g = m.s.guests[group]
    rows, kbn = blk.gap.shape
    n = rows * kbn
    regs = {name: np.ascontiguousarray(a).reshape(n) for name, a in blk.regs.items()}
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
        gpr0=regs["gpr0"],
        gpr1=regs["gpr1"],
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
    costs = blk.costs

    def col(name: str) -> np.ndarray:
        return np.broadcast_to(costs[name], (rows, kbn)).reshape(n)

    def slot_of(name: str) -> Any:
        return lambda j: np.broadcast_to(costs.slot(name, j), (rows, kbn)).reshape(n)

    kind = d.kind
    cat = np.full(n, CAT_EARLY, np.int8)
    cat[kind == Kind.NO_HOOK_RC01] = CAT_NOHOOK
    cat[d.hook_called & ~d.mutex] = CAT_HOOK_NOMUTEX
    cat[d.mutex] = CAT_MUTEX
    req = np.empty(n, REQ_DTYPE)
    req["cat"] = cat
    req["gap"] = blk.gap.reshape(n)
    ngap = np.empty((rows, kbn), np.int64)
    ngap[:, :-1] = blk.gap[:, 1:]
    ngap[:, -1] = m.block_gaps(group, chunk, kblock + 1)[:, 0]
    req["ngap"] = ngap.reshape(n)
    req["sie"] = col("sie_exit")
    req["kvm"] = col("kvm_decode")
    req["rw"] = col("rwsem_read")
    req["rwhe"] = req["rw"] + col("hook_entry")
    req["entry"] = col("sie_entry")
    req["exitc"] = np.where(
        kind == Kind.USERSPACE_EXIT,
        col("userspace_exit"),
        np.where(kind == Kind.PROGRAM_INTERRUPT, col("pgm_inject"), 0),
    )
    mutex = d.mutex
    hold = np.zeros(n, np.int64)
    if mutex.any():
        hold = (
            col("mutex_acquire")
            + col("lookup")
            + np.where(d.pin, col("pin"), 0)
            + np.where(d.gisc, col("gisc_register"), 0)
            + _firsts(slot_of("host_aqic"), d.hw_aqic_calls, 7)
            + _firsts(slot_of("host_tapq"), d.hw_tapq_calls, 5)
            + _firsts(slot_of("msleep20"), d.sleeps, 11)
        )
        hold[~mutex] = 0
    req["hold"] = hold
    p = Plan()
    p.req = req
    path = np.full(n, Path.HOOK_SOFTWARE, np.uint8)
    path[kind == Kind.USERSPACE_EXIT] = Path.USERSPACE_EXIT
    path[kind == Kind.PROGRAM_INTERRUPT] = Path.PROGRAM_CHECK
    path[kind == Kind.NO_HOOK_RC01] = Path.NO_HOOK_RC01
    served = kind == Kind.HOOK_HANDLED
    path[served & (d.hw_aqic_calls > 0)] = Path.HOOK_ENABLE
    path[served & (d.rule == rule_code("disable.done"))] = Path.HOOK_DISABLE
    tail = np.empty(n, TAIL_DTYPE)
    tail["gpr0"] = regs["gpr0"]
    tail["gpr1"] = regs["gpr1"]
    tail["gpr2"] = regs["gpr2"]
    tail["psw_mask"] = regs["psw_mask"]
    tail["gpr1_out"] = d.gr1
    tail["apqn"] = regs["gpr0"] & np.uint64(arch.GR0_APQN_MASK)
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
    p.tail = tail
    return p


class Fleet:
    """The plain vCPUs of a run: their pending requests as arrays, processed in batches."""

    def __init__(self, m: Model, vcpus: np.ndarray, free: list[int]) -> None:
        self.m = m
        self.free = free  # per mutex: when it is next free (shared with the scalar engine)
        self.rwsem = m.rwsem
        self.duration = m.s.duration_ns
        n = m.n_vcpus
        topo = m.topo
        self.vcpus = vcpus
        self.group = topo.vcpu_group.astype(np.int64)
        self.guest = topo.vcpu_guest.astype(np.int64)
        local = topo.vcpu_local.astype(np.int64)
        cv = np.array([sh[0] for sh in m.shapes], np.int64)
        self.chunk = local // cv[self.group]
        self.row = local % cv[self.group]
        self.kbn = np.array([sh[1] for sh in m.shapes], np.int64)[self.group]
        self.mutex = m.mutex_of_guest.astype(np.int64)[self.guest]
        self.single_mutex = m.n_mutexes == 1
        self.poisson = np.array([g.workload.kind == "poisson" for g in m.s.guests])[self.group]
        starts = np.array([round(g.workload.start_ms * 1e6) for g in m.s.guests], np.int64)
        self.key = np.full(n, INF, np.int64)  # pending request: mutex request or issue time
        self.lb = np.full(n, INF, np.int64)  # lower bound of the key of the request after it
        self.issue = np.full(n, INF, np.int64)  # pending request's issue (the watermark)
        self.st = np.zeros(n, STATE_DTYPE)
        self.st["resume"] = starts[self.group]
        self.st["arrival"] = self.st["resume"]
        self.plans: OrderedDict[tuple[int, int, int], tuple[int, Plan]] = OrderedDict()
        self.by_id: dict[int, Plan] = {}
        self.n_plans = 0
        self.processed = 0
        self.done: list[tuple[np.ndarray, ...]] = []  # finished batches, records not built yet
        #: optimistic windows (see :meth:`window`): only when every member is open loop
        self.optimistic = bool(len(vcpus)) and bool(self.poisson[vcpus].all())
        self.span = 1_000_000  # current window length (ns), adapted to what commits
        self.cooldown = 0
        self.n_done = 0
        if len(vcpus):
            self._next(vcpus, self.st[vcpus])

    # --- plans ----------------------------------------------------------------------------------
    def _plan(self, group: int, chunk: int, kb: int) -> tuple[int, Plan]:
        key = (group, chunk, kb)
        hit = self.plans.get(key)
        if hit is not None:
            self.plans.move_to_end(key)
            return hit
        plan = make_plan(self.m, group, chunk, kb)
        self.n_plans += 1
        hit = (self.n_plans, plan)
        self.plans[key] = hit
        self.by_id[self.n_plans] = plan
        if len(self.plans) > PLAN_CACHE:
            self.plans.popitem(last=False)
        return hit

    def _gather(self, v: np.ndarray, k: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(plan id, index, plan row) of request ``k`` of each vCPU ``v``."""
        kbn = self.kbn[v]
        kb = k // kbn
        idx = self.row[v] * kbn + k % kbn
        combo = (self.group[v] << 40) | (self.chunk[v] << 20) | kb
        first = int(combo[0])
        if not (combo != first).any():
            pid, plan = self._plan(first >> 40, (first >> 20) & 0xFFFFF, first & 0xFFFFF)
            return np.full(len(v), pid, np.int64), idx, plan.req[idx]
        ids = np.empty(len(v), np.int64)
        rows = np.empty(len(v), REQ_DTYPE)
        for c in np.unique(combo).tolist():
            sel = combo == c
            pid, plan = self._plan(c >> 40, (c >> 20) & 0xFFFFF, c & 0xFFFFF)
            ids[sel] = pid
            rows[sel] = plan.req[idx[sel]]
        return ids, idx, rows

    # --- the next request of each vCPU in ``v`` ------------------------------------------------
    def _next(self, v: np.ndarray, st: np.ndarray) -> None:
        """Make the next request of every vCPU in ``v`` pending (``st``: their state rows, with
        ``k`` and ``resume`` already advanced)."""
        k = st["k"]
        ids, idx, r = self._gather(v, k)
        poisson = self.poisson[v]
        resume = st["resume"]
        gap = r["gap"]
        arrival = np.where(poisson, st["arrival"] + gap, resume + gap)
        issue = np.where(poisson, np.maximum(arrival, resume), arrival)
        done = issue >= self.duration
        t_exit = issue + r["sie"]
        t_dec = t_exit + r["kvm"]
        cat = r["cat"]
        mutex = cat == CAT_MUTEX
        key = np.where(mutex, t_dec + r["rwhe"], issue)
        key[done] = INF
        st["arrival"] = np.where(poisson & ~done, arrival, st["arrival"])
        st["arr"] = arrival
        st["issue"] = issue
        st["exit"] = t_exit
        st["dec"] = t_dec
        st["pid"] = ids
        st["idx"] = idx
        for name in _DURATION_NAMES:
            st[name] = r[name]
        self.st[v] = st
        self.key[v] = key
        self.issue[v] = np.where(done, INF, issue)
        # Lower bound on the key of the request after this one: its issue.
        # A request's grant is no earlier than its mutex's release of everything before it.
        free = self.free[0] if self.single_mutex else np.array(self.free, np.int64)[self.mutex[v]]
        resume_lb = np.where(
            mutex,
            np.maximum(key, free) + r["hold"] + r["entry"],
            t_dec
            + np.where(cat == CAT_NOHOOK, r["rw"], np.where(cat == CAT_HOOK_NOMUTEX, r["rwhe"], 0))
            + r["exitc"]
            + r["entry"],
        )
        ngap = r["ngap"]
        lb = np.where(poisson, np.maximum(arrival + ngap, resume_lb), resume_lb + ngap)
        lb[done] = INF
        self.lb[v] = lb

    # --- batches --------------------------------------------------------------------------------
    def bound(self) -> int:
        """Below this key nothing unknown can come: the batch limit ``min(lb)``."""
        return int(self.lb.min()) if len(self.vcpus) else INF

    def progress_time(self) -> int:
        """How far the fleet has got: its smallest pending key."""
        return int(self.key.min()) if len(self.vcpus) else INF

    def min_key(self) -> tuple[int, int]:
        """(smallest pending key, its vCPU)."""
        v = int(np.argmin(self.key))
        return int(self.key[v]), v

    def batch(self, limit: int) -> int:
        """Process every pending request with key < ``limit``; return how many."""
        v = np.flatnonzero(self.key < limit)
        if not len(v):
            return 0
        if len(v) > 1:
            v = v[np.lexsort((v, self.key[v]))]
        self.process(v)
        return len(v)

    def window(self, hard: int) -> int:
        """Optimistic batch (all-Poisson fleets): every request whose key falls before a window
        end, the vCPUs' later arrivals included, assuming each vCPU is idle when its next
        arrival comes. One FIFO pass, then a check that every assumed-idle request really found
        its vCPU resumed (``resume_{k-1} <= arrival_k``); the prefix (in key order) before the
        first miss is exact and is committed. Returns how many requests were committed.
        """
        if self.cooldown:  # windows kept failing (a saturated mutex): batches for a while
            self.cooldown -= 1
            return 0
        kmin = int(self.key.min())
        if kmin >= INF:  # every member is done
            return 0
        end = min(hard, kmin + self.span, INF)
        if end <= kmin:
            return 0
        # Round 0: the pending requests; rounds j >= 1: speculated later requests.
        v = np.flatnonzero(self.key < end)
        if not len(v):
            return 0
        st = self.st[v]
        keys = [self.key[v]]
        vs = [v]
        rows = [st]
        preds = [np.full(len(v), -1, np.int64)]  # index of the same vCPU's previous entry
        limit = end
        cur_v, cur = v, st
        cur_idx = np.arange(len(v))
        while len(cur_v):
            k = cur["k"] + 1
            ids, idx, r = self._gather(cur_v, k)
            arrival = cur["arr"] + r["gap"]
            t_exit = arrival + r["sie"]
            t_dec = t_exit + r["kvm"]
            mutex = r["cat"] == CAT_MUTEX
            key = np.where(mutex, t_dec + r["rwhe"], arrival)
            alive = arrival < self.duration
            take = alive & (key < end)
            # A request left out bounds what can be committed (its true key is no earlier).
            left = alive & ~take
            if left.any():
                limit = min(limit, int(key[left].min()))
            if not take.any():
                break
            nxt = np.zeros(int(take.sum()), STATE_DTYPE)
            nxt["k"] = k[take]
            nxt["arr"] = arrival[take]
            nxt["arrival"] = arrival[take]
            nxt["issue"] = arrival[take]
            nxt["exit"] = t_exit[take]
            nxt["dec"] = t_dec[take]
            nxt["pid"] = ids[take]
            nxt["idx"] = idx[take]
            for name in _DURATION_NAMES:
                nxt[name] = r[name][take]
            offset = sum(len(x) for x in vs)
            preds.append(cur_idx[take])
            vs.append(cur_v[take])
            keys.append(key[take])
            rows.append(nxt)
            cur_v, cur = cur_v[take], nxt
            cur_idx = offset + np.arange(len(cur_v))
        v = np.concatenate(vs)
        key = np.concatenate(keys)
        st = np.concatenate(rows)
        pred = np.concatenate(preds)
        order = np.lexsort((v, key))
        # Every entry's times under the idle assumption (one FIFO pass in key order).
        cat = st["cat"]
        n = len(v)
        mreq, grant, rel, resume = self._serve(v, st, key, order)
        # Where the idle assumption failed, and what lies beyond the safe limit.
        spec = pred >= 0
        bad = np.zeros(n, bool)
        bad[spec] = resume[pred[spec]] > st["issue"][spec]
        pos = np.empty(n, np.int64)
        pos[order] = np.arange(n)
        cut = n
        if bad.any():
            cut = int(pos[bad].min())
        cut = min(cut, int(np.searchsorted(key[order], limit, side="left")))
        if cut < min(n, 64):
            # Speculation is not paying: shrink the window and rest for a few batches.
            self.span = max(self.span // 2, 1)
            self.cooldown = 32
            if cut == 0:
                return 0
        keep = order[:cut]
        if cut == n:
            self.span = self.span * 3 // 2
        elif cut < n // 2:
            self.span = max(self.span // 2, 1)
        kept_mx = keep[cat[keep] == CAT_MUTEX]
        if len(kept_mx):
            self._set_free(self.mutex[v[kept_mx]], rel[kept_mx])
        kv = v[keep]
        self.done.append((kv, st[keep], mreq[keep], grant[keep], rel[keep], resume[keep]))
        self.n_done += cut
        self.processed += cut
        # Each vCPU continues after its last committed request (the last in key order).
        rev = keep[::-1]
        _, first_rev = np.unique(v[rev], return_index=True)
        tail = rev[first_rev]
        nxt = st[tail].copy()
        nxt["k"] += 1
        nxt["resume"] = resume[tail]
        nxt["arrival"] = st["arr"][tail]
        self._next(v[tail], nxt)
        return cut

    def process(self, v: np.ndarray) -> None:
        """Process the pending requests of ``v`` (in key order) and advance those vCPUs."""
        st = self.st[v]
        n = len(v)
        mreq, grant, rel, resume = self._serve(v, st, self.key[v], np.arange(n))
        mx = np.flatnonzero(mreq >= 0)
        if len(mx):
            self._set_free(self.mutex[v[mx]], rel[mx])
        self.done.append((v, st, mreq, grant, rel, resume))
        self.n_done += n
        self.processed += n
        nxt = st.copy()  # ``st`` stays as it was: the records are built from it later
        nxt["k"] += 1
        nxt["resume"] = resume
        self._next(v, nxt)

    def _serve(
        self, v: np.ndarray, st: np.ndarray, key: np.ndarray, order: np.ndarray
    ) -> tuple[np.ndarray, ...]:
        """Times of requests ``st`` (vCPUs ``v``, keys ``key``), taken in FIFO ``order``:
        (mutex request, grant, release, resume), -1 where no mutex was taken. The mutexes'
        free times are not changed (see :meth:`_set_free`)."""
        n = len(v)
        cat = st["cat"]
        resume = (
            st["dec"]
            + st["entry"]
            + np.where(
                cat == CAT_EARLY,
                st["exitc"],
                np.where(cat == CAT_NOHOOK, st["rw"], st["rwhe"] + st["exitc"]),
            )
        )
        mreq = np.full(n, -1, np.int64)
        grant = np.full(n, -1, np.int64)
        rel = np.full(n, -1, np.int64)
        mx = order[cat[order] == CAT_MUTEX]
        if len(mx):
            h = st["hold"][mx]
            r = self._fifo(key[mx], h, self.mutex[v[mx]])
            mreq[mx] = key[mx]
            rel[mx] = r
            grant[mx] = r - h
            resume[mx] = r + st["entry"][mx]
        return mreq, grant, rel, resume

    def _fifo(self, t: np.ndarray, h: np.ndarray, mid: np.ndarray) -> np.ndarray:
        """Releases of mutex requests ``t`` (in FIFO order) with holds ``h`` on mutexes ``mid``:
        ``release_i = S_i + max(free, max_{j<=i}(t_j - S_{j-1}))``, per mutex. Pure: the
        caller records the new free times with :meth:`_set_free`."""
        if self.single_mutex:
            s = np.cumsum(h)
            return s + np.maximum(self.free[0], np.maximum.accumulate(t - (s - h)))
        o = np.argsort(mid, kind="stable")  # per mutex, FIFO order kept
        t, h, mid = t[o], h[o], mid[o]
        start = np.r_[True, mid[1:] != mid[:-1]]
        seg = np.cumsum(start) - 1
        s_all = np.cumsum(h)
        s = s_all - (s_all - h)[start][seg]
        acc = np.maximum.accumulate(t - (s - h) + seg * _SEG) - seg * _SEG
        frees = np.array([self.free[x] for x in mid[start].tolist()], np.int64)[seg]
        r = np.empty_like(t)
        r[o] = s + np.maximum(frees, acc)
        return r

    def _set_free(self, mid: np.ndarray, rel: np.ndarray) -> None:
        """Each mutex is next free at the release of its last request (in FIFO order)."""
        if self.single_mutex:
            self.free[0] = int(rel[-1])
            return
        last: dict[int, int] = dict(zip(mid.tolist(), rel.tolist(), strict=True))
        for m_id, r in last.items():
            self.free[m_id] = r

    # --- records --------------------------------------------------------------------------------
    def records(self) -> np.ndarray | None:
        """The records of every request processed since the last call, built in one go."""
        if not self.done:
            return None
        v, st, mreq, grant, rel, resume = (np.concatenate(x) for x in zip(*self.done, strict=True))
        self.done.clear()
        self.n_done = 0
        n = len(v)
        rec = np.empty(n, RECORD_DTYPE)
        rec["vcpu"] = v
        rec["guest"] = self.guest[v]
        rec["seq"] = st["k"]
        rec["t_arrival"] = st["arr"]
        rec["t_issue"] = st["issue"]
        rec["t_exit"] = st["exit"]
        rec["t_decode"] = st["dec"]
        rw = st["dec"] if self.rwsem else -1
        rec["t_rwsem"] = np.where(st["cat"] == CAT_EARLY, -1, rw)
        rec["t_mutex_req"] = mreq
        rec["t_mutex_grant"] = grant
        rec["t_mutex_rel"] = rel
        rec["t_resume"] = resume
        ids = st["pid"]
        idx = st["idx"]
        tails = rec[list(TAIL_DTYPE.names)]  # a view of the record's decode fields
        for pid in np.unique(ids).tolist():
            sel = ids == pid
            tails[sel] = self.by_id[pid].tail[idx[sel]]
        self._prune()
        return rec

    def _prune(self) -> None:
        """Forget decoded plans no pending request and no cache entry refers to."""
        live = {pid for pid, _ in self.plans.values()}
        live.update(np.unique(self.st["pid"][self.vcpus]).tolist())
        for pid in [p for p in self.by_id if p not in live]:
            del self.by_id[pid]
