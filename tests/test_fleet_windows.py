"""The fast engine's optimistic windows (all-Poisson fleets) against the reference engine.

A window speculates that each vCPU is idle when its next arrival comes and commits only the
prefix before the first request where that was wrong; these scenarios make it wrong often
(heavy load and saturation), never (light load), and per mutex (per-mdev locking).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hostsim.run import simulate
from hostsim.scenario import load

STEADY = Path(__file__).parents[1] / "bench" / "scenarios" / "steady.toml"


@pytest.mark.parametrize(
    "sets",
    [
        ["guests.0.count=20", "guests.0.vcpus=10", "guests.0.workload.rate_hz=200"],  # light
        ["guests.0.count=10", "guests.0.vcpus=4", "guests.0.workload.rate_hz=4000"],  # heavy
        ["guests.0.count=10", "guests.0.vcpus=4", "guests.0.workload.rate_hz=6000"],  # saturated
        [
            "guests.0.count=10",
            "guests.0.vcpus=4",
            "guests.0.workload.rate_hz=6000",
            'host.lock_model="per-mdev"',
        ],
        [
            "guests.0.count=20",
            "guests.0.vcpus=3",
            "guests.0.workload.rate_hz=3000",
            "guests.0.workload.enable_fraction=0.7",
            'host.hardware.aqic_rc={ "0x00" = 0.95, "0x05" = 0.05 }',
            "costs.msleep20=200us",
            "host.hardware.tapq_irq_enabled=0.2",
        ],  # disable loops with sleeps under the mutex
    ],
)
def test_windows_match_the_reference(sets: list[str]) -> None:
    s = load(STEADY, [*sets, "run.duration_ms=60"])
    ref = simulate(s, "reference", keep_records=True).records
    fast = simulate(s, "fast", keep_records=True).records
    assert len(ref) > 1000
    assert np.array_equal(ref, fast)


@pytest.mark.parametrize("epoch_rows", [256, 4096])
def test_planning_sizes_do_not_change_a_run(
    epoch_rows: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Epochs of open-loop planning, the pool's compaction and count planning are bookkeeping:
    a run with small epochs (requests pending before they are planned, compactions while
    chains are anchored on committed rows) writes the records of a run with the defaults.
    (10,000 vCPUs: this size once caught a compaction that dropped such an anchor.)"""
    import hostsim.fleet as fleet

    s = load(
        STEADY,
        [
            "guests.0.count=250",
            "guests.0.vcpus=40",
            "guests.0.workload.rate_hz=10",
            "run.duration_ms=1500",
        ],
    )
    default = simulate(s, "fast", keep_records=True).records
    monkeypatch.setattr(fleet, "EPOCH_ROWS", epoch_rows)
    small = simulate(s, "fast", keep_records=True).records
    assert len(default) > 100_000
    assert default.tobytes() == small.tobytes()


@pytest.mark.parametrize(
    "workload",
    [
        '{kind="bursty",rate_on_hz=3000,rate_off_hz=0,on_ms=5,off_ms=20}',  # off means silent
        '{kind="bursty",rate_on_hz=6000,rate_off_hz=100,on_ms=2,off_ms=3}',  # saturating bursts
        '{kind="bursty",rate_on_hz=500,rate_off_hz=50,on_ms=30,off_ms=30}',  # gentle
    ],
)
@pytest.mark.parametrize("lock_model", ["global", "per-mdev"])
def test_bursty_fleets_match_the_reference(workload: str, lock_model: str) -> None:
    """Bursty groups are planned in the fleet (their gaps as the on/off clock makes them), and
    give the reference's records; with rate 0 while off, a stream can end before the run."""
    from hostsim.engine_fast import FastEngine
    from hostsim.model import Model
    from hostsim.sink import RecordSink

    sets = ["guests.0.count=10", "guests.0.vcpus=4", f"guests.0.workload={workload}"]
    s = load(STEADY, [*sets, "run.duration_ms=120", f'host.lock_model="{lock_model}"'])
    ref = simulate(s, "reference", keep_records=True).records
    fast = simulate(s, "fast", keep_records=True).records
    assert len(ref) > 300
    assert np.array_equal(ref, fast)
    assert len(FastEngine(Model(s), RecordSink(lambda _: None)).fleet.vcpus) == 40
