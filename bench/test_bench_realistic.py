"""Realistic-scenario benchmark: both engines on the scenarios users actually run, side by side.

Group "realistic": each scenario of :data:`SCENARIOS` (files in ``bench/scenarios/``, and the
boot storm of ``workloads/boot-storm.toml``) runs once with the reference engine and once with
the fast engine, the same scenario and seed, in this one session; the two must give the same
whole summary (so a fast wrong result fails). ``extra_info`` holds the requests simulated,
requests per wall second, and for the fast run its speed-up over the reference run.

Run: ``python -m pytest bench/test_bench_realistic.py --benchmark-only
--benchmark-columns=min,rounds``; with ``--benchmark-disable`` (CI) each body runs once, on a
quarter of the simulated time where the scenario has no host events.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from bench.test_bench_scale import fingerprint, timed_run
from hostsim.run import RunResult, simulate
from hostsim.scenario import load
from hostsim.scenario_types import Scenario

HERE = Path(__file__).parent / "scenarios"
ROOT = Path(__file__).parents[1]
#: name -> scenario file
SCENARIOS = {
    "steady-10k": HERE / "steady-10k.toml",
    "default": HERE / "default.toml",
    "knee-44-global": HERE / "knee-44-global.toml",
    "knee-44-per-mdev": HERE / "knee-44-per-mdev.toml",
    "mixed-9600": HERE / "mixed-9600.toml",
    "closed-1000": HERE / "closed-1000.toml",
    "bursty-1000": HERE / "bursty-1000.toml",
    "retry-1000": HERE / "retry-1000.toml",
    "retry-busy-1000": HERE / "retry-busy-1000.toml",
    "boot-storm": ROOT / "workloads" / "boot-storm.toml",
}
ENGINES = ("reference", "fast")
RATES: dict[tuple[str, str], float] = {}
SUMMARIES: dict[tuple[str, str], str] = {}


def scenario(name: str, quarter: bool) -> Scenario:
    s = load(SCENARIOS[name])
    # (Scenarios with host events, the boot storm among them, keep their duration.)
    if quarter and name != "boot-storm" and not s.events:
        s = load(SCENARIOS[name], [f"run.duration_ms={s.duration_ns / 4e6!r}"])
    return s


@pytest.mark.benchmark(group="realistic")
@pytest.mark.parametrize(
    ("name", "engine"),
    [(n, e) for n in SCENARIOS for e in ENGINES],
    ids=[f"{n}-{e}" for n in SCENARIOS for e in ENGINES],
)
def test_realistic(benchmark, name: str, engine: str) -> None:
    s = scenario(name, benchmark.disabled)
    res, wall = timed_run(benchmark, s, engine)
    other = "fast" if engine == "reference" else "reference"
    if (name, other) not in SUMMARIES:
        SUMMARIES[(name, other)] = fingerprint(simulate(s, other))
    report(benchmark, name, engine, res, wall)


def report(benchmark, name: str, engine: str, res: RunResult, wall: float) -> None:
    """Check the run's summary against the other engine's (when made) and note its rate, and
    for the fast run its speed-up over the reference run."""
    SUMMARIES[(name, engine)] = fingerprint(res)
    other = "fast" if engine == "reference" else "reference"
    if (name, other) in SUMMARIES:
        assert SUMMARIES[(name, engine)] == SUMMARIES[(name, other)]
    assert res.n_records > 0
    rate = res.n_records / wall
    RATES[(name, engine)] = rate
    benchmark.extra_info.update(
        scenario=name, engine=engine, requests=res.n_records, requests_per_s=round(rate)
    )
    if engine == "fast" and (name, "reference") in RATES:
        benchmark.extra_info["speedup_vs_reference"] = round(rate / RATES[(name, "reference")], 2)


@pytest.fixture(scope="module")
def recording(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Path:
    """A recording of the steady-10k scenario (``hostsim run --record``), made once."""
    disabled = request.config.getoption("benchmark_disable", False)
    path = tmp_path_factory.mktemp("replay") / "steady-10k.jsonl"
    simulate(scenario("steady-10k", bool(disabled)), "fast", record=path)
    return path


@pytest.mark.benchmark(group="realistic")
@pytest.mark.parametrize("engine", ENGINES)
def test_realistic_replay(benchmark, recording: Path, engine: str) -> None:
    """``hostsim replay`` of the steady-10k recording, the rows read from the feed as the run
    goes. The feed's one parsing and validating pass (the same for both engines) is the
    untimed setup of each round."""
    from workloads.replay_run import plan_replay

    box: dict = {}

    def setup() -> tuple[tuple, dict]:
        return (plan_replay(str(recording), None, None, [], False),), {}

    def once(plan) -> None:
        t = time.perf_counter()
        box["res"] = simulate(plan.scenario, engine, replay=plan.feed)
        box["wall"] = time.perf_counter() - t

    benchmark.pedantic(once, setup=setup, rounds=1, iterations=1)
    report(benchmark, "replay-steady-10k", engine, box["res"], box["wall"])
