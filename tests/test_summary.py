"""RunStats: streaming statistics over records, checked against plain numpy on the same data."""

from __future__ import annotations

import json
import math
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hostsim import records
from hostsim.records import HOST_EVENT_DTYPE, PATH_NAMES, Path
from hostsim.summary import (
    FIO_PERCENTILES,
    RunStats,
    counts_indexes,
    counts_view,
    dumps_summary,
    exact_sums,
    histogram_percentiles,
    new_histogram,
    percentile_key,
    record_values,
)
from tests.synthetic_records import make_host_events, make_records


def nearest_rank(sorted_values: np.ndarray, p: float) -> int:
    """HdrHistogram's percentile definition on exact data: the value of rank round(p * N)."""
    n = sorted_values.size
    rank = max(int(p * n / 100 + 0.5), 1)
    return int(sorted_values[rank - 1])


# --- histogram helpers ------------------------------------------------------------------------
def test_counts_indexes_match_the_package():
    """The vectorised bucket index is the package's ``_counts_index_for``, value by value."""
    h = new_histogram()
    rng = np.random.default_rng(1)
    values = np.concatenate(
        [
            np.arange(0, 5000),
            [2047, 2048, 4095, 4096, 2**20, 2**20 - 1, h.highest_trackable_value],
            rng.integers(0, h.highest_trackable_value, 5000),
            (10 ** rng.uniform(0, 12, 5000)).astype(np.int64),
        ]
    ).astype(np.int64)
    expected = [h._counts_index_for(int(v)) for v in values]
    assert counts_indexes(h, values).tolist() == expected


def test_record_values_equals_record_value():
    rng = np.random.default_rng(2)
    values = rng.lognormal(np.log(5000), 1.5, 20_000).astype(np.int64)
    a, b = new_histogram(), new_histogram()
    for v in values.tolist():
        a.record_value(v)
    assert record_values(b, values) == 0
    assert np.array_equal(counts_view(a), counts_view(b))
    assert (a.total_count, a.min_value, a.max_value) == (b.total_count, b.min_value, b.max_value)
    ours = histogram_percentiles(b, FIO_PERCENTILES)
    assert ours == {p: a.get_value_at_percentile(p) for p in FIO_PERCENTILES}


def test_record_values_clamps_and_rejects_negative():
    h = new_histogram(highest_ns=1_000_000)
    assert record_values(h, np.array([5, 2_000_000_000])) == 1
    assert h.total_count == 2
    with pytest.raises(ValueError, match="negative"):
        record_values(h, np.array([-1]))


def test_exact_sums_are_exact():
    rng = np.random.default_rng(3)
    values = rng.integers(0, 2**62, 10_000)
    s, sq = exact_sums(values)
    py = [int(v) for v in values]
    assert s == sum(py)
    assert sq == sum(v * v for v in py)
    assert exact_sums(np.array([], np.int64)) == (0, 0)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 2**40 - 1), min_size=1, max_size=300), st.integers(1, 20))
def test_exact_sums_fast_path_is_exact(values: list[int], repeat: int) -> None:
    """Values under 2**40 take the wrapping path (squares past 2**64 are picked by a float sum)."""
    v = np.array(values * repeat, np.int64)
    assert exact_sums(v) == (sum(values) * repeat, sum(x * x for x in values) * repeat)


# --- summary against numpy --------------------------------------------------------------------
def test_path_statistics_match_numpy():
    rec = make_records(50_000, seed=4)
    st = RunStats()
    for chunk in np.array_split(rec, 7):
        st.add_records(chunk)
    s = st.summary()
    lat = records.latency_ns(rec)
    for p in Path:
        name = p.name.lower()
        v = np.sort(lat[rec["path"] == p])
        got = s["paths"][name]["lat_ns"]
        assert s["paths"][name]["N"] == got["N"] == v.size > 0
        assert got["min"] == int(v.min())
        assert got["max"] == int(v.max())
        assert got["mean"] == round(int(v.sum()) / v.size, 3)
        assert got["stddev"] == pytest.approx(float(np.std(v, ddof=1)), abs=1e-3, rel=1e-9)
        for q in FIO_PERCENTILES:
            exact = nearest_rank(v, q)
            assert got["percentile"][percentile_key(q)] == pytest.approx(exact, rel=1e-3)
    all_ = s["all"]["lat_ns"]
    assert s["all"]["N"] == rec.size
    assert (all_["min"], all_["max"]) == (int(lat.min()), int(lat.max()))
    assert sum(s["counts"]["path"].values()) == rec.size


def test_percentiles_are_ordered_and_within_min_max():
    st = RunStats()
    st.add_records(make_records(300, seed=5))
    for body in [*st.summary()["paths"].values(), st.summary()["all"]]:
        lat = body["lat_ns"]
        values = [lat["percentile"][percentile_key(p)] for p in FIO_PERCENTILES]
        assert values == sorted(values)
        assert lat["min"] <= values[0] and values[-1] <= lat["max"]


def test_fio_shape():
    st = RunStats()
    st.add_records(make_records(1000, seed=6))
    s = st.summary({"seed": 6, "engine": "fast"})
    assert s["hostsim"] == {"seed": 6, "engine": "fast"}
    assert set(s["paths"]) == set(PATH_NAMES)
    lat = s["paths"]["hook_enable"]["lat_ns"]
    assert set(lat) == {"min", "max", "mean", "stddev", "N", "percentile"}
    assert list(lat["percentile"]) == [
        "1.000000", "5.000000", "10.000000", "20.000000", "30.000000", "40.000000", "50.000000",
        "60.000000", "70.000000", "80.000000", "90.000000", "95.000000", "99.000000",
        "99.500000", "99.900000", "99.950000", "99.990000",
    ]  # fmt: skip
    assert set(s["mutex"]) >= {"utilisation", "wait_ns", "hold_ns", "longest_hold_ns"}
    assert "throughput_per_s" in s


def test_mutex_wait_and_hold_match_numpy():
    rec = make_records(20_000, seed=7)
    st = RunStats()
    st.add_records(rec)
    m = st.summary()["mutex"]
    taken = rec[rec["t_mutex_grant"] >= 0]
    wait = taken["t_mutex_grant"] - taken["t_mutex_req"]
    hold = taken["t_mutex_rel"] - taken["t_mutex_grant"]
    for got, v in ((m["wait_ns"], wait), (m["hold_ns"], hold)):
        assert got["N"] == v.size
        assert (got["min"], got["max"]) == (int(v.min()), int(v.max()))
        assert got["mean"] == round(int(v.sum()) / v.size, 3)
    i = int(np.argmax(hold))
    assert m["longest_hold_ns"] == int(hold[i])
    by = m["longest_hold_by"]
    assert by["type"] == "vcpu"
    assert (by["vcpu"], by["seq"]) == (int(taken["vcpu"][i]), int(taken["seq"][i]))
    assert by["path"] == PATH_NAMES[int(taken["path"][i])]


def test_counts_per_kind_code_and_cc():
    rec = make_records(5000, seed=8)
    st = RunStats()
    st.add_records(rec)
    c = st.summary()["counts"]
    assert c["kind"]["hook_handled"] == int(np.count_nonzero(rec["kind"] == 2))
    assert c["response_code"]["none"] == int(np.count_nonzero(rec["response_code"] == -1))
    assert c["response_code"]["6"] == int(np.count_nonzero(rec["response_code"] == 6))
    assert c["cc"]["3"] == int(np.count_nonzero(rec["cc"] == 3))
    assert sum(c["cc"].values()) == c["measured"] == rec.size


# --- window: warm-up, utilisation, throughput -------------------------------------------------
def test_warmup_is_excluded_and_counted():
    rec = make_records(20_000, seed=9, span_ns=10_000_000)
    warmup = 3_000_000
    st = RunStats(warmup_ns=warmup)
    st.add_records(rec)
    s = st.summary()
    measured = rec[rec["t_issue"] >= warmup]
    assert s["counts"]["warmup"] == int(np.count_nonzero(rec["t_issue"] < warmup))
    assert s["counts"]["measured"] == s["all"]["N"] == measured.size
    lat = records.latency_ns(measured)
    assert s["all"]["lat_ns"]["min"] == int(lat.min())
    assert s["all"]["lat_ns"]["mean"] == round(int(lat.sum()) / lat.size, 3)
    assert s["window"]["start_ns"] == warmup
    # a request issued in the warm-up that resumed after it still counts as a completion
    done = rec["t_resume"]
    assert s["counts"]["completed_in_window"] == int(np.count_nonzero(done >= warmup))


def test_utilisation_is_clipped_to_the_window():
    """Holds are cut at warm-up and at the end; a hold never released lasts to the end."""
    st = RunStats(warmup_ns=100, end_ns=1100)
    st.add_host_events(make_host_events(grants=[50, 500, 1050, 1080], holds=[100, 100, 150, -1]))
    m = st.summary()["mutex"]
    assert m["busy_ns"] == 50 + 100 + 50 + 20
    assert m["utilisation"] == pytest.approx(220 / 1000)
    assert m["longest_hold_ns"] == 150
    assert m["longest_hold_by"]["type"] == "host_event"
    assert m["longest_hold_by"]["event"] == 2


def test_utilisation_without_end_uses_the_last_timestamp():
    st = RunStats(warmup_ns=0)
    st.add_host_events(make_host_events(grants=[0, 400], holds=[100, -1], t_at=[0, 400]))
    st.add_host_events(make_host_events(grants=[900], holds=[100]))
    s = st.summary()
    assert s["window"]["end_ns"] == 1000
    # the open hold from 400 runs until the end (1000): 100 + 600 + 100
    assert s["mutex"]["busy_ns"] == 800
    assert s["mutex"]["utilisation"] == pytest.approx(0.8)


def test_utilisation_of_request_holds():
    rec = make_records(10_000, seed=10, span_ns=5_000_000)
    warmup, end = 1_000_000, 4_000_000
    st = RunStats(warmup_ns=warmup, end_ns=end)
    st.add_records(rec)
    taken = rec[rec["t_mutex_grant"] >= 0]
    start = np.maximum(taken["t_mutex_grant"], warmup)
    stop = np.minimum(taken["t_mutex_rel"], end)
    busy = int(np.maximum(stop - start, 0).sum())
    m = st.summary()["mutex"]
    assert m["busy_ns"] == busy
    assert m["utilisation"] == round(busy / (end - warmup), 6)
    assert 0 < m["utilisation"] <= 1


def test_throughput():
    rec = make_records(10_000, seed=11, span_ns=5_000_000)
    warmup, end = 1_000_000, 4_000_000
    st = RunStats(warmup_ns=warmup, end_ns=end)
    st.add_records(rec)
    s = st.summary()
    n = int(np.count_nonzero((rec["t_resume"] >= warmup) & (rec["t_resume"] <= end)))
    assert s["counts"]["completed_in_window"] == n
    assert s["throughput_per_s"] == round(n * 1e9 / (end - warmup), 3)


def test_incomplete_requests_are_counted_not_measured():
    rec = make_records(100, seed=12)
    rec["t_resume"][:10] = -1
    st = RunStats()
    st.add_records(rec)
    c = st.summary()["counts"]
    assert (c["incomplete"], c["measured"]) == (10, 90)


# --- robustness, determinism, memory ----------------------------------------------------------
def test_bad_input_is_refused():
    st = RunStats()
    with pytest.raises(TypeError, match="dtype"):
        st.add_records(np.zeros(3, HOST_EVENT_DTYPE))
    rec = make_records(10, seed=13)
    rec["t_resume"][3] = rec["t_issue"][3] - 1
    with pytest.raises(ValueError, match="out of order"):
        st.add_records(rec)
    with pytest.raises(ValueError):
        RunStats(warmup_ns=10, end_ns=5)


def test_empty_run_summarises():
    s = RunStats(warmup_ns=0, end_ns=1000).summary({"seed": 1})
    assert s["all"]["N"] == 0 and s["all"]["lat_ns"]["max"] == 0
    assert s["mutex"]["longest_hold_by"] is None
    assert s["throughput_per_s"] == 0.0
    json.loads(dumps_summary(s))


def test_chunking_and_order_do_not_change_the_summary():
    rec = make_records(30_000, seed=14)
    ev = make_host_events(grants=[10**8, 2 * 10**8], holds=[5000, 5000])
    one = RunStats(warmup_ns=1_000_000)
    one.add_records(rec)
    one.add_host_events(ev)
    many = RunStats(warmup_ns=1_000_000)
    shuffled = rec[np.random.default_rng(0).permutation(rec.size)]
    for chunk in np.array_split(shuffled, 37):
        many.add_records(chunk)
    many.add_host_events(ev[::-1])
    assert dumps_summary(one.summary({"seed": 14})) == dumps_summary(many.summary({"seed": 14}))


def test_summary_json_is_canonical():
    st = RunStats()
    st.add_records(make_records(1000, seed=15))
    text = dumps_summary(st.summary({"b": 1, "a": 2}))
    assert text.endswith("}\n")
    loaded = json.loads(text)
    assert text == dumps_summary(loaded)  # a fixed point: loading and dumping changes nothing
    assert list(loaded["hostsim"]) == ["a", "b"] and list(loaded) == sorted(loaded)
    # percentile keys in numeric order, as fio writes them ("5.000000" before "40.000000")
    keys = list(loaded["all"]["lat_ns"]["percentile"])
    assert keys == [percentile_key(p) for p in FIO_PERCENTILES]
    assert keys.index("5.000000") < keys.index("40.000000")
    assert text.index('"5.000000"') < text.index('"40.000000"')
    assert not any(math.isnan(x) for x in [st.summary()["all"]["lat_ns"]["stddev"]])


def test_memory_stays_bounded():
    """Feeding 50 more chunks leaves the state the size it was: only the histograms hold data."""
    chunks = [make_records(5000, seed=100 + i, t0=i * 10**7) for i in range(55)]
    st = RunStats()
    for c in chunks[:5]:
        st.add_records(c)
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for c in chunks[5:]:
        st.add_records(c)
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(d.size_diff for d in after.compare_to(before, "filename"))
    assert st.n_records == 55 * 5000
    assert grown < 64 * 1024, f"state grew by {grown} bytes over 50 chunks"


@given(
    st.lists(st.integers(0, 10**12), min_size=1, max_size=300),
    st.lists(st.floats(0.0, 100.0), min_size=1, max_size=12),
)
@settings(max_examples=200, deadline=None)
def test_percentiles_equal_the_packages_own(values: list[int], percentiles: list[float]) -> None:
    """The vectorised percentile read gives the package's get_value_at_percentile, for any
    values and any percentiles (0 and 100 included)."""
    h = new_histogram()
    record_values(h, np.array(values, np.int64))
    wanted = [*percentiles, 0.0, 100.0, 50.0]
    ours = histogram_percentiles(h, wanted)
    assert ours == {p: h.get_value_at_percentile(p) for p in wanted}
