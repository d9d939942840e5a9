"""How many requests the fleet plans per closed-loop vCPU at a time (``fleet.refill_size``).

A planning call costs about a millisecond whatever it plans, so a short run plans each closed
loop's whole run at once: a small run with closed loops and retried enables (a random scenario
where the fast engine was once slower than the reference: 153 planning calls for 1,139
requests) makes few calls. The size is bookkeeping: records do not depend on it.
"""

from __future__ import annotations

import pytest

import hostsim.fleet as fleet
import hostsim.fleet_pool as fleet_pool
from hostsim.run import simulate
from hostsim.scenario import loads
from tests.test_engine_fuzz import scenario_text

SMALL = 33  # tests/test_engine_fuzz.py's seed: closed loops, on_idle retries, 107 ms


def test_refill_sizes() -> None:
    assert fleet.refill_size(5.35) == 7  # all of a short run, and one more
    assert fleet.refill_size(64) == 65
    assert fleet.refill_size(200) == 50  # a quarter beyond that
    assert fleet.refill_size(10_000) == 64


def test_a_short_closed_loop_run_plans_in_few_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = [0]
    real = fleet_pool.make_plan

    def counted(*a: object, **k: object) -> object:
        calls[0] += 1
        return real(*a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(fleet_pool, "make_plan", counted)
    res = simulate(loads(scenario_text(SMALL)), "fast")
    assert res.n_records > 1000
    assert 0 < calls[0] < 60, calls  # (153 with a quarter of the run at a time)


@pytest.mark.parametrize("size", [1, 3])
def test_refill_sizes_do_not_change_a_run(size: int, monkeypatch: pytest.MonkeyPatch) -> None:
    s = loads(scenario_text(SMALL))
    default = simulate(s, "fast", keep_records=True).records
    monkeypatch.setattr(fleet, "refill_size", lambda expected: size)
    small = simulate(s, "fast", keep_records=True).records
    assert len(default) > 1000
    assert default.tobytes() == small.tobytes()
