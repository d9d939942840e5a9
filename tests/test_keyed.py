"""Counter-based draws (hostsim.keyed): pure functions of what they are for, and well spread."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from hostsim.keyed import KeyedGen, hash64, standard_normal, uniform01
from hostsim.model import Model
from hostsim.scenario import load

STEADY = Path(__file__).parents[1] / "bench" / "scenarios" / "steady.toml"


def test_a_draw_depends_on_its_key_not_on_what_else_is_drawn() -> None:
    lv = np.arange(50)[:, None]
    k = np.arange(8)[None, :]
    block = KeyedGen(3, "cost:x", 0, *np.broadcast_arrays(lv, k)).lognormal(5.0, 0.7)
    # The same requests one at a time, in another order, and as a scattered subset.
    for r, c in [(0, 0), (49, 7), (17, 3)]:
        one = KeyedGen(3, "cost:x", 0, np.array([r]), np.array([c])).lognormal(5.0, 0.7)
        assert one[0] == block[r, c]
    sel_lv, sel_k = np.array([5, 40, 5]), np.array([7, 0, 2])
    sub = KeyedGen(3, "cost:x", 0, sel_lv, sel_k).lognormal(5.0, 0.7)
    assert np.array_equal(sub, block[sel_lv, sel_k])


def test_families_groups_seeds_and_call_slots_are_independent_streams() -> None:
    lv, k = np.arange(1000), np.zeros(1000, np.int64)
    base = KeyedGen(1, "a", 0, lv, k).random()
    others = [
        KeyedGen(2, "a", 0, lv, k).random(),
        KeyedGen(1, "b", 0, lv, k).random(),
        KeyedGen(1, "a", 1, lv, k).random(),
    ]
    g = KeyedGen(1, "a", 0, lv, k)
    g.random()
    others.append(g.random())  # the second call slot
    for o in others:
        assert not np.array_equal(o, base)
        assert abs(np.corrcoef(o, base)[0, 1]) < 0.1


def test_model_blocks_and_fast_engine_rows_see_the_same_draws() -> None:
    """The reference engine's cached blocks and an arbitrary set of rows agree value for
    value: block shapes are a cache choice only."""
    m = Model(load(STEADY, ["guests.0.count=3", "guests.0.vcpus=5"]))
    blk = m.block(0, 0, 0)
    lv = np.array([0, 14, 7])
    k = np.array([0, 1, 1])
    rows = m.draws(0, lv, k)
    assert np.array_equal(rows.gap, blk.gap[lv, k])
    assert np.array_equal(rows.regs["gpr0"], blk.regs["gpr0"][lv, k])
    assert np.array_equal(rows.costs["sie_exit"], blk.costs["sie_exit"][lv, k])
    assert np.array_equal(rows.costs.subset("pin", np.array([2])), blk.costs["pin"][lv, k][[2]])


def test_uniforms_are_uniform() -> None:
    u = uniform01(hash64(np.uint64(12345), np.arange(200_000), np.zeros(200_000, np.int64)))
    assert u.min() >= 0.0 and u.max() < 1.0
    counts = np.bincount((u * 100).astype(int), minlength=100)
    expected = len(u) / 100
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 160  # 99 degrees of freedom: p ~ 1e-4


@pytest.mark.parametrize("k", [0, 1, 1000])
def test_normals_have_the_right_moments(k: int) -> None:
    n = 400_000
    z = standard_normal(hash64(np.uint64(99), np.arange(n), np.full(n, k)))
    se = 1 / math.sqrt(n)
    assert abs(z.mean()) < 5 * se
    assert abs(z.var() - 1) < 5 * math.sqrt(2) * se
    assert abs(np.mean(z**3)) < 5 * math.sqrt(15) * se
    assert abs(np.mean(z**4) - 3) < 5 * math.sqrt(96) * se
    assert abs(np.mean(np.abs(z) > 1.959964) - 0.05) < 5 * math.sqrt(0.05 * 0.95) * se


def test_exponential_mean_and_tail() -> None:
    n = 400_000
    x = KeyedGen(7, "arrival", 0, np.arange(n), np.zeros(n, np.int64)).exponential(1000.0)
    assert abs(x.mean() - 1000.0) < 5 * 1000.0 / math.sqrt(n)
    assert abs(np.mean(x > 3000.0) - math.exp(-3)) < 5 * math.sqrt(math.exp(-3) / n)


def test_integers_cover_the_range() -> None:
    n = 100_000
    i = KeyedGen(7, "x", 0, np.arange(n), np.zeros(n, np.int64)).integers(3, 10)
    assert i.min() == 3 and i.max() == 9
    assert np.all(np.abs(np.bincount(i - 3) - n / 7) < 5 * math.sqrt(n / 7))
