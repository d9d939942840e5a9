"""The fleet's optimistic windows: many requests of every vCPU timed at once, speculatively.

:meth:`FleetWindow.window` speculates each request's issue at a lower bound, runs the FIFO
arithmetic (:mod:`hostsim.fleet_fifo`) to a fixed point and commits the prefix that nothing can
still overtake; the window's length adapts to what commits, and while windows keep failing (a
saturated mutex) the fleet rests on its scalar path (:mod:`hostsim.fleet_scalar`). A mixin of
:class:`hostsim.fleet.Fleet`, whose state it reads and writes.
"""

from __future__ import annotations

import numpy as np

from hostsim.fleet_parts import FleetParts
from hostsim.fleet_pool import INF

WINDOW_PASSES = 4  # fixed-point passes of an optimistic window
WINDOW_ROWS = 1 << 15  # requests in a window (about, at most)
MIN_SPAN_NS = 1_000  # the shortest window
COOLDOWN_MIN, COOLDOWN_MAX = 1, 32  # scalar stretches between windows while they keep failing


class FleetWindow(FleetParts):
    """Optimistic windows over the pending requests (see module docstring)."""

    # The state it shares with :class:`hostsim.fleet.Fleet` (set in its ``__init__``).
    duration: int
    free: list[int]
    single_mutex: bool
    mutex: np.ndarray
    open_loop: np.ndarray
    key: np.ndarray
    issue: np.ndarray
    k: np.ndarray
    arr: np.ndarray
    row: np.ndarray
    pool: dict[str, np.ndarray]
    planned_until: int
    epoch_ns: int
    span: int
    max_span: int
    cooldown: int
    rest: int

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
        zero = np.zeros(len(v), np.int64)
        vs, rows, ks, arrs, issues, keys, ats, thinks = (
            [v],
            [self.row[v]],
            [self.k[v]],
            [self.arr[v]],
            [self.issue[v]],
            [self.key[v]],
            [zero],
            [zero],
        )
        preds = [np.full(len(v), -1, np.int64)]  # index of the same vCPU's previous entry
        # each entry's successor, as the next round finds it (pool row, arrival, think time)
        nidx: list[np.ndarray] = []
        nat: list[np.ndarray] = []
        nthink: list[np.ndarray] = []
        limit = end
        free = self.free[0] if self.single_mutex else np.array(self.free, np.int64)
        cur_v, cur_row, cur_k, cur_issue = v, rows[0], ks[0], issues[0]
        cur_at = np.arange(len(v))
        count = len(v)
        while len(cur_v):
            idx = self._after(cur_v, cur_row, end)
            at, think = self._at_think(cur_v, idx)
            nidx.append(idx)
            nat.append(at)
            nthink.append(think)
            issue = at.copy()  # a lower bound of the issue: its arrival, or ...
            dep = np.flatnonzero((at < 0) | (think > 0))
            if len(dep):  # ... a lower bound of the previous resume, plus the think time
                lb = self._resume_lb(cur_v[dep], cur_row[dep], cur_issue[dep], free)
                issue[dep] = np.maximum(at[dep], lb + think[dep])
            p = self.pool  # (planning may have grown the pool: read it afresh)
            alive = issue < self.duration
            r = np.where(idx < 0, 0, idx)
            key = issue + p["koff"][r]
            take = alive & (key < end)
            # A request left out bounds what can be committed (its true key is no earlier).
            left = alive & ~take
            if left.any():
                limit = min(limit, int(key[left].min()))
            t = np.flatnonzero(take)
            if not len(t):
                break
            cur_v, cur_row, cur_k, cur_issue = cur_v[t], idx[t], cur_k[t] + 1, issue[t]
            preds.append(cur_at[t])
            cur_at = count + np.arange(len(t))
            count += len(t)
            vs.append(cur_v)
            rows.append(cur_row)
            ks.append(cur_k)
            arrs.append(np.where(at[t] >= 0, at[t], cur_issue))
            issues.append(cur_issue)
            keys.append(key[t])
            ats.append(at[t])
            thinks.append(think[t])
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
        at_spec = np.concatenate(ats)[spec]
        think_spec = np.concatenate(thinks)[spec]
        koff_spec = key[spec] - issue[spec]
        for it in range(WINDOW_PASSES):
            order = self._order(v, key)
            mreq, grant, rel, resume = self._serve(v, row, issue, key, order)
            want = np.maximum(at_spec, resume[sp] + think_spec)  # the issue rule (_at_think)
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
            arr[spec] = np.where(at_spec >= 0, at_spec, want)
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
        kept_mx = keep[mreq[keep] >= 0]
        if len(kept_mx):
            self._set_free(v[kept_mx], rel[kept_mx])
        committed = np.zeros(n, bool)
        committed[keep] = True
        # Committed in the window's own order, not FIFO order: records are order-free until
        # the sink sorts them, and this order reads the plan pool nearly in sequence.
        k = np.concatenate(ks)
        cols: tuple[np.ndarray, ...] = (v, k, arr, issue, row, mreq, grant, rel, resume)
        if cut < n:
            done = np.flatnonzero(committed)
            cols = tuple(a[done] for a in cols)
        self._commit(*cols)
        # Each vCPU continues after its last committed request (no committed successor).
        has_next = np.zeros(n, bool)
        has_next[sp[committed[spec]]] = True
        tail = np.flatnonzero(committed & ~has_next)
        idx, at, think = (np.concatenate(x)[tail] for x in (nidx, nat, nthink))
        self._pending(v[tail], k[tail] + 1, resume[tail], idx, at, think)
        return cut
