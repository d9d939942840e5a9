"""The fleet's scalar path: pending requests timed one at a time, in plain Python.

:meth:`FleetScalar.scalar` is the path for a contended fleet, where speculation fails and a
batch would hold a handful of requests: the pending requests as one sorted run, merged in key
order with a heap of the successors that come before the stretch's end, each timed with
the arithmetic of the vectorised paths for one request (memoryviews for the plan pool's
columns), interleaved with the engine's own events. A mixin of :class:`hostsim.fleet.Fleet`,
whose state it reads and writes.
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
        wake: Callable[[int, int], Any],
        budget: int = SCALAR_BUDGET,
    ) -> Generator[Any, Any, int]:
        """Process pending requests one at a time in key order, in plain Python, while their
        key is below ``hard`` (at most ``budget`` of them): the path for a contended fleet,
        where speculation fails and a batch that nothing can overtake would hold a handful of
        requests (numpy's cost per call outweighs its gain there). The smallest pending key is
        always safe to process: every vCPU's next request is no earlier than its pending one's
        resume. The arithmetic is :meth:`_serve`'s and :meth:`_next`'s, for one request;
        afterwards the touched vCPUs' pending state is made by :meth:`_next` itself, so the
        two paths leave the same state. A generator, run by the fleet's SimPy process: when
        ``events`` (the environment's queue) holds an entry that comes before a request, it
        yields ``wake(key, v)`` (an event after that request's key) so that everything else
        that comes first runs (the engine's own events and SimPy code, which share the
        mutexes' free times but no fleet state). Returns how many requests were processed."""
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
        run.append((INF, 0, 0, 0, 0, 0))  # (a sentinel: never below ``hard``)
        at_run = 0
        heap: list[tuple[int, ...]] = [(INF, 0, 0, 0, 0, 0)]  # (a sentinel too)
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
        while len(out) < budget:
            if heap[0] < top:  # a queued one (replaced by its successor, or popped)
                key, v, k, arr, issue, row = heap[0]
                if key >= hard:
                    break
                queued = True
            else:
                key, v, k, arr, issue, row = top
                if key >= hard:
                    break
                queued = False
                at_run += 1
                top = run[at_run]
            if events and events[0][0] <= key and events[0] < (key, NORMAL, VCPU, v, WAKE):
                yield wake(key, v)
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
                target = int(self.last_arr[v] + self.next_gap[v])
                if open_loop[v] and target >= duration and not retry_next[v]:
                    if queued:
                        pop(heap)
                    continue  # its next arrival is past the end: nothing more (as _after finds)
                if open_loop[v] and self.planned_until <= target < duration:
                    # Open loop past the planned epoch: the next epochs, for every vCPU.
                    self.plan_epoch(max(target + 1, self.planned_until + self.epoch_ns))
                    idx = int(self.pool["nxt"][row])
                if idx < 0:
                    idx = int(self._after(np.array([v]), np.array([row]))[0])
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
        if not out:
            return 0
        flat = np.fromiter(chain.from_iterable(out), np.int64, count=9 * len(out))
        c = list(flat.reshape(-1, 9).T)  # the nine columns (views)
        self._commit(*c)
        # Each touched vCPU continues after its last request processed here.
        n = len(out)
        tv, first = np.unique(c[0][::-1], return_index=True)
        at = n - 1 - first
        self._next(tv, c[1][at] + 1, c[8][at], c[4][at])
        return len(out)
