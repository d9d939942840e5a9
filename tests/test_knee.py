"""Knee finding on synthetic load curves whose knee is known in closed form."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hostsim.knee import find_knee, knee_table


def mm1_p99(lam: np.ndarray, mu: float) -> np.ndarray:
    """p99 of the M/M/1 sojourn time: exponential with rate mu - lambda."""
    return math.log(100) / (mu - lam)


def test_mm1_p99_knee_is_where_p99_triples():
    mu = 1000.0
    lam = np.arange(50.0, 1000.0, 50.0)
    p99 = mm1_p99(lam, mu)
    # p99 > 3 x p99(50) <=> mu - lam < (mu - 50) / 3 <=> lam > 683.3: the first grid load is 700.
    k = find_knee(lam, p99, lam, multiple=3.0)
    assert k.load == 700.0
    assert k.last_ok_load == 650.0
    assert k.criterion == "p99"  # an M/M/1 below saturation carries everything offered
    assert k.baseline_p99 == pytest.approx(p99[0])
    assert k.threshold_p99 == pytest.approx(3 * p99[0])
    assert k.p99_at_knee == pytest.approx(mm1_p99(np.array(700.0), mu))
    # A larger multiple moves the knee right: p99 > 5 x base <=> lam > 810.
    assert find_knee(lam, p99, lam, multiple=5.0).load == 850.0


def test_saturating_throughput_knee_is_where_growth_halves():
    cap = 600.0
    lam = np.arange(25.0, 2000.0, 25.0)
    thr = cap * (1 - np.exp(-lam / cap))  # marginal throughput exp(-lam / cap) < 0.5 past cap ln 2
    flat = np.full(lam.size, 10.0)
    k = find_knee(lam, flat, thr, growth=0.5)
    assert k.criterion == "throughput"
    # The step into the knee is the first whose secant slope, about the derivative at the step's
    # midpoint, falls below one half: the first midpoint past cap ln 2 = 415.9 is 437.5.
    assert k.load - 12.5 > cap * math.log(2) >= k.load - 37.5
    assert k.load == 450.0
    assert k.efficiency_at_knee < 0.5
    assert k.last_ok_load == k.load - 25


def test_hard_cap_and_both_criteria():
    lam = np.array([100.0, 200.0, 300.0, 400.0, 500.0])
    thr = np.minimum(lam, 300.0)
    k = find_knee(lam, np.full(5, 1.0), thr)
    assert (k.load, k.criterion, k.efficiency_at_knee) == (400.0, "throughput", 0.0)
    p99 = np.array([1.0, 1.1, 1.2, 9.0, 50.0])
    both = find_knee(lam, p99, thr)
    assert (both.load, both.criterion) == (400.0, "p99+throughput")


def test_no_knee_within_the_curve():
    lam = np.array([10.0, 20.0, 30.0])
    k = find_knee(lam, [5.0, 6.0, 7.0], lam)
    assert k.load is None and k.criterion is None
    assert k.last_ok_load == 30.0


def test_order_and_missing_points_do_not_matter():
    lam = np.arange(50.0, 1000.0, 50.0)
    p99 = mm1_p99(lam, 1000.0)
    perm = np.random.default_rng(3).permutation(lam.size)
    assert find_knee(lam[perm], p99[perm], lam[perm]).load == 700.0
    p99_gap = p99.copy()
    p99_gap[3] = np.nan  # a point without samples is skipped
    assert find_knee(lam, p99_gap, lam).load == 700.0


def test_background_load_does_not_fake_a_throughput_knee():
    # Offered load in requests/s = 100 per guest plus a fixed closed-loop background of 1500/s:
    # throughput grows one for one with the offered load, although much less than the guest
    # count in relative terms.
    guests = np.array([4.0, 8.0, 16.0, 32.0, 64.0])
    offered = 100 * guests
    thr = offered + 1500
    assert find_knee(guests, np.ones(5), thr, offered=offered).load is None


def test_invalid_parameters():
    with pytest.raises(ValueError, match="multiple"):
        find_knee([1, 2], [1, 2], [1, 2], multiple=1.0)
    with pytest.raises(ValueError, match="growth"):
        find_knee([1, 2], [1, 2], [1, 2], growth=0)
    with pytest.raises(ValueError, match="one length"):
        find_knee([1, 2], [1], [1, 2])


def test_knee_table_per_combination():
    lam = [100.0, 200.0, 300.0, 400.0]
    cols = {
        "lock": ["global"] * 4 + ["per-mdev"] * 4,
        "rate": lam + lam,
        "all_p99_us": [10, 11, 40, 90, 10, 10, 11, 12],
        "throughput_per_s": lam + lam,
        "offered_per_s": lam + lam,
    }
    rows = knee_table(cols, "rate", ["lock"])
    assert [r["lock"] for r in rows] == ["global", "per-mdev"]
    assert (rows[0]["knee_load"], rows[0]["criterion"], rows[0]["last_ok_load"]) == (
        300.0,
        "p99",
        200.0,
    )
    assert rows[1]["knee_load"] is None and rows[1]["criterion"] == "none"
