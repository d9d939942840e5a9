"""The terminal report (after ``perf kvm stat report``) and the progress bar."""

from __future__ import annotations

import io

import numpy as np
import pytest

from hostsim.records import PATH_NAMES
from hostsim.report import Progress, format_report
from hostsim.report_perf import PERF_STYLES
from hostsim.summary import RunStats
from tests.synthetic_records import make_host_events, make_records


def summary_of(rec, warmup_ns=0, ev=None):
    st = RunStats(warmup_ns=warmup_ns)
    st.add_records(rec)
    if ev is not None:
        st.add_host_events(ev)
    return st.summary({"seed": 1})


def row_of(text: str, name: str) -> list[str]:
    return next(line.split() for line in text.splitlines() if line.split()[:1] == [name])


def test_hostsim_style_keeps_its_percentile_table():
    s = summary_of(make_records(5000, seed=1))
    text = format_report(s, "hostsim")
    lines = text.splitlines()
    assert lines[0] == "Analyze events for all VMs, all VCPUs:"
    assert lines[2].split() == [
        "Path", "Samples", "Samples%", "Min(us)", "Avg(us)", "p50(us)", "p99(us)", "p99.9(us)",
        "Max(us)",
    ]  # fmt: skip
    widths = {len(line) for line in lines[2:10] if line}
    assert len(widths) == 1  # right-aligned columns of one width
    for name in PATH_NAMES:
        assert name in text
    total = row_of(text, "Total")
    assert total[1] == "5000" and total[2] == "100.00%"


def test_hostsim_style_numbers_come_from_the_summary():
    s = summary_of(make_records(5000, seed=2))
    text = format_report(s, "hostsim")
    lat = s["paths"]["hook_enable"]["lat_ns"]
    row = row_of(text, "hook_enable")
    assert int(row[1]) == s["paths"]["hook_enable"]["N"]
    assert row[2] == f"{100 * lat['N'] / s['all']['N']:.2f}%"
    assert row[3] == f"{lat['min'] / 1000:.2f}"
    assert row[4] == f"{lat['mean'] / 1000:.2f}"
    assert row[6] == f"{lat['percentile']['99.000000'] / 1000:.2f}"
    assert row[8] == f"{lat['max'] / 1000:.2f}"
    shares = sum(float(row_of(text, n)[2].rstrip("%")) for n in PATH_NAMES)
    assert abs(shares - 100.0) < 0.05
    assert f"{100 * s['mutex']['utilisation']:.2f}%" in text
    assert "Throughput:" in text and f"{s['throughput_per_s']:.1f}" in text


def test_every_style_shares_the_sections_after_the_table():
    s = summary_of(make_records(3000, seed=4))
    tails = {style: format_report(s, style).split("Global vfio_ap mutex:")[1] for style in
             PERF_STYLES}  # fmt: skip
    assert len(set(tails.values())) == 1
    with pytest.raises(ValueError, match="unknown report style"):
        format_report(s, "csv")


def test_report_skips_empty_paths_and_names_the_longest_holder():
    rec = make_records(1000, seed=3)
    rec = rec[rec["path"] != 0]
    ev = make_host_events(grants=[10**9], holds=[10**8])
    text = format_report(summary_of(rec, warmup_ns=1_000_000, ev=ev))
    assert "userspace_exit" not in text
    assert "by host event 0" in text
    assert "100000.00 us" in text
    assert "Warm-up:" in text


def test_report_of_an_empty_run():
    text = format_report(RunStats(end_ns=10**9).summary())
    assert "Total" in text and "no samples" in text


def test_progress_is_silent_when_not_a_terminal():
    out = io.StringIO()
    p = Progress(10**9, True, stream=out)
    p.update(5 * 10**8, 10)
    p.close()
    assert out.getvalue() == ""


def test_progress_forced_and_rate_limited():
    now = [0.0]
    out = io.StringIO()
    p = Progress(2 * 10**9, True, force=True, stream=out, clock=lambda: now[0])
    now[0] = 1.0
    p.update(5 * 10**8, 1000)
    for i in range(100):  # within the same 0.2 s: no redraw
        now[0] = 1.0 + i * 0.001
        p.update(6 * 10**8, 1000 + i)
    assert out.getvalue().count("\r") == 1
    assert "25.0%" in out.getvalue() and "1000 requests" in out.getvalue()
    assert "1,000 req/s" in out.getvalue()
    now[0] = 2.0
    p.close()
    assert out.getvalue().count("\r") == 2 and out.getvalue().endswith("\n")
    assert "30.0%" in out.getvalue()


def test_progress_disabled_draws_nothing_even_when_forced():
    out = io.StringIO()
    with Progress(10, False, force=True, stream=out) as p:
        p.update(np.int64(5), 1)
    assert out.getvalue() == ""
