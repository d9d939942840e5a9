"""How many requests the fleet plans per closed-loop vCPU at a time (``fleet.refill_size``).

A planning call costs about a millisecond whatever it plans, so a short run plans each closed
loop's whole run at once: a small run with closed loops and retried enables (a random scenario
where the fast engine was once slower than the reference: 153 planning calls for 1,139
requests) makes few calls. The size is bookkeeping: records do not depend on it.
"""

from __future__ import annotations

import pytest

import hostsim.fleet as fleet
import hostsim.plan as plan
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
    real = plan.make_plan

    def counted(*a: object, **k: object) -> object:
        calls[0] += 1
        return real(*a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(plan, "make_plan", counted)
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


TINY = 35  # closed loops expected to issue about 11 requests in 30 ms, beside a Linux guest


def test_a_tiny_fleet_is_not_made(monkeypatch: pytest.MonkeyPatch) -> None:
    """A fleet expected to issue fewer than ``SMALL_FLEET`` requests is not made: its vCPUs
    run one request at a time (the fast engine was 0.87x the reference on this scenario with a
    fleet of 7 closed loops); a larger one is. Either way the records are the same."""
    tiny, small = loads(scenario_text(TINY)), loads(scenario_text(SMALL))
    made: list[int] = []
    real = fleet.Fleet.__init__

    def counted(self: fleet.Fleet, m: object, vcpus: object, free: object) -> None:
        made.append(len(vcpus))  # type: ignore[arg-type]
        real(self, m, vcpus, free)  # type: ignore[arg-type]

    monkeypatch.setattr(fleet.Fleet, "__init__", counted)
    without = simulate(tiny, "fast", keep_records=True).records
    assert made[-1] == 0 and len(without) > 20
    simulate(small, "fast")
    assert made[-1] > 0
    monkeypatch.setattr(fleet, "SMALL_FLEET", 0)  # the same tiny run with its fleet
    with_fleet = simulate(tiny, "fast", keep_records=True).records
    assert made[-1] > 0
    assert with_fleet.tobytes() == without.tobytes()
    assert without.tobytes() == simulate(tiny, "reference", keep_records=True).records.tobytes()


CRAWL = 544  # 38 open-loop vCPUs offering ~5,000 requests in 40 ms; 2 ms sleeps under one mutex


def test_a_short_run_plans_a_short_first_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    """A run that two epochs cover plans a short first one (``fleet.FIRST_EPOCH``): the host
    here serves 101 of the ~5,000 requests its vCPUs offer, and planning them all at once made
    the fast engine 0.91x the reference. The epochs' lengths do not change a record."""
    s = loads(scenario_text(CRAWL))
    rows = [0]
    real = plan.make_plan

    def counted(m: object, group: int, lv: list[int], *a: object, **k: object) -> object:
        rows[0] += len(lv)
        return real(m, group, lv, *a, **k)  # type: ignore[arg-type]

    monkeypatch.setattr(plan, "make_plan", counted)
    short = simulate(s, "fast", keep_records=True).records
    short_rows, rows[0] = rows[0], 0
    monkeypatch.setattr(fleet, "FIRST_EPOCH", 1)
    whole = simulate(s, "fast", keep_records=True).records
    assert 50 < len(short) < 200
    assert 4 * short_rows < 3 * rows[0], (short_rows, rows[0])  # (3,953 and 5,955)
    assert short.tobytes() == whole.tobytes()
    assert short.tobytes() == simulate(s, "reference", keep_records=True).records.tobytes()
