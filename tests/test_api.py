"""The library API (``hostsim.load``, ``hostsim.run`` ...): what docs/api.md promises.

Its names and nothing else at the top level, DataFrames with named categoricals and times in ns,
the same records from both engines, the matplotlib backend left alone, sweeps and comparisons
from Python, the notebook example, and ``hostsim --version``.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import runpy
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from matplotlib import image
from matplotlib.figure import Figure

import hostsim
from hostsim.cli import main
from hostsim.records import PATH_NAMES
from hostsim.report import format_report
from hostsim.results import column_codes, read_records
from hostsim.rules import Kind, all_rule_ids
from hostsim.scenario_types import HostEventKind
from tests.helpers import console_script

ROOT = Path(__file__).parent.parent
PATHS = Path(__file__).parent / "scenarios" / "paths.toml"
SHORT = {"run.duration_ms": 200}


@pytest.fixture(scope="module")
def result() -> hostsim.Result:
    return hostsim.run(PATHS, overrides=SHORT)


# --- the names ------------------------------------------------------------------------------------
def test_all_is_small_and_exactly_what_docs_api_lists() -> None:
    doc = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    documented = re.findall(r"^## `hostsim\.(\w+)`", doc, flags=re.M)
    assert sorted(documented) == sorted(hostsim.__all__)
    assert len(hostsim.__all__) < 10
    for name in hostsim.__all__:
        assert getattr(hostsim, name) is not None
    for accidental in ("version", "PackageNotFoundError", "annotations"):
        assert not hasattr(hostsim, accidental), accidental
    public = {
        k
        for k, v in vars(hostsim).items()
        if not k.startswith("_") and not isinstance(v, types.ModuleType)
    }
    assert public <= set(hostsim.__all__)
    star: dict[str, object] = {}
    exec("from hostsim import *", star)
    assert sorted(k for k in star if not k.startswith("__")) == sorted(hostsim.__all__)


def test_run_sweep_compare_are_the_functions_though_modules_share_the_names() -> None:
    api = importlib.import_module("hostsim.api")
    for name in ("run", "sweep", "compare"):
        module = importlib.import_module(f"hostsim.{name}")  # loaded already, or now
        assert module.__name__ == f"hostsim.{name}"
        assert getattr(hostsim, name) is getattr(api, name)
        assert callable(getattr(hostsim, name))
    from hostsim.run import simulate  # the module's own names stay reachable

    assert callable(simulate)


def test_import_is_light_and_leaves_the_matplotlib_backend_alone(tmp_path: Path) -> None:
    code = (
        "import sys, hostsim\n"
        "light = not any(m in sys.modules for m in ('pandas', 'matplotlib', 'numpy'))\n"
        "import hostsim.plot, hostsim.plot_compare, hostsim.plot_sweep, hostsim.plot_axes\n"
        "import hostsim.cli, hostsim.frames\n"
        "hostsim.run, hostsim.Result\n"
        "import matplotlib\n"
        "print(light, matplotlib.get_backend())\n"
    )
    env = {**os.environ, "MPLBACKEND": "svg", "MPLCONFIGDIR": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert out.stdout.split() == ["True", "svg"]


# --- load -----------------------------------------------------------------------------------------
def test_load_from_a_file_a_dict_a_scenario_or_the_default() -> None:
    import tomllib

    raw = tomllib.loads(PATHS.read_text(encoding="utf-8"))
    from_file = hostsim.load(PATHS, SHORT)
    from_dict = hostsim.load(raw, SHORT)
    from_list = hostsim.load(str(PATHS), ["run.duration_ms=200"])
    again = hostsim.load(from_file, {"run.seed": 5})
    assert from_file.source == str(PATHS) and from_dict.source == "<dict>"
    for s in (from_dict, from_list):
        assert (s.duration_ns, s.seed, s.n_vcpus) == (from_file.duration_ns, 11, from_file.n_vcpus)
    assert (again.seed, again.duration_ns) == (5, from_file.duration_ns)
    assert tomllib.loads(PATHS.read_text(encoding="utf-8")) == raw  # the caller's dict as it was
    assert hostsim.load().source == "<built-in default>"
    assert hostsim.load(overrides={"host.variant": "v4-2019"}).host.variant == "v4-2019"


def test_load_errors_name_the_source_and_the_key(tmp_path: Path) -> None:
    with pytest.raises(hostsim.ScenarioError, match=r"paths\.toml.*run\.duration_ms"):
        hostsim.load(PATHS, {"run.duration_ms": -1})
    with pytest.raises(hostsim.ScenarioError, match="cannot read"):
        hostsim.load(tmp_path / "missing.toml")
    with pytest.raises(hostsim.ScenarioError, match="index below"):
        hostsim.load(PATHS, {"guests.99.count": 1})
    with pytest.raises(TypeError, match="overrides"):
        hostsim.load(PATHS, "run.seed=3")  # type: ignore[arg-type]


# --- run and Result -------------------------------------------------------------------------------
def test_records_are_a_dataframe_with_named_categoricals_and_ns(result: hostsim.Result) -> None:
    df, raw = result.records, result.raw.records
    assert isinstance(df, pd.DataFrame) and raw is not None and len(df) == len(raw) > 0
    assert list(df["path"].cat.categories) == list(PATH_NAMES)
    assert list(df["kind"].cat.categories) == [k.name.lower() for k in Kind]
    assert list(df["rule"].cat.categories) == list(all_rule_ids())
    assert df["variant"].cat.categories[0] == "upstream"
    assert set(df["variant"]) == {"upstream"}
    assert set(df["group"]) == {g.name for g in result.scenario.guests}
    assert np.array_equal(df["path"].cat.codes, raw["path"])
    assert np.array_equal(df["rule"].cat.codes, raw["rule"])
    assert df["t_issue"].dtype == np.int64
    assert np.array_equal(df["latency_ns"], raw["t_resume"] - raw["t_issue"])
    assert int(df["measured"].sum()) == result.summary["counts"]["measured"]
    by_path = df[df["measured"]].groupby("path", observed=True)["latency_ns"].count()
    for name, n in by_path.items():
        assert result.summary["paths"][name]["lat_ns"]["N"] == n


def test_host_events_and_locks_are_named(result: hostsim.Result) -> None:
    ev, locks = result.host_events, result.locks
    assert len(ev) == len(result.scenario.events) > 0
    assert list(ev["kind"].cat.categories) == [k.name.lower() for k in HostEventKind]
    assert list(ev["kind"]) == [e.kind.name.lower() for e in result.scenario.events]
    assert list(ev["label"]) == [e.label for e in result.scenario.events]
    assert len(locks) > 0 and set(locks["lock"]) <= set(result.raw.lock_labels)
    assert set(locks["mode"]) <= {"mutex", "rwsem_write"}
    assert (locks["wait_ns"] >= 0).all()
    assert locks["owner_name"].str.startswith("event ").all()


def test_report_and_latencies(result: hostsim.Result) -> None:
    for style in ("perf", "perf-unknown", "hostsim"):
        assert result.report(style) == format_report(result.summary, style)  # type: ignore[arg-type]
    lats = result.latencies()
    assert lats["all"].size == result.summary["counts"]["measured"]
    assert list(lats)[1:] == [p for p in PATH_NAMES if p in lats]
    assert all((np.diff(v) >= 0).all() for v in lats.values())


def test_plots_draw_on_the_given_axes(result: hostsim.Result) -> None:
    fig = Figure()
    cdf, tail, timeline = fig.subplots(1, 3)
    assert result.plot_latency_cdf(cdf) is cdf
    result.plot_latency_cdf(tail, tail=True)
    result.plot_latency_timeline(timeline)
    n = len(result.latencies())
    assert len(cdf.get_lines()) == n and cdf.get_xscale() == "log"
    assert tail.get_yscale() == "log" and len(tail.get_lines()) >= n
    labels = [t.get_text() for t in cdf.get_legend().get_texts()]
    assert labels[0].startswith("all requests (N=")
    assert len(timeline.collections) == n - 1  # one scatter per path


def test_engines_seed_and_records_off() -> None:
    fast = hostsim.run(PATHS, engine="fast", overrides=SHORT)
    ref = hostsim.run(PATHS, engine="reference", overrides=SHORT)
    pd.testing.assert_frame_equal(fast.records, ref.records)
    other = hostsim.run(hostsim.load(PATHS, SHORT), seed=12, records=False)
    assert other.summary["hostsim"]["seed"] == 12 and other.scenario.seed == 12
    assert len(other.host_events) == len(fast.host_events)
    with pytest.raises(ValueError, match="records=True"):
        _ = other.records


def test_parquet_columns_carry_their_names(tmp_path: Path) -> None:
    res = hostsim.run(PATHS, overrides=SHORT, out=tmp_path / "run")
    assert res.out_dir == (tmp_path / "run").absolute()
    t = pq.read_table(tmp_path / "run" / "records.parquet")
    for col in ("path", "kind", "rule"):
        assert pa.types.is_dictionary(t.schema.field(col).type), col
    back = pd.read_parquet(tmp_path / "run" / "records.parquet")
    for col in ("path", "kind", "rule"):
        assert list(back[col].astype(str)) == list(res.records[col].astype(str)), col
    ev = pd.read_parquet(tmp_path / "run" / "host_events.parquet")
    assert list(ev["kind"].astype(str)) == list(res.host_events["kind"].astype(str))
    raw = res.raw.records
    assert raw is not None and np.array_equal(read_records(tmp_path / "run"), raw)


def test_column_codes_reads_old_integer_columns_too() -> None:
    plain = pa.chunked_array([pa.array(np.array([3, 0, 5], np.uint8))])
    assert list(column_codes(plain, PATH_NAMES)) == [3, 0, 5]
    d1 = pa.DictionaryArray.from_arrays(pa.array([0, 0], pa.int8()), pa.array(["hook_enable"]))
    names = pa.array(["program_check", "userspace_exit"])
    d2 = pa.DictionaryArray.from_arrays(pa.array([1, 0], pa.int8()), names)
    got = column_codes(pa.chunked_array([d1, d2]), PATH_NAMES)
    assert list(got) == [4, 4, 0, 1]


# --- sweep and compare ----------------------------------------------------------------------------
def test_sweep_from_a_dict_and_from_a_file(tmp_path: Path) -> None:
    spec = {
        "base": str(PATHS),
        "replications": 1,
        "set": SHORT,
        "factors": {"guests.0.workload.rate_hz": [200, 800]},
        "load_factor": "guests.0.workload.rate_hz",
    }
    sw = hostsim.sweep(spec, tmp_path / "sw", workers=1)
    assert isinstance(sw.table, pd.DataFrame) and isinstance(sw.knees, pd.DataFrame)
    assert list(sw.table["guests.0.workload.rate_hz"]) == [200, 800]
    assert (sw.total, sw.computed, sw.resumed) == (2, 2, 0)
    csv = pd.read_csv(tmp_path / "sw" / "sweep.csv")
    assert list(csv.columns) == list(sw.table.columns)
    again = hostsim.sweep({"sweep": spec}, tmp_path / "sw", workers=1)  # resumed
    assert (again.computed, again.resumed) == (0, 2)
    pd.testing.assert_frame_equal(again.table, sw.table)
    fig = Figure()
    ax = sw.plot_percentile(fig.subplots(), "guests.0.workload.rate_hz")
    assert list(ax.get_lines()[0].get_xdata()) == [200, 800]
    with pytest.raises(KeyError, match="no column"):
        sw.plot_percentile(fig.subplots(), "guests.0.workload.rate_hz", stat="p42")

    import tomli_w

    (tmp_path / "s.toml").write_text(tomli_w.dumps({"sweep": {**spec, "base": "paths.toml"}}))
    (tmp_path / "paths.toml").write_text(PATHS.read_text(encoding="utf-8"))
    from_file = hostsim.sweep(tmp_path / "s.toml", tmp_path / "sw2", workers=1)
    pd.testing.assert_frame_equal(from_file.table, sw.table)


def test_compare_tables(tmp_path: Path) -> None:
    cmp = hostsim.compare(PATHS, ["upstream", "v4-2019"], overrides=SHORT, out=tmp_path / "c")
    t = cmp.table
    assert list(t["variant"]) == ["upstream", "v4-2019"]
    assert isinstance(t["variant"].dtype, pd.CategoricalDtype)
    paths = cmp.outcomes[cmp.outcomes["section"] == "path"]
    per_run = paths.groupby("variant", observed=True)["count"].sum()
    assert list(per_run) == list(t["measured"])
    assert cmp.summary("upstream")["hostsim"]["variant"] == "upstream"
    assert "upstream" in cmp.report() and "v4-2019" in cmp.report()
    files = cmp.write(tmp_path / "c", plot=False)
    assert [f.name for f in files] == ["compare.csv"]
    assert (tmp_path / "c" / "runs" / "upstream__global" / "summary.json").exists()
    with pytest.raises(hostsim.ScenarioError):
        hostsim.compare(PATHS, ["upstream"], overrides={"host": {"variant": "x"}})


# --- the notebook example and --version -----------------------------------------------------------
def test_notebook_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOSTSIM_EXAMPLE_OUT", str(tmp_path))
    ns = runpy.run_path(str(ROOT / "examples" / "notebook.py"), run_name="__main__")
    by_path = ns["by_path"]
    assert isinstance(by_path, pd.DataFrame) and len(by_path) > 1
    assert set(by_path.index) <= set(PATH_NAMES)
    assert {"count", "50% ns", "99% ns"} <= set(by_path.columns)
    res = ns["res"]
    assert by_path["count"].sum() == res.summary["counts"]["measured"]
    for png in ("latency_cdf.png", "latency_timeline.png"):
        img = image.imread(tmp_path / png)
        assert img.shape[0] > 100 and img.shape[1] > 100


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == f"hostsim {hostsim.__version__}"
    for cmd in ([sys.executable, "-m", "hostsim"], [console_script()]):
        out = subprocess.run([*cmd, "--version"], capture_output=True, text=True, check=True)
        assert out.stdout.strip() == f"hostsim {hostsim.__version__}"


def test_summary_is_what_summary_json_holds(tmp_path: Path) -> None:
    res = hostsim.run(PATHS, overrides=SHORT, out=tmp_path / "r")
    on_disk = json.loads((tmp_path / "r" / "summary.json").read_text(encoding="utf-8"))
    assert on_disk["counts"] == res.summary["counts"]
    assert on_disk["hostsim"] == json.loads(json.dumps(res.summary["hostsim"]))
