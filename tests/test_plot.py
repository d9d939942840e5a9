"""Plots: every PNG is written, is a real image, and is not blank."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib import image

from hostsim.cli import main
from hostsim.plot import PlotError, plot_path
from hostsim.run import simulate
from hostsim.scenario import loads
from hostsim.sweep import run_sweep
from hostsim.sweep_spec import loads_sweep
from tests.test_sweep import BASE

GUEST_SWEEP = """\
[sweep]
base = "base.toml"
replications = 2
seed = 3
load_factor = "guests.0.count"
[sweep.set]
"run.duration_ms" = 25
"guests.0.workload.rate_hz" = 3000
[sweep.factors]
"host.lock_model" = ["global", "per-mdev"]
"guests.0.count" = [1, 3, 5]
"""


def assert_real_png(path: Path, min_bytes: int = 10_000) -> None:
    assert path.exists() and path.suffix == ".png"
    assert path.stat().st_size > min_bytes
    img = image.imread(path)
    assert img.ndim == 3 and img.shape[0] > 300 and img.shape[1] > 500
    rgb = img[..., :3]
    ink = np.any(rgb < 0.9, axis=-1).mean()  # share of pixels that are not (nearly) white
    assert 0.01 < ink < 0.9, f"{path.name}: {ink:.3f} of the pixels are drawn"


def test_plots_of_a_result_folder(tmp_path):
    base = BASE.replace("count = 2\n", "count = 3\n")
    s = loads(base + '\n[[events]]\nat_ms = 10\nkind = "detach"\nguest = "app[1]"\n', "tiny")
    res = simulate(s, out_dir=tmp_path / "run")
    made, notes = plot_path(res.out_dir)
    assert [p.name for p in made] == ["latency_cdf.png", "latency_timeline.png"]
    assert all(p.parent == tmp_path / "run" / "plots" for p in made)
    assert notes == []
    for p in made:
        assert_real_png(p)


def test_plots_of_a_sweep_folder(tmp_path):
    (tmp_path / "base.toml").write_text(BASE.replace("domains = 8", "domains = 16"))
    spec = loads_sweep(GUEST_SWEEP, str(tmp_path / "guests.toml"), tmp_path)
    run_sweep(spec, tmp_path / "sw", workers=1)
    made, notes = plot_path(tmp_path / "sw", tmp_path / "png")
    names = sorted(p.name for p in made)
    assert names == [
        "cdf_by_load.png",
        "latency_vs_load.png",
        "p99_vs_guests.png",
        "throughput_mutex_vs_load.png",
    ]
    for p in made:
        assert p.parent == tmp_path / "png"
        assert_real_png(p)
    assert any("boot-storm" in n for n in notes)


def test_cli_plot(tmp_path, capsys):
    s = loads(BASE, "tiny")
    simulate(s, out_dir=tmp_path / "run")
    assert main(["plot", str(tmp_path / "run"), "--out", str(tmp_path / "p")]) == 0
    printed = capsys.readouterr().out.split()
    assert printed == [
        str(tmp_path / "p" / "latency_cdf.png"),
        str(tmp_path / "p" / "latency_timeline.png"),
    ]
    assert main(["plot", str(tmp_path)]) == 2
    assert "neither a result folder" in capsys.readouterr().err
    with pytest.raises(PlotError):
        plot_path(tmp_path / "missing")


BOOT_BASE = """\
[run]
duration_ms = 100
warmup_ms = 0

[host]
adapters = 2
domains = 16

[host.hardware]
aqic_rc = { "0x00" = 0.95, "0x05" = 0.05 }

[[guests]]
name = "vm"
count = 4
vcpus = 1
[guests.workload]
kind = "boot"
boot_at_ms = 0
spread_ms = 0
"""

BOOT_SWEEP = """\
[sweep]
base = "boot.toml"
replications = 2
seed = 5
[sweep.factors]
"guests.0.count" = [2, 8, 16]
"""


def test_boot_storm_completion_vs_guest_count(tmp_path):
    from hostsim.scenario_types import WORKLOAD_KINDS

    if "boot" not in WORKLOAD_KINDS:
        pytest.skip("no boot-storm workload in this tree")
    (tmp_path / "boot.toml").write_text(BOOT_BASE)
    spec = loads_sweep(BOOT_SWEEP, str(tmp_path / "b.toml"), tmp_path)
    res = run_sweep(spec, tmp_path / "sw", workers=1)
    done = res.table["boot_completion_ms"]
    assert all(v > 0 for v in done)
    assert done[-1] > done[0]  # 16 guests x 2 APQNs through one mutex take longer than 2
    made, notes = plot_path(tmp_path / "sw")
    names = {p.name for p in made}
    assert {"boot_storm_vs_guests.png", "p99_vs_guests.png"} <= names
    assert not any("boot" in n for n in notes)
    for p in made:
        assert_real_png(p)
