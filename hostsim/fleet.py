"""The vectorised core of the fast engine: every plain steady vCPU, in windows or one by one.

A *plain* vCPU has a steady Poisson or closed-loop stream and a guest whose configuration never
changes, so every request it will ever issue can be decoded in advance (:mod:`hostsim.plan`)
with every duration that does not depend on other requests (the mutex hold included). Planned
requests live in a pool of columns, linked per vCPU; open-loop vCPUs are planned an epoch of
simulated time at a time (their arrivals do not depend on the host), others a few requests at a
time. Each vCPU has exactly one *pending* request, kept in arrays indexed by vCPU: its key
(mutex request time, or issue time when it takes no lock).

Requests are timed in key order ``(time, vCPU)``: those that touch no lock are pure arithmetic;
the mutex is the FIFO recursion ``release_i = max(request_i, release_{i-1}) + hold_i``, which
has the closed form ``release_i = S_i + max(free, max_{j<=i}(request_j - S_{j-1}))`` with ``S``
the running sum of holds (segmented per mutex for the per-mdev lock model). Two paths apply it:
:meth:`Fleet.window` (optimistic windows, vectorised, for when speculation pays) and
:meth:`Fleet.scalar` (one request at a time in plain Python, for a contended mutex).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from hostsim.fleet_pool import PlanPool
from hostsim.fleet_records import FleetRecords
from hostsim.model import Model
from hostsim.plan import CAT_MUTEX
from hostsim.request_draws import expected_requests

INF = np.iinfo(np.int64).max
EPOCH_ROWS = 1 << 16  # open-loop requests planned at a time (about)
COMPACT_MIN = 1 << 16  # the plan pool is compacted from this size on
WINDOW_PASSES = 4  # fixed-point passes of an optimistic window
WINDOW_ROWS = 1 << 15  # requests in a window (about, at most)
MIN_SPAN_NS = 1_000  # the shortest window
SCALAR_BUDGET = 4096  # requests of one scalar stretch (at most)
COOLDOWN_MIN, COOLDOWN_MAX = 1, 32  # scalar stretches between windows while they keep failing
INIT_CHUNK = 1 << 16  # vCPUs made pending at a time when a run starts
_SEG = np.int64(1 << 46)  # larger than any |request - S| within a batch (times < 9.7 h)


class Fleet(PlanPool, FleetRecords):
    """The plain vCPUs of a run: their pending requests as arrays (see module docstring)."""

    def __init__(self, m: Model, vcpus: np.ndarray, free: list[int]) -> None:
        self.m = m
        self.free = free  # per mutex: when it is next free (shared with the scalar engine)
        self.rwsem = m.rwsem
        self.duration = m.s.duration_ns
        n = m.n_vcpus
        topo = m.topo
        guests = m.s.guests
        self.vcpus = vcpus
        self.n_groups = len(guests)
        self.group = topo.vcpu_group.astype(np.int32)
        self.guest = topo.vcpu_guest.astype(np.int32)
        self.local = topo.vcpu_local.astype(np.int32)
        self.mutex = m.mutex_of_guest.astype(np.int32)[self.guest]
        self.single_mutex = m.n_mutexes == 1
        # Open loops (Poisson, bursty): arrivals that do not depend on the host. A bursty
        # group's gaps are planned as the on/off clock's time change makes them (its
        # ``next_arrivals``), so every other line treats both alike.
        is_open = [g.workload.kind in ("poisson", "bursty") for g in guests]
        self.open_loop = np.array(is_open, bool)[self.group]
        self.clocks = m.clocks  # the bursty groups' on/off clocks
        self.bursty = np.array([gi in self.clocks for gi in range(len(guests))], bool)[self.group]
        self.closed = vcpus[~self.open_loop[vcpus]]  # closed-loop members
        #: requests planned per vCPU at a time (closed loops, or beyond an epoch): about a
        #: quarter of what it issues in the run
        self.refill_of = np.array(
            [
                min(64, max(1, math.ceil(expected_requests(g.workload, self.duration) / 4)))
                for g in guests
            ],
            np.int64,
        )
        starts = np.array([round(g.workload.start_ms * 1e6) for g in guests], np.int64)
        # The pending request of each vCPU.
        self.key = np.full(n, INF, np.int64)  # its mutex request or issue time
        self.issue = np.full(n, INF, np.int64)  # its issue (the watermark)
        self.k = np.zeros(n, np.int64)  # its request number
        self.arr = starts[self.group].copy()  # its arrival
        self.row = np.full(n, -1, np.int64)  # its plan pool row
        self.exact = np.ones(n, bool)  # its key is known (else bounded below: see _next)
        # The plan pool: planned requests as columns, linked per vCPU (``nxt``: the row of the
        # same vCPU's next request, -1 while it is not planned yet).
        self.pool: dict[str, np.ndarray] = {}
        self.pool_n = 0
        expect = sum(
            g.count * g.vcpus * expected_requests(g.workload, self.duration) for g in guests
        )
        self._grow(int(min(4096 + 1.1 * expect, 4 * EPOCH_ROWS + n)))
        self.last_row = np.full(n, -1, np.int64)  # each vCPU's last planned row
        self.last_k = np.full(n, -1, np.int64)  # its request number
        self.last_arr = self.arr.copy()  # its arrival (open loop)
        self.next_gap = np.zeros(n, np.int64)  # the gap of the request after it
        self.head = np.full(n, -1, np.int64)  # each vCPU's first planned row
        self.planned_until = 0
        opens = [g for g, p in zip(guests, is_open, strict=True) if p]
        peak = [
            max(g.workload.rate_on_hz, g.workload.rate_off_hz)
            if g.workload.kind == "bursty"
            else g.workload.rate_hz
            for g in opens
        ]
        total = sum(g.count * g.vcpus * expected_requests(g.workload, 10**9) for g in opens)
        self.rate_max = max(peak, default=0.0)
        #: open-loop requests are planned an epoch at a time: about EPOCH_ROWS of them
        self.epoch_ns = max(1_000_000, round(EPOCH_ROWS / total * 1e9)) if total > 0 else INF
        self.processed = 0
        self.compacted_at = 0  # requests committed at the last compaction
        self.done: list[tuple[np.ndarray, ...]] = []  # committed requests, records not built yet
        self.n_done = 0
        #: optimistic windows (see :meth:`window`), open and closed loops alike
        self.optimistic = bool(len(vcpus))
        self.span = 1_000_000  # current window length (ns), adapted to what commits
        #: about WINDOW_ROWS requests at most in a window (cache-sized arrays)
        per_s = sum(g.count * g.vcpus * expected_requests(g.workload, 10**9) for g in guests)
        self.max_span = max(1_000_000, round(WINDOW_ROWS / per_s * 1e9)) if per_s > 0 else INF
        self.cooldown = 0
        self.rest = COOLDOWN_MIN  # stretches to rest after a failed window (doubles while failing)
        #: sort keys ``key << vbits | vcpu`` fit in 63 bits when times stay below 2**(63-vbits)
        self.vbits = max(1, int(n - 1).bit_length())
        self.packed = self.duration + (1 << 40) < (1 << (63 - self.vbits))
        if len(vcpus):
            for v in np.array_split(vcpus, -(-len(vcpus) // INIT_CHUNK)):  # bounded temporaries
                raw = self._gaps(v, np.zeros(len(v), np.int64))
                self.next_gap[v] = self._arrive(v, self.arr[v], raw) - self.arr[v]
            self.plan_epoch(int(starts.min()) + self.epoch_ns)
            for v in np.array_split(vcpus, -(-len(vcpus) // INIT_CHUNK)):
                self._next(v, self.k[v], starts[self.group[v]], self.arr[v], self.row[v])
        self.head = None  # only first requests use it

    # --- the next request of each vCPU in ``v`` ------------------------------------------------
    def _next(
        self, v: np.ndarray, k: np.ndarray, resume: np.ndarray, arr: np.ndarray, prev: np.ndarray
    ) -> None:
        """Make request ``k`` of each vCPU ``v`` pending: its previous request resumed at
        ``resume``, arrived at ``arr`` and was planned at pool row ``prev``. An open-loop
        request that is not planned yet stays so (*inexact*: its key is only bounded below by
        its issue) until something needs it (:meth:`_materialize`)."""
        idx = self._after(v, prev, lazy=True)
        gap = self._gap_of(v, idx)
        opn = self.open_loop[v]
        arrival = np.where(opn, arr, resume) + gap
        issue = np.where(opn, np.maximum(arrival, resume), arrival)
        done = issue >= self.duration
        self.k[v] = k
        self.arr[v] = arrival
        self.row[v] = idx
        self.issue[v] = np.where(done, INF, issue)
        self.key[v] = INF
        self.exact[v] = True
        lazy = (idx < 0) & ~done
        if lazy.any():
            lv = v[lazy]
            self.exact[lv] = False
            self.key[lv] = issue[lazy]  # the key and every later one are no earlier
        ready = (idx >= 0) & ~done
        if ready.all():
            self._keys(v, idx)
        elif ready.any():
            self._keys(v[ready], idx[ready])

    def _keys(self, v: np.ndarray, idx: np.ndarray) -> None:
        """The keys of the pending requests of ``v`` (planned at ``idx``)."""
        self.key[v] = self.issue[v] + self.pool["koff"][idx]

    def _materialize(self, v: np.ndarray) -> None:
        """Plan (if need be) the inexact pending requests of ``v`` and make their keys exact."""
        v = v[~self.exact[v]]
        if not len(v):
            return
        unplanned = v[self.row[v] < 0]
        if self.open_loop[unplanned].any() and self.planned_until < self.duration:
            # Open-loop requests past the planned epoch: plan the next epoch, all at once.
            self.plan_epoch(self.planned_until + self.epoch_ns)
            unplanned = unplanned[self.row[unplanned] < 0]
        if len(unplanned):
            self._plan_count(unplanned)  # resolves their rows (see :meth:`_append`)
        self._keys(v, self.row[v])
        self.exact[v] = True

    # --- processing -----------------------------------------------------------------------------
    def progress_time(self) -> int:
        """How far the fleet has got: its smallest pending key."""
        return int(self.key.min()) if len(self.vcpus) else INF

    def min_key(self) -> tuple[int, int]:
        """(smallest pending key, its vCPU)."""
        while True:
            v = int(np.argmin(self.key))
            if self.exact[v]:
                return int(self.key[v]), v
            self._materialize(np.array([v]))

    def _pending_below(self, limit: int) -> np.ndarray:
        """The vCPUs whose pending request's key is below ``limit`` (made exact first)."""
        v = np.flatnonzero(self.key < limit)
        if len(v) and not self.exact[v].all():
            self._materialize(v)
            v = v[self.key[v] < limit]
        return v

    def process(self, v: np.ndarray) -> None:
        """Process the pending requests of ``v`` (in key order, exact) and advance them."""
        idx, issue, key = self.row[v], self.issue[v], self.key[v]
        mreq, grant, rel, resume = self._serve(v, idx, issue, key, np.arange(len(v)))
        mx = np.flatnonzero(mreq >= 0)
        if len(mx):
            self._set_free(self.mutex[v[mx]], rel[mx])
        k, arr = self.k[v], self.arr[v]
        self._commit(v, k, arr, issue, idx, mreq, grant, rel, resume)
        self._next(v, k + 1, resume, arr, idx)

    def window(self, hard: int) -> int:
        """Optimistic batch: every request whose key falls before a window end, the vCPUs'
        later requests included, each first speculated at a lower bound of its issue: an open
        loop's arrival (as if its vCPU were idle then), a closed loop's think time after a lower
        bound of its predecessor's resume (the mutex granted as soon as it is requested). A FIFO
        pass in key order gives every request's resume; where that moves a request's issue
        (``issue_k = max(arrival_k, resume_{k-1})`` open loop, ``resume_{k-1} + think_k``
        closed) the pass is run again, up to :data:`WINDOW_PASSES` times (a fixed point is the
        simulation itself). Every request whose key is below the first speculated lower bound
        of each still unsettled one is exact and is committed: an unsettled request and its
        successors cannot have a smaller true key, and the settled prefix depends on nothing
        else. Returns how many requests were committed.
        """
        if self.cooldown:  # windows kept failing (a saturated mutex): scalar for a while
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
        v = self._pending_below(end)
        if not len(v):
            return 0
        vs, rows, ks, arrs, issues, keys, gaps = (
            [v],
            [self.row[v]],
            [self.k[v]],
            [self.arr[v]],
            [self.issue[v]],
            [self.key[v]],
            [np.zeros(len(v), np.int64)],
        )
        preds = [np.full(len(v), -1, np.int64)]  # index of the same vCPU's previous entry
        limit = end
        free = self.free[0] if self.single_mutex else np.array(self.free, np.int64)
        cur_v, cur_row, cur_k, cur_arr, cur_issue = v, rows[0], ks[0], arrs[0], issues[0]
        cur_at = np.arange(len(v))
        count = len(v)
        while len(cur_v):
            idx = self._after(cur_v, cur_row, end)
            gap = self._gap_of(cur_v, idx)
            arrival = cur_arr + gap  # open loop: the next arrival
            shut = ~self.open_loop[cur_v]
            if shut.any():  # closed loop: a lower bound of the resume, plus the think time
                arrival[shut] = self._resume_lb(cur_v[shut], cur_row[shut], cur_issue[shut], free)
                arrival[shut] += gap[shut]
            p = self.pool  # (planning may have grown the pool: read it afresh)
            alive = arrival < self.duration
            r = np.where(idx < 0, 0, idx)
            key = arrival + p["koff"][r]
            take = alive & (key < end)
            # A request left out bounds what can be committed (its true key is no earlier).
            left = alive & ~take
            if left.any():
                limit = min(limit, int(key[left].min()))
            t = np.flatnonzero(take)
            if not len(t):
                break
            cur_v, cur_row, cur_k, cur_arr = cur_v[t], idx[t], cur_k[t] + 1, arrival[t]
            cur_issue = cur_arr
            preds.append(cur_at[t])
            cur_at = count + np.arange(len(t))
            count += len(t)
            vs.append(cur_v)
            rows.append(cur_row)
            ks.append(cur_k)
            arrs.append(cur_arr)
            issues.append(cur_arr)
            keys.append(key[t])
            gaps.append(gap[t])
        v = np.concatenate(vs)
        row = np.concatenate(rows)
        key = np.concatenate(keys)
        issue = np.concatenate(issues)
        arr = np.concatenate(arrs)
        pred = np.concatenate(preds)
        n = len(v)
        spec = np.flatnonzero(pred >= 0)
        sp = pred[spec]
        low = key  # lower bounds of the true keys (every speculated issue at its lower bound)
        open_spec = self.open_loop[v[spec]]
        arr_spec = issue[spec]
        gap_spec = np.concatenate(gaps)[spec]
        koff_spec = key[spec] - arr_spec
        for it in range(WINDOW_PASSES):
            order = self._order(v, key)
            mreq, grant, rel, resume = self._serve(v, row, issue, key, order)
            want = np.where(open_spec, np.maximum(arr_spec, resume[sp]), resume[sp] + gap_spec)
            bad = want != issue[spec]
            if not bad.any():
                cut_t = limit
                break
            # Anything unsettled is no earlier than its lower bound: all before it is exact.
            cut_t = min(limit, int(low[spec[bad]].min()))
            if it == WINDOW_PASSES - 1 or cut_t <= int(key.min()):
                break
            issue = issue.copy()
            issue[spec] = want
            key = key.copy()
            key[spec] = want + koff_spec
            arr = arr.copy()
            arr[spec] = np.where(open_spec, arr_spec, want)
        # A speculated request that would issue at or after the run's end never happens: it may
        # only follow (in key order) what is committed, so nothing it would delay is.
        ghost = issue[spec] >= self.duration
        if ghost.any():
            cut_t = min(cut_t, int(key[spec[ghost]].min()))
        cut = int(np.searchsorted(key[order], cut_t, side="left"))
        if cut < min(n, 64):
            # Speculation is not paying: shrink the window and rest for a few scalar stretches.
            self.span = max(self.span // 2, MIN_SPAN_NS)
            self.cooldown = self.rest
            self.rest = min(2 * self.rest, COOLDOWN_MAX)
            if cut == 0:
                return 0
        else:
            self.rest = COOLDOWN_MIN
        if cut == n and end == kmin + self.span:  # all of a full-length window: grow it
            self.span = min(max(self.span * 3 // 2, self.span + MIN_SPAN_NS), self.max_span)
        elif cut < n // 2:
            self.span = max(self.span // 2, MIN_SPAN_NS)
        keep = order[:cut]
        kv = v[keep]
        kept_mx = np.flatnonzero(mreq[keep] >= 0)
        if len(kept_mx):
            self._set_free(self.mutex[kv[kept_mx]], rel[keep[kept_mx]])
        k = np.concatenate(ks)
        self._commit(
            kv,
            k[keep],
            arr[keep],
            issue[keep],
            row[keep],
            mreq[keep],
            grant[keep],
            rel[keep],
            resume[keep],
        )
        # Each vCPU continues after its last committed request (no committed successor).
        committed = np.zeros(n, bool)
        committed[keep] = True
        has_next = np.zeros(n, bool)
        has_next[sp[committed[spec]]] = True
        tail = np.flatnonzero(committed & ~has_next)
        self._next(v[tail], k[tail] + 1, resume[tail], arr[tail], row[tail])
        return cut

    def scalar(
        self,
        hard: int,
        before: Callable[[int, int], None] | None = None,
        budget: int = SCALAR_BUDGET,
        events: list[tuple[int, ...]] | None = None,
    ) -> int:
        """Process pending requests one at a time in key order, in plain Python, while their
        key is below ``hard`` (at most ``budget`` of them): the path for a contended fleet,
        where speculation fails and a batch that nothing can overtake would hold a handful of
        requests (numpy's cost per call outweighs its gain there). The smallest pending key is
        always safe to process: every vCPU's next request is no earlier than its pending one's
        resume. The arithmetic is :meth:`_serve`'s and :meth:`_next`'s, for one request;
        afterwards the touched vCPUs' pending state is made by :meth:`_next` itself, so the
        two paths leave the same state. ``before(key, v)``: called before each request is
        processed, to run whatever else comes first (the engine's own events, which share
        the mutexes' free times but no fleet state), when ``events`` (the engine's heap) has
        one at or before ``key``. Returns how many requests were processed."""
        hard = min(hard, INF)
        cand = np.flatnonzero(self.key < hard)
        if len(cand) > budget:  # the ``budget`` smallest keys: every other one is no smaller
            cand = cand[np.argpartition(self.key[cand], budget)[:budget]]
            hard = min(hard, int(self.key[cand].max()))
            cand = cand[self.key[cand] < hard]
        if not len(cand):
            return 0
        self._materialize(cand)
        cand = cand[self.key[cand] < hard]
        if not len(cand):
            return 0
        # heap entries: (key, v, then its pending k, arrival, issue, pool row); (key, v) unique
        cols = (
            self.key[cand],
            cand,
            self.k[cand],
            self.arr[cand],
            self.issue[cand],
            self.row[cand],
        )
        heap = list(zip(*(c.tolist() for c in cols), strict=True))
        heapq.heapify(heap)
        out: list[tuple[int, ...]] = []
        free = self.free
        # memoryviews: indexing one gives a Python int, several times faster than numpy's
        mutex, open_loop, duration = self.mutex.data, self.open_loop.data, self.duration

        def columns() -> tuple[Any, ...]:
            p = self.pool
            names = ("cat", "koff", "hold", "entry", "fin", "nxt", "gap")
            return tuple(p[name].data for name in names)

        cat, koff, hold, entry, fin, nxt, gapc = columns()
        pop, push = heapq.heappop, heapq.heappush
        while heap and len(out) < budget:
            key = heap[0][0]
            if key >= hard:
                break
            if before is not None and (events is None or (events and events[0][0] <= key)):
                before(key, heap[0][1])
            _, v, k, arr, issue, row = pop(heap)
            if cat[row] == CAT_MUTEX:
                m = mutex[v]
                grant = free[m]
                if key > grant:
                    grant = key
                rel = grant + hold[row]
                free[m] = rel
                resume = rel + entry[row]
                out.append((v, k, arr, issue, row, key, grant, rel, resume))
            else:
                resume = issue + fin[row]
                out.append((v, k, arr, issue, row, -1, -1, -1, resume))
            idx = nxt[row]
            if idx < 0:  # plan what comes next (or learn that nothing does)
                target = int(self.last_arr[v] + self.next_gap[v])
                if open_loop[v] and self.planned_until <= target < duration:
                    # Open loop past the planned epoch: the next epochs, for every vCPU at once.
                    self.plan_epoch(max(target + 1, self.planned_until + self.epoch_ns))
                    idx = int(self.pool["nxt"][row])
                if idx < 0:
                    idx = int(self._after(np.array([v]), np.array([row]))[0])
                cat, koff, hold, entry, fin, nxt, gapc = columns()
            gap = gapc[idx] if idx >= 0 else int(self.next_gap[v])
            if open_loop[v]:
                arrival = arr + gap
                nissue = arrival if arrival > resume else resume
            else:
                arrival = nissue = resume + gap
            if nissue >= duration or idx < 0:
                continue  # done (an unplanned next request arrives after the end)
            push(heap, (nissue + koff[idx], v, k + 1, arrival, nissue, idx))
        if not out:
            return 0
        c = [np.array(col, np.int64) for col in zip(*out, strict=True)]
        self._commit(*c)
        # Each touched vCPU continues after its last request processed here.
        n = len(out)
        tv, first = np.unique(c[0][::-1], return_index=True)
        at = n - 1 - first
        self._next(tv, c[1][at] + 1, c[8][at], c[2][at], c[4][at])
        return len(out)

    def _resume_lb(
        self, v: np.ndarray, row: np.ndarray, issue: np.ndarray, free: Any
    ) -> np.ndarray:
        """A lower bound of the resume of the requests at pool rows ``row`` issued at ``issue``
        (lower bounds too): a mutex request is granted no earlier than its mutex is free now."""
        p = self.pool
        fr = free if self.single_mutex else free[self.mutex[v]]
        return np.where(
            p["cat"][row] == CAT_MUTEX,
            np.maximum(issue + p["koff"][row], fr) + p["hold"][row] + p["entry"][row],
            issue + p["fin"][row],
        )

    def _commit(self, v: np.ndarray, *cols: np.ndarray) -> None:
        """Keep committed requests for their records: (vCPU, k, arrival, issue, pool row,
        mutex request, grant, release, resume)."""
        self.done.append((v, *cols))
        self.n_done += len(v)
        self.processed += len(v)

    def _order(self, v: np.ndarray, key: np.ndarray) -> np.ndarray:
        """Indices of ``(key, v)`` pairs in FIFO order (keys and vCPUs ascending)."""
        if self.packed:
            return np.argsort((key << self.vbits) | v)  # unique: any sort gives this order
        return np.lexsort((v, key))

    def _serve(
        self,
        v: np.ndarray,
        row: np.ndarray,
        issue: np.ndarray,
        key: np.ndarray,
        order: np.ndarray,
    ) -> tuple[np.ndarray, ...]:
        """Times of the requests at pool rows ``row`` (vCPUs ``v``, issues ``issue``, keys
        ``key``), taken in FIFO ``order``: (mutex request, grant, release, resume), -1 where no
        mutex was taken. The mutexes' free times are not changed (see :meth:`_set_free`)."""
        p = self.pool
        n = len(v)
        resume = issue + p["fin"][row]
        mreq = np.full(n, -1, np.int64)
        grant = np.full(n, -1, np.int64)
        rel = np.full(n, -1, np.int64)
        mx = order[p["cat"][row[order]] == CAT_MUTEX]
        if len(mx):
            rmx = row[mx]
            h = p["hold"][rmx]
            t = key[mx]
            r = self._fifo(t, h, self.mutex[v[mx]])
            mreq[mx] = t
            rel[mx] = r
            grant[mx] = r - h
            resume[mx] = r + p["entry"][rmx]
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

    def compact(self) -> None:
        """Drop the pool rows nothing can ask for again (requests below each vCPU's pending one
        but its last planned row, and every row of a vCPU that is done), when they are much of
        the pool; in place, so
        the pool's memory is reused. Record columns from :meth:`records` must be made first."""
        n = self.pool_n
        committed = self.processed - self.compacted_at  # rows no request needs any more
        if n < COMPACT_MIN or 2 * n < len(self.pool["nxt"]) or committed < 2 * (n - committed):
            return  # room left, or too little to drop: not yet
        p = self.pool
        pv = p["v"][:n]
        live = (p["k"][:n] >= self.k[pv]) & (self.key[pv] < INF)
        # A vCPU's last planned row anchors what is planned next (it may be a committed one).
        anchors = self.last_row[(self.key < INF) & (self.last_row >= 0)]
        live[anchors] = True
        kept = int(np.count_nonzero(live))
        self.compacted_at = self.processed
        newpos = np.cumsum(live) - 1
        keep = np.flatnonzero(live)
        for a in p.values():
            a[:kept] = a[keep]  # in place: the pool's memory is reused
        nxt = p["nxt"][:kept]
        p["nxt"][:kept] = np.where(nxt >= 0, newpos[np.maximum(nxt, 0)], -1)
        self.pool_n = kept
        alive = self.key < INF
        self.row = np.where(alive & (self.row >= 0), newpos[np.maximum(self.row, 0)], -1)
        last = self.last_row
        self.last_row = np.where(alive & (last >= 0), newpos[np.maximum(last, 0)], -1)
