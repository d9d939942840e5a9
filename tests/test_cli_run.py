"""``hostsim run`` end to end: the installed console script, ``python -m hostsim``, the result
folder, the report, and the golden summary of the built-in default scenario."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hostsim.cli import REPORT_STYLES
from hostsim.report import format_report
from hostsim.report_perf import PERF_STYLES
from hostsim.results import read_records
from hostsim.run import simulate
from hostsim.scenario import load
from tests import perf_kvm_stat
from tests.helpers import RESULT_FILES as FILES
from tests.helpers import SHORT_DEFAULT, console_script
from tests.update_golden import GOLDEN, golden_counts

#: The built-in default, shortened: its events move inside the shorter run.
SHORT = [w for a in SHORT_DEFAULT for w in ("--set", a)]


def run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=300, check=False)


def test_console_script_quiet_writes_the_result_folder(tmp_path: Path) -> None:
    out = tmp_path / "res"
    p = run([console_script(), "run", "--quiet", "--out", str(out), *SHORT], tmp_path)
    assert p.returncode == 0, p.stderr
    assert p.stdout == "" and p.stderr == ""
    names = {f.name for f in out.iterdir()}
    assert names >= FILES
    assert {"lat_hook_enable.hgrm", "lat_no_hook_rc01.hgrm"} <= names
    assert not any(n.startswith(".") for n in names)
    status = json.loads((out / "status.json").read_text())
    assert status["complete"] is True and status["reason"] is None
    assert set(status["files"]) == names
    summary = json.loads((out / "summary.json").read_text())
    assert summary["hostsim"]["engine"] == "fast"
    assert summary["hostsim"]["scenario"] == "<built-in default>"
    assert summary["window"]["end_ns"] == 300_000_000
    assert summary["counts"]["host_events"] == 28 + 4 + 3  # the starts, a reboot, unmap, stop
    assert summary["counts"]["records"] == status["rows"]["records"] == len(read_records(out))
    resolved = (out / "scenario.resolved.toml").read_text()
    assert "duration_ms = 300.0" in resolved
    assert load(out / "scenario.resolved.toml").duration_ns == 300_000_000


def test_report_on_stdout(tmp_path: Path) -> None:
    out = tmp_path / "res"
    p = run([console_script(), "run", "--out", str(out), *SHORT], tmp_path)
    assert p.returncode == 0, p.stderr
    text = p.stdout
    rep = perf_kvm_stat.parse(text)  # perf kvm stat report's table by default
    assert rep.event_set == "VM-EXIT" and "hook_enable" in rep.by_name()
    header = next(line for line in text.splitlines() if line.strip().startswith("Path"))
    assert header.split() == [
        "Path",
        "Samples",
        "Samples%",
        "Time%",
        "Min(us)",
        "Avg(us)",
        "p50(us)",
        "p99(us)",
        "p99.9(us)",
        "Max(us)",
    ]
    assert "Global vfio_ap mutex:" in text
    for label in ("Utilisation:", "Wait (us):", "Hold (us):", "Longest hold:", "Throughput:"):
        assert label in text
    assert "hook_enable" in text and "Total Samples:" in text
    # Exactly the report of the saved summary, then where it is.
    summary = json.loads((out / "summary.json").read_text())
    assert text == format_report(summary) + "\n" + f"results: {out}\n"
    assert rep.total_samples == summary["all"]["N"]
    # No progress bar when stderr is not a terminal.
    assert p.stderr == ""
    # The same report again from the folder, and in the other styles.
    for style in REPORT_STYLES:
        again = run([console_script(), "report", str(out), "--report", style], tmp_path)
        assert again.returncode == 0, again.stderr
        assert again.stdout == format_report(summary, style) + "\n"
    unknown = run([console_script(), "report", str(out / "summary.json"), "--report",
                   "perf-unknown"], tmp_path)  # fmt: skip
    assert [e.name for e in perf_kvm_stat.parse(unknown.stdout).events] == ["UNKNOWN"]
    bad = run([console_script(), "report", str(tmp_path / "nowhere")], tmp_path)
    assert bad.returncode == 2 and "cannot read" in bad.stderr


def test_report_styles_of_the_parser_are_the_reports() -> None:
    assert REPORT_STYLES == PERF_STYLES


def test_progress_flag_draws_on_stderr(tmp_path: Path) -> None:
    p = run([console_script(), "run", "--progress", "--out", str(tmp_path / "r"), *SHORT], tmp_path)
    assert p.returncode == 0, p.stderr
    assert "requests" in p.stderr and "100.0%" in p.stderr


def test_python_dash_m_gives_the_same_results(tmp_path: Path) -> None:
    a, b = tmp_path / "script", tmp_path / "module"
    p = run([console_script(), "run", "--quiet", "--out", str(a), *SHORT], tmp_path)
    assert p.returncode == 0, p.stderr
    p = run([sys.executable, "-m", "hostsim", "run", "--quiet", "--out", str(b), *SHORT], tmp_path)
    assert p.returncode == 0, p.stderr
    for name in FILES:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name


def test_reference_engine_from_the_cli(tmp_path: Path) -> None:
    a, b = tmp_path / "fast", tmp_path / "ref"
    for out, engine in ((a, "fast"), (b, "reference")):
        p = run(
            [console_script(), "run", "--quiet", "--engine", engine, "--out", str(out), *SHORT],
            tmp_path,
        )
        assert p.returncode == 0, p.stderr
    assert (a / "records.parquet").read_bytes() == (b / "records.parquet").read_bytes()
    assert json.loads((b / "summary.json").read_text())["hostsim"]["engine"] == "reference"


def test_default_out_folder_and_overwrite(tmp_path: Path) -> None:
    p = run([console_script(), "run", "--quiet", "--seed", "4", *SHORT], tmp_path)
    assert p.returncode == 0, p.stderr
    default_out = tmp_path / "hostsim-results" / "default-seed4-fast"
    assert (default_out / "status.json").exists()
    # The default folder is replaced on the next run; an explicit --out is not.
    p = run([console_script(), "run", "--quiet", "--seed", "4", *SHORT], tmp_path)
    assert p.returncode == 0, p.stderr
    out = tmp_path / "mine"
    argv = [console_script(), "run", "--quiet", "--out", str(out), *SHORT]
    assert run(argv, tmp_path).returncode == 0
    p = run(argv, tmp_path)
    assert p.returncode == 2
    assert "already exists" in p.stderr and str(out) in p.stderr
    assert "Traceback" not in p.stderr
    p = run([*argv, "--overwrite"], tmp_path)
    assert p.returncode == 0, p.stderr
    assert sorted(f.name for f in tmp_path.iterdir()) == ["hostsim-results", "mine"]


# --- The golden summary of the default scenario --------------------------------------------------
@pytest.mark.parametrize("engine", ["fast", "reference"])
def test_golden_summary_of_the_default_scenario(engine: str) -> None:
    """Refresh with ``python -m tests.update_golden`` when a change is meant to move it."""
    want = json.loads(GOLDEN.read_text())
    got = golden_counts(simulate(load(None), engine).summary)
    for key in ("seed", "total"):
        assert got[key] == want[key], key
    for key, value in want["counts"].items():
        assert got["counts"][key] == value, f"counts.{key}"
    assert got == want
    assert sum(want["counts"]["path"].values()) == want["total"]
