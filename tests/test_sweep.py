"""Sweeps: the file format, seeds, the table, local pool == Dask, resuming an interrupted sweep."""

from __future__ import annotations

import itertools
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from hostsim import sweep_backends
from hostsim.cli import main
from hostsim.run import simulate
from hostsim.scenario import loads
from hostsim.scenario_toml import resolved_toml
from hostsim.sweep import run_sweep
from hostsim.sweep_backends import run_task
from hostsim.sweep_plan import plan
from hostsim.sweep_spec import SweepError, load_sweep, loads_sweep, replication_seed
from hostsim.table import mean_ci95, run_metrics, t_quantile_975

#: A small host: two app guests (hook path), one guest without an mdev (RC 01 path).
BASE = """\
[run]
duration_ms = 30
warmup_ms = 2

[host]
adapters = 2
domains = 8

[host.hardware]
aqic_rc = { "0x00" = 0.995, "0x05" = 0.005 }

[[guests]]
name = "app"
count = 2
vcpus = 2
[guests.workload]
rate_hz = 2000
enable_fraction = 0.95

[[guests]]
name = "nomdev"
count = 1
domains_per_guest = 0
mdev = false
[guests.workload]
rate_hz = 500
"""

SWEEP = """\
[sweep]
base = "base.toml"
replications = 2
seed = 7
load_factor = "guests.0.workload.rate_hz"
[sweep.set]
"run.duration_ms" = 25
[sweep.factors]
"host.lock_model" = ["global", "per-mdev"]
"guests.0.workload.rate_hz" = { start = 1000, stop = 5000, num = 3 }
"""


def write_sweep(tmp_path: Path, text: str = SWEEP, base: str = BASE) -> Path:
    (tmp_path / "base.toml").write_text(base)
    p = tmp_path / "sweep.toml"
    p.write_text(text)
    return p


# --- the file format ------------------------------------------------------------------------------
def test_parse_factors_ranges_and_points(tmp_path):
    spec = load_sweep(write_sweep(tmp_path))
    assert spec.factor_keys == ["host.lock_model", "guests.0.workload.rate_hz"]
    assert spec.factors[1].values == (1000, 3000, 5000)
    assert spec.other_keys == ["host.lock_model"]
    assert spec.points()[:2] == [("global", 1000), ("global", 3000)]  # first factor slowest
    assert len(spec.points()) == 6


@pytest.mark.parametrize(
    ("rng", "values"),
    [
        ("{ start = 10, stop = 100, num = 4 }", (10, 40, 70, 100)),
        ("{ start = 0.5, stop = 1.0, num = 3 }", (0.5, 0.75, 1.0)),
        ("{ start = 2, stop = 11, step = 3 }", (2, 5, 8, 11)),
        ("{ start = 2, stop = 12, step = 3 }", (2, 5, 8, 11)),
        ("{ start = 0.1, stop = 0.3, step = 0.1 }", (0.1, 0.2, 0.3)),
        ('{ start = 1, stop = 64, num = 7, scale = "log" }', (1, 2, 4, 8, 16, 32, 64)),
        ("{ start = 1, stop = 3, num = 5 }", (1, 2, 3)),  # integer ends: rounded, no repeats
    ],
)
def test_ranges(rng, values):
    spec = loads_sweep(f'[sweep.factors]\n"guests.0.count" = {rng}\n', "s.toml")
    assert spec.factors[0].values == values


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("[sweep]\nbogus = 1\n[sweep.factors]\n'a.b' = [1]\n", "sweep.bogus: unknown key"),
        ("[other]\n", "other: unknown key"),
        ("[sweep]\nreplications = 0\n[sweep.factors]\n'a' = [1]\n", "sweep.replications"),
        ("[sweep]\nengine = 'slow'\n[sweep.factors]\n'a' = [1]\n", "sweep.engine"),
        ("[sweep]\n", "sweep.factors"),
        ("[sweep.factors]\n'guests.0.count' = 3\n", 'sweep.factors."guests.0.count"'),
        ("[sweep.factors]\n'guests.0.count' = []\n", "at least one value"),
        ("[sweep.factors]\n'guests.0.count' = [1, 1]\n", "values repeat"),
        ("[sweep.factors]\n'x' = { start = 1, stop = 2 }\n", "exactly one of num or step"),
        ("[sweep.factors]\n'x' = { start = 1, stop = 2, step = -1 }\n", "does not lead"),
        ("[sweep.factors]\n'run.seed' = [1, 2]\n", "run.seed is set by the sweep"),
        ("[sweep.set]\n'run.seed' = 3\n[sweep.factors]\n'a' = [1]\n", "run.seed is set"),
        ("[sweep]\nload_factor = 'b'\n[sweep.factors]\n'a' = [1]\n", "sweep.load_factor"),
        ("[sweep]\nload_factor = 'a'\n[sweep.factors]\n'a' = ['x']\n", "numeric values"),
        ("[sweep]\nbase = 'missing.toml'\n[sweep.factors]\n'a' = [1]\n", "sweep.base: cannot"),
        ("[sweep.knee]\nmultiple = 1\n[sweep.factors]\n'a' = [1]\n", "sweep.knee.multiple"),
        ("[sweep.knee]\npercentile = 'p42'\n[sweep.factors]\n'a' = [1]\n", "knee.percentile"),
        ("[sweep.knee]\npath = 'nope'\n[sweep.factors]\n'a' = [1]\n", "sweep.knee.path"),
        ("[sweep.set]\n'a' = 1\n[sweep.factors]\n'a' = [1]\n", "also fixed in [sweep.set]"),
        ("not toml [", "not valid TOML"),
    ],
)
def test_errors_name_the_file_and_key(tmp_path, text, where):
    with pytest.raises(SweepError) as e:
        loads_sweep(text, "my-sweep.toml", tmp_path)
    assert str(e.value).startswith("my-sweep.toml: ")
    assert where in str(e.value)


def test_every_point_is_validated_before_anything_runs(tmp_path):
    bad = SWEEP.replace('"host.lock_model" = ["global", "per-mdev"]', '"guests.0.count" = [1, 0]')
    spec = load_sweep(write_sweep(tmp_path, bad))
    with pytest.raises(SweepError) as e:
        run_sweep(spec, tmp_path / "out", workers=1)
    msg = str(e.value)
    assert msg.startswith(f"{tmp_path / 'sweep.toml'}: point guests.0.count=0")
    assert "guests[0].count: expected an integer >= 1, got 0" in msg
    assert not (tmp_path / "out").exists()
    unknown = SWEEP.replace('"host.lock_model"', '"host.lock_modle"')
    with pytest.raises(SweepError, match=r"host\.lock_modle: unknown key"):
        plan(load_sweep(write_sweep(tmp_path, unknown)))
    index = SWEEP.replace('"host.lock_model"', '"guests.5.count"')
    with pytest.raises(SweepError, match=r'sweep.factors."guests.5.count": .*index below 2'):
        plan(load_sweep(write_sweep(tmp_path, index)))


# --- seeds and runs -------------------------------------------------------------------------------
def test_seeds_come_from_the_sweep_seed_and_replication_only(tmp_path):
    spec = load_sweep(write_sweep(tmp_path))
    p = plan(spec)
    seeds = [replication_seed(7, r) for r in range(2)]
    assert seeds[0] != seeds[1]
    assert all(0 <= s < 2**63 for s in seeds)
    assert replication_seed(7, 0) == seeds[0]  # reproducible
    assert replication_seed(8, 0) != seeds[0]
    by_rep: dict[int, set[int]] = {0: set(), 1: set()}
    for t in p.tasks.values():
        by_rep[t.replication].add(t.seed)
        assert f"seed = {t.seed}" in t.scenario_toml
    # common random numbers: every point of a replication has the same seed
    assert by_rep == {0: {seeds[0]}, 1: {seeds[1]}}
    assert len(p.tasks) == 12 and len({k for row in p.keys for k in row}) == 12


def test_a_worker_runs_the_resolved_scenario_of_its_point(tmp_path):
    spec = load_sweep(write_sweep(tmp_path))
    p = plan(spec)
    task = p.tasks[p.keys[4][1]]  # per-mdev, 3000 Hz, replication 1
    s = loads(
        BASE,
        "base",
        [
            "run.duration_ms=25",
            "host.lock_model=per-mdev",
            "guests.0.workload.rate_hz=3000",
            f"run.seed={task.seed}",
        ],
    )
    assert resolved_toml(s) == task.scenario_toml
    row = run_task(task)
    expected = run_metrics(simulate(s).summary, s)
    assert {k: row[k] for k in expected} == expected
    assert row["factors"] == {"host.lock_model": "per-mdev", "guests.0.workload.rate_hz": 3000}
    assert row["offered_per_s"] == 2 * 2 * 3000 + 500


# --- statistics -----------------------------------------------------------------------------------
def test_t_quantiles_and_confidence_intervals():
    assert t_quantile_975(1) == pytest.approx(12.7062, abs=1e-4)
    assert t_quantile_975(2) == pytest.approx(4.3027, abs=1e-4)
    assert t_quantile_975(30) == pytest.approx(2.0423, abs=1e-4)
    assert t_quantile_975(10**9) == pytest.approx(1.96, abs=1e-3)
    qs = [t_quantile_975(d) for d in range(1, 500)]
    assert all(a >= b for a, b in itertools.pairwise(qs))  # decreasing in df
    mean, ci, n = mean_ci95([1.0, 2.0, 3.0])
    assert (mean, n) == (2.0, 3)
    assert ci == pytest.approx(4.3027 * 1.0 / math.sqrt(3), rel=1e-4)
    m1, ci1, n1 = mean_ci95([5.0, math.nan])
    assert (m1, n1) == (5.0, 1) and math.isnan(ci1)
    assert math.isnan(mean_ci95([])[0])


def test_t_quantiles_match_scipy():
    stats = pytest.importorskip("scipy.stats")
    for df in (1, 2, 5, 17, 30, 35, 50, 90, 200, 1000):
        assert t_quantile_975(df) == pytest.approx(stats.t.ppf(0.975, df), abs=2e-3)


# --- execution ------------------------------------------------------------------------------------
def test_local_pool_inline_and_dask_give_the_same_table(tmp_path):
    distributed = pytest.importorskip("distributed")
    spec = load_sweep(write_sweep(tmp_path))
    inline = run_sweep(spec, tmp_path / "inline", workers=1)
    pool = run_sweep(spec, tmp_path / "pool", workers=2)
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        host="127.0.0.1",
    ) as cluster:
        dask = run_sweep(spec, tmp_path / "dask", scheduler=cluster.scheduler_address)
    assert inline.computed == pool.computed == dask.computed == 12
    for name in ("sweep.csv", "knee.csv", "sweep.meta.json"):
        ref = (tmp_path / "inline" / name).read_bytes()
        assert (tmp_path / "pool" / name).read_bytes() == ref, name
        assert (tmp_path / "dask" / name).read_bytes() == ref, name
    tables = [pq.read_table(tmp_path / d / "sweep.parquet") for d in ("inline", "pool", "dask")]
    assert tables[0].equals(tables[1]) and tables[0].equals(tables[2])

    t = inline.table
    assert t["host.lock_model"] == ["global"] * 3 + ["per-mdev"] * 3
    assert t["guests.0.workload.rate_hz"] == [1000, 3000, 5000] * 2
    assert t["replications"] == [2] * 6
    for col in ("throughput_per_s", "all_p99_us", "mutex_utilisation", "mutex_wait_p99_us"):
        assert col in t and f"{col}_ci95" in t
    assert "hook_enable_p50_us" in t and "no_hook_rc01_p999_us" in t
    assert t["offered_per_s"] == [4500.0, 12500.0, 20500.0] * 2
    assert all(ci >= 0 for ci in t["throughput_per_s_ci95"])
    assert [k["host.lock_model"] for k in inline.knees] == ["global", "per-mdev"]
    assert pq.read_table(tmp_path / "inline" / "sweep.parquet").num_rows == 6


def test_an_interrupted_sweep_resumes_without_recomputing(tmp_path, monkeypatch):
    spec = load_sweep(write_sweep(tmp_path))
    out = tmp_path / "out"
    seen = []

    def stop_after_five(task, row):
        seen.append(task.key)
        if len(seen) == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sweep(spec, out, workers=1, on_result=stop_after_five)
    done = sorted(p.name for p in (out / "runs").glob("*.json"))
    assert len(done) == 5
    partial = json.loads(json.dumps(pq.read_table(out / "sweep.parquet").to_pydict()))
    assert sum(partial["replications"]) == 5  # the table of what finished is written
    mtimes = {p.name: p.stat().st_mtime_ns for p in (out / "runs").glob("*.json")}

    ran = []
    real = sweep_backends.run_task

    def counting(task):
        ran.append(task.key)
        return real(task)

    monkeypatch.setattr(sweep_backends, "run_task", counting)
    res = run_sweep(spec, out, workers=1)
    assert (res.total, res.resumed, res.computed) == (12, 5, 7)
    assert len(ran) == 7 and not set(ran) & set(seen)
    for p in (out / "runs").glob("*.json"):
        if p.name in mtimes:
            assert p.stat().st_mtime_ns == mtimes[p.name]  # finished runs are not rewritten

    run_sweep(spec, tmp_path / "fresh", workers=1)
    assert (out / "sweep.csv").read_bytes() == (tmp_path / "fresh" / "sweep.csv").read_bytes()
    again = run_sweep(spec, out, workers=1)
    assert (again.computed, again.resumed) == (0, 12)
    assert len(ran) == 7 + 12  # the fresh sweep ran everything, the rerun nothing

    # A grown sweep computes only its new points.
    grown = loads_sweep(
        SWEEP.replace("num = 3", "num = 5"), str(tmp_path / "sweep.toml"), tmp_path
    )  # 1000, 2000, ..., 5000: 2000 and 4000 are new
    res2 = run_sweep(grown, out, workers=1)
    assert (res2.resumed, res2.computed) == (12, 8)
    assert res2.table["guests.0.workload.rate_hz"] == [1000, 2000, 3000, 4000, 5000] * 2


def test_a_failing_run_is_reported_after_the_table_is_written(tmp_path, monkeypatch):
    spec = load_sweep(write_sweep(tmp_path))
    real = sweep_backends.run_task

    def flaky(task):
        if task.point == 2 and task.replication == 1:
            raise RuntimeError("boom")
        return real(task)

    monkeypatch.setattr(sweep_backends, "run_task", flaky)
    with pytest.raises(SweepError, match=r"1 of 12 runs failed.*rate_hz=5000, replication 1.*boom"):
        run_sweep(spec, tmp_path / "out", workers=1)
    t = pq.read_table(tmp_path / "out" / "sweep.parquet").to_pydict()
    assert t["replications"] == [2, 2, 1, 2, 2, 2]


def test_refuses_a_folder_that_is_not_a_sweep(tmp_path):
    spec = load_sweep(write_sweep(tmp_path))
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(SweepError, match="not a sweep folder"):
        run_sweep(spec, other, workers=1)


# --- command line ---------------------------------------------------------------------------------
def test_cli_sweep_prints_the_table_and_knees_and_resumes(tmp_path, capsys):
    p = write_sweep(tmp_path)
    out = tmp_path / "out"
    assert main(["sweep", str(p), "--out", str(out), "--workers", "2"]) == 0
    text = capsys.readouterr().out
    assert "host.lock_model" in text and "guests[0].workload.rate_hz" in text
    assert "Knee (all p99 > 3 x" in text
    assert "runs: 12 (12 simulated, 0 resumed)" in text
    assert (out / "sweep.csv").exists() and (out / "knee.csv").exists()
    assert main(["sweep", str(p), "--out", str(out), "--quiet"]) == 0
    assert capsys.readouterr().out == ""
    assert main(["sweep", str(p), "--out", str(out)]) == 0
    assert "runs: 12 (0 simulated, 12 resumed)" in capsys.readouterr().out


def test_cli_sweep_errors(tmp_path, capsys):
    assert main(["sweep", str(tmp_path / "nope.toml")]) == 2
    assert "nope.toml: cannot read" in capsys.readouterr().err
    p = write_sweep(tmp_path, SWEEP.replace("replications = 2", "replications = -1"))
    assert main(["sweep", str(p), "--out", str(tmp_path / "o")]) == 2
    assert "sweep.replications" in capsys.readouterr().err


def test_ctrl_c_on_the_command_line_keeps_finished_runs(tmp_path, monkeypatch):
    """A real Ctrl-C (SIGINT to the process group) on a pool sweep: exit 130, resume later."""
    p = tmp_path / "slow.toml"
    p.write_text(
        "[sweep]\nreplications = 3\nseed = 1\n"
        '[sweep.set]\n"run.duration_ms" = 1500\n"events" = []\n'
        '[sweep.factors]\n"guests.0.count" = { start = 4, stop = 40, step = 4 }\n'
    )
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "hostsim", "sweep", str(p), "--out", str(out), "--workers", "2"],
        start_new_session=True,
        # A shell without job control starts background jobs with SIGINT ignored, and Python
        # keeps an inherited SIG_IGN: give the sweep the default, as a terminal would.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(list(out.glob("runs/*.json"))) < 2:
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted; finished runs are kept" in err
    assert "Traceback" not in err
    done = {f.stem for f in out.glob("runs/*.json")}
    assert 2 <= len(done) < 30
    assert (out / "sweep.csv").exists()

    ran = []
    real = sweep_backends.run_task

    def counting(task):
        ran.append(task.key)
        return real(task)

    def stop(task, row):
        raise KeyboardInterrupt

    monkeypatch.setattr(sweep_backends, "run_task", counting)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(load_sweep(p), out, workers=1, on_result=stop)
    assert len(ran) == 1 and ran[0] not in done


def test_an_unreachable_scheduler_is_a_clear_error(tmp_path):
    dask = pytest.importorskip("dask")
    pytest.importorskip("distributed")
    spec = load_sweep(write_sweep(tmp_path))
    with (
        dask.config.set({"distributed.comm.timeouts.connect": "0.5s"}),
        pytest.raises(SweepError, match=r"cannot reach the Dask scheduler at tcp://127\.0\.0\.1:9"),
    ):
        run_sweep(spec, tmp_path / "out", scheduler="tcp://127.0.0.1:9")
