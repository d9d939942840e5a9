"""summary.json as fio JSON: read by fio-plot's JSON reader, percentiles in numeric order."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hostsim.fio_json import LAT_EDGES_NS, N_LAT_BUCKETS, bucket_counts, canonical
from hostsim.records import PATH_NAMES
from hostsim.run import simulate
from hostsim.scenario import load
from hostsim.summary import FIO_PERCENTILES, RunStats, dumps_summary, percentile_key
from tests.helpers import SHORT_DEFAULT
from tests.synthetic_records import make_records

#: The built-in default, shortened (its events moved inside the shorter run).
SHORT = list(SHORT_DEFAULT)


@pytest.fixture(scope="module")
def result_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fio") / "run"
    simulate(load(None, SHORT), "fast", out)
    return out


def _cumulative_pct(job: dict) -> list[tuple[int, float]]:
    """(exclusive upper edge in ns, cumulative per cent) of fio's latency buckets."""
    pct = [
        *job["latency_ns"].values(),
        *job["latency_us"].values(),
        *job["latency_ms"].values(),
    ]
    return list(zip([*LAT_EDGES_NS, 2**62], np.cumsum(pct).tolist(), strict=True))


def test_fio_plot_reads_summary_json_and_gives_the_percentiles_back(result_folder: Path) -> None:
    getdata = pytest.importorskip("fio_plot.fiolib.getdata")
    defaults = pytest.importorskip("fio_plot.fiolib.defaultsettings")
    settings = defaults.get_default_settings()
    settings.update(
        {"input_directory": [str(result_folder)], "rw": "read", "iodepth": [1], "numjobs": [1]}
    )
    (directory,) = getdata.get_json_data(settings)  # fio-plot's discovery, import and parse
    summary = json.loads((result_folder / "summary.json").read_text())
    assert [Path(f).name for f in directory["files"]] == ["summary.json"]  # status.json skipped

    names = [n for n in PATH_NAMES if summary["paths"][n]["N"]]
    (raw,) = directory["rawdata"]
    assert [job["jobname"] for job in raw["jobs"]] == names
    for job in raw["jobs"]:
        body = summary["paths"][job["jobname"]]
        for lat in (job["read"]["clat_ns"], job["read"]["lat_ns"]):
            assert lat == body["lat_ns"]  # hostsim's percentiles, back through fio-plot
            assert list(lat["percentile"]) == [percentile_key(p) for p in FIO_PERCENTILES]
        assert job["read"]["total_ios"] == body["N"]
        # fio's latency buckets agree with the percentiles: the p-th value x (within 0.1 %
        # below the HdrHistogram value v) has at most p % below its bucket and at least p %
        # up to its end
        cum = _cumulative_pct(job)
        tol = 100.0 / body["N"] + 1e-3
        for p in FIO_PERCENTILES:
            v = body["lat_ns"]["percentile"][percentile_key(p)]
            lo = int(np.searchsorted(LAT_EDGES_NS, int(v / 1.001), side="right"))
            hi = int(np.searchsorted(LAT_EDGES_NS, v, side="right"))
            assert (cum[lo - 1][1] if lo else 0.0) <= p + tol
            assert p - tol <= cum[hi][1]

    (row,) = directory["data"]  # fio-plot's merge of the jobs of one file
    assert row["type"] == "read" and row["fio_version"].startswith("hostsim-")
    assert row["iops"] == pytest.approx(sum(j["read"]["iops"] for j in raw["jobs"]))
    duration_s = summary["window"]["duration_ns"] / 1e9
    assert row["iops"] == pytest.approx(summary["all"]["N"] / duration_s, rel=1e-6)
    means = [summary["paths"][n]["lat_ns"]["mean"] for n in names]
    assert row["lat"] == pytest.approx(statistics.mean(means))
    assert [sum(b.values()) for b in row["latency_us"]] == [
        pytest.approx(sum(j["latency_us"].values())) for j in raw["jobs"]
    ]


def test_percentile_and_bucket_keys_are_written_in_numeric_order(result_folder: Path) -> None:
    text = (result_folder / "summary.json").read_text()
    assert text.index('"5.000000"') < text.index('"40.000000"')
    job = json.loads(text)["jobs"][0]
    assert list(job["latency_ms"])[-3:] == ["1000", "2000", ">=2000"]
    assert list(job["iodepth_level"]) == ["1", "2", "4", "8", "16", "32", ">=64"]
    assert list(job) == sorted(job)  # other keys: sorted as text


def test_jobs_total_the_summary():
    st = RunStats(warmup_ns=1_000_000)
    st.add_records(make_records(6000, seed=31))
    s = json.loads(dumps_summary(st.summary({"seed": 31})))
    assert s["fio version"].startswith("hostsim-")
    assert s["global options"]["lat_percentiles"] == "1"
    assert sum(j["read"]["total_ios"] for j in s["jobs"]) == s["all"]["N"]
    for j in s["jobs"]:
        assert j["write"]["total_ios"] == j["trim"]["total_ios"] == 0
        assert "percentile" not in j["write"]["clat_ns"]
        shares = [*j["latency_ns"].values(), *j["latency_us"].values(), *j["latency_ms"].values()]
        assert sum(shares) == pytest.approx(100.0, abs=1e-4)


def test_bucket_counts_follow_fios_truncating_buckets():
    # fio: "2" ns is 0-1 ns, "1000" ns is 750-999 ns, "2" us is 1000-1999 ns (whole us), ...
    v = np.array([0, 1, 2, 999, 1000, 1999, 2000, 999_999, 1_000_000, 1_999_999_999, 2 * 10**9])
    c = bucket_counts(v)
    assert c.size == N_LAT_BUCKETS == 32
    assert {int(i): int(n) for i, n in enumerate(c) if n} == {
        0: 2,  # 0, 1 ns
        1: 1,  # 2 ns
        9: 1,  # 999 ns
        10: 2,  # 1000, 1999 ns -> 1 us
        11: 1,  # 2000 ns -> 2 us
        19: 1,  # 999 us
        20: 1,  # 1 ms
        30: 1,  # 1999 ms -> the "2000" bucket
        31: 1,  # >= 2000 ms
    }


def test_canonical_orders_numeric_keys_numerically_and_others_as_text():
    doc = {"b": {"40.000000": 1, "5.000000": 2}, "a": {"10": 0, ">=64": 0, "2": 0}, "c": {"x": 1}}
    out = canonical(doc)
    assert list(out) == ["a", "b", "c"]
    assert list(out["b"]) == ["5.000000", "40.000000"]
    assert list(out["a"]) == ["2", "10", ">=64"]


def test_fio_plots_own_command_charts_a_result_folder(result_folder: Path, tmp_path: Path) -> None:
    pytest.importorskip("fio_plot")
    png = tmp_path / "latency.png"
    argv = ["-i", str(result_folder), "-T", "hostsim", "-H", "-r", "read", "-d", "1", "-n", "1"]
    code = "import sys, fio_plot; sys.argv = ['fio-plot', *sys.argv[1:]]; fio_plot.main()"
    p = subprocess.run(
        [sys.executable, "-c", code, *argv, "-o", str(png)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "MPLBACKEND": "Agg"},
        cwd=tmp_path,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
