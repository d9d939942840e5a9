"""Statistics and plots that hold at a few replications (issue 14 item 6).

Range-keeping intervals for percentiles, a knee that says how many replications agree, the boot
storm on its own span, and tail CDFs."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from hostsim.cli import main
from hostsim.knee import knee_table
from hostsim.plot import plot_path
from hostsim.plot_storm import storm_span_ms
from hostsim.sweep import run_sweep
from hostsim.sweep_spec import loads_sweep
from hostsim.sweep_table import _pm
from hostsim.table import interval95, mean_ci95
from tests.test_plot import GUEST_SWEEP, assert_real_png
from tests.test_sweep import BASE

positive = st.floats(min_value=1e-3, max_value=1e7, allow_nan=False)


def test_the_interval_of_a_tail_percentile_stays_positive():
    # the example: three p99s whose symmetric 95 % interval went below zero
    values = [1200.0, 1500.0, 38626.6]
    mean, ci, _ = mean_ci95(values)
    assert mean - ci < 0  # the old interval: 13775.53 +- 29938.89
    lo, hi = interval95(values)
    assert 0 < lo <= mean <= hi
    assert hi > max(values) / 2  # it widens upwards, where the uncertainty is


@given(st.lists(positive, min_size=2, max_size=8))
def test_interval95_is_in_range_and_contains_the_mean(values):
    lo, hi = interval95(values)
    mean = float(np.mean(values))
    assert 0 < lo <= mean * (1 + 1e-12) and hi >= mean * (1 - 1e-12)


@given(st.lists(st.floats(min_value=1e-6, max_value=1 - 1e-6), min_size=2, max_size=8))
def test_a_utilisation_interval_stays_in_0_1(values):
    lo, hi = interval95(values, 1.0)
    assert 0 <= lo <= hi <= 1
    assert lo <= float(np.mean(values)) <= hi


def test_interval95_edges():
    assert all(math.isnan(x) for x in interval95([5.0]))
    assert all(math.isnan(x) for x in interval95([]))
    lo, hi = interval95([0.0, 10.0, 20.0])  # a zero: the symmetric interval, clipped at 0
    assert lo == 0.0 and hi > 10
    assert interval95([3.0, 3.0, 3.0]) == pytest.approx((3.0, 3.0))
    lo, hi = interval95([0.0, 1.0, 1.0], 1.0)
    assert lo >= 0 and hi == 1.0
    lo, hi = interval95([1.0142, 1.0141, 1.0143], 1.0)  # per-mdev: summed over mutexes
    assert 1.013 < lo < 1.0142 < hi < 1.0155


def test_the_sweep_table_prints_the_interval_and_old_tables_the_half_width():
    assert _pm(39.35, 30.0, ".2f", 22.45, 66.73) == "39.35 [22.45, 66.73]"
    assert _pm(39.35, 30.0, ".2f") == "39.35 ±30.00"
    assert _pm(None, 1.0, ".2f", 1.0, 2.0) == "-"


def _curve(p99s):
    loads = [1, 2, 3, 4]
    return {
        "load": loads,
        "all_p99_us": p99s,
        "throughput_per_s": [float(x) for x in loads],
        "offered_per_s": [float(x) for x in loads],
    }


def test_knee_table_of_one_replication():
    assert knee_table(_curve([10.0, 11.0, 40.0, 50.0]), "load", [])[0]["knee_load"] == 3


def test_a_knee_says_how_many_replications_agree(tmp_path, capsys):
    (tmp_path / "base.toml").write_text(BASE.replace("domains = 8", "domains = 16"))
    text = GUEST_SWEEP.replace("replications = 2", "replications = 3")
    text = text.replace(
        '[sweep.factors]\n"host.lock_model" = ["global", "per-mdev"]\n', "[sweep.factors]\n"
    )
    (tmp_path / "guests.toml").write_text(text)
    spec = loads_sweep(text, str(tmp_path / "guests.toml"), tmp_path)
    res = run_sweep(spec, tmp_path / "sw", workers=1)
    (k,) = res.knees
    assert k["replications_with_curve"] == 3
    assert 0 <= k["replications_agree"] <= 3
    per = k["knee_loads"].split(";")
    assert len(per) == 3
    want = "-" if k["knee_load"] is None else f"{k['knee_load']:g}"
    assert per.count(want) == k["replications_agree"]
    csv = (tmp_path / "sw" / "knee.csv").read_text()
    assert "replications_agree" in csv.splitlines()[0]
    t = res.table
    for c in ("all_p99_us", "throughput_per_s", "mutex_utilisation"):
        for lo, m, hi in zip(t[f"{c}_lo"], t[c], t[f"{c}_hi"], strict=True):
            assert lo <= m <= hi and lo >= 0
    assert main(["sweep", str(tmp_path / "guests.toml"), "--out", str(tmp_path / "sw")]) == 0
    out = capsys.readouterr().out
    assert "reps agree" in out and f"{k['replications_agree']} of 3" in out


BOOT = """\
[run]
duration_ms = 3000
seed = 4

[host]
adapters = 2
domains = 8

[[guests]]
name = "app"
count = 6
vcpus = 2
[guests.workload]
kind = "linux"

[[events]]
at_ms = 0
kind = "start"
guest = "app[*]"
spread_ms = 100
delay_ms = 50
"""


def test_the_boot_storm_plot_spans_the_storm_not_the_run(tmp_path):
    from hostsim.run import simulate
    from hostsim.scenario import loads

    res = simulate(loads(BOOT, "boot"), out_dir=tmp_path / "run")
    starts = res.summary["starts"]
    assert starts["ready"] == 6
    t0, t1 = storm_span_ms(starts)
    assert t0 == pytest.approx(min(r["at_ns"] for r in starts["events"]) / 1e6)
    assert t1 - t0 == pytest.approx(starts["storm_ns"] / 1e6)
    assert t1 < 3000 / 2  # the storm is a fraction of the run the axis would otherwise span
    made, _ = plot_path(res.out_dir)
    names = [p.name for p in made]
    assert "boot_storm.png" in names
    for p in made:
        assert_real_png(p)


def test_sweep_cdfs_have_a_tail_panel(tmp_path):
    (tmp_path / "base.toml").write_text(BASE.replace("domains = 8", "domains = 16"))
    spec = loads_sweep(GUEST_SWEEP, str(tmp_path / "guests.toml"), tmp_path)
    run_sweep(spec, tmp_path / "sw", workers=1)
    made, _ = plot_path(tmp_path / "sw", tmp_path / "png")
    (cdf,) = [p for p in made if p.name == "cdf_by_load.png"]
    assert_real_png(cdf)
