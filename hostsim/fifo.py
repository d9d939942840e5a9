"""The FIFO mutex rule, written once, in the three forms hostsim's schedulers need.

A FIFO mutex serves its requests in :func:`hostsim.ties.lock_key` order, and decides who gets it
only after every request of that nanosecond is in (the tie rule's ``LATE`` priority). How that
rule is evaluated depends on what is known when a request arrives:

* :class:`FifoQueue`: the event-driven form, for holders whose hold is not known at the grant
  (a host program that sleeps under the lock, a user SimPy process): a queue of keys that the
  scheduler asks to :meth:`~FifoQueue.decide` at ``LATE`` priority. The reference engine's
  SimPy lock (:class:`hostsim.engine_ref.FifoLock`) and the fast engine's host-only mutexes
  (:mod:`hostsim.engine_fast_host`) are this queue.
* :func:`grant`: the closed form for one request whose hold is known once it is granted, taken
  in key order (every earlier request is in): granted at ``max(t, free)``, next free at the
  grant plus the hold. The fast engine's one-at-a-time mutex requests and ``mdevs_lock``
  sections, and (inline, in its hot loop) :meth:`hostsim.fleet_scalar.FleetScalar.scalar`.
* :func:`releases`: the same recursion over arrays, ``release_i = max(t_i, release_{i-1}) +
  hold_i``, in closed form ``release_i = S_i + max(free, max_{j<=i}(t_j - S_{j-1}))`` (``S`` the
  running sum of holds), segmented per mutex; the fleet's vectorised paths.

``tests/test_fifo.py`` holds the three equal on random requests with ties.
"""

from __future__ import annotations

import heapq
from typing import Any

import numpy as np

_SEG = np.int64(1 << 46)  # larger than any |request - S| within a batch (times < 9.7 h)


class FifoQueue:
    """A FIFO mutex whose holds are not known in advance: queued keys, decided late.

    ``ask`` and ``release`` return True when the scheduler must run :meth:`decide` at ``LATE``
    priority of the current nanosecond (one decision is pending at a time); ``decide`` returns
    the payload of the request granted, or None."""

    __slots__ = ("busy", "pending", "queue")

    def __init__(self) -> None:
        self.queue: list[tuple[Any, ...]] = []  # (*lock_key, payload), smallest key first
        self.busy = False
        self.pending = False

    def ask(self, key: tuple[int, int, int, int], payload: Any) -> bool:
        """Queue a request at its :func:`hostsim.ties.lock_key`; keys are unique per requester."""
        heapq.heappush(self.queue, (*key, payload))
        return self._schedule()

    def release(self) -> bool:
        """The holder leaves the lock."""
        self.busy = False
        return self._schedule()

    def decide(self) -> Any:
        """Grant the lock to the first queued request if it is free (its payload), else None."""
        self.pending = False
        if self.busy or not self.queue:
            return None
        self.busy = True
        return heapq.heappop(self.queue)[-1]

    def _schedule(self) -> bool:
        if self.busy or self.pending or not self.queue:
            return False
        self.pending = True
        return True


def grant(t: int, free: int) -> int:
    """When a request at ``t`` gets a mutex next free at ``free`` (taken in key order)."""
    return t if t > free else free


def releases(t: np.ndarray, h: np.ndarray, mid: np.ndarray | None, free: list[int]) -> np.ndarray:
    """Releases of mutex requests ``t`` (in FIFO order) with holds ``h`` on mutexes ``mid``
    (None: all on mutex 0), each mutex next free at ``free[mutex]`` before them. Pure: the
    caller records the new free times (each mutex's last release)."""
    if mid is None:
        s = np.cumsum(h)
        return s + np.maximum(free[0], np.maximum.accumulate(t - (s - h)))
    o = np.argsort(mid, kind="stable")  # per mutex, FIFO order kept
    t, h, mid = t[o], h[o], mid[o]
    start = np.r_[True, mid[1:] != mid[:-1]]
    seg = np.cumsum(start) - 1
    s_all = np.cumsum(h)
    s = s_all - (s_all - h)[start][seg]
    acc = np.maximum.accumulate(t - (s - h) + seg * _SEG) - seg * _SEG
    frees = np.array([free[x] for x in mid[start].tolist()], np.int64)[seg]
    r = np.empty_like(t)
    r[o] = s + np.maximum(frees, acc)
    return r
