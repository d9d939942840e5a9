"""``bench/paired.py``: two checkouts timed in turns report their times and agree on the summary
(here the checkout against itself, on the built-in default); ``bench/fuzz_ratios.py``: both
engines on the fuzz's random scenarios."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_paired_runs_a_checkout_against_itself() -> None:
    scenario = ROOT / "bench" / "scenarios" / "default.toml"
    out = subprocess.run(
        [sys.executable, "bench/paired.py", ".", "--scenario", str(scenario), "--runs", "2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "this / other: median of paired ratios" in out
    assert "differ" not in out


def test_paired_refuses_a_folder_that_is_no_checkout(tmp_path: Path) -> None:
    res = subprocess.run(
        [sys.executable, "bench/paired.py", str(tmp_path), "--runs", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert res.returncode == 2 and "not a hostsim checkout" in res.stderr


def test_fuzz_ratios_times_both_engines_on_random_scenarios() -> None:
    """``bench/fuzz_ratios.py``: each random scenario run by both engines, summaries equal."""
    out = subprocess.run(
        [sys.executable, "bench/fuzz_ratios.py", "--seeds", "3", "--worst", "3"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.count("records") == 3
    assert "median" in out and "over 3 scenarios" in out
