"""The fleet's plan pool: planned requests as columns, linked per vCPU, and their planning.

Open-loop vCPUs (Poisson, bursty) are planned an epoch of simulated time at a time
(:meth:`PlanPool.plan_epoch`: their arrivals do not depend on the host), others a few
requests at a time (:meth:`PlanPool._plan_count`); :meth:`hostsim.fleet.Fleet.compact` drops
the rows nothing can ask for again. A mixin of :class:`hostsim.fleet.Fleet`, whose state it
reads and writes.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from hostsim.fleet_retry import Batch, RetryPlan
from hostsim.intercept import REGISTER_NAMES
from hostsim.plan import PLAN_COLUMNS, TAIL_DTYPE, make_plans
from workloads.bursts import SCRIPT_DTYPE
from workloads.steady import BURSTY_UNIT_MEAN_NS

if TYPE_CHECKING:
    from hostsim.model import Model
    from workloads.steady import BurstyClock

INF = np.iinfo(np.int64).max
_ROW = np.dtype((np.void, SCRIPT_DTYPE.itemsize))  # a script row as opaque bytes


class PlanPool(RetryPlan):
    """Planning and the pool of planned rows (see module docstring)."""

    # The state it shares with :class:`hostsim.fleet.Fleet` (set in its ``__init__``).
    m: Model
    duration: int
    vcpus: np.ndarray
    n_groups: int
    group: np.ndarray
    local: np.ndarray
    open_loop: np.ndarray
    clocks: dict[int, BurstyClock]
    bursty: np.ndarray
    closed: np.ndarray
    refill_of: np.ndarray
    key: np.ndarray
    k: np.ndarray
    row: np.ndarray
    exact: np.ndarray
    pool: dict[str, np.ndarray]
    pool_n: int
    last_row: np.ndarray
    last_k: np.ndarray
    last_arr: np.ndarray
    next_gap: np.ndarray
    head: np.ndarray | None
    planned_until: int
    epoch_ns: int
    epoch_full: int
    rate_max: float
    on_idle: np.ndarray | None
    scripted: bool
    retry_next: np.ndarray

    # --- the plan pool --------------------------------------------------------------------------
    def _grow(self, cap: int) -> None:
        """Make room for ``cap`` planned rows (the rows in use are kept)."""
        n = self.pool_n
        old = self.pool
        new: dict[str, np.ndarray] = {}
        for name in PLAN_COLUMNS:
            new[name] = np.empty(cap, np.int8 if name == "cat" else np.int64)
        new["tail"] = np.empty(cap, TAIL_DTYPE)
        for name in ("nxt", "v", "k", "at", "think"):
            new[name] = np.empty(cap, np.int64)
        if old:
            for name, a in new.items():
                a[:n] = old[name][:n]
        self.pool = new

    def _append(
        self,
        v: np.ndarray,
        k: np.ndarray,
        gap_next: np.ndarray,
        runs: np.ndarray,
        gap: np.ndarray | None = None,
        regs: dict[str, np.ndarray] | None = None,
        at_think: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        """Plan requests ``k`` of vCPUs ``v`` into the pool, each vCPU's run of ``runs[i]`` rows
        consecutive and continuing its chain. ``gap_next``: the gap of each row's successor;
        ``gap``: each row's own gap, when known; ``regs``: retries (runs of one) of these
        registers. A request its guest retries (``retry = "on_idle"``) has its retry planned
        now, over the row after it (:mod:`hostsim.fleet_retry`), or, at a run's end, when it
        is needed (:meth:`_plan_retry`). ``at_think``: the rows' arrivals and think times (a
        script's; else the steady streams' or retries')."""
        total = len(v)
        if not total:
            return
        at = self.pool_n
        if at + total > len(self.pool["nxt"]):
            self._grow(max(2 * len(self.pool["nxt"]), at + total, 4096))
        p = self.pool
        end = at + total
        plan, _, polls = make_plans(
            self.m, self.group[v], self.local[v], k, gap, regs, p["tail"][at:end]
        )
        for name in PLAN_COLUMNS:
            p[name][at:end] = plan[name]
        ends = np.cumsum(runs) - 1  # each run's last row
        first = ends - runs + 1
        made = None
        if self.on_idle is not None:
            retried = self._retried(v, p["tail"][at:end])
            if retried.any():
                # A run goes on past a retried row: its retry is planned now (a bursty run's
                # later arrivals again, as its clock makes them from the arrival before).
                if at_think is None and regs is None:
                    b = Batch(at, v, k, first, ends, np.repeat(np.arange(len(runs)), runs))
                    made, end_ret = self._retry_in_place(b, retried)
                    self._rewarp(b, made, gap_next)
                    self.retry_next[v[ends[end_ret]]] = True
                else:  # a retry's own batch: runs of one
                    self.retry_next[v[retried]] = True
        g = p["gap"][at:end]
        rv = v[first]
        cs = np.cumsum(g)
        before = cs[first] - g[first]  # the gaps of the batch before each run
        if at_think is not None:
            p["at"][at:end], p["think"][at:end] = at_think
        elif regs is not None:  # a retry issues its poll after the failed request resumed
            p["at"][at:end] = -1
            p["think"][at:end] = polls
        else:  # open loop: its arrival; closed loop: its think time after the resume
            opn = self.open_loop[rv]
            arrival = cs + np.repeat(self.last_arr[rv] - before, runs)
            if opn.all():
                p["at"][at:end] = arrival
                p["think"][at:end] = 0
            else:
                opn = np.repeat(opn, runs)
                p["at"][at:end] = np.where(opn, arrival, -1)
                p["think"][at:end] = np.where(opn, 0, g)
        if made is not None and len(made):  # retries: a poll after the failed request resumed
            p["at"][at + made] = -1
            p["think"][at + made] = polls[made]
        p["v"][at:end] = v
        p["k"][at:end] = k
        nxt = np.arange(at + 1, end + 1)
        nxt[ends] = -1
        p["nxt"][at:end] = nxt
        prev = self.last_row[rv]
        linked = prev >= 0
        p["nxt"][prev[linked]] = at + first[linked]
        if self.head is not None:
            self.head[rv[~linked]] = at + first[~linked]
        # An inexact pending request planned now: its row is known from here on.
        pend = ~self.exact[rv]
        if pend.any():
            pend &= (self.row[rv] < 0) & (self.k[rv] == k[first])
            self.row[rv[pend]] = at + first[pend]
        self.last_row[rv] = at + ends
        self.last_k[rv] = k[ends]
        self.next_gap[rv] = gap_next[ends]
        self.last_arr[rv] += cs[ends] - before  # each run's gaps
        self.pool_n = end

    def _plan_script(self, v: np.ndarray) -> None:
        """Plan the next few rows (per group ``refill_of``) of each replaying vCPU ``v``'s
        script: request ``k`` is row ``k``, arriving at its ``t`` and issued at ``max(t,
        resume + think)`` (:func:`hostsim.streams.next_request`). A vCPU whose script has run
        out arrives at the run's end: it is done."""
        m = self.m
        vs: list[int] = []
        runs: list[int] = []
        rows: list[np.ndarray] = []
        for vi, size in zip(v.tolist(), self.refill_of.take(self.group[v]).tolist(), strict=True):
            pos = int(self.last_k[vi]) + 1
            got = 0
            while got < size:
                part = m.script_rows(vi, pos + got, size - got)
                if part is None:
                    break
                rows.append(part)
                got += len(part)
            if got:
                vs.append(vi)
                runs.append(got)
        if rows:
            sv = np.array(vs, np.int64)
            r = np.array(runs, np.int64)
            vv = np.repeat(sv, r)
            # rows as opaque records: concatenating structured arrays is slow (field promotion)
            script = np.concatenate([p.view(_ROW) for p in rows]).view(SCRIPT_DTYPE)
            first = np.cumsum(r) - r
            k = self.last_k[vv] + 1 + np.arange(len(vv)) - np.repeat(first, r)
            t = script["t"].astype(np.int64)
            prev = np.empty_like(t)
            prev[1:] = t[:-1]
            prev[first] = self.last_arr[sv]
            regs = {name: script[name].astype(np.uint64) for name in REGISTER_NAMES}
            at = (t, script["think"].astype(np.int64))
            self._append(vv, k, np.zeros(len(vv), np.int64), r, t - prev, regs, at)
        self.next_gap[v] = self.duration - self.last_arr[v]  # past its last row: done

    def _plan_retry(self, v: np.ndarray) -> None:
        """Plan the retry of each vCPU ``v``'s last planned request (``retry_next``)."""
        self.retry_next[v] = False
        t = self.pool["tail"][self.last_row[v]]
        regs = {name: t[name].copy() for name in REGISTER_NAMES}
        k = self.last_k[v] + 1
        base = self.last_arr[v]
        gap_next = self._arrive(v, base, self._gaps(v, k + 1)) - base
        ones = np.ones(len(v), np.int64)
        self._append(v, k, gap_next, ones, np.zeros(len(v), np.int64), regs)

    def _gaps(self, v: np.ndarray, k: np.ndarray) -> np.ndarray:
        """The gaps of requests ``k`` of vCPUs ``v`` (``v`` broadcast to the shape of ``k``)."""
        vv = np.broadcast_to(v, k.shape)
        if self.n_groups == 1:
            return self.m.gaps(0, self.local[vv], k)
        out = np.empty(k.shape, np.int64)
        groups = self.group[vv]
        for grp in np.unique(groups).tolist():
            sel = groups == grp
            out[sel] = self.m.gaps(grp, self.local[vv[sel]], k[sel])
        return out

    def _arrive(self, v: np.ndarray, prev: np.ndarray, raw: np.ndarray) -> np.ndarray:
        """The arrivals after ``prev`` of vCPUs ``v`` whose next gaps are ``raw``: ``prev + raw``,
        or a bursty group's time change of it (its clock's ``next_arrivals``)."""
        out = prev + raw
        b = self.bursty[v]
        if b.any():
            for grp in np.unique(self.group[v[b]]).tolist():
                sel = np.flatnonzero(b & (self.group[v] == grp))
                out[sel] = self.clocks[grp].next_arrivals(prev[sel], raw[sel], BURSTY_UNIT_MEAN_NS)
        return out

    def _warp_runs(
        self,
        v: np.ndarray,
        prev: np.ndarray,
        start: np.ndarray,
        count: np.ndarray,
        gap: np.ndarray,
        raw_next: np.ndarray,
        skip: np.ndarray | None = None,
    ) -> np.ndarray:
        """Runs of vCPUs ``v`` whose arrival before row ``start[i]`` of ``gap`` is ``prev[i]``:
        the ``count[i]`` rows from there get, in place, their gap from the arrival before as
        the clock makes it (:meth:`_arrive`; ``gap`` holds their raw gaps on entry); rows that
        ``skip`` marks (a retry: no arrival of its own) are left as they are. Returns each
        run's gap after its last arrival, from the raw ``raw_next``."""
        prev = prev.copy()
        for j in range(int(count.max(initial=0))):
            live = np.flatnonzero(count > j)
            r = start[live] + j
            if skip is not None:
                keep = ~skip[r]
                r, live = r[keep], live[keep]
            nxt = self._arrive(v[live], prev[live], gap[r])
            gap[r] = nxt - prev[live]
            prev[live] = nxt
        return self._arrive(v, prev, raw_next) - prev

    def _plan_count(self, v: np.ndarray) -> None:
        """Plan the next few requests (per group ``refill_of``) of vCPUs ``v``, and of every
        closed-loop vCPU with less than half that left planned (one decode for many); a vCPU
        whose last planned request is retried gets that retry alone."""
        if self.scripted:
            c = self.closed
            low = c[(self.last_k[c] - self.k[c] < self.refill_of.take(self.group[c]) // 2)]
            self._plan_script(np.union1d(v, low[self.key[low] < INF]))
            return
        if self.on_idle is not None:
            again = np.flatnonzero(self.retry_next)
            if len(again):  # every retry due next, at once (one decode for many)
                self._plan_retry(again)
                v = v[~np.isin(v, again)]
                if not len(v):
                    return
        c = self.closed
        if len(c) > 1:
            low = c[(self.last_k[c] - self.k[c] < self.refill_of.take(self.group[c]) // 2)]
            low = low[(self.key[low] < INF) & ~self.retry_next[low]]
            if len(low):
                v = np.union1d(v, low)
        size = self.refill_of.take(self.group[v])
        start = np.cumsum(size) - size
        rep = np.repeat(np.arange(len(v)), size)
        vv = v[rep]
        k = self.last_k[vv] + 1 + np.arange(len(vv)) - start[rep]
        gap_next = self._gaps(vv, k + 1)
        gap = None
        if self.bursty[v].any():  # the rows' gaps one after another, as the clock makes them
            gap = self._gaps(vv, k)
            gap[start] = self.next_gap[v]  # (the first: known already)
            last = start + size - 1
            prev = self.last_arr[v] + self.next_gap[v]
            gap_next[last] = self._warp_runs(v, prev, start + 1, size - 1, gap, gap_next[last])
        self._append(vv, k, gap_next, size, gap)

    def plan_epoch(self, until: int) -> None:
        """Plan every open-loop request of the fleet that arrives before ``until`` (at most the
        run's end): gaps first, then one decode of all of them at once."""
        until = min(until, self.duration)
        if until <= self.planned_until:
            return
        span_s = (until - self.planned_until) / 1e9
        self.planned_until = until
        self.epoch_ns = min(self.epoch_full, 4 * self.epoch_ns)  # (the first ones are short)
        v = self.vcpus[self.open_loop[self.vcpus]]
        per = int(max(1, min(64, math.ceil(self.rate_max * span_s * 1.25))))
        while True:
            v = v[(self.last_arr[v] + self.next_gap[v] < until) & ~self.retry_next[v]]
            if not len(v):
                return
            self._append(*self._arrivals_before(v, until, per))
            if self.on_idle is None:
                return
            # Runs that end in a retried request: their retries, then on from there, with the
            # runs whose retries moved their later arrivals back (more may come before until).
            again = np.flatnonzero(self.retry_next)
            if len(again):
                self._plan_retry(again)
                v = np.union1d(v, again[self.open_loop[again]])

    def _arrivals_before(
        self, v: np.ndarray, until: int, per: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The requests of open-loop vCPUs ``v`` after their last planned ones that arrive
        before ``until``, as :meth:`_append` takes them: (vCPU, k, the next gap, runs, gap),
        each vCPU's run consecutive. Drawn ``per`` gaps a round for the vCPUs still short of
        ``until``; only gaps are drawn here (the decode is the caller's, once)."""
        n = len(v)
        parts: list[tuple[np.ndarray, ...]] = []
        cur = np.arange(n)  # the vCPUs (indices into v) still short of ``until``
        lk, ng, la = self.last_k[v], self.next_gap[v], self.last_arr[v]
        cols = np.arange(per)
        bursty = bool(self.bursty[v].any())
        rnd = 0
        while len(cur):
            vc = v[cur]
            ks = lk[:, None] + 1 + cols
            gaps = np.empty((len(cur), per + 1), np.int64)
            gaps[:, 0] = ng
            gaps[:, 1:] = self._gaps(vc[:, None], ks + 1)
            if bursty and self.bursty[vc].any():  # each arrival from the one before, on the clock
                prev = la + gaps[:, 0]
                for j in range(1, per + 1):
                    nxt = self._arrive(vc, prev, gaps[:, j])
                    gaps[:, j] = nxt - prev
                    prev = nxt
            arr = la[:, None] + np.cumsum(gaps[:, :per], axis=1)
            # The arrivals before ``until``: a prefix of each row (arrivals do not decrease),
            # as flat indices (row-major) of the (vCPU, column) grid.
            ti = np.flatnonzero(arr < until)
            if per == 1:
                row, within, full = ti, np.full(len(ti), rnd), ti
            else:
                row, col = np.divmod(ti, per)
                within, full = col + rnd * per, row[col == per - 1]  # full: every column taken
            g = gaps.reshape(-1)
            parts.append((cur[row], within, ks.reshape(-1)[ti], g[ti + row + 1], g[ti + row]))
            cur, lk, ng, la = cur[full], ks[full, -1], gaps[full, per], arr[full, -1]
            rnd += 1
        rows: list[np.ndarray] = (
            list(parts[0])
            if len(parts) == 1
            else [np.concatenate(x) for x in zip(*parts, strict=True)]
        )
        owner, within, k, gap_next, gap = rows
        total = np.bincount(owner, minlength=n)
        if len(parts) > 1:  # (one round: its rows are in vCPU order already)
            at = (np.cumsum(total) - total)[owner] + within  # each vCPU's rows in order
            k, gap_next, gap = (np.empty(len(owner), np.int64) for _ in range(3))
            k[at], gap_next[at], gap[at] = rows[2:]
        return np.repeat(v, total), k, gap_next, total[total > 0], gap

    def _after(
        self, v: np.ndarray, prev: np.ndarray, before: int = INF, lazy: bool = False
    ) -> np.ndarray:
        """The pool row of the request after pool row ``prev`` of each vCPU ``v`` (``prev`` -1:
        its first request), planning what is missing. An open-loop vCPU whose next arrival is
        at or after ``before`` or the run's end (``lazy``: any open-loop vCPU not planned that
        far) gets row -1: nothing but that arrival (its last arrival plus ``next_gap``) is
        needed of it yet."""
        idx = self._row_after(v, prev)
        miss = np.flatnonzero(idx < 0)
        if not len(miss):
            return idx
        mv = v[miss]
        need = ~self.open_loop[mv] | self.retry_next[mv]
        if not lazy:
            need |= self.last_arr[mv] + self.next_gap[mv] < min(before, self.duration)
        if need.any():
            at = miss[need]
            self._plan_count(v[at])
            idx[at] = self._row_after(v[at], prev[at])
        return idx

    def _row_after(self, v: np.ndarray, prev: np.ndarray) -> np.ndarray:
        """The planned row after pool row ``prev`` of each vCPU ``v`` (``prev`` -1: its first
        planned row, known only while the run starts); -1 where none is planned."""
        head = self.head[v] if self.head is not None else np.full(len(v), -1, np.int64)
        return np.where(prev < 0, head, self.pool["nxt"][np.maximum(prev, 0)])

    def _at_think(self, v: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Of each request at pool row ``idx`` of vCPU ``v`` (-1: its unplanned next one, an
        open-loop arrival): its arrival (-1: none of its own, it arrives when it issues) and
        its think time after the previous request resumed. It issues at
        ``max(arrival, resume + think)``: the one issue rule of the fleet."""
        r = np.maximum(idx, 0)
        at, think = self.pool["at"][r], self.pool["think"][r]
        out = np.flatnonzero(idx < 0)  # (indices: a mask near half set is slow to apply)
        if len(out):
            vo = v[out]
            at[out] = self.last_arr[vo] + self.next_gap[vo]
            think[out] = 0
        return at, think
