"""Moments.add's shortcuts give what adding value by value gives: a batch of one value, a batch
added to several statistics at once, and fio buckets read from the histogram's cells."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from hostsim.fio_json import bucket_counts
from hostsim.histograms import (
    cell_lows,
    counts_indexes,
    counts_view,
    new_histogram,
    record_values,
)
from hostsim.moments import Moments, exact_sums


def plain(values: np.ndarray, fio: bool, highest: int) -> tuple:
    """What a batch must add: from the one-value-at-a-time definitions."""
    h = new_histogram(highest)
    clamped = record_values(h, values)
    s, sq = exact_sums(values)
    buckets = bucket_counts(values).tolist() if fio else None
    hist = (counts_view(h).tolist(), h.total_count, h.min_value, h.max_value)
    return len(values), int(values.min()), int(values.max()), s, sq, clamped, hist, buckets


def state(m: Moments) -> tuple:
    h = m.hist
    hist = (counts_view(h).tolist(), h.total_count, h.min_value, h.max_value)
    buckets = None if m.buckets is None else m.buckets.tolist()
    return m.count, m.min, m.max, m.sum, m.sumsq, m.clamped, hist, buckets


def test_cells_are_in_value_order_and_start_where_the_package_says() -> None:
    h = new_histogram()
    lows = cell_lows(h)
    index = np.arange(len(lows))
    assert counts_indexes(h, lows).tolist() == index.tolist()
    assert counts_indexes(h, lows[1:] - 1).tolist() == index[:-1].tolist()
    assert [h.get_value_from_index(int(i)) for i in index[::997]] == lows[::997].tolist()


values = st.one_of(
    st.lists(st.integers(0, 3 * 10**12), min_size=1, max_size=300),
    st.tuples(st.integers(0, 10**13), st.integers(1, 50)).map(lambda t: [t[0]] * t[1]),
    st.lists(st.sampled_from([0, 1, 2, 999, 1000, 1999, 2000, 749_999, 750_000, 2 * 10**9]),
             min_size=1, max_size=50),
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(values, st.booleans(), st.sampled_from([1_000_000, 3_600_000_000_000]))
def test_a_batch_adds_what_its_values_add(xs: list[int], fio: bool, highest: int) -> None:
    v = np.array(xs, np.int64)
    m = Moments(highest, fio_buckets=fio)
    m.add(v)
    assert state(m) == plain(v, fio, highest)


@settings(max_examples=100, deadline=None)
@given(values, values)
def test_also_gets_the_same_values(first: list[int], second: list[int]) -> None:
    """A path's statistic and the total's, fed together, end as if each were fed alone."""
    a, b = np.array(first, np.int64), np.array(second, np.int64)
    path, total = Moments(fio_buckets=True), Moments()
    alone_path, alone_total = Moments(fio_buckets=True), Moments()
    for batch in (a, b):
        path.add(batch, total)
        alone_path.add(batch)
        alone_total.add(batch)
    assert state(path) == state(alone_path)
    assert state(total) == state(alone_total)
