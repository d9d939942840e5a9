"""HdrHistogram helpers for latency statistics: vectorised recording and percentile reads.

The ``hdrhistogram`` package (module ``hdrh``) records one value per Python call; a run records
millions. The functions here record a whole numpy array at once by computing every value's
counts-array index (the package's own bucket arithmetic, vectorised) and adding a bincount into
the counts array in place, so a histogram filled here is identical, count for count, to one
filled value by value. :class:`hostsim.moments.Moments` keeps one per statistic;
:mod:`hostsim.hgrm` reads the counts array to write ``.hgrm`` files.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from hdrh.histogram import HdrHistogram

#: Largest value the histograms resolve: one hour in ns. Larger values are clamped into the top.
HIGHEST_NS = 3_600_000_000_000
SIGNIFICANT_FIGURES = 3


def new_histogram(highest_ns: int = HIGHEST_NS) -> HdrHistogram:
    """An empty latency histogram: 1 ns to ``highest_ns``, 3 significant digits."""
    if not 2 <= highest_ns < 2**52:
        raise ValueError(f"highest_ns must be in [2, 2**52), got {highest_ns}")
    return HdrHistogram(1, highest_ns, SIGNIFICANT_FIGURES)


def counts_view(hist: HdrHistogram) -> np.ndarray:
    """The histogram's counts array as a writable numpy view (no copy)."""
    return np.ctypeslib.as_array(hist.counts)


def counts_indexes(hist: HdrHistogram, values: np.ndarray) -> np.ndarray:
    """Counts-array index of each value: a vectorised ``HdrHistogram._counts_index_for``.

    ``values`` must be non-negative and below 2**52 (exact in float64, used for the bit length).
    """
    v = np.asarray(values, dtype=np.int64)
    m = v | np.int64(hist.sub_bucket_mask)
    # The bit length of m (>= 1, exact in float64) is its float64 exponent field minus 1022
    # (frexp's exponent, read from the bits: several times faster than np.frexp).
    bucket = m.astype(np.float64).view(np.int64) >> np.int64(52)
    bucket -= 1022 + hist.unit_magnitude + hist.sub_bucket_half_count_magnitude + 1
    sub_bucket = v >> (bucket + hist.unit_magnitude)
    return (
        ((bucket + 1) << hist.sub_bucket_half_count_magnitude)
        + sub_bucket
        - (hist.sub_bucket_half_count)
    )


def cell_lows(hist: HdrHistogram) -> np.ndarray:
    """The lowest value of every counts-array cell (``get_value_from_index``, vectorised;
    increasing, as the cells are ordered by value)."""
    index = np.arange(hist.encoder.payload.counts_len, dtype=np.int64)
    half_mag = hist.sub_bucket_half_count_magnitude
    bucket = (index >> half_mag) - 1
    sub = (index & (hist.sub_bucket_half_count - 1)) + hist.sub_bucket_half_count
    low = bucket < 0
    sub[low] -= hist.sub_bucket_half_count
    bucket[low] = 0
    return sub << (bucket + hist.unit_magnitude)


def add_counts(hist: HdrHistogram, index: np.ndarray | int, n: int, lo: int, hi: int) -> None:
    """Record ``n`` values whose counts indexes are ``index`` (an array, or one index for
    ``n`` equal values), least ``lo`` and greatest ``hi`` (both already clamped)."""
    view = counts_view(hist)
    if isinstance(index, np.ndarray):
        view += np.bincount(index, minlength=view.size).astype(view.dtype)
    else:
        view[index] += n
    hist.total_count += n
    hist.min_value = min(hist.min_value, lo)
    hist.max_value = max(hist.max_value, hi)


def record_values(hist: HdrHistogram, values: np.ndarray) -> int:
    """Record many values at once (a bincount over counts indexes); returns how many were clamped.

    Values above the histogram's highest trackable value are recorded as that value.
    """
    v = np.asarray(values, dtype=np.int64)
    if v.size == 0:
        return 0
    vmin = int(v.min())
    if vmin < 0:
        raise ValueError(f"cannot record a negative value ({vmin}) in a histogram")
    top = int(hist.highest_trackable_value)
    clamped = int(np.count_nonzero(v > top))
    if clamped:
        v = np.minimum(v, top)
    add_counts(hist, counts_indexes(hist, v), int(v.size), int(v.min()), int(v.max()))
    return clamped


def histogram_percentiles(hist: HdrHistogram, percentiles: Iterable[float]) -> dict[float, int]:
    """HdrHistogram's value at each percentile (``get_value_at_percentile``'s), vectorised:
    the first counts index whose running count reaches the package's target count
    (``get_target_count_at_percentile``), by one cumulative sum and a search instead of its
    Python loop over every bucket; then its highest equivalent value (lowest for 0)."""
    wanted = list(percentiles)
    total = int(hist.total_count)
    if total == 0:
        return {p: 0 for p in wanted}
    cum = np.cumsum(counts_view(hist)[: hist.encoder.payload.counts_len], dtype=np.int64)
    out: dict[float, int] = {}
    for p in wanted:
        target = hist.get_target_count_at_percentile(p)
        index = int(np.searchsorted(cum, target, side="left"))
        if index >= len(cum):  # never reached (a count above the counts): the package's 0
            out[p] = 0
            continue
        value = hist.get_value_from_index(index)
        if p:
            out[p] = int(hist.get_highest_equivalent_value(value))
        else:
            out[p] = int(hist.get_lowest_equivalent_value(value))
    return out
