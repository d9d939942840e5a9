"""The fleet plans ``on_idle`` retries inside the run that needs them (``hostsim.fleet_retry``).

A retried row's retry is planned with its batch and written over the row after it; a retry of
a retry takes one more call; a bursty run's later arrivals are warped again from the arrival
before the retry. These scenarios make all three happen, often, and check the records against
the reference engine; one checks that a lone fast-retrying vCPU plans in few calls.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import hostsim.fleet_retry as fleet_retry
import hostsim.plan as plan
from hostsim.run import simulate
from hostsim.scenario import load, loads

RETRIES = Path(__file__).parent / "scenarios" / "retries.toml"
#: BUSY often enough that retries of retries (and of those) are common
BUSY = 'host.hardware.aqic_rc={"0x00" = 0.55, "0x05" = 0.35, "0x02" = 0.1}'
#: a BUSY enable goes through the disable loop: short sleeps keep the host from crawling
SHORT = 'costs.msleep20="20000ns"'


def _counting(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Count the rows made retries, the calls for retries of retries, the bursty runs
    warped again."""
    seen: Counter[str] = Counter()
    real_in_place = fleet_retry.RetryPlan._retry_in_place
    real_write = fleet_retry.RetryPlan._write_made
    real_rewarp = fleet_retry.RetryPlan._rewarp

    def in_place(self: Any, *a: Any) -> Any:
        made, end_ret = real_in_place(self, *a)
        seen["made"] += len(made)
        seen["ends_retried"] += int(end_ret.sum())
        return made, end_ret

    def write(self: Any, at: int, made: Any, sets: Any) -> Any:
        seen["deep_calls"] += len(sets) - 1
        return real_write(self, at, made, sets)

    def rewarp(self: Any, b: Any, made: Any, gap_next: Any) -> Any:
        seen["rewarped"] += int(self.bursty[b.v[made]].sum())
        return real_rewarp(self, b, made, gap_next)

    monkeypatch.setattr(fleet_retry.RetryPlan, "_retry_in_place", in_place)
    monkeypatch.setattr(fleet_retry.RetryPlan, "_write_made", write)
    monkeypatch.setattr(fleet_retry.RetryPlan, "_rewarp", rewarp)
    return seen


@pytest.mark.parametrize(
    "sets",
    [
        # every steady kind retrying, BUSY a third of the time: chains of retries
        [BUSY, SHORT],
        [BUSY, SHORT, 'host.lock_model="per-mdev"', "run.seed=9"],
        # the default answers (rare retries) over a longer run
        ["run.duration_ms=800"],
        # the v4-2019 variant's decode
        [BUSY, SHORT, 'host.variant="v4-2019"', "run.duration_ms=200"],
    ],
)
def test_retries_in_place_match_the_reference(
    sets: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _check(load(RETRIES, sets), monkeypatch, deep=BUSY in sets)


#: queues of two adapters that seldom answer BUSY, beside the others: a retry (the failed
#: request's queue) is then often answered otherwise than the request it replaces
CALM = """
[[host.hardware.queues]]
adapters = [0, 1]
aqic_rc = { "0x00" = 0.95, "0x05" = 0.05 }
"""


@pytest.mark.parametrize("seed", [5, 12])
def test_retries_on_queues_that_answer_differently(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = RETRIES.read_text() + CALM
    sets = [BUSY, SHORT, f"run.seed={seed}", "guests.1.workload.enable_fraction=0.7"]
    _check(loads(text, str(RETRIES), sets), monkeypatch, deep=True)


def _check(s: Any, monkeypatch: pytest.MonkeyPatch, deep: bool) -> None:
    """Both engines' records equal, with retries made in place (and bursty runs warped again,
    and retries of retries planned, if ``deep``)."""
    seen = _counting(monkeypatch)
    fast = simulate(s, "fast", keep_records=True).records
    ref = simulate(s, "reference", keep_records=True).records
    assert len(ref) > 3000
    assert seen["made"] > 50 and seen["rewarped"] > 0, seen
    if deep:
        assert seen["deep_calls"] > 0, seen
    assert np.array_equal(ref, fast)


LONE = """
[run]
duration_ms = 110
seed = 470
[host]
variant = "v4-2019"
lock_model = "per-mdev"
[costs]
msleep20 = "200000ns"
[host.hardware]
aqic_rc = { "0x00" = 0.93, "0x05" = 0.05, "0x02" = 0.02 }
[[guests]]
name = "g0"
count = 1
vcpus = 1
domains_per_guest = 1
[guests.workload]
kind = "poisson"
rate_hz = 8000.0
retry = "on_idle"
"""


def test_a_lone_retrying_vcpu_plans_in_few_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    """One vCPU at 8 kHz whose enables are retried 7 % of the time: its retries are planned
    with the runs that hold them (about 110 calls when each cut its run and had a call of its
    own; the fast engine was then 0.8x the reference on a fuzz scenario of this shape)."""
    calls = [0]
    real = plan.make_plan

    def counted(*a: Any, **k: Any) -> Any:
        calls[0] += 1
        return real(*a, **k)

    monkeypatch.setattr(plan, "make_plan", counted)
    s = loads(LONE)
    fast = simulate(s, "fast", keep_records=True).records
    assert len(fast) > 800
    assert 0 < calls[0] < 30, calls
    assert np.array_equal(fast, simulate(s, "reference", keep_records=True).records)
