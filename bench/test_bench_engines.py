"""Engine benchmark: the reference (SimPy) and fast engines on the same scenario, side by side.

Group "engines": ``bench/scenarios/steady.toml`` (250 guests, Poisson AQICs at the file's
per-vCPU rate, one global mutex) at 1,000 vCPUs (4 per guest, 1 s simulated) and 10,000 vCPUs
(40 per guest, 0.5 s simulated: the reference engine is slow). Each engine is timed once
(``rounds=1``); the run's summary must equal the other engine's, so a fast wrong result
fails. With ``--benchmark-disable`` (CI) each body runs once on a quarter of the simulated
time. ``extra_info`` holds the requests simulated and requests per wall second, and the fast
run's speed-up over the reference run of the same size.

Run: ``python -m pytest bench/test_bench_engines.py --benchmark-only
--benchmark-columns=min,rounds``; ``--benchmark-disable`` runs each body once, as a test.
"""

from __future__ import annotations

import time
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from hostsim.run import RunResult, simulate
from hostsim.scenario import load
from hostsim.scenario_types import Scenario

STEADY = Path(__file__).parent / "scenarios" / "steady.toml"
#: vCPUs -> (vCPUs per guest, simulated ms).
SIZES = {1_000: (4, 1000), 10_000: (40, 500)}
ENGINES = ("reference", "fast")
#: Requests per wall second of each benchmarked run, by (vCPUs, engine).
RATES: dict[tuple[int, str], float] = {}
#: The summary of each engine's run, by (vCPUs, simulated ms, engine).
COUNTS: dict[tuple[int, float, str], dict[str, Any]] = {}


@cache
def scenario(vcpus: int, ms: float) -> Scenario:
    s = load(STEADY, [f"guests.0.vcpus={SIZES[vcpus][0]}", f"run.duration_ms={ms}"])
    assert s.n_vcpus == vcpus
    return s


def outcome(res: RunResult) -> dict[str, Any]:
    """What both engines must agree on: the whole summary but the engine's name (request and
    outcome counts, exact latency sums, extremes and percentiles)."""
    return {"records": res.n_records, **{k: v for k, v in res.summary.items() if k != "hostsim"}}


def counts_of(vcpus: int, ms: float, engine: str) -> dict[str, Any]:
    """The outcome counts of ``engine`` on ``scenario(vcpus, ms)``: from its benchmarked run if
    that ran already, else from a run made now (not timed)."""
    key = (vcpus, ms, engine)
    if key not in COUNTS:
        COUNTS[key] = outcome(simulate(scenario(vcpus, ms), engine))
    return COUNTS[key]


@pytest.mark.benchmark(group="engines")
@pytest.mark.parametrize(
    ("vcpus", "engine"),
    [(n, e) for n in SIZES for e in ENGINES],
    ids=[f"{n}vcpus-{e}" for n in SIZES for e in ENGINES],
)
def test_engine(benchmark, vcpus: int, engine: str) -> None:
    ms = SIZES[vcpus][1] / (4 if benchmark.disabled else 1)
    s = scenario(vcpus, ms)
    wall: list[float] = []

    def once() -> RunResult:
        t0 = time.perf_counter()
        res = simulate(s, engine)
        wall.append(time.perf_counter() - t0)
        return res

    res = benchmark.pedantic(once, rounds=1, iterations=1)
    got = outcome(res)
    COUNTS[(vcpus, ms, engine)] = got
    # The invariant: the other engine's run of the same scenario ends the same way.
    other = "fast" if engine == "reference" else "reference"
    assert got == counts_of(vcpus, ms, other)
    # ... and the run did what the scenario says: every request an enable, no host events, and
    # as many requests as the per-vCPU rate makes while the mutex keeps up (stalled vCPUs issue
    # less once it saturates).
    offered = s.guests[0].workload.rate_hz * vcpus * s.duration_ns / 1e9
    if res.summary["mutex"]["utilisation"] < 0.5:
        assert got["records"] == pytest.approx(offered, rel=0.05)
    else:
        assert 0.5 * offered < got["records"] < 1.05 * offered
    assert got["counts"]["path"]["hook_enable"] == got["records"] - got["counts"]["warmup"]
    assert got["counts"]["host_events"] == 0

    rate = res.n_records / wall[-1]
    RATES[(vcpus, engine)] = rate
    benchmark.extra_info.update(
        vcpus=vcpus,
        engine=engine,
        simulated_ms=s.duration_ns / 1e6,
        requests=res.n_records,
        requests_per_s=round(rate),
    )
    if engine == "fast" and (vcpus, "reference") in RATES:
        benchmark.extra_info["speedup_vs_reference"] = round(rate / RATES[(vcpus, "reference")], 2)
