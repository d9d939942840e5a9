"""User host processes (hostsim.process): both engines run them and give the same records."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from hostsim.process import Acquire, Delay, ProcessError, Release, Step
from hostsim.run import RunResult, simulate
from hostsim.scenario import load, loads
from hostsim.scenario_types import Scenario

ROOT = Path(__file__).parents[1]
KNEE = ROOT / "bench" / "scenarios" / "knee-44-global.toml"
STEADY = ROOT / "bench" / "scenarios" / "steady.toml"  # no host events: any duration


def monitor(guests: int, period: int = 100_000_000, read: int = 4_000) -> Iterator[Step]:
    """A monitoring agent: every period, each mdev's attributes read under the lock."""
    while True:
        for g in range(guests):
            yield Acquire(g)
            yield Delay(read)
            yield Delay(read)
            yield Release()
        yield Delay(period)


def sleeper(guest: int) -> Iterator[Step]:
    """Holds the lock across a 20 ms sleep, then sleeps 20 ms with the lock dropped."""
    yield Delay(150_000_000)
    while True:
        yield Acquire(guest)
        yield Delay(20_000_000)
        yield Release()
        yield Delay(20_000_000)
        yield Acquire(guest)
        yield Delay(5_000)
        yield Release()
        yield Delay(300_000_000)


def both(s: Scenario, *procs) -> tuple[RunResult, RunResult]:
    ref = simulate(s, "reference", keep_records=True, processes=list(procs))
    fast = simulate(s, "fast", keep_records=True, processes=list(procs))
    assert ref.records.tobytes() == fast.records.tobytes()
    assert ref.host_events.tobytes() == fast.host_events.tobytes()
    assert ref.processes.tobytes() == fast.processes.tobytes()
    return ref, fast


def test_a_monitoring_agent_runs_the_same_in_both_engines() -> None:
    s = load(None)
    ref, _ = both(s, lambda: monitor(s.n_guests))
    sec = ref.processes
    # one scan 100 ms after the last ended, over 4 s: 40 unless a scan waited behind the host's
    # long holders (the starts' and the stop's queue resets, a reset interval each)
    scans, rest = divmod(len(sec), s.n_guests)
    assert rest == 0 and 25 <= scans <= 40
    assert np.array_equal(sec["t_rel"] - sec["t_grant"], np.full(len(sec), 8_000))
    assert (sec["t_grant"] >= sec["t_req"]).all()
    # It waits behind the guests' holders sometimes, and they behind it.
    assert (sec["t_grant"] > sec["t_req"]).any()


@pytest.mark.parametrize("lock_model", ["global", "per-mdev"])
def test_a_lock_held_across_a_sleep_and_dropped_across_one(lock_model: str) -> None:
    s = loads(
        KNEE.read_text()
        .replace("at_ms = 1200", "at_ms = 500")
        .replace("at_ms = 1500", "at_ms = 7"),
        str(KNEE),
        ["run.duration_ms=800", f'host.lock_model="{lock_model}"'],
    )
    plain = simulate(s, "fast", keep_records=True)
    ref, _ = both(s, lambda: sleeper(0), lambda: monitor(s.n_guests, 50_000_000))
    waits = ref.records["t_mutex_grant"] - ref.records["t_mutex_req"]
    taken = ref.records["t_mutex_req"] >= 0
    sleeps = ref.processes[ref.processes["process"] == 0]
    assert len(sleeps) == 4  # two rounds (150 ms and 490 ms) of two sections
    if lock_model == "global":
        # Everyone who asked during the 20 ms hold waited for it.
        hold = sleeps[0]
        inside = taken & (ref.records["t_mutex_req"] > hold["t_grant"])
        inside &= ref.records["t_mutex_req"] < hold["t_rel"]
        assert inside.any() and (ref.records["t_mutex_grant"][inside] >= hold["t_rel"]).all()
        assert waits[taken].max() >= 15_000_000
    assert plain.records.tobytes() != ref.records.tobytes()  # the processes did something


def test_processes_stop_at_the_end_of_the_run() -> None:
    s = load(STEADY, ["run.duration_ms=300", "guests.0.count=10"])

    def busy() -> Iterator[Step]:
        while True:
            yield Delay(1_000_000)

    ref, _ = both(s, busy, lambda: monitor(s.n_guests))
    assert len(ref.processes) == 3 * s.n_guests


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ([Release()], "Release without Acquire"),
        ([Acquire(10_000)], "expected a guest index"),
        ([Delay(-1)], "expected an integer >= 0"),
        ([Acquire(0), Delay(5)], "no Release"),
        ([Acquire(0), Acquire(1)], "already held"),
        (["sleep"], "is not a step"),
    ],
)
@pytest.mark.parametrize("engine", ["reference", "fast"])
def test_bad_steps_are_named(steps: list, message: str, engine: str) -> None:
    s = load(STEADY, ["guests.0.count=10"])
    with pytest.raises(ProcessError, match=message):
        simulate(s, engine, processes=[lambda: iter(steps)])
