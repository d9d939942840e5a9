"""The fleet's ``on_idle`` retries, planned inside the run of requests that needs them.

A guest with ``retry = "on_idle"`` re-issues an enable its hook answered BUSY or RESET IN
PROGRESS (:func:`hostsim.streams.after`): request ``j + 1`` of the vCPU is then that retry (the
failed request's registers, the draws of index ``j + 1``, issued ``retry_poll`` after request
``j`` resumed), and its steady stream goes on from request ``j + 2`` as if the retry were not
there (the retry adds no gap to an open loop's arrivals; a closed loop thinks ``gap(j + 2)``
after it).

A planning call costs about a millisecond whatever it plans, so the retries of a batch are
planned with it: every retried row's retry at once (:meth:`RetryPlan._retry_in_place`), then
one more call for each retry of a retry. A bursty vCPU's arrivals depend on the clock time of
the arrival before, so its run's later arrivals are made again from the arrival before the
retry (:meth:`RetryPlan._rewarp`). Only a retry at a run's end is planned when it is needed
(:meth:`hostsim.fleet_pool.PlanPool._plan_retry`). Before this, a run stopped at its first
retried request and the retry and the rest had calls of their own: a vCPU retrying 7 % of
its enables made a call per few requests. A mixin of :class:`hostsim.fleet_pool.PlanPool`.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from hostsim import arch
from hostsim.intercept import REGISTER_NAMES
from hostsim.plan import PLAN_COLUMNS, TAIL_DTYPE, make_plan
from hostsim.rules import Kind

if TYPE_CHECKING:
    from hostsim.model import Model

#: the hook's answers to an enable that an ``on_idle`` guest retries (hostsim.streams)
RETRY_RC = (int(arch.RC.BUSY), int(arch.RC.RESET_IN_PROGRESS))

Planned = tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]


class Batch(NamedTuple):
    """Rows being planned into the pool: from row ``at``, requests ``k`` of vCPUs ``v``, in
    runs (one vCPU each) from batch row ``first[i]`` to ``ends[i]``."""

    at: int
    v: np.ndarray
    k: np.ndarray
    first: np.ndarray
    ends: np.ndarray


def as_rows(a: np.ndarray) -> np.ndarray:
    """``a`` itself, or for a structured array its rows as opaque bytes (the same memory):
    gathering or scattering whole rows is then one copy per row, about 10x faster than numpy's
    field-by-field copy of a structured row."""
    return a.view(np.dtype((np.void, a.dtype.itemsize))) if a.dtype.names else a


class RetryPlan:
    """Retries in the plan (see module docstring)."""

    # The state it shares with :class:`hostsim.fleet.Fleet` (set in its ``__init__``).
    m: Model
    n_groups: int
    group: np.ndarray
    local: np.ndarray
    pool: dict[str, np.ndarray]
    on_idle: np.ndarray | None
    retry_next: np.ndarray
    bursty: np.ndarray
    last_arr: np.ndarray

    if TYPE_CHECKING:

        def _gaps(self, v: np.ndarray, k: np.ndarray) -> np.ndarray: ...

        def _arrive(self, v: np.ndarray, prev: np.ndarray, raw: np.ndarray) -> np.ndarray: ...

    def _decode(
        self,
        v: np.ndarray,
        k: np.ndarray,
        gap: np.ndarray | None,
        regs: dict[str, np.ndarray] | None,
        tail: np.ndarray | None = None,
    ) -> Planned:
        """:func:`hostsim.plan.make_plan` of requests ``k`` of vCPUs ``v`` of any groups (one
        call per group): (the plan columns, the record fields, each row's ``retry_poll``, 0
        where its guest draws none). ``tail``: where to write the record fields."""
        n = len(v)
        groups = self.group[v]
        polls = np.zeros(n, np.int64)
        if self.n_groups == 1 or not (groups != groups[0]).any():
            plan, tail = make_plan(self.m, int(groups[0]), self.local[v], k, gap, tail, regs)
            return plan, tail, plan.get("poll", polls)
        cols = {name: np.empty(n, np.int8 if name == "cat" else np.int64) for name in PLAN_COLUMNS}
        if tail is None:
            tail = np.empty(n, TAIL_DTYPE)
        for grp in np.unique(groups).tolist():
            sel = np.flatnonzero(groups == grp)
            own = None if gap is None else gap[sel]
            sub = None if regs is None else {name: a[sel] for name, a in regs.items()}
            plan, part = make_plan(self.m, grp, self.local[v[sel]], k[sel], own, None, sub)
            for name in PLAN_COLUMNS:
                cols[name][sel] = plan[name]
            as_rows(tail)[sel] = as_rows(part)  # (whole rows: see as_rows)
            if "poll" in plan:
                polls[sel] = plan["poll"]
        return cols, tail, polls

    def _retried(self, v: np.ndarray, tail: np.ndarray) -> np.ndarray:
        """Which planned requests (their record fields ``tail``) of vCPUs ``v`` the guest
        retries: an enable its hook answered BUSY or RESET IN PROGRESS, in an ``on_idle``
        group (:func:`hostsim.streams.after`)."""
        assert self.on_idle is not None
        gpr0, gpr1 = tail["gpr0"], tail["gpr1"]
        enable = (arch.fc(gpr0) == arch.FunctionCode.AQIC) & (arch.ir(gpr1) != 0)
        return (
            self.on_idle[v]
            & enable
            & (tail["kind"] == Kind.HOOK_HANDLED)
            & np.isin(tail["guest_visible_rc"], RETRY_RC)
        )

    def _retry_in_place(self, b: Batch, retried: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Turn the row after each retried row of batch ``b`` into its retry, where the run
        goes on past it:
        the retries are planned (one call for every first retry, one more for each retry of a
        retry) and written over those rows (their gap 0). ``retried``: the batch's rows that
        their plan retries. Returns (the rows made retries, which runs now end in a retried
        row: their retries are planned when needed)."""
        at, v, k, first, ends = b
        tail = self.pool["tail"]
        run_of = np.repeat(np.arange(len(first)), ends - first + 1)
        end_of = ends[run_of].tolist()
        end_ret = np.zeros(len(first), bool)
        # Each retried row's retry, planned as if the row is its run's own (most are).
        pos = np.flatnonzero(retried)
        cand = pos[pos < ends[run_of[pos]]]
        regs = {name: tail[name][at + cand] for name in REGISTER_NAMES}
        spec: Planned = ({}, np.empty(0, TAIL_DTYPE), np.empty(0, np.int64))
        if len(cand):
            spec = self._decode(v[cand + 1], k[cand + 1], np.zeros(len(cand), np.int64), regs)
        spec_ret = self._retried(v[cand + 1], spec[1]).tolist()
        at_cand = dict(zip(cand.tolist(), range(len(cand)), strict=True))
        ret_rows = pos.tolist()  # the originally retried rows, in order
        made: dict[int, tuple[int, int]] = {}  # batch row -> (planned set, index there)
        sets: list[Planned] = [spec]

        def next_retried(lo: int, hi: int) -> int | None:
            i = bisect_left(ret_rows, lo)
            return ret_rows[i] if i < len(ret_rows) and ret_rows[i] <= hi else None

        def walk(j: int, src: int) -> tuple[int, int] | None:
            """Row ``j`` is retried, re-issuing row ``src``'s registers: make the rows after
            it, up to the run's end, or to a retry of a retry (returned: it needs a call)."""
            while True:
                if j == end_of[j]:  # the run ends retried: the retry is planned when needed
                    end_ret[run_of[j]] = True
                    return None
                if src != j:
                    return j + 1, src
                i = at_cand[j]
                made[j + 1] = (0, i)
                if spec_ret[i]:  # the retry retried
                    j += 1
                    continue
                q = next_retried(j + 2, end_of[j])
                if q is None:
                    return None
                j = src = q

        starts = pos[np.r_[True, run_of[pos[1:]] != run_of[pos[:-1]]]] if len(pos) else pos
        pending = [w for j in starts.tolist() if (w := walk(j, j)) is not None]
        while pending:  # retries of retries: one call for all of them
            rows = np.array([r for r, _ in pending], np.int64)
            srcs = np.array([s for _, s in pending], np.int64)
            regs = {name: tail[name][at + srcs] for name in REGISTER_NAMES}
            got = self._decode(v[rows], k[rows], np.zeros(len(rows), np.int64), regs)
            sets.append(got)
            again = self._retried(v[rows], got[1]).tolist()
            later: list[tuple[int, int]] = []
            for i, (r, s) in enumerate(pending):
                made[r] = (len(sets) - 1, i)
                if again[i]:
                    w = walk(r, s)
                else:
                    q = next_retried(r + 1, end_of[r])
                    w = None if q is None else walk(q, q)
                if w is not None:
                    later.append(w)
            pending = later
        return self._write_made(at, made, sets), end_ret

    def _write_made(
        self, at: int, made: dict[int, tuple[int, int]], sets: list[Planned]
    ) -> np.ndarray:
        """Write the made retries (``made``: batch row -> (planned set, index)) over their
        rows of the batch at pool row ``at``; the rows, sorted."""
        p = self.pool
        rows = np.array(sorted(made), np.int64)
        if not len(rows):
            return rows
        which = np.array([made[r][0] for r in rows.tolist()], np.int64)
        idx = np.array([made[r][1] for r in rows.tolist()], np.int64)
        for s, (cols, tail, _) in enumerate(sets):
            sel = np.flatnonzero(which == s)
            if not len(sel):
                continue
            dst, src = at + rows[sel], idx[sel]
            for name in PLAN_COLUMNS:
                p[name][dst] = cols[name][src]
            as_rows(p["tail"])[dst] = as_rows(tail)[src]
        return rows

    def _rewarp(self, b: Batch, made: np.ndarray, gap_next: np.ndarray) -> None:
        """Batch ``b``'s bursty runs with made retries (rows ``made``): their arrivals from the
        first one on, again, as the clock makes them from the arrival before (a retry has none
        of its own), and their last row's ``gap_next``; in place in the pool's ``gap`` column
        and ``gap_next``."""
        at, v, k, first, ends = b
        warp = made[self.bursty[v[made]]]
        if not len(warp):
            return
        gap = self.pool["gap"]
        run_of = np.repeat(np.arange(len(first)), ends - first + 1)
        runs = np.unique(run_of[warp])
        m0 = np.full(len(first), len(v), np.int64)
        np.minimum.at(m0, run_of[warp], warp)
        m0 = m0[runs]  # each run's first made row
        rv, end = v[first[runs]], ends[runs]
        g = gap[at : at + len(v)]
        cs = np.cumsum(g)
        prev = self.last_arr[rv] + cs[m0] - cs[first[runs]] + g[first[runs]]
        is_made = np.zeros(len(v), bool)
        is_made[made] = True
        span = end - m0  # rows after the first made one
        rows = np.concatenate([np.arange(a + 1, e + 1) for a, e in zip(m0, end, strict=True)])
        raw = np.zeros(len(v), np.int64)
        raw[rows] = self._gaps(v[rows], k[rows])
        for j in range(1, int(span.max()) + 1):
            live = np.flatnonzero(span >= j)
            r = m0[live] + j
            step = ~is_made[r]
            r, live = r[step], live[step]
            if len(r):
                nxt = self._arrive(rv[live], prev[live], raw[r])
                g[r] = nxt - prev[live]
                prev[live] = nxt
        raw_next = self._gaps(rv, k[end] + 1)
        gap_next[end] = self._arrive(rv, prev, raw_next) - prev
