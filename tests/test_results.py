"""The result folder: atomic, deterministic, and an interrupted run keeps what it finished."""

from __future__ import annotations

import json
import os

import numpy as np
import pyarrow.parquet as pq
import pytest

from hostsim.hgrm import format_hgrm, mean_stddev, parse_hgrm, percentile_lines, read_hgrm
from hostsim.records import RECORD_DTYPE
from hostsim.results import ResultWriter, read_host_events, read_records
from hostsim.summary import RunStats, new_histogram, record_values
from tests.synthetic_records import make_host_events, make_records

SCENARIO = "[run]\nduration_ms = 10.0\nseed = 7\n"


def run(out, rec, ev=None, chunks=4, **kw):
    """What an engine does: stream chunks to the writer and the stats, then summarise."""
    stats = RunStats()
    with ResultWriter(out, **kw) as w:
        w.write_scenario(SCENARIO)
        for c in np.array_split(rec, chunks):
            w.add_records(c)
            stats.add_records(c)
        if ev is not None:
            w.add_host_events(ev)
            stats.add_host_events(ev)
        w.write_summary(stats.summary({"seed": 7}))
        w.write_hgrm(stats)
    return stats


def test_folder_appears_only_at_close(tmp_path):
    out = tmp_path / "run1"
    w = ResultWriter(out)
    w.add_records(make_records(100))
    assert not out.exists()
    assert w.tmp.parent == tmp_path and w.tmp.name.startswith(".run1.tmp-")
    assert w.close() == out
    assert out.is_dir() and not w.tmp.exists()
    assert sorted(os.listdir(tmp_path)) == ["run1"]
    status = json.loads((out / "status.json").read_text())
    assert status["complete"] is True and status["rows"]["records"] == 100


def test_contents_and_round_trip(tmp_path):
    rec = make_records(2000, seed=1)
    ev = make_host_events(grants=[10**6], holds=[10**5])
    stats = run(tmp_path / "r", rec, ev, chunks=5)
    out = tmp_path / "r"
    assert (out / "scenario.resolved.toml").read_text() == SCENARIO
    assert np.array_equal(read_records(out), rec)
    assert np.array_equal(read_host_events(out), ev)
    meta = pq.ParquetFile(out / "records.parquet").metadata
    assert meta.num_row_groups == 5
    assert pq.read_schema(out / "records.parquet").names == list(RECORD_DTYPE.names)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["all"]["N"] == rec.size and summary["hostsim"]["seed"] == 7
    assert (out / "summary.json").read_text().endswith("}\n")
    hgrms = sorted(p.name for p in out.glob("*.hgrm"))
    assert hgrms == sorted(f"lat_{n}.hgrm" for n in stats.paths_with_samples())


def test_only_paths_with_samples_get_an_hgrm(tmp_path):
    rec = make_records(500, seed=2)
    rec["path"] = 4  # hook_enable only
    run(tmp_path / "r", rec)
    assert [p.name for p in (tmp_path / "r").glob("*.hgrm")] == ["lat_hook_enable.hgrm"]


def test_identical_runs_give_identical_bytes(tmp_path):
    rec = make_records(20_000, seed=3)
    ev = make_host_events(grants=[10**6, 5 * 10**6], holds=[10**5, -1])
    run(tmp_path / "a", rec, ev)
    run(tmp_path / "b", rec, ev)
    files = sorted(os.listdir(tmp_path / "a"))
    assert files == sorted(os.listdir(tmp_path / "b"))
    assert {"records.parquet", "host_events.parquet", "summary.json"} <= set(files)
    for f in files:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f


def test_empty_run_still_has_readable_tables(tmp_path):
    with ResultWriter(tmp_path / "e") as w:
        w.write_summary(RunStats().summary())
    assert read_records(tmp_path / "e").size == 0
    assert read_host_events(tmp_path / "e").size == 0


def test_existing_folder_is_refused_unless_overwrite(tmp_path):
    out = tmp_path / "r"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(FileExistsError, match=r"already exists.*overwrite"):
        ResultWriter(out)
    run(out, make_records(10), overwrite=True)
    assert not (out / "old.txt").exists()
    assert (out / "records.parquet").exists()
    assert sorted(os.listdir(tmp_path)) == ["r"]  # no temporary or old folder left behind


def test_exception_keeps_a_partial_folder(tmp_path):
    out = tmp_path / "r"
    rec = make_records(300, seed=4)
    with pytest.raises(RuntimeError, match="engine broke") as info, ResultWriter(out) as w:
        w.write_scenario(SCENARIO)
        w.add_records(rec[:100])
        w.add_records(rec[100:200])
        raise RuntimeError("engine broke")
    partial = tmp_path / "r.partial"
    assert not out.exists() and partial.is_dir()
    assert sorted(os.listdir(tmp_path)) == ["r.partial"]
    status = json.loads((partial / "status.json").read_text())
    assert status["complete"] is False
    assert status["reason"] == "RuntimeError: engine broke"
    assert status["rows"]["records"] == 200
    assert np.array_equal(read_records(partial), rec[:200])  # what it finished, readable
    assert any("r.partial" in note for note in info.value.__notes__)


def test_keyboard_interrupt_keeps_a_partial_folder(tmp_path):
    out = tmp_path / "r"
    with pytest.raises(KeyboardInterrupt), ResultWriter(out) as w:
        w.add_records(make_records(50))
        raise KeyboardInterrupt
    status = json.loads((tmp_path / "r.partial" / "status.json").read_text())
    assert status["complete"] is False and "interrupt" in status["reason"].lower()


def test_partial_never_replaces_an_older_partial(tmp_path):
    for _ in range(2):
        with pytest.raises(ValueError), ResultWriter(tmp_path / "r"):
            raise ValueError("x")
    assert sorted(os.listdir(tmp_path)) == ["r.partial", "r.partial-2"]


def test_folder_created_meanwhile_is_not_replaced(tmp_path):
    w = ResultWriter(tmp_path / "r")
    w.add_records(make_records(10))
    (tmp_path / "r").mkdir()
    with pytest.raises(FileExistsError, match="appeared"):
        w.close()
    assert os.listdir(tmp_path / "r") == []
    status = json.loads((tmp_path / "r.partial" / "status.json").read_text())
    assert "appeared" in status["reason"] and status["rows"]["records"] == 10


def test_explicit_close_inside_the_block(tmp_path):
    with ResultWriter(tmp_path / "r") as w:
        assert w.close() == tmp_path / "r"
    assert (tmp_path / "r" / "status.json").exists()


def test_writer_refuses_use_after_close(tmp_path):
    w = ResultWriter(tmp_path / "r")
    w.close()
    with pytest.raises(RuntimeError, match="closed"):
        w.add_records(make_records(1))
    with pytest.raises(TypeError, match="dtype"):
        ResultWriter(tmp_path / "s").add_records(np.zeros(2, np.int64))


# --- .hgrm ------------------------------------------------------------------------------------
def test_hgrm_parses_and_matches_the_summary(tmp_path):
    rec = make_records(20_000, seed=5)
    run(tmp_path / "r", rec)
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    for f in (tmp_path / "r").glob("lat_*.hgrm"):
        name = f.stem.removeprefix("lat_")
        lat = summary["paths"][name]["lat_ns"]
        h = read_hgrm(f)
        assert h.total_count == lat["N"] == h.rows[-1][2]
        assert h.max == pytest.approx(lat["max"] / 1000, rel=1e-3, abs=1e-3)
        assert h.mean == pytest.approx(lat["mean"] / 1000, rel=1e-3)
        assert h.stddev == pytest.approx(lat["stddev"] / 1000, rel=1e-2)
        # the first tick at or above 99 % lies between fio's p99 and p99.5
        v99 = h.value_at(99) * 1000
        assert lat["percentile"]["99.000000"] - 1 <= v99 <= lat["percentile"]["99.500000"] * 1.001
        values = [r[0] for r in h.rows]
        assert values == sorted(values)
        assert (h.buckets, h.sub_buckets) == (32, 2048)
        pcts = [r[1] for r in h.rows]
        assert pcts == sorted(pcts) and pcts[0] == 0.0 and pcts[-1] == 1.0


def test_hgrm_follows_the_java_layout():
    h = new_histogram()
    record_values(h, np.arange(1, 10_001) * 1000)  # 1 us .. 10 ms
    text = format_hgrm(h)
    lines = text.splitlines()
    assert lines[0].split() == ["Value", "Percentile", "TotalCount", "1/(1-Percentile)"]
    assert lines[1] == ""
    # Java's ticks: 5 per half distance -> 0, 0.1, ..., 0.5, 0.55, ..., 0.75, 0.775 ...
    pcts = [float(line.split()[1]) for line in lines[2:14]]
    assert pcts[:8] == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.55, 0.6]
    assert lines[-3].startswith("#[Mean    = ") and "StdDeviation   = " in lines[-3]
    assert lines[-2].startswith("#[Max     = ") and lines[-2].endswith("10000]")
    assert lines[-1] == "#[Buckets =           32, SubBuckets     =         2048]"
    parsed = parse_hgrm(text)
    assert parsed.rows[-1] == (10_002.431, 1.0, 10_000)


def test_hgrm_footer_agrees_with_the_package():
    rng = np.random.default_rng(6)
    h = new_histogram()
    record_values(h, rng.lognormal(9, 1, 5000).astype(np.int64))
    mean, stddev = mean_stddev(h)
    assert mean == pytest.approx(h.get_mean_value(), rel=1e-12)
    assert stddev == pytest.approx(h.get_stddev(), rel=1e-9)
    rows = percentile_lines(h)
    assert rows[-1] == (h.get_max_value(), 100.0, 5000)


def test_parse_hgrm_rejects_garbage():
    with pytest.raises(ValueError, match="header"):
        parse_hgrm("hello\n")
    with pytest.raises(ValueError, match="line 3"):
        parse_hgrm("Value Percentile TotalCount 1/(1-Percentile)\n\n1.0 x 3 1.0\n")
