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
from hostsim.plan import PLAN_COLUMNS, TAIL_DTYPE, Planned, as_rows, make_plans
from hostsim.rules import Kind

if TYPE_CHECKING:
    from hostsim.model import Model

#: the hook's answers to an enable that an ``on_idle`` guest retries (hostsim.streams)
RETRY_RC = (int(arch.RC.BUSY), int(arch.RC.RESET_IN_PROGRESS))


class Batch(NamedTuple):
    """Rows being planned into the pool: from row ``at``, requests ``k`` of vCPUs ``v``, in
    runs (one vCPU each) from batch row ``first[i]`` to ``ends[i]``; ``run_of``: each row's
    run."""

    at: int
    v: np.ndarray
    k: np.ndarray
    first: np.ndarray
    ends: np.ndarray
    run_of: np.ndarray


class RetryPlan:
    """Retries in the plan (see module docstring)."""

    # The state it shares with :class:`hostsim.fleet.Fleet` (set in its ``__init__``).
    m: Model
    group: np.ndarray
    local: np.ndarray
    pool: dict[str, np.ndarray]
    on_idle: np.ndarray | None
    retry_next: np.ndarray
    bursty: np.ndarray
    last_arr: np.ndarray

    if TYPE_CHECKING:

        def _gaps(self, v: np.ndarray, k: np.ndarray) -> np.ndarray: ...

        def _warp_runs(
            self,
            v: np.ndarray,
            prev: np.ndarray,
            start: np.ndarray,
            count: np.ndarray,
            gap: np.ndarray,
            raw_next: np.ndarray,
            skip: np.ndarray | None = None,
        ) -> np.ndarray: ...

    def _plans(self, v: np.ndarray, k: np.ndarray, regs: dict[str, np.ndarray]) -> Planned:
        """Retries ``k`` of vCPUs ``v`` re-issuing ``regs``, planned (gap 0: a retry adds none
        to its stream's arrivals)."""
        zero = np.zeros(len(v), np.int64)
        return make_plans(self.m, self.group[v], self.local[v], k, zero, regs)

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
        goes on past it: the retries are planned (one call for every first retry, one more for
        each retry of a retry) and written over those rows (their gap 0). ``retried``: the
        batch's rows that their plan retries. Returns (the rows made retries, which runs now
        end in a retried row: their retries are planned when needed)."""
        at, v, k, first, ends, run_of = b
        tail = self.pool["tail"]
        end_of = ends[run_of].tolist()
        end_ret = np.zeros(len(first), bool)
        # Each retried row's retry, planned as if the row is its run's own (most are).
        pos = np.flatnonzero(retried)
        cand = pos[pos < ends[run_of[pos]]]
        regs = {name: tail[name][at + cand] for name in REGISTER_NAMES}
        spec: Planned = ({}, np.empty(0, TAIL_DTYPE), np.empty(0, np.int64))
        if len(cand):
            spec = self._plans(v[cand + 1], k[cand + 1], regs)
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
            got = self._plans(v[rows], k[rows], regs)
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
        of its own: gap 0), and their last row's ``gap_next``; in place in the pool's ``gap``
        column and ``gap_next`` (:meth:`hostsim.fleet_pool.PlanPool._warp_runs`)."""
        at, v, k, first, ends, run_of = b
        warp = made[self.bursty[v[made]]]
        if not len(warp):
            return
        runs = np.unique(run_of[warp])
        m0 = np.full(len(first), len(v), np.int64)
        np.minimum.at(m0, run_of[warp], warp)
        m0 = m0[runs]  # each run's first made row
        rv, end = v[first[runs]], ends[runs]
        g = self.pool["gap"][at : at + len(v)]
        cs = np.cumsum(g)
        prev = self.last_arr[rv] + cs[m0] - cs[first[runs]] + g[first[runs]]  # (m0's gap is 0)
        is_made = np.zeros(len(v), bool)
        is_made[made] = True
        rows = np.concatenate([np.arange(a + 1, e + 1) for a, e in zip(m0, end, strict=True)])
        rows = rows[~is_made[rows]]
        g[rows] = self._gaps(v[rows], k[rows])  # their raw gaps, warped below
        raw_next = self._gaps(rv, k[end] + 1)
        gap_next[end] = self._warp_runs(rv, prev, m0 + 1, end - m0, g, raw_next, is_made)
