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

from hostsim.plan import PLAN_COLUMNS, TAIL_DTYPE, make_plan
from workloads.steady import BURSTY_UNIT_MEAN_NS

if TYPE_CHECKING:
    from hostsim.model import Model
    from workloads.steady import BurstyClock

INF = np.iinfo(np.int64).max


class PlanPool:
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
    rate_max: float

    # --- the plan pool --------------------------------------------------------------------------
    def _grow(self, cap: int) -> None:
        """Make room for ``cap`` planned rows (the rows in use are kept)."""
        n = self.pool_n
        old = self.pool
        new: dict[str, np.ndarray] = {}
        for name in PLAN_COLUMNS:
            new[name] = np.empty(cap, np.int8 if name == "cat" else np.int64)
        new["tail"] = np.empty(cap, TAIL_DTYPE)
        for name in ("nxt", "v", "k"):
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
    ) -> None:
        """Plan requests ``k`` of vCPUs ``v`` into the pool, each vCPU's run of ``runs[i]`` rows
        consecutive and continuing its chain. ``gap_next``: the gap of each row's successor;
        ``gap``: each row's own gap, when known."""
        total = len(v)
        if not total:
            return
        at = self.pool_n
        if at + total > len(self.pool["nxt"]):
            self._grow(max(2 * len(self.pool["nxt"]), at + total, 4096))
        p = self.pool
        end = at + total
        groups = self.group[v]
        if self.n_groups == 1 or not (groups != groups[0]).any():
            plan, _ = make_plan(self.m, int(groups[0]), self.local[v], k, gap, p["tail"][at:end])
            for name in PLAN_COLUMNS:
                p[name][at:end] = plan[name]
        else:
            for grp in np.unique(groups).tolist():
                sel = np.flatnonzero(groups == grp)
                own = None if gap is None else gap[sel]
                plan, tail = make_plan(self.m, grp, self.local[v[sel]], k[sel], own)
                for name in PLAN_COLUMNS:
                    p[name][at + sel] = plan[name]
                p["tail"][at + sel] = tail
        p["v"][at:end] = v
        p["k"][at:end] = k
        ends = np.cumsum(runs) - 1  # each run's last row
        first = ends - runs + 1
        nxt = np.arange(at + 1, end + 1)
        nxt[ends] = -1
        p["nxt"][at:end] = nxt
        rv = v[first]
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
        self.last_arr[rv] += np.add.reduceat(p["gap"][at:end], first)
        self.pool_n = end

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

    def _plan_count(self, v: np.ndarray) -> None:
        """Plan the next few requests (per group ``refill_of``) of vCPUs ``v``, and of every
        closed-loop vCPU with less than half that left planned (one decode for many)."""
        c = self.closed
        if len(c) > 1:
            low = c[(self.last_k[c] - self.k[c] < self.refill_of[self.group[c]] // 2)]
            low = low[self.key[low] < INF]
            if len(low):
                v = np.union1d(v, low)
        size = self.refill_of[self.group[v]]
        start = np.cumsum(size) - size
        rep = np.repeat(np.arange(len(v)), size)
        vv = v[rep]
        k = self.last_k[vv] + 1 + np.arange(len(vv)) - start[rep]
        gap_next = self._gaps(vv, k + 1)
        gap = None
        if self.bursty[v].any():  # the rows' gaps one after another, as the clock makes them
            gap = self._gaps(vv, k)
            prev = self.last_arr[v].copy()
            for j in range(int(size.max())):
                r = np.flatnonzero(size > j)
                rows = start[r] + j
                if j == 0:
                    gap[rows] = self.next_gap[v[r]]
                else:
                    gap[rows] = self._arrive(v[r], prev[r], gap[rows]) - prev[r]
                prev[r] += gap[rows]
            last = start + size - 1
            gap_next[last] = self._arrive(v, prev, gap_next[last]) - prev
        self._append(vv, k, gap_next, size, gap)

    def plan_epoch(self, until: int) -> None:
        """Plan every open-loop request of the fleet that arrives before ``until`` (at most the
        run's end): gaps first, then a decode of each round's requests at once."""
        until = min(until, self.duration)
        if until <= self.planned_until:
            return
        span_s = (until - self.planned_until) / 1e9
        self.planned_until = until
        v = self.vcpus[self.open_loop[self.vcpus]]
        v = v[self.last_arr[v] + self.next_gap[v] < until]
        per = int(max(1, min(64, math.ceil(self.rate_max * span_s * 1.25))))
        while len(v):
            ks = self.last_k[v][:, None] + 1 + np.arange(per)
            gaps = np.empty((len(v), per + 1), np.int64)
            gaps[:, 0] = self.next_gap[v]
            gaps[:, 1:] = self._gaps(v[:, None], ks + 1)
            if self.bursty[v].any():  # each arrival from the one before, on the clock
                prev = self.last_arr[v] + gaps[:, 0]
                for j in range(1, per + 1):
                    nxt = self._arrive(v, prev, gaps[:, j])
                    gaps[:, j] = nxt - prev
                    prev = nxt
            arr = self.last_arr[v][:, None] + np.cumsum(gaps[:, :per], axis=1)
            take = arr < until
            cnt = take.sum(1)
            flat = take.reshape(-1)
            self._append(
                np.repeat(v, cnt),
                ks.reshape(-1)[flat],
                gaps[:, 1:].reshape(-1)[flat],
                cnt[cnt > 0],
                gaps[:, :per].reshape(-1)[flat],
            )
            v = v[cnt == per]

    def _after(
        self, v: np.ndarray, prev: np.ndarray, before: int = INF, lazy: bool = False
    ) -> np.ndarray:
        """The pool row of the request after pool row ``prev`` of each vCPU ``v`` (``prev`` -1:
        its first request), planning what is missing. An open-loop vCPU whose next arrival is
        at or after ``before`` or the run's end (``lazy``: any open-loop vCPU not planned that
        far) gets row -1: nothing but that arrival (its last arrival plus ``next_gap``) is
        needed of it yet."""
        idx = self._row_after(v, prev)
        miss = idx < 0
        if not miss.any():
            return idx
        mv = v[miss]
        need = ~self.open_loop[mv]
        if not lazy:
            need |= self.last_arr[mv] + self.next_gap[mv] < min(before, self.duration)
        if need.any():
            self._plan_count(mv[need])
            at = np.flatnonzero(miss)[need]
            idx[at] = self._row_after(v[at], prev[at])
        return idx

    def _row_after(self, v: np.ndarray, prev: np.ndarray) -> np.ndarray:
        """The planned row after pool row ``prev`` of each vCPU ``v`` (``prev`` -1: its first
        planned row, known only while the run starts); -1 where none is planned."""
        head = self.head[v] if self.head is not None else np.full(len(v), -1, np.int64)
        return np.where(prev < 0, head, self.pool["nxt"][np.maximum(prev, 0)])

    def _gap_of(self, v: np.ndarray, idx: np.ndarray) -> np.ndarray:
        """The gap of each request at pool row ``idx`` (-1: the vCPU's unplanned next one)."""
        gap = self.pool["gap"][idx]
        out = idx < 0
        if out.any():
            gap[out] = self.next_gap[v[out]]
        return gap
