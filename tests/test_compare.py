"""Variant comparison: same scenario and seed, semantics and lock design side by side."""

from __future__ import annotations

import csv

import pytest

from hostsim.cli import main
from hostsim.compare import CompareError, compare, differing_outcomes, format_compare, write_compare
from tests.test_plot import assert_real_png

#: Guests that reach the semantics that differ: no facility 65 (v4-2019 does not check it), no
#: mdev (RC 01 in GR1's high word), and one guest that disables with sleeps under the mutex.
SCENARIO = """\
[run]
duration_ms = 60
warmup_ms = 2
seed = 5

[host]
adapters = 2
domains = 8

[host.hardware]
aqic_rc = { "0x00" = 1.0 }
tapq_irq_enabled = 0.5

[[guests]]
name = "app"
count = 3
vcpus = 2
[guests.workload]
rate_hz = 1500

[[guests]]
name = "sleeper"
count = 1
vcpus = 1
[guests.workload]
rate_hz = 200
enable_fraction = 0.0

[[guests]]
name = "nofac65"
count = 1
facility65 = false
[guests.workload]
rate_hz = 400

[[guests]]
name = "nomdev"
count = 1
domains_per_guest = 0
mdev = false
[guests.workload]
rate_hz = 400
"""

VARIANTS = ["upstream", "merged-2019", "v4-2019", "hook-owns-fc"]


@pytest.fixture(scope="module")
def cmp(tmp_path_factory):
    path = tmp_path_factory.mktemp("cmp") / "s.toml"
    path.write_text(SCENARIO)
    return compare(path, VARIANTS, ["global", "per-mdev"])


def test_same_requests_different_semantics(cmp):
    up = cmp.run("upstream", "global").outcomes
    v4 = cmp.run("v4-2019", "global").outcomes
    old = cmp.run("merged-2019", "global").outcomes
    # v4-2019 has no facility-65 check: the guest without it gets its AQIC served, not a PGM.
    assert up["path"]["program_check"] > 0
    assert v4["path"].get("program_check", 0) == 0
    assert up["pgm"]["0x06"] == up["path"]["program_check"]
    # CC 0 on success only since v6.8: older kernels leave the guest's CC unchanged.
    assert up["cc"]["0"] > 0 and old["cc"].get("0", 0) == 0
    assert old["cc"]["unchanged"] >= up["cc"]["0"]
    # No hook: RC 01 lands in GR1's high word, so the status word the guest reads shows RC 00.
    assert up["path"]["no_hook_rc01"] > 0
    diff = differing_outcomes(cmp)
    assert ("path", "program_check") in diff and ("cc", "0") in diff
    assert ("path", "no_hook_rc01") not in diff  # every variant answers alike without a hook
    # Guests the semantics do not touch see the same thing under every variant.
    assert len({r.outcomes["path"]["no_hook_rc01"] for r in cmp.runs}) == 1


def test_the_lock_design_shows_in_latency(cmp):
    g = cmp.run("upstream", "global").summary
    m = cmp.run("upstream", "per-mdev").summary
    p99 = "99.000000"
    # The sleeper's disables hold the global mutex for milliseconds; per-mdev confines them.
    assert g["mutex"]["wait_ns"]["percentile"][p99] > 10 * max(
        m["mutex"]["wait_ns"]["percentile"][p99], 1
    )
    assert (
        g["paths"]["hook_enable"]["lat_ns"]["percentile"][p99]
        > m["paths"]["hook_enable"]["lat_ns"]["percentile"][p99]
    )
    text = format_compare(cmp)
    assert "program_check *" in text and "upstream" in text and "per-mdev" in text


def test_files(cmp, tmp_path):
    files = write_compare(cmp, tmp_path)
    assert [f.name for f in files] == ["compare.csv", "compare.png"]
    with open(files[0], newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["variant"], r["lock_model"]) for r in rows] == [
        (v, m) for v in VARIANTS for m in ("global", "per-mdev")
    ]
    assert {"all_p99_us", "mutex_utilisation", "cc_unchanged", "path_program_check"} <= set(rows[0])
    assert_real_png(files[1])


def test_errors_and_cli(tmp_path, capsys):
    with pytest.raises(CompareError, match="unknown variant 'v9'"):
        compare(None, ["v9"])
    with pytest.raises(CompareError, match="unknown lock model"):
        compare(None, ["upstream"], ["per-queue"])
    assert main(["compare", "--variants", "upstream,v9"]) == 2
    assert "unknown variant" in capsys.readouterr().err
    s = tmp_path / "s.toml"
    s.write_text(SCENARIO)
    out = tmp_path / "out"
    argv = ["compare", str(s), "--variants", "upstream,v4-2019", "--out", str(out), "--no-plot"]
    assert main([*argv, "--set", "run.duration_ms=20"]) == 0
    text = capsys.readouterr().out
    assert "What the guests see" in text and "v4-2019" in text
    assert (out / "compare.csv").exists() and not (out / "compare.png").exists()
    assert (out / "runs" / "upstream__global" / "summary.json").exists()
