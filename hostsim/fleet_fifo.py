"""The fleet's FIFO mutex arithmetic over arrays: the closed form of the FIFO recursion.

A mutex granted in FIFO order releases at ``release_i = max(request_i, release_{i-1}) + hold_i``;
:meth:`FleetFifo._fifo` evaluates it for a whole batch at once with the rule's vectorised form
:func:`hostsim.fifo.releases` (segmented per mutex for the per-mdev lock model),
:meth:`FleetFifo._order` gives the tie rule's ``(key, vCPU)`` order, and :meth:`FleetFifo._serve`
the times of every request of a batch.
Both of the fleet's vectorised paths (windows, single batches) use them. A mixin of
:class:`hostsim.fleet.Fleet`, whose state it reads (the mutexes' free times it also writes).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hostsim.chain import CAT_MUTEX
from hostsim.fifo import releases


class FleetFifo:
    """The FIFO mutex arithmetic of a batch of requests (see module docstring)."""

    # The state it shares with :class:`hostsim.fleet.Fleet` (set in its ``__init__``).
    free: list[int]
    mutex: np.ndarray
    single_mutex: bool
    pool: dict[str, np.ndarray]
    packed: bool
    vbits: int

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
        # (pool columns are read in the batch's own order, near the pool's, then permuted:
        # reading the pool in FIFO order is a random walk over it)
        is_mx = p["cat"][row] == CAT_MUTEX
        mx = order[is_mx[order]]
        if len(mx):
            h = p["hold"][row][mx]
            t = key[mx]
            r = self._fifo(t, h, None if self.single_mutex else self.mutex[v[mx]])
            mreq[mx] = t
            rel[mx] = r
            grant[mx] = r - h
            resume[mx] = r + p["entry"][row][mx]
        return mreq, grant, rel, resume

    def _fifo(self, t: np.ndarray, h: np.ndarray, mid: np.ndarray | None) -> np.ndarray:
        """Releases of mutex requests ``t`` (in FIFO order) with holds ``h`` on mutexes ``mid``
        (None: one mutex; :func:`hostsim.fifo.releases`). Pure: the caller records the new free
        times with :meth:`_set_free`."""
        return releases(t, h, mid, self.free)

    def _set_free(self, v: np.ndarray, rel: np.ndarray) -> None:
        """Each mutex is next free at the release of its last request (in FIFO order; the
        requests of vCPUs ``v``)."""
        if self.single_mutex:
            self.free[0] = int(rel[-1])
            return
        mid = self.mutex[v]
        last: dict[int, int] = dict(zip(mid.tolist(), rel.tolist(), strict=True))
        for m_id, r in last.items():
            self.free[m_id] = r
