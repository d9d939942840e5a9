"""Exact running moments of a latency statistic and fio's ``lat_ns`` object built from them.

:class:`Moments` accumulates count, min, max, sum and sum of squares as Python ints (exact, so
the mean and standard deviation do not depend on how the values were chunked), one HdrHistogram
(:mod:`hostsim.histograms`) for the percentiles and, for a path's latency, fio's latency buckets
(:mod:`hostsim.fio_json`). :data:`FIO_PERCENTILES` and :func:`percentile_key` are fio's percentile
list and its key format, shared by the code that reads a summary back (tables, comparisons).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from hdrh.histogram import HdrHistogram

from hostsim.fio_json import LAT_EDGES_NS, N_LAT_BUCKETS, bucket_counts
from hostsim.histograms import (
    HIGHEST_NS,
    add_counts,
    cell_lows,
    counts_indexes,
    histogram_percentiles,
    new_histogram,
)

#: fio's default percentile list (``--percentile_list``).
FIO_PERCENTILES: tuple[float, ...] = (
    1.0, 5.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0,
    90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99,
)  # fmt: skip


def percentile_key(p: float) -> str:
    """fio's key for a percentile: ``99.9`` -> ``"99.900000"``."""
    return f"{p:.6f}"


def exact_sums(values: np.ndarray) -> tuple[int, int]:
    """Exact ``(sum, sum of squares)`` of non-negative int64 values as Python ints.

    The values are split into 16-bit limbs so that every partial sum fits a uint64 (for fewer
    than 2**32 values), then recombined with Python's unbounded ints.
    """
    v = np.asarray(values, dtype=np.int64)
    if v.size == 0:
        return 0, 0
    if v.size >= 2**32:
        raise ValueError("exact_sums takes fewer than 2**32 values per call")
    hi = int(v.max())
    if hi < 2**40 and hi * v.size < 2**62:
        # The sum fits an int64; the sum of squares is exact modulo 2**64 (wrapping uint64
        # arithmetic), and a float64 sum (relative error < 1e-9 here) picks the multiple.
        u = v.astype(np.uint64)
        wrapped = int(np.dot(u, u))
        f = v.astype(np.float64)
        # (einsum, not np.dot: a float dot goes to BLAS, whose threads then spin on a core)
        approx = float(np.einsum("i,i->", f, f))
        if approx < 2.0**88:
            k = round((approx - wrapped) / 2.0**64)
            return int(v.sum()), wrapped + k * 2**64
    u = v.astype(np.uint64)
    limbs = [(u >> np.uint64(16 * i)) & np.uint64(0xFFFF) for i in range(4)]
    total = sum(int(limb.sum(dtype=np.uint64)) << (16 * i) for i, limb in enumerate(limbs))
    squares = 0
    for i in range(4):
        if not limbs[i].any():
            continue
        for j in range(i, 4):
            s = int((limbs[i] * limbs[j]).sum(dtype=np.uint64))
            squares += (s << (16 * (i + j))) * (1 if i == j else 2)
    return total, squares


#: fio bucket of each counts-array cell, per histogram shape (see :func:`_cell_buckets`)
_CELL_BUCKETS: dict[tuple[int, int, int], np.ndarray] = {}


def _cell_buckets(hist: HdrHistogram) -> np.ndarray:
    """fio's latency bucket of every counts-array cell of histograms shaped like ``hist``;
    -1 for a cell that a bucket edge splits (its values are bucketed one by one)."""
    shape = (
        int(hist.encoder.payload.counts_len),
        int(hist.unit_magnitude),
        int(hist.sub_bucket_half_count_magnitude),
    )
    table = _CELL_BUCKETS.get(shape)
    if table is None:
        lows = cell_lows(hist)
        highs = np.empty_like(lows)
        highs[:-1] = lows[1:] - 1
        highs[-1] = np.iinfo(np.int64).max
        edges = np.asarray(LAT_EDGES_NS, dtype=np.int64)
        first = np.searchsorted(edges, lows, side="right")
        split = first != np.searchsorted(edges, highs, side="right")
        table = _CELL_BUCKETS[shape] = np.where(split, -1, first)
    return table


def fio_buckets(hist: HdrHistogram, v: np.ndarray, index: np.ndarray | int, lo: int) -> np.ndarray:
    """fio's latency bucket counts of values ``v`` (:func:`hostsim.fio_json.bucket_counts`),
    read from their counts indexes ``index`` (one index: all ``v`` equal ``lo``): a table look-up
    instead of a binary search per value. Values above the histogram's range are in its top
    cell, which lies past fio's last edge."""
    if not isinstance(index, np.ndarray):
        return bucket_counts(np.array([lo])) * len(v)
    cells = _cell_buckets(hist)[index]
    split = cells < 0
    if split.any():
        cells[split] = np.searchsorted(np.asarray(LAT_EDGES_NS, np.int64), v[split], side="right")
    return np.bincount(cells, minlength=N_LAT_BUCKETS).astype(np.int64)


class Moments:
    """Exact running count, min, max, sum and sum of squares (Python ints), plus a histogram;
    with ``fio_buckets``, also exact counts in fio's latency buckets (:mod:`hostsim.fio_json`)."""

    __slots__ = ("buckets", "clamped", "count", "hist", "max", "min", "sum", "sumsq")

    def __init__(self, highest_ns: int = HIGHEST_NS, *, fio_buckets: bool = False) -> None:
        self.buckets: np.ndarray | None = np.zeros(N_LAT_BUCKETS, np.int64) if fio_buckets else None
        self.count = 0
        self.min: int | None = None
        self.max: int | None = None
        self.sum = 0
        self.sumsq = 0
        self.clamped = 0
        self.hist = new_histogram(highest_ns)

    def add(self, values: np.ndarray, *also: Moments) -> None:
        """Add a batch of non-negative integer values; ``also``: more statistics, of the same
        histogram range, that get the same values (each sum, index and bucket is computed
        once: a batch whose requests all take one path goes to that path and to the total)."""
        v = np.asarray(values, dtype=np.int64)
        n = int(v.size)
        if n == 0:
            return
        lo, hi = int(v.min()), int(v.max())
        if lo < 0:
            raise ValueError(f"negative duration {lo} ns: a record's timestamps are out of order")
        hist = self.hist
        top = int(hist.highest_trackable_value)
        if any(int(m.hist.highest_trackable_value) != top for m in also):
            raise ValueError("Moments.add: the statistics' histograms differ in range")
        clamped = 0 if hi <= top else int(np.count_nonzero(v > top))
        index: np.ndarray | int
        if lo == hi:  # one value (an idle wait, a fixed delay): no pass over the batch
            s, sq = n * lo, n * lo * lo
            index = int(counts_indexes(hist, np.array([min(lo, top)]))[0])
        else:
            s, sq = exact_sums(v)
            index = counts_indexes(hist, np.minimum(v, top) if clamped else v)
        buckets: np.ndarray | None = None
        for m in (self, *also):
            m.count += n
            m.min = lo if m.min is None else min(m.min, lo)
            m.max = hi if m.max is None else max(m.max, hi)
            m.sum += s
            m.sumsq += sq
            m.clamped += clamped
            add_counts(m.hist, index, n, min(lo, top), min(hi, top))
            if m.buckets is not None:
                if buckets is None:
                    buckets = fio_buckets(hist, v, index, lo)
                m.buckets += buckets

    def lat_ns(self) -> dict[str, Any]:
        """fio's ``lat_ns`` object: min, max, mean, stddev (sample), N and the percentiles."""
        n = self.count
        if n == 0:
            pct = {percentile_key(p): 0 for p in FIO_PERCENTILES}
            return {"N": 0, "min": 0, "max": 0, "mean": 0.0, "stddev": 0.0, "percentile": pct}
        assert self.min is not None and self.max is not None
        var_num = n * self.sumsq - self.sum * self.sum  # exact: n^2 * population variance
        stddev = math.sqrt(var_num / (n * (n - 1))) if n > 1 else 0.0
        values = histogram_percentiles(self.hist, FIO_PERCENTILES)
        pct = {percentile_key(p): min(max(values[p], self.min), self.max) for p in FIO_PERCENTILES}
        return {
            "N": n,
            "min": self.min,
            "max": self.max,
            "mean": round(self.sum / n, 3),
            "stddev": round(stddev, 3),
            "percentile": pct,
        }
