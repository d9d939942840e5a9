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
:meth:`Fleet.scalar` (one request at a time in plain Python, with runs of them timed at once
where nothing else can act between them: for a contended mutex, or engine events close
together).

:class:`Fleet` holds the pending requests and their bookkeeping; its mixins hold the rest:
the plan pool (:mod:`hostsim.fleet_pool`), the FIFO mutex arithmetic (:mod:`hostsim.fleet_fifo`),
the optimistic windows (:mod:`hostsim.fleet_window`), the scalar path
(:mod:`hostsim.fleet_scalar`) and the record columns (:mod:`hostsim.fleet_records`).
"""

from __future__ import annotations

import math

import numpy as np

from hostsim.fleet_fifo import FleetFifo
from hostsim.fleet_pool import INF, PlanPool
from hostsim.fleet_records import FleetRecords
from hostsim.fleet_scalar import FleetScalar
from hostsim.fleet_window import COOLDOWN_MIN, WINDOW_ROWS, FleetWindow
from hostsim.model import Model
from hostsim.plan import as_rows
from hostsim.request_draws import expected_requests

__all__ = ["COMPACT_MIN", "EPOCH_ROWS", "INF", "SMALL_FLEET", "Fleet", "worth_a_fleet"]

EPOCH_ROWS = 1 << 16  # open-loop requests planned at a time (about)
#: in a run that two epochs cover, the first epoch is this many times shorter, the next ones 4x
#: longer each up to a full one: a host that serves far fewer requests than its vCPUs offer
#: (a saturated mutex, long sleeps) would otherwise plan many rows it never reaches
FIRST_EPOCH = 16
COMPACT_MIN = 1 << 16  # the plan pool is compacted from this size on
INIT_CHUNK = 1 << 16  # vCPUs made pending at a time when a run starts


def refill_size(expected: float) -> int:
    """Requests planned per vCPU at a time (closed loops, or beyond an epoch) for a vCPU that
    issues about ``expected`` in the run: a quarter of that, at most 64; but all of it (and
    one more) when that is 64 or fewer, since a planning call's fixed cost (about a
    millisecond) is then what the run's time is made of."""
    if expected <= 64:
        return math.ceil(expected) + 1
    return min(64, math.ceil(expected / 4))


#: a fleet expected to issue fewer requests than this in the whole run is not made: its vCPUs
#: run one request at a time (see :func:`worth_a_fleet`)
SMALL_FLEET = 128


def worth_a_fleet(m: Model, vcpus: np.ndarray) -> bool:
    """Whether the plain vCPUs ``vcpus`` are worth a fleet: they are expected to issue
    :data:`SMALL_FLEET` requests or more in the run. A fleet's planning calls and windows cost
    about a millisecond each whatever they hold, more than the one-at-a-time path spends on
    a hundred requests (about 40 us each), so a tiny fleet would make the fast engine slower
    than the reference. The estimate (:func:`hostsim.request_draws.expected_requests`) counts
    a closed loop's think times only: it errs towards a fleet."""
    if m.replay:
        return len(vcpus) > 0
    counts = np.bincount(m.topo.vcpu_group[vcpus], minlength=len(m.s.guests)).tolist()
    expected = sum(
        n * expected_requests(g.workload, m.s.duration_ns)
        for n, g in zip(counts, m.s.guests, strict=True)
        if n
    )
    return expected >= SMALL_FLEET


class Fleet(PlanPool, FleetFifo, FleetWindow, FleetScalar, FleetRecords):
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
        #: every vCPU replays a recording: its requests are its script's rows (planned by
        #: :meth:`_plan_script`, none of them open-loop: a row issues ``max(t, resume + think)``)
        self.scripted = m.replay
        is_open = [g.workload.kind in ("poisson", "bursty") and not m.replay for g in guests]
        self.open_loop = np.array(is_open, bool)[self.group]
        self.clocks = m.clocks  # the bursty groups' on/off clocks
        self.bursty = np.array([gi in self.clocks for gi in range(len(guests))], bool)[self.group]
        self.closed = vcpus[~self.open_loop[vcpus]]  # closed-loop members
        #: requests planned per vCPU at a time (closed loops, or beyond an epoch): see
        #: :func:`refill_size`
        per_vcpu = [expected_requests(g.workload, self.duration) for g in guests]
        if m.replay:  # a recording's rows, spread over its vCPUs
            rows = sum(len(x) for x in m.scripts.values()) or getattr(m._feed, "rows", 0)
            per_vcpu = [rows / max(1, n)] * len(guests)
        self.refill_of = np.array([refill_size(e) for e in per_vcpu], np.int64)
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
        expect = sum(g.count * g.vcpus * e for g, e in zip(guests, per_vcpu, strict=True))
        self._grow(int(min(4096 + 1.1 * expect, 4 * EPOCH_ROWS + n)))
        self.last_row = np.full(n, -1, np.int64)  # each vCPU's last planned row
        self.last_k = np.full(n, -1, np.int64)  # its request number
        self.last_arr = self.arr.copy()  # its arrival (open loop)
        self.next_gap = np.zeros(n, np.int64)  # the gap of the request after it
        self.head = np.full(n, -1, np.int64)  # each vCPU's first planned row
        self.planned_until = 0
        #: per vCPU: its group retries a BUSY enable (``retry = "on_idle"``); None: no group does
        idle = np.array([g.workload.retry == "on_idle" for g in guests], bool)
        self.on_idle = idle[self.group] if idle.any() and not m.replay else None
        self.retry_next = np.zeros(n, bool)  # its last planned request is retried: plan that next
        opens = [g for g, p in zip(guests, is_open, strict=True) if p]
        peak = [
            max(g.workload.rate_on_hz, g.workload.rate_off_hz)
            if g.workload.kind == "bursty"
            else g.workload.rate_hz
            for g in opens
        ]
        total = sum(g.count * g.vcpus * expected_requests(g.workload, 10**9) for g in opens)
        self.rate_max = max(peak, default=0.0)
        #: open-loop requests are planned an epoch at a time: about EPOCH_ROWS of them (see
        #: FIRST_EPOCH for a short run's first ones)
        full = max(1_000_000, round(EPOCH_ROWS / total * 1e9)) if total > 0 else INF
        self.epoch_full = full
        self.epoch_ns = full
        if total > 0 and 2 * full >= self.duration:  # a short run: a short first epoch (4
            # rows a vCPU at least: an epoch's cost grows with the vCPUs)
            rows = max(EPOCH_ROWS // FIRST_EPOCH, 4 * sum(g.count * g.vcpus for g in opens))
            self.epoch_ns = min(full, max(1_000_000, round(rows / total * 1e9)))
        self.processed = 0
        self.compacted_at = 0  # requests committed at the last compaction
        self.done: list[tuple[np.ndarray, ...]] = []  # committed requests, records not built yet
        self.n_done = 0
        #: optimistic windows (see :meth:`window`), open and closed loops alike
        self.optimistic = bool(len(vcpus))
        self.span = 1_000_000  # current window length (ns), adapted to what commits
        #: about WINDOW_ROWS requests at most in a window (cache-sized arrays)
        per_s = expect / max(self.duration / 1e9, 1e-9)
        self.max_span = max(1_000_000, round(WINDOW_ROWS / per_s * 1e9)) if per_s > 0 else INF
        self.cooldown = 0
        self.rest = COOLDOWN_MIN  # stretches to rest after a failed window (doubles while failing)
        #: sort keys ``key << vbits | vcpu`` fit in 63 bits when times stay below 2**(63-vbits)
        self.vbits = max(1, int(n - 1).bit_length())
        self.packed = self.duration + (1 << 40) < (1 << (63 - self.vbits))
        if len(vcpus):
            for v in np.array_split(vcpus, -(-len(vcpus) // INIT_CHUNK)):  # bounded temporaries
                if self.scripted:
                    break
                raw = self._gaps(v, np.zeros(len(v), np.int64))
                self.next_gap[v] = self._arrive(v, self.arr[v], raw) - self.arr[v]
            self.plan_epoch(int(starts.min()) + self.epoch_ns)
            for v in np.array_split(vcpus, -(-len(vcpus) // INIT_CHUNK)):
                self._next(v, self.k[v], starts.take(self.group[v]), self.row[v])
        self.head = None  # only first requests use it

    # --- the next request of each vCPU in ``v`` ------------------------------------------------
    def _next(self, v: np.ndarray, k: np.ndarray, resume: np.ndarray, prev: np.ndarray) -> None:
        """Make request ``k`` of each vCPU ``v`` pending: its previous request resumed at
        ``resume`` and was planned at pool row ``prev``. An open-loop request that is not
        planned yet stays so (*inexact*: its key is only bounded below by its issue) until
        something needs it (:meth:`_materialize`)."""
        idx = self._after(v, prev, lazy=True)
        self._pending(v, k, resume, idx, *self._at_think(v, idx))

    def _pending(
        self,
        v: np.ndarray,
        k: np.ndarray,
        resume: np.ndarray,
        idx: np.ndarray,
        at: np.ndarray,
        think: np.ndarray,
    ) -> None:
        """:meth:`_next` once the requests' pool rows ``idx`` (-1: not planned), arrivals and
        think times are known (:meth:`_after`, :meth:`_at_think`; a window has them)."""
        issue = np.maximum(at, resume + think)
        arrival = np.where(at >= 0, at, issue)
        done = issue >= self.duration
        self.k[v] = k
        self.arr[v] = arrival
        self.row[v] = idx
        self.issue[v] = np.where(done, INF, issue)
        self.key[v] = INF
        self.exact[v] = True
        lazy = np.flatnonzero((idx < 0) & ~done)
        if len(lazy):
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
            self._set_free(v[mx], rel[mx])
        k = self.k[v]
        self._commit(v, k, self.arr[v], issue, idx, mreq, grant, rel, resume)
        self._next(v, k + 1, resume, idx)

    def _commit(self, v: np.ndarray, *cols: np.ndarray) -> None:
        """Keep committed requests for their records: (vCPU, k, arrival, issue, pool row,
        mutex request, grant, release, resume)."""
        self.done.append((v, *cols))
        self.n_done += len(v)
        self.processed += len(v)

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
            rows = as_rows(a)
            rows[:kept] = rows[keep]  # in place: the pool's memory is reused
        nxt = p["nxt"][:kept]
        p["nxt"][:kept] = np.where(nxt >= 0, newpos[np.maximum(nxt, 0)], -1)
        self.pool_n = kept
        alive = self.key < INF
        self.row = np.where(alive & (self.row >= 0), newpos[np.maximum(self.row, 0)], -1)
        last = self.last_row
        self.last_row = np.where(alive & (last >= 0), newpos[np.maximum(last, 0)], -1)
