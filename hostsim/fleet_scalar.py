"""The fleet's scalar path: pending requests timed one at a time, in plain Python.

:meth:`FleetScalar.scalar` is the path for a contended fleet, where speculation fails and a
batch would hold a handful of requests: the pending requests as one sorted run, merged in key
order with a heap of the successors that come before the stretch's end, each timed with
the arithmetic of the vectorised paths for one request (memoryviews for the plan pool's
columns), interleaved with the engine's own events. Where many of the run's next requests
come before anything else can act, :meth:`FleetScalar._segment` times them at once with the
vectorised paths' arithmetic (each successor is exact there: no speculation). A mixin of
:class:`hostsim.fleet.Fleet`, whose state it reads and writes.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Generator
from itertools import chain
from typing import Any

import numpy as np

from hostsim.chain import CAT_MUTEX
from hostsim.fleet_parts import FleetParts
from hostsim.fleet_pool import INF
from hostsim.sim_env import WAKE
from hostsim.ties import NORMAL, VCPU

SCALAR_BUDGET = 4096  # requests of one scalar stretch (at most)
SEGMENT = 48  # requests of a stretch timed at once (at least: see FleetScalar._segment)


class FleetScalar(FleetParts):
    """Pending requests one at a time (see module docstring)."""

    # The state it shares with :class:`hostsim.fleet.Fleet` (set in its ``__init__``).
    duration: int
    free: list[int]
    mutex: np.ndarray
    open_loop: np.ndarray
    retry_next: np.ndarray
    key: np.ndarray
    issue: np.ndarray
    k: np.ndarray
    arr: np.ndarray
    row: np.ndarray
    pool: dict[str, np.ndarray]
    last_arr: np.ndarray
    next_gap: np.ndarray
    planned_until: int
    epoch_ns: int

    def scalar(
        self,
        hard: int,
        events: list[tuple[Any, ...]],
        before: Callable[[int, int], Any],
        budget: int = SCALAR_BUDGET,
    ) -> Generator[Any, Any, int]:
        """Process pending requests one at a time in key order, in plain Python, while their
        key is below ``hard`` (at most ``budget`` of them): the path for a contended fleet,
        where speculation fails and a batch that nothing can overtake would hold a handful of
        requests (numpy's cost per call outweighs its gain there). The smallest pending key is
        always safe to process: every vCPU's next request is no earlier than its pending one's
        resume. The arithmetic is :meth:`_serve`'s and :meth:`_next`'s, for one request;
        afterwards the touched vCPUs' pending state is made by :meth:`_next` itself, so the
        two paths leave the same state. Where at least :data:`SEGMENT` of the sorted run's
        next requests come before the next engine event, they are timed at once
        (:meth:`_segment`). A generator, run by the fleet's SimPy process: when
        ``events`` (the environment's queue) holds an entry that comes before a request, it
        calls ``before(key, v)``, which runs what comes first (the engine's own events and
        SimPy code, which share the mutexes' free times but no fleet state): the engine's
        entries at once, and for SimPy code it returns an event after that request's key,
        which the stretch yields. Returns how many requests were processed."""
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
        # Entries (key, v, then its pending k, arrival, issue, pool row); (key, v) unique. The
        # candidates are one sorted run; the successors that fall below ``hard`` wait in a heap
        # (few where the fleet is large: most come after the stretch), and the loop merges both.
        cand = cand[self._order(cand, self.key[cand])]
        cols = (
            self.key[cand],
            cand,
            self.k[cand],
            self.arr[cand],
            self.issue[cand],
            self.row[cand],
        )
        run = list(zip(*(c.tolist() for c in cols), strict=True))
        end_of_run = (INF, 0, 0, 0, 0, 0)  # (a sentinel: never below ``hard``)
        run.append(end_of_run)
        run_keys = cols[0]
        n_run = len(cand)
        at_run = 0
        segments: list[tuple[np.ndarray, ...]] = []  # record columns of vectorised segments
        limit = budget  # requests left to ``out`` (segments take their share of the budget)
        far_from = 0  # no segment before this run index
        seg_room = SCALAR_BUDGET  # requests offered to a segment (at most)
        heap: list[tuple[int, ...]] = [end_of_run]  # (the heap's sentinel too)
        top = run[0]
        out: list[tuple[int, ...]] = []
        free = self.free
        # memoryviews: indexing one gives a Python int, several times faster than numpy's
        mutex, open_loop, duration = self.mutex.data, self.open_loop.data, self.duration
        retry_next = self.retry_next.data

        def columns() -> tuple[Any, ...]:
            p = self.pool
            names = ("cat", "koff", "hold", "entry", "fin", "nxt", "at", "think")
            return tuple(p[name].data for name in names)

        cat, koff, hold, entry, fin, nxt, atc, thinkc = columns()
        push, pop, replace = heapq.heappush, heapq.heappop, heapq.heapreplace
        while len(out) < limit:
            if top is not end_of_run and not heap[0] < top:  # the run's next one
                key, v, k, arr, issue, row = top
                if key >= hard:
                    break
                far = at_run + SEGMENT - 1
                if (
                    far < n_run
                    and at_run >= far_from
                    and run[far][0] < hard
                    and not (events and events[0][0] <= run[far][0])
                ):
                    # Many of the run's next requests come before anything else can act: the
                    # vectorised arithmetic for them at once (see _segment).
                    bound = min(hard, events[0][0]) if events else hard
                    end = at_run + int(np.searchsorted(run_keys[at_run:], bound))
                    room = min(limit - len(out), seg_room)
                    if end - at_run > room:  # the budget's worth, or what pays, no further
                        end = at_run + room
                        bound = run[end][0]  # (the heap's entries too)
                    seg = [c[at_run:end] for c in cols]
                    done, taken, cut = self._segment(seg, heap, bound, hard, seg_room)
                    segments.append(done)
                    n_done = len(done[0])
                    limit -= n_done
                    # A cut segment did work for requests it left: offer about twice what it
                    # took next time (and rest a while if it took few).
                    seg_room = max(SEGMENT, 2 * n_done) if cut else SCALAR_BUDGET
                    if n_done < SEGMENT:
                        far_from = at_run + SEGMENT
                    at_run += taken
                    top = run[at_run]
                    cat, koff, hold, entry, fin, nxt, atc, thinkc = columns()  # (planned more)
                    continue
                queued = False
                at_run += 1
                top = run[at_run]
            else:  # a queued one (replaced by its successor, or popped)
                key, v, k, arr, issue, row = heap[0]
                if key >= hard:
                    break
                queued = True
            if events and events[0][0] <= key and events[0] < (key, NORMAL, VCPU, v, WAKE):
                ev = before(key, v)
                if ev is not None:
                    yield ev
            if cat[row] == CAT_MUTEX:
                m = mutex[v]
                grant = free[m]  # hostsim.fifo.grant, inline in this loop
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
                target = self.last_arr[v] + self.next_gap[v]
                if open_loop[v] and target >= duration and not retry_next[v]:
                    if queued:  # its next arrival is past the end: nothing more (the fast
                        pop(heap)  # answer of _plan_next, which finds the same)
                    continue
                idx = int(self._plan_next(np.array([v]), np.array([row]))[0])
                cat, koff, hold, entry, fin, nxt, atc, thinkc = columns()
            if idx >= 0:  # the fleet's issue rule (PlanPool._at_think)
                arrival, nissue = atc[idx], resume + thinkc[idx]
            else:
                arrival, nissue = int(self.last_arr[v] + self.next_gap[v]), resume
            if arrival > nissue:
                nissue = arrival
            elif arrival < 0:
                arrival = nissue
            if nissue >= duration or idx < 0:  # done (an unplanned next request arrives
                if queued:  # after the end)
                    pop(heap)
                continue
            nkey = nissue + koff[idx]
            if nkey >= hard:  # pending after the stretch (made so by _next below)
                if queued:
                    pop(heap)
            elif queued:
                replace(heap, (nkey, v, k + 1, arrival, nissue, idx))
            else:
                push(heap, (nkey, v, k + 1, arrival, nissue, idx))
        count = len(out) + budget - limit
        if not count:
            return 0
        flat = np.fromiter(chain.from_iterable(out), np.int64, count=9 * len(out))
        parts = [list(flat.reshape(-1, 9).T), *segments]  # (the nine columns of each)
        c = [np.concatenate(x) for x in zip(*parts, strict=True)] if segments else parts[0]
        self._commit(*c)
        # Each touched vCPU continues after its last request processed here (its largest k).
        o = np.lexsort((c[1], c[0]))
        at = o[np.r_[c[0][o[1:]] != c[0][o[:-1]], True]]
        self._next(c[0][at], c[1][at] + 1, c[8][at], c[4][at])
        return count

    def _segment(
        self,
        cols: list[np.ndarray],
        heap: list[tuple[int, ...]],
        bound: int,
        hard: int,
        room: int,
    ) -> tuple[tuple[np.ndarray, ...], int, bool]:
        """The next requests of a scalar stretch, timed at once: the run's ``cols`` (key, v, k,
        arrival, issue, pool row; keys ascending below ``bound``, before which nothing else
        acts) and the ``heap``'s entries below ``bound`` (at most ``room`` of them: else the
        run's requests before the first one left). The FIFO arithmetic is :meth:`_serve`'s,
        each request's successor follows the scalar loop's issue rule, and the longest prefix
        (in key order) is taken whose every request comes before every successor found so
        far. Successors before ``hard`` join the heap, as do the heap's entries left out; the
        mutexes' free times are updated. Returns the prefix's record columns (as the loop's
        ``out``), how many of the run's requests it holds, and whether a successor cut it
        short."""
        extra: list[tuple[int, ...]] = []
        while heap[0][0] < bound:  # (the heap's sentinel is never below it)
            if len(extra) == room:  # no further than pays: the run's requests before it alone
                before = int(np.searchsorted(cols[0], heap[0][0]))
                cols = [c[:before] for c in cols]
                break
            extra.append(heapq.heappop(heap))
        n_run = len(cols[0])
        if extra:
            cols = [np.concatenate((a, b)) for a, b in zip(cols, np.array(extra).T, strict=True)]
            o = self._order(cols[1], cols[0])
            cols = [a[o] for a in cols]
        key, v, k, arr, issue, row = cols
        nxt = self.pool["nxt"][row]
        u = np.flatnonzero(nxt < 0)
        if len(u):  # plan what comes next, as the scalar loop does (or learn that nothing does)
            nxt[u] = self._plan_next(v[u], row[u])
        mreq, grant, rel, resume = self._serve(v, row, issue, key, np.arange(len(v)))
        at, think = self._at_think(v, nxt)
        nissue = np.maximum(at, resume + think)  # the fleet's issue rule
        arrival = np.where(at < 0, nissue, at)
        # (none: an unplanned next request arrives after the end)
        koff = self.pool["koff"][np.maximum(nxt, 0)]
        nkey = np.where((nissue >= self.duration) | (nxt < 0), INF, nissue + koff)
        # A successor before a later request of the segment: the prefix ends there (ties too).
        late = np.flatnonzero(key[1:] >= np.minimum.accumulate(nkey[:-1]))
        n = int(late[0]) + 1 if len(late) else len(v)
        mx = np.flatnonzero(mreq[:n] >= 0)
        if len(mx):
            self._set_free(v[mx], rel[mx])
        q = np.flatnonzero(nkey[:n] < hard)
        queued: list[tuple[np.ndarray, ...]] = [
            (nkey[q], v[q], k[q] + 1, arrival[q], nissue[q], nxt[q])
        ]
        taken = n
        if extra:
            from_run = o < n_run
            taken = int(np.count_nonzero(from_run[:n]))
            left = n + np.flatnonzero(~from_run[n:])  # the heap's entries left out: back there
            queued.append(tuple(a[left] for a in cols))
        for c in queued:
            for e in zip(*(a.tolist() for a in c), strict=True):
                heapq.heappush(heap, e)
        done = (v, k, arr, issue, row, mreq, grant, rel, resume)
        return (done if n == len(v) else tuple(a[:n] for a in done)), taken, n < len(v)

    def _plan_next(self, v: np.ndarray, row: np.ndarray) -> np.ndarray:
        """The pool rows of the requests after rows ``row`` of vCPUs ``v``, whose next request
        is not planned yet, planned now (-1: nothing comes before the run's end): open loops
        past the planned epoch get the next epochs, for every vCPU at once; the rest are
        planned by :meth:`_after`. Both of the stretch's forms use it."""
        target = self.last_arr[v] + self.next_gap[v]
        epoch = self.open_loop[v] & (self.planned_until <= target) & (target < self.duration)
        if epoch.any():
            self.plan_epoch(max(int(target[epoch].max()) + 1, self.planned_until + self.epoch_ns))
        idx = self.pool["nxt"][row]
        miss = np.flatnonzero(idx < 0)
        if len(miss):
            idx[miss] = self._after(v[miss], row[miss])
        return idx
