"""The perf-compatible report: perf's own layout, read back by a parser of that layout."""

from __future__ import annotations

import math

import pytest

from hostsim.records import PATH_NAMES
from hostsim.report import format_report
from hostsim.report_perf import PerfRow, format_perf_table, perf_rows
from hostsim.summary import RunStats
from tests import perf_kvm_stat
from tests.helpers import SHORT_DEFAULT
from tests.synthetic_records import make_records


def summary_of(n: int, seed: int, warmup_ns: int = 0) -> dict:
    st = RunStats(warmup_ns=warmup_ns)
    st.add_records(make_records(n, seed=seed))
    return st.summary({"seed": seed})


def test_perf_parser_reads_the_report_and_its_totals_equal_the_summary():
    s = summary_of(5000, seed=21, warmup_ns=1_000_000)
    rep = perf_kvm_stat.parse(format_report(s))
    assert rep.event_set == "VM-EXIT"
    assert rep.total_samples == s["all"]["N"] == sum(e.samples for e in rep.events)
    assert rep.total_time_us == round(s["all"]["total_ns"] / 1000, 2)
    assert s["all"]["total_ns"] == sum(s["paths"][n]["total_ns"] for n in PATH_NAMES)
    rows = rep.by_name()
    assert set(rows) == {n for n in PATH_NAMES if s["paths"][n]["N"]}
    for name, e in rows.items():
        body = s["paths"][name]
        lat = body["lat_ns"]
        assert e.samples == body["N"]
        assert e.min_us == round(lat["min"] / 1000, 2)
        assert e.max_us == round(lat["max"] / 1000, 2)
        assert e.avg_us == pytest.approx(lat["mean"] / 1000, abs=0.006)
        assert e.samples_pct == pytest.approx(100 * body["N"] / s["all"]["N"], abs=0.006)
        assert e.time_pct == pytest.approx(100 * body["total_ns"] / s["all"]["total_ns"], abs=0.006)
        rel = 100 * lat["stddev"] / math.sqrt(body["N"]) / lat["mean"]
        assert e.rel_stddev_pct == pytest.approx(rel, abs=0.006)
    assert sum(e.samples_pct for e in rep.events) == pytest.approx(100, abs=0.05)
    assert sum(e.time_pct for e in rep.events) == pytest.approx(100, abs=0.05)


def test_rows_sorted_by_samples_like_perfs_default_key():
    s = summary_of(4000, seed=22)
    samples = [e.samples for e in perf_kvm_stat.parse(format_report(s)).events]
    assert samples == sorted(samples, reverse=True)
    by_time = perf_rows(s, key="time")
    assert [r.mean_ns for r in by_time] == sorted((r.mean_ns for r in by_time), reverse=True)
    with pytest.raises(ValueError, match="sort key"):
        perf_rows(s, key="name")


def test_perf_unknown_is_one_row_as_s390_perf_shows_pqap():
    s = summary_of(3000, seed=23)
    text = format_report(s, "perf-unknown")
    rep = perf_kvm_stat.parse(text)
    assert [e.name for e in rep.events] == ["UNKNOWN"]
    (e,) = rep.events
    lat = s["all"]["lat_ns"]
    assert e.samples == rep.total_samples == s["all"]["N"]
    assert (e.samples_pct, e.time_pct) == (100.0, 100.0)
    assert (e.min_us, e.max_us) == (round(lat["min"] / 1000, 2), round(lat["max"] / 1000, 2))
    assert rep.total_time_us == round(s["all"]["total_ns"] / 1000, 2)
    # The per-path split follows perf's footer, as hostsim's own addition.
    footer = text.index("Total Samples:")
    split = text.index("hostsim: the UNKNOWN row split by PQAP path")
    assert split > footer
    for name in PATH_NAMES:
        assert text.index(name) > split


def test_the_table_is_perfs_print_result_layout():
    row = PerfRow("hook_enable", 3, 30_000, 5_000, 15_000, 10_000.0, 5_000.0)
    lines = format_perf_table([row])
    assert lines[:4] == ["", "", "Analyze events for all VMs, all VCPUs:", ""]
    # printf("%*s ", 40, "VM-EXIT"), "%10s ", "%9s ", "%9s ", "%11s ", "%11s ", "%16s "
    assert lines[4] == (
        " " * 33 + "VM-EXIT" + "    Samples" + "  Samples%" + "     Time%" + "    Min Time"
        "    Max Time" + "         Avg time "
    )
    assert lines[5] == ""
    # "%*s ", "%10llu ", "%8.2f%% ", "%8.2f%% ", "%9.2fus ", "%9.2fus ", "%9.2fus ( +-%7.2f%% )"
    rel = 100 * (5000 / math.sqrt(3)) / 10_000
    assert lines[6] == (
        f"{'hook_enable':>40} {3:10d} {100.0:8.2f}% {100.0:8.2f}% {5.0:9.2f}us {15.0:9.2f}us "
        f"{10.0:9.2f}us ( +-{rel:7.2f}% )"
    )
    assert lines[7:] == ["", "Total Samples:3, Total events handled time:30.00us.", ""]


def test_empty_run_prints_perfs_empty_table():
    s = RunStats(end_ns=10**9).summary()
    for style in ("perf", "perf-unknown"):
        rep = perf_kvm_stat.parse(format_report(s, style))
        assert rep.events == [] and rep.total_samples == 0 and rep.total_time_us == 0.0


def test_a_summary_without_total_ns_still_reports():
    s = summary_of(1000, seed=24)
    for body in (*s["paths"].values(), s["all"]):
        del body["total_ns"]
    rep = perf_kvm_stat.parse(format_report(s))
    assert rep.total_samples == s["all"]["N"]
    approx_total = sum(b["lat_ns"]["mean"] * b["N"] for b in s["paths"].values()) / 1000
    assert rep.total_time_us == pytest.approx(approx_total, abs=0.01)


def test_replay_prints_the_chosen_style(tmp_path, capsys):
    from hostsim.cli import main

    short = [w for a in SHORT_DEFAULT for w in ("--set", a)]
    rec = tmp_path / "arrivals.jsonl"
    assert main(["run", "--quiet", "--out", str(tmp_path / "a"), "--record", str(rec), *short]) == 0
    capsys.readouterr()
    argv = ["replay", str(rec), "--out", str(tmp_path / "b"), "--report", "perf-unknown", *short]
    assert main(argv) == 0
    rep = perf_kvm_stat.parse(capsys.readouterr().out)
    assert [e.name for e in rep.events] == ["UNKNOWN"] and rep.total_samples > 0
