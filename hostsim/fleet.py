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

import math

import numpy as np

from hostsim import arch
from hostsim.decode import decode_batch
from hostsim.intercept import InterceptBatch
from hostsim.model import Model, expected_requests
from hostsim.records import RECORD_DTYPE, Path
from hostsim.rules import Kind, rule_code

INF = np.iinfo(np.int64).max
EPOCH_ROWS = 1 << 17  # open-loop requests planned at a time (about)
COMPACT_MIN = 1 << 16  # the plan pool is compacted from this size on
WINDOW_PASSES = 4  # fixed-point passes of an optimistic window
TAIL_DTYPE = np.dtype([(name, RECORD_DTYPE.fields[name][0]) for name in RECORD_DTYPE.names[12:]])
CAT_EARLY, CAT_NOHOOK, CAT_HOOK_NOMUTEX, CAT_MUTEX = range(4)
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
        ("idx", np.int64),
        *_DURATIONS,
    ]
)
_DURATION_NAMES = tuple(name for name, _ in _DURATIONS)


def make_plan(
    m: Model, group: int, lv: np.ndarray, k: np.ndarray, ngap: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Decode requests ``k`` of local vCPUs ``lv`` of ``group`` (1-D, each vCPU's requests
    consecutive) with the vectorised evaluator and precompute every duration that does not
    depend on other requests: (durations as :data:`REQ_DTYPE`, decoded record fields as
    :data:`TAIL_DTYPE`). ``ngap``: the gap of each request's successor (the lookahead)."""
    blk = m.draws(group, lv, k)
    g = m.s.guests[group]
    n = len(lv)
    regs = blk.regs
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
        queue_assigned=blk.assigned,
        pin_ok=blk.pin_ok,
        hw_aqic=blk.aqic,
        hw_tapq_rc=blk.tapq_rc,
        hw_tapq_irq=blk.tapq_irq,
        **{name: np.broadcast_to(np.bool_(v), (n,)) for name, v in flags.items()},
    )
    d = decode_batch(batch, m.variant)
    costs = blk.costs

    def col(name: str) -> np.ndarray:
        return np.broadcast_to(costs[name], (n,))

    def add(out: np.ndarray, name: str, sel: np.ndarray, j: int | None = None) -> None:
        """out[sel] += cost ``name`` of the rows ``sel`` (drawn for those rows alone)."""
        idx = np.flatnonzero(sel)
        if len(idx):
            out[idx] += costs.subset(name, idx, j)

    kind = d.kind
    cat = np.full(n, CAT_EARLY, np.int8)
    cat[kind == Kind.NO_HOOK_RC01] = CAT_NOHOOK
    cat[d.hook_called & ~d.mutex] = CAT_HOOK_NOMUTEX
    cat[d.mutex] = CAT_MUTEX
    req = np.empty(n, REQ_DTYPE)
    req["cat"] = cat
    req["gap"] = blk.gap
    req["ngap"] = ngap
    req["sie"] = col("sie_exit")
    req["kvm"] = col("kvm_decode")
    req["rw"] = col("rwsem_read")
    req["rwhe"] = req["rw"] + col("hook_entry")
    req["entry"] = col("sie_entry")
    exitc = np.zeros(n, np.int64)
    add(exitc, "userspace_exit", kind == Kind.USERSPACE_EXIT)
    add(exitc, "pgm_inject", kind == Kind.PROGRAM_INTERRUPT)
    req["exitc"] = exitc
    mutex = d.mutex
    hold = np.zeros(n, np.int64)
    add(hold, "mutex_acquire", mutex)
    add(hold, "lookup", mutex)
    add(hold, "pin", mutex & d.pin)
    add(hold, "gisc_register", mutex & d.gisc)
    for name, calls, width in (
        ("host_aqic", d.hw_aqic_calls, 7),
        ("host_tapq", d.hw_tapq_calls, 5),
        ("msleep20", d.sleeps, 11),
    ):
        for j in range(min(width, int(calls.max()) if n else 0)):
            add(hold, name, mutex & (calls > j), j)
    req["hold"] = hold
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
    return req, tail


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
        self.local = topo.vcpu_local.astype(np.int64)
        self.mutex = m.mutex_of_guest.astype(np.int64)[self.guest]
        self.single_mutex = m.n_mutexes == 1
        self.poisson = np.array([g.workload.kind == "poisson" for g in m.s.guests])[self.group]
        #: requests planned per vCPU at a time: about a sixteenth of what it issues in the run
        self.refill = [
            int(min(32, max(1, math.ceil(expected_requests(g.workload, m.s.duration_ns) / 16))))
            for g in m.s.guests
        ]
        starts = np.array([round(g.workload.start_ms * 1e6) for g in m.s.guests], np.int64)
        self.key = np.full(n, INF, np.int64)  # pending request: mutex request or issue time
        self.lb = np.full(n, INF, np.int64)  # lower bound of the key of the request after it
        self.issue = np.full(n, INF, np.int64)  # pending request's issue (the watermark)
        self.st = np.zeros(n, STATE_DTYPE)
        self.st["resume"] = starts[self.group]
        self.st["arrival"] = self.st["resume"]
        # The plan pool: planned requests, linked per vCPU (``pool_nxt``: the row of the same
        # vCPU's next request, -1 while it is not planned yet).
        self.pool_req = np.empty(0, REQ_DTYPE)
        self.pool_tail = np.empty(0, TAIL_DTYPE)
        self.pool_nxt = np.empty(0, np.int64)
        self.pool_v = np.empty(0, np.int64)
        self.pool_k = np.empty(0, np.int64)
        self.pool_n = 0
        self.last_row = np.full(n, -1, np.int64)  # each vCPU's last planned row
        self.last_k = np.full(n, -1, np.int64)  # its request number
        self.last_arr = self.st["arrival"].copy()  # its arrival (open loop)
        self.next_gap = np.zeros(n, np.int64)  # the gap of the request after it
        self.head = np.full(n, -1, np.int64)  # each vCPU's first planned row
        self.n_groups = len(m.s.guests)
        self.refill_of = np.array(self.refill, np.int64)
        self.planned_until = 0
        rates = [g.workload.rate_hz for g in m.s.guests if g.workload.kind == "poisson"]
        total = sum(
            g.count * g.vcpus * g.workload.rate_hz
            for g in m.s.guests
            if g.workload.kind == "poisson"
        )
        self.rate_max = max(rates, default=0.0)
        #: open-loop requests are planned an epoch at a time: about EPOCH_ROWS of them
        self.epoch_ns = max(1_000_000, round(EPOCH_ROWS / total * 1e9)) if total > 0 else INF
        self.processed = 0
        self.done: list[tuple[np.ndarray, ...]] = []  # finished batches, records not built yet
        #: optimistic windows (see :meth:`window`): only when every member is open loop
        self.optimistic = bool(len(vcpus)) and bool(self.poisson[vcpus].all())
        self.span = 1_000_000  # current window length (ns), adapted to what commits
        self.cooldown = 0
        self.n_done = 0
        #: sort keys ``key << vbits | vcpu`` fit in 63 bits when times stay below 2**(63-vbits)
        self.vbits = max(1, int(n - 1).bit_length())
        self.packed = self.duration + (1 << 40) < (1 << (63 - self.vbits))
        if len(vcpus):
            self.st["idx"] = -1
            self.next_gap[vcpus] = self._gaps(vcpus, np.zeros(len(vcpus), np.int64))
            self.plan_epoch(int(starts.min()) + self.epoch_ns)
            self._next(vcpus, self.st[vcpus])

    # --- plans ----------------------------------------------------------------------------------
    def _append(self, v: np.ndarray, k: np.ndarray, gap_next: np.ndarray, runs: np.ndarray) -> None:
        """Plan requests ``k`` of vCPUs ``v`` into the pool, each vCPU's run of ``runs[i]`` rows
        consecutive and continuing its chain. ``gap_next``: the gap of each row's successor."""
        total = len(v)
        if not total:
            return
        at = self.pool_n
        if at + total > len(self.pool_req):
            self._grow(max(2 * len(self.pool_req), at + total, 4096))
        groups = self.group[v]
        if self.n_groups == 1 or not (groups != groups[0]).any():
            req, tail = make_plan(self.m, int(groups[0]), self.local[v], k, gap_next)
            self.pool_req[at : at + total] = req
            self.pool_tail[at : at + total] = tail
        else:
            for grp in np.unique(groups).tolist():
                sel = np.flatnonzero(groups == grp)
                req, tail = make_plan(self.m, grp, self.local[v[sel]], k[sel], gap_next[sel])
                self.pool_req[at + sel] = req
                self.pool_tail[at + sel] = tail
        self.pool_v[at : at + total] = v
        self.pool_k[at : at + total] = k
        ends = np.cumsum(runs) - 1  # each run's last row
        first = ends - runs + 1
        nxt = np.arange(at + 1, at + total + 1)
        nxt[ends] = -1
        self.pool_nxt[at : at + total] = nxt
        rv = v[first]
        prev = self.last_row[rv]
        linked = prev >= 0
        self.pool_nxt[prev[linked]] = at + first[linked]
        self.head[rv[~linked]] = at + first[~linked]
        self.last_row[rv] = at + ends
        self.last_k[rv] = k[ends]
        self.next_gap[rv] = gap_next[ends]
        self.last_arr[rv] += np.add.reduceat(self.pool_req["gap"][at : at + total], first)
        self.pool_n = at + total

    def _grow(self, cap: int) -> None:
        """Make room for ``cap`` planned rows (the rows in use are kept)."""
        n = self.pool_n
        for name in ("pool_req", "pool_tail", "pool_nxt", "pool_v", "pool_k"):
            old = getattr(self, name)
            new = np.empty(cap, old.dtype)
            new[:n] = old[:n]
            setattr(self, name, new)

    def _gaps(self, v: np.ndarray, k: np.ndarray) -> np.ndarray:
        """The gaps of requests ``k`` of vCPUs ``v`` (any shape)."""
        if self.n_groups == 1:
            return self.m.gaps(0, np.broadcast_to(self.local[v], k.shape), k)
        out = np.empty(k.shape, np.int64)
        vv = np.broadcast_to(v, k.shape)
        groups = self.group[vv]
        for grp in np.unique(groups).tolist():
            sel = groups == grp
            out[sel] = self.m.gaps(grp, self.local[vv[sel]], k[sel])
        return out

    def _plan_count(self, v: np.ndarray) -> None:
        """Plan the next few requests (per group :attr:`refill`) of vCPUs ``v``."""
        size = self.refill_of[self.group[v]]
        start = np.cumsum(size) - size
        rep = np.repeat(np.arange(len(v)), size)
        vv = v[rep]
        k = self.last_k[vv] + 1 + np.arange(len(vv)) - start[rep]
        self._append(vv, k, self._gaps(vv, k + 1), size)

    def plan_epoch(self, until: int) -> None:
        """Plan every open-loop request of the fleet that arrives before ``until`` (at most the
        run's end): gaps first, then a decode of each round's requests at once."""
        until = min(until, self.duration)
        if until <= self.planned_until:
            return
        span_s = (until - self.planned_until) / 1e9
        self.planned_until = until
        v = self.vcpus[self.poisson[self.vcpus]]
        v = v[self.last_arr[v] + self.next_gap[v] < until]
        per = int(max(1, min(64, math.ceil(self.rate_max * span_s * 1.25))))
        while len(v):
            ks = self.last_k[v][:, None] + 1 + np.arange(per)
            gaps = np.empty((len(v), per + 1), np.int64)
            gaps[:, 0] = self.next_gap[v]
            gaps[:, 1:] = self._gaps(v[:, None], ks + 1)
            arr = self.last_arr[v][:, None] + np.cumsum(gaps[:, :per], axis=1)
            take = arr < until
            cnt = take.sum(1)
            has = cnt > 0
            flat = take.reshape(-1)
            self._append(
                np.repeat(v, cnt), ks.reshape(-1)[flat], gaps[:, 1:].reshape(-1)[flat], cnt[has]
            )
            v = v[cnt == per]

    def _after(
        self, v: np.ndarray, prev: np.ndarray, before: int = INF
    ) -> tuple[np.ndarray, np.ndarray]:
        """(pool row, durations) of the request after pool row ``prev`` of each vCPU ``v``
        (``prev`` -1: its first request), planning what is missing. An open-loop vCPU whose
        next arrival is at or after ``before`` or the run's end gets row -1 and durations
        whose gap says so (nothing else of them is needed)."""
        first = prev < 0
        idx = np.where(
            first, self.head[v], self.pool_nxt[np.maximum(prev, 0)] if self.pool_n else -1
        )
        miss = idx < 0
        if miss.any():
            mv = v[miss]
            nxt_arr = self.last_arr[mv] + self.next_gap[mv]
            need = ~self.poisson[mv] | (nxt_arr < min(before, self.duration))
            if need.any() and self.poisson[mv[need]].any() and before > self.planned_until:
                # Open-loop requests past the planned epoch: plan the next epoch (all vCPUs).
                self.plan_epoch(self.planned_until + self.epoch_ns)
                pm = prev[miss]
                idx[miss] = np.where(pm < 0, self.head[mv], self.pool_nxt[np.maximum(pm, 0)])
                miss = idx < 0
                mv = v[miss]
                nxt_arr = self.last_arr[mv] + self.next_gap[mv]
                need = ~self.poisson[mv] | (nxt_arr < min(before, self.duration))
            if need.any():
                self._plan_count(mv[need])
                pm = prev[miss][need]
                idx[np.flatnonzero(miss)[need]] = np.where(
                    pm < 0, self.head[mv[need]], self.pool_nxt[np.maximum(pm, 0)]
                )
        r = self.pool_req[idx]
        out = idx < 0
        if out.any():
            r[out] = np.zeros(1, REQ_DTYPE)
            r["gap"][out] = self.next_gap[v[out]]
        return idx, r

    # --- the next request of each vCPU in ``v`` ------------------------------------------------
    def _next(self, v: np.ndarray, st: np.ndarray) -> None:
        """Make the next request of every vCPU in ``v`` pending (``st``: their state rows, with
        ``k`` and ``resume`` already advanced)."""
        idx, r = self._after(v, st["idx"])
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
            v = v[self._order(v, self.key[v])]
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
        if end > self.planned_until:
            self.plan_epoch(max(end, self.planned_until + self.epoch_ns))
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
            idx, r = self._after(cur_v, cur["idx"], end)
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
        n = len(v)
        spec = np.flatnonzero(pred >= 0)
        sp = pred[spec]
        low = key  # lower bounds of the true keys (every speculated issue at its arrival)
        issue = st["issue"]
        arr = issue[spec]
        d_key = key[spec] - arr
        d_exit = st["exit"][spec] - arr
        d_dec = st["dec"][spec] - arr
        # Fixed-point passes: issue_k = max(arrival_k, resume_{k-1}) with the FIFO re-run.
        for it in range(WINDOW_PASSES):
            order = self._order(v, key)
            mreq, grant, rel, resume = self._serve(v, st, key, order)
            want = np.maximum(arr, resume[sp])
            bad = want != issue[spec]
            if not bad.any():
                cut_t = limit
                break
            # Anything not settled is no earlier than its lower bound: all before it is exact.
            cut_t = min(limit, int(low[spec[bad]].min()))
            if it == WINDOW_PASSES - 1 or cut_t <= int(key.min()):
                break
            issue = issue.copy()
            issue[spec] = want
            key = key.copy()
            key[spec] = want + d_key
            st = st.copy()
            st["issue"] = issue
            st["exit"][spec] = want + d_exit
            st["dec"][spec] = want + d_dec
        cut = int(np.searchsorted(key[order], cut_t, side="left"))
        cat = st["cat"]
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
        # Each vCPU continues after its last committed request (no committed successor).
        committed = np.zeros(n, bool)
        committed[keep] = True
        has_next = np.zeros(n, bool)
        has_next[sp[committed[spec]]] = True
        tail = np.flatnonzero(committed & ~has_next)
        nxt = st[tail].copy()
        nxt["k"] += 1
        nxt["resume"] = resume[tail]
        nxt["arrival"] = st["arr"][tail]
        self._next(v[tail], nxt)
        return cut

    def _order(self, v: np.ndarray, key: np.ndarray) -> np.ndarray:
        """Indices of ``(key, v)`` pairs in FIFO order (keys and vCPUs ascending)."""
        if self.packed:
            return np.argsort((key << self.vbits) | v)  # unique: any sort gives this order
        return np.lexsort((v, key))

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
    def records(self) -> dict[str, np.ndarray] | None:
        """The records of every request processed since the last call, as columns of
        :data:`RECORD_DTYPE` field names (in commit order)."""
        if not self.done:
            return None
        v, st, mreq, grant, rel, resume = (np.concatenate(x) for x in zip(*self.done, strict=True))
        self.done.clear()
        self.n_done = 0
        tail = self.pool_tail[st["idx"]]
        self._compact()
        rw = st["dec"] if self.rwsem else -1
        col = {
            "vcpu": v,
            "guest": self.guest[v],
            "seq": st["k"],
            "t_arrival": st["arr"],
            "t_issue": st["issue"],
            "t_exit": st["exit"],
            "t_decode": st["dec"],
            "t_rwsem": np.where(st["cat"] == CAT_EARLY, -1, rw),
            "t_mutex_req": mreq,
            "t_mutex_grant": grant,
            "t_mutex_rel": rel,
            "t_resume": resume,
        }
        for name in TAIL_DTYPE.names or ():
            col[name] = tail[name]
        return col

    def _compact(self) -> None:
        """Drop the pool rows nothing can ask for again (requests below each vCPU's pending one,
        and every row of a vCPU that is done), when they are most of the pool."""
        n = self.pool_n
        if n < COMPACT_MIN:
            return
        pv = self.pool_v[:n]
        live = (self.pool_k[:n] >= self.st["k"][pv]) & (self.key[pv] < INF)
        kept = int(np.count_nonzero(live))
        if 2 * kept > n:
            return
        newpos = np.cumsum(live) - 1
        nxt = self.pool_nxt[:n][live]
        self.pool_nxt = np.where(nxt >= 0, newpos[np.maximum(nxt, 0)], -1)
        self.pool_req = self.pool_req[:n][live]
        self.pool_tail = self.pool_tail[:n][live]
        self.pool_v = pv[live]
        self.pool_k = self.pool_k[:n][live]
        self.pool_n = kept
        alive = self.key < INF
        idx = self.st["idx"]
        self.st["idx"] = np.where(alive & (idx >= 0), newpos[np.maximum(idx, 0)], -1)
        last = self.last_row
        self.last_row = np.where(alive & (last >= 0), newpos[np.maximum(last, 0)], -1)
        self.head[:] = -1  # first requests are long planned
