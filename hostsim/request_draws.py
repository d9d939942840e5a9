"""The draws of a set of requests: :class:`Block` (one array per column) and its :class:`Costs`
(each named cost drawn on first use), with the block shape of the reference engine's draw cache.

Split from :mod:`hostsim.model` (which makes them, keyed by request: see its docstring) so that
the containers the engines read are apart from how a scenario is prepared; values never depend
on a block's shape.
"""

from __future__ import annotations

import math

import numpy as np

from hostsim import draws
from hostsim.costs import PER_CALL_COSTS
from hostsim.scenario_types import Scenario, Workload

MAX_CHUNK_VCPUS = 1 << 20
BLOCK_TARGET = 1 << 20  # requests per block (vCPUs x consecutive requests)


def block_shape(n_vcpus: int, expected: float = 1e9) -> tuple[int, int]:
    """(vCPUs per block, requests per block) of the reference engine's draw cache for a group of
    ``n_vcpus`` vCPUs that each issue about ``expected`` requests in the run: about a third of
    what a vCPU issues, so that few cached draws go unused. A cache choice: values do not
    depend on it."""
    chunk = max(1, min(n_vcpus, MAX_CHUNK_VCPUS))
    per_block = math.ceil(max(expected, 1.0) / 3)
    return chunk, max(2, min(512, BLOCK_TARGET // chunk, per_block))


def expected_requests(w: Workload, duration_ns: int) -> float:
    """About how many requests one vCPU of a workload issues in the run (for block sizes)."""
    secs = duration_ns / 1e9
    if w.kind == "poisson":
        return w.rate_hz * secs
    if w.kind == "bursty":
        mean = (w.rate_on_hz * w.on_ms + w.rate_off_hz * w.off_ms) / max(w.on_ms + w.off_ms, 1e-9)
        return mean * secs
    if w.kind == "closed":
        assert w.think is not None
        return duration_ns / max(w.think.mean_ns, 1000.0)
    return 2.0


class Costs:
    """The cost draws of one block, generated on first use, one keyed generator per column.

    ``costs[name]`` is ``(rows, requests)`` for a per-request cost and ``(rows, requests,
    slots)`` for a per-call cost (host AQIC, TAPQ, sleeps); :meth:`slot` gives one call slot
    alone, so a vectorised caller draws the later slots only when some request needs them.
    A fixed cost is a broadcast constant: no draw at all.
    """

    def __init__(self, scenario: Scenario, group: int, lv: np.ndarray, k: np.ndarray) -> None:
        self._s = scenario
        self._group = group
        self._lv = lv
        self._k = k
        self._shape = lv.shape
        self._cols: dict[str, np.ndarray] = {}
        #: the same arrays by cost name (and call slot): no family string built on a hit
        self._named: dict[str | tuple[str, int], np.ndarray] = {}
        self.nbytes = 0

    def _draw(self, family: str, name: str) -> np.ndarray:
        cached = self._cols.get(family)
        if cached is None:
            dist = self._s.costs[name]
            if dist.kind == "fixed":
                cached = np.broadcast_to(np.int64(dist.fixed_ns), self._shape)
            else:
                gen = draws.keyed(self._s.seed, family, self._group, self._lv, self._k)
                cached = dist.sample(gen, self._shape)
                self.nbytes += cached.nbytes
            self._cols[family] = cached
        return cached

    def subset(self, name: str, sel: np.ndarray | slice, j: int | None = None) -> np.ndarray:
        """Cost ``name`` (call slot ``j`` of a per-call cost) of the requests ``sel`` (an index
        or mask into 1-D keys) alone: the same values as the full column, drawn only there."""
        family = draws.cost_family(name, j)
        cached = self._cols.get(family)
        if cached is not None:
            return np.broadcast_to(cached, self._shape)[sel]
        dist = self._s.costs[name]
        lv, k = self._lv[sel], self._k[sel]
        if dist.kind == "fixed":
            return np.full(lv.shape, dist.fixed_ns, np.int64)
        return dist.sample(draws.keyed(self._s.seed, family, self._group, lv, k), lv.shape)

    def slot(self, name: str, j: int) -> np.ndarray:
        """Call slot ``j`` of a per-call cost."""
        cached = self._named.get((name, j))
        if cached is None:
            cached = self._named[name, j] = self._draw(draws.cost_family(name, j), name)
        return cached

    def __getitem__(self, name: str) -> np.ndarray:
        cached = self._named.get(name)  # (the one-at-a-time paths ask by name, many times)
        if cached is not None:
            return cached
        width = PER_CALL_COSTS.get(name)
        if width is None:
            cached = self._draw(draws.cost_family(name), name)
        else:
            cached = np.stack([self.slot(name, j) for j in range(width)], axis=-1)
        self._named[name] = cached
        return cached


class Block:
    """Draws of a set of requests (a cache block of :func:`block_shape`, or the rows a fast
    engine plan needs): one array per column, each of the requests' shape. Hardware answers are
    kept as uniforms (``au`` ...; None when every queue answers deterministically) so that they
    can be mapped through the profile of whichever queue a request really addresses;
    ``aqic``/``tapq_*``/``pin_ok`` are that mapping for the block's own APQN choice."""

    __slots__ = (
        "apqn",
        "aqic",
        "assigned",
        "au",
        "costs",
        "enable",
        "gap",
        "iu",
        "nbytes",
        "pin_ok",
        "poll",
        "pu",
        "qu",
        "regs",
        "tapq_irq",
        "tapq_rc",
        "tu",
    )
    apqn: np.ndarray
    aqic: np.ndarray
    assigned: np.ndarray
    au: np.ndarray | None
    costs: Costs
    enable: np.ndarray
    gap: np.ndarray
    iu: np.ndarray | None
    nbytes: int
    pin_ok: np.ndarray
    poll: np.ndarray | None
    pu: np.ndarray | None
    qu: np.ndarray
    regs: dict[str, np.ndarray]
    tapq_irq: np.ndarray
    tapq_rc: np.ndarray
    tu: np.ndarray | None
