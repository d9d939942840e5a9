"""hostsim calibrate: the round trip (simulate with known costs, export the trace, calibrate,
recover the costs) and the fitting pieces.

Tolerances (all at the run's n, fixed seeds, so each check is deterministic):

* lognormal, every other cost fixed: the residuals are exact samples of the cost, and the MLE
  has standard errors ``sigma / sqrt(n)`` (log median) and ``sigma / sqrt(2 n)`` (sigma): the
  fit must be within 4 of them (a 4-sigma band: a correct fitter fails it with probability
  about 6e-5 per parameter);
* empirical: the recovered samples are the cost's own draws, so by the
  Dvoretzky-Kiefer-Wolfowitz inequality their KS distance to the true distribution exceeds
  ``sqrt(ln(2 / a) / (2 n))`` with probability at most ``a``; ``a`` = 1e-3 (plus
  ``1 / MAX_SAMPLES`` when the fit keeps quantiles instead of every sample: the quantile
  summary moves the CDF by at most that);
* lognormal behind a random known part (moments): the fitted mean is ``mean(d) - E[known]``,
  whose error is the sample mean's, ``sd(d) / sqrt(n)``; the fitted variance's error is the
  sample variance's, ``sqrt((m4 - var^2) / n)`` (``m4`` the fourth central moment of ``d``):
  4 of each;
* lock holds inferred from queued waiters: exact (equality), the model's hand-off being FIFO.

The lognormal check runs on the kvm-s390 trace and on a handle_pqap.bt capture written from the
same kind of run.
"""

from __future__ import annotations

import io
import math

import numpy as np
import pytest

from hostsim.calibrate import (
    MAX_SAMPLES,
    calibrate,
    dist_var,
    fit_aggregate,
    fit_target,
    ks_two,
    set_args,
    to_toml,
    uncontended,
)
from hostsim.cli import main
from hostsim.dists import parse_dist
from hostsim.records import Path as RecPath
from hostsim.run import simulate
from hostsim.scenario import loads
from workloads.trace_write import write_trace

BASE = """
[run]
duration_ms = 2000
seed = 7

[host]
adapters = 4
domains = 40

[costs]
{costs}

[[guests]]
name = "ok"
count = 12
domains_per_guest = 1
[guests.workload]
rate_hz = 100

[[guests]]
name = "noapie"
count = 12
domains_per_guest = 1
eca_apie = false
[guests.workload]
rate_hz = 100

[[guests]]
name = "nofac65"
count = 12
domains_per_guest = 1
facility65 = false
[guests.workload]
rate_hz = 100
"""
FIXED = """
sie_entry = "450ns"
kvm_decode = "200ns"
pin = "2us"
"""


def _trace(tmp_path, costs: str, fmt: str = "trace-cmd"):
    s = loads(BASE.format(costs=costs))
    res = simulate(s, "fast", keep_records=True)
    buf = io.StringIO()
    write_trace(buf, s, res.records, fmt)
    path = tmp_path / "trace.txt"
    path.write_text(buf.getvalue())
    return s, res.records, str(path)


def _check_lognormal(fit, median: float, sigma: float) -> None:
    n = fit.n
    assert fit.method == "lognormal-mle", fit
    assert abs(math.log(fit.dist["median_ns"] / median)) <= 4 * sigma / math.sqrt(n)
    assert abs(fit.dist["sigma"] - sigma) <= 4 * sigma / math.sqrt(2 * n)


def test_round_trip_lognormal(tmp_path):
    costs = FIXED + (
        'userspace_exit = { dist = "lognormal", median_ns = 9000, sigma = 0.4 }\n'
        'pgm_inject = { dist = "lognormal", median_ns = 800, sigma = 0.3 }\n'
        'host_aqic = { dist = "lognormal", median_ns = 3000, sigma = 0.5 }\n'
    )
    s, _, path = _trace(tmp_path, costs)
    cal = calibrate([path], s)
    assert cal.fits["kvm_decode"].dist == {"dist": "fixed", "ns": 200.0}
    for name, med, sig in (
        ("userspace_exit", 9000, 0.4),
        ("pgm_inject", 800, 0.3),
        ("host_aqic", 3000, 0.5),
    ):
        assert cal.fits[name].n > 1500
        _check_lognormal(cal.fits[name], med, sig)
    # the fragment is a valid [costs] table for the scenario, and --set arguments work too
    text = to_toml(cal)
    fitted = loads(BASE.format(costs=text.split("[costs]\n", 1)[1]))
    assert fitted.costs["host_aqic"].kind == "lognormal"
    sets = set_args(cal)
    again = loads(BASE.format(costs=""), sets=sets)
    assert again.costs["userspace_exit"] == fitted.costs["userspace_exit"]


def test_round_trip_empirical(tmp_path):
    truth = [2000, 2500, 3000, 30000, 32000]
    costs = FIXED + f'userspace_exit = {{ dist = "empirical", samples_ns = {truth} }}\n'
    s, _, path = _trace(tmp_path, costs, fmt="perf")
    fit = calibrate([path], s).fits["userspace_exit"]
    assert fit.method == "empirical" and fit.lognormal_rejected
    got = np.array(fit.dist["samples_ns"])
    n = fit.n
    assert len(got) == min(n, MAX_SAMPLES) and set(got.tolist()) <= set(truth)
    # KS distance of the recovered sample to the true (uniform over `truth`) distribution
    cdf_true = np.array([np.mean(np.array(truth) <= v) for v in truth])
    cdf_got = np.array([np.mean(got <= v) for v in truth])
    eps = math.sqrt(math.log(2 / 1e-3) / (2 * n)) + (1 / MAX_SAMPLES if n > MAX_SAMPLES else 0)
    assert np.max(np.abs(cdf_true - cdf_got)) <= eps


def test_round_trip_moments(tmp_path):
    """sie_entry stays the default lognormal: the fit deconvolves by moments."""
    costs = 'userspace_exit = { dist = "lognormal", median_ns = 9000, sigma = 0.4 }\n'
    s, rec, path = _trace(tmp_path, costs)
    fit = calibrate([path], s).fits["userspace_exit"]
    assert fit.method == "lognormal-moments"
    us = rec["path"] == RecPath.USERSPACE_EXIT
    d = (rec["t_resume"] - rec["t_decode"])[us].astype(float)
    n = len(d)
    assert fit.n == n
    true = parse_dist({"dist": "lognormal", "median_ns": 9000, "sigma": 0.4})
    got = parse_dist(fit.dist)

    assert abs(got.mean_ns - true.mean_ns) <= 4 * d.std() / math.sqrt(n)
    m4 = np.mean((d - d.mean()) ** 4)
    assert abs(dist_var(got) - dist_var(true)) <= 4 * math.sqrt((m4 - d.var() ** 2) / n)


def test_fit_target_fixed_and_small():
    assert fit_target(np.full(50, 700), "x", {}, "q").dist == {"dist": "fixed", "ns": 700.0}
    f = fit_target(np.array([10, 20, 30]), "x", {}, "q")
    assert f.method == "empirical" and f.dist["samples_ns"] == [10, 20, 30]


def test_fit_aggregate_moments():
    k = {"a": parse_dist("100ns")}
    f = fit_aggregate(1000, 1100.0, 500.0, "x", k, "q")
    got = parse_dist(f.dist)
    assert got.mean_ns == pytest.approx(1000, rel=1e-6)

    assert dist_var(got) == pytest.approx(500.0**2, rel=1e-5)


def test_uncontended_intervals():
    start = np.array([0, 5, 20, 40, 45])
    end = np.array([10, 8, 30, 50, 47])
    assert uncontended(start, end).tolist() == [False, False, True, False, False]


def test_ks_two_identical_is_zero():
    a = np.arange(100.0)
    assert ks_two(a, a) == 0.0


def test_calibrate_cli(tmp_path, capsys):
    costs = FIXED + 'userspace_exit = { dist = "lognormal", median_ns = 9000, sigma = 0.4 }\n'
    _, _, path = _trace(tmp_path, costs)
    scen = tmp_path / "s.toml"
    scen.write_text(BASE.format(costs=FIXED))
    out = tmp_path / "costs.toml"
    assert main(["calibrate", path, "--scenario", str(scen), "--out", str(out), "--quiet"]) == 0
    text = out.read_text()
    assert "[costs]" in text and "userspace_exit = {" in text and "KS D=" in text
    assert main(["calibrate", path, "--format", "nope"]) == 2
    assert "unknown capture format" in capsys.readouterr().err


def _lock_events_text(rec: np.ndarray) -> str:
    """Simulated mdevs_lock waits as `perf script` lock:contention_* text (with call chains)."""
    waited = (rec["t_mutex_req"] >= 0) & (rec["t_mutex_grant"] > rec["t_mutex_req"])
    ev = []
    for r in rec[waited]:
        tid = 10000 + int(r["vcpu"])
        ev.append((int(r["t_mutex_req"]), 0, tid, "contention_begin", "(flags=MUTEX)"))
        ev.append((int(r["t_mutex_grant"]), 1, tid, "contention_end", "(ret=0)"))
    out = []
    for t, _, tid, name, fields in sorted(ev):
        sec, ns = divmod(t, 1_000_000_000)
        out.append(
            f"  CPU 0/KVM {tid:>6} [000] {sec:5d}.{ns:09d}: lock:{name}: 0x3ff80a00040 {fields}"
        )
        if name == "contention_begin":
            out.append("\t     3ff80126000 __mutex_lock+0x120 ([kernel.kallsyms])")
            out.append("\t     3ff80126ad4 handle_pqap+0x1a4 ([vfio_ap])")
    return "\n".join(out) + "\n"


def test_lock_holds_seen_through_waiters_are_exact(tmp_path):
    """Under the model's FIFO hand-off, every hold inferred from two queued waiters is exactly
    the holder's simulated hold (release - grant), and calibrate names the lock mdevs_lock."""
    from workloads.capture import read_capture

    text = BASE.format(costs=FIXED).replace("rate_hz = 100", "rate_hz = 4000", 1)
    s = loads(text.replace("duration_ms = 2000", "duration_ms = 100"))
    rec = simulate(s, "fast", keep_records=True).records
    p = tmp_path / "lock.txt"
    p.write_text(_lock_events_text(rec))
    cap = read_capture(p)
    holds = cap.holds()
    assert len(holds) > 100
    by_grant = {
        (10000 + int(r["vcpu"]), int(r["t_mutex_grant"])): int(
            r["t_mutex_rel"] - r["t_mutex_grant"]
        )
        for r in rec[rec["t_mutex_grant"] >= 0]
    }
    assert all(h.lock == "mdevs_lock" for h in holds)
    assert all(h.hold_ns == by_grant[(h.tid, h.t_start)] for h in holds)
    cal = calibrate([str(p)], s)
    assert any(o.startswith("lock holds mdevs_lock") for o in cal.observed)
    assert cal.fits["host_aqic"].quantity == "lock.hook_hold"


def _kprobe_text(rec: np.ndarray, hook_entry_ns: int) -> str:
    """Simulated hook calls as handle_pqap.bt output (entry = mutex request - hook_entry)."""
    out = ["Attaching 3 probes...", "# hostsim handle_pqap 1: PQAP t_ns tid vcpu ..."]
    for r in rec[rec["t_mutex_req"] >= 0]:
        t = int(r["t_mutex_req"]) - hook_entry_ns
        out.append(
            f"PQAP {t} {10000 + int(r['vcpu'])} 0 {int(r['gpr0']):016x} {int(r['gpr1']):016x} "
            f"{int(r['gpr2']):016x} 0 {int(r['gpr1_out']):016x} {int(r['t_mutex_rel']) - t}"
        )
    return "\n".join(out) + "\n"


def test_round_trip_kprobe_capture(tmp_path):
    """The hook durations of handle_pqap.bt recover host_aqic with the MLE tolerance."""
    from workloads.capture import read_capture

    costs = FIXED + 'host_aqic = { dist = "lognormal", median_ns = 3000, sigma = 0.5 }\n'
    s = loads(BASE.format(costs=costs))
    rec = simulate(s, "fast", keep_records=True).records
    p = tmp_path / "handle_pqap.txt"
    p.write_text(_kprobe_text(rec, int(s.costs["hook_entry"].fixed_ns)))
    cap = read_capture(p)
    assert cap.enable.all() and (cap.rc == 0).all()
    fit = calibrate([str(p)], s).fits["host_aqic"]
    assert fit.quantity == "kprobe.hook" and fit.n > 1500
    _check_lognormal(fit, 3000, 0.5)


def test_in_kernel_cost_option(tmp_path):
    costs = FIXED + 'host_aqic = { dist = "lognormal", median_ns = 3000, sigma = 0.5 }\n'
    s, _, path = _trace(tmp_path, costs)
    cal = calibrate([path], s, in_kernel_cost="lookup")
    assert "lookup" in cal.fits and "host_aqic" not in cal.fits
    assert "host_aqic" in cal.fits["lookup"].known
    with pytest.raises(ValueError, match="expected one of them"):
        calibrate([path], s, in_kernel_cost="zapq")
