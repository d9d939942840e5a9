"""The fast engine's side heap: one-at-a-time vCPUs that share no mutex with the fleet.

With per-mdev locks, a guest that host events touch (its vCPUs simulated one request at a
time) takes a mutex no fleet vCPU takes. While no host program runs, its entries wait in a heap
of their own that the fleet does not stop for; when a program starts they join the main heap,
where the fleet stops for them again. Records must not change.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hostsim.engine_fast import FastEngine
from hostsim.model import Model
from hostsim.run import simulate
from hostsim.scenario import load
from hostsim.scenario_types import Scenario
from hostsim.sink import RecordSink
from tests.test_process import monitor

KNEE = Path(__file__).parents[1] / "bench" / "scenarios" / "knee-44-global.toml"
TIES = Path(__file__).parent / "scenarios" / "ties.toml"
SMALL = [
    "guests.0.count=8",
    "run.duration_ms=400",
    "events.0.at_ms=100",  # irq_disable db[0]
    "events.1.at_ms=200",  # detach app[3]
    "events.2.at_ms=300",  # attach app[3]
]


class Watched(FastEngine):
    """The fast engine, counting the entries that went to the side heap, how many waited
    there when a host program started, and entries run while an earlier one waited aside."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.to_side = 0
        self.moved: list[int] = []
        self.overtaken = 0

    def _event(self, t: int, ident: int, kind: int) -> None:
        self.overtaken += bool(self.side) and self.side[0][0] < t
        super()._event(t, ident, kind)

    def _push(self, t: int, prio: int, cls: int, ident: int, kind: int) -> None:
        n = len(self.side)
        super()._push(t, prio, cls, ident, kind)
        self.to_side += len(self.side) > n

    def _program_started(self) -> None:
        self.moved.append(len(self.side))
        super()._program_started()


def watched(s: Scenario, *procs: Any) -> Watched:
    eng = Watched(Model(s), RecordSink(lambda chunk: None), procs)
    eng.run()
    return eng


def same_records(s: Scenario, *procs: Any) -> None:
    ref = simulate(s, "reference", keep_records=True, processes=procs)
    fast = simulate(s, "fast", keep_records=True, processes=procs)
    assert len(ref.records) > 5000
    for name in ("records", "host_events", "queues", "blocks"):
        assert np.array_equal(getattr(ref, name), getattr(fast, name)), name


def test_per_mdev_apart_vcpus_wait_aside_and_give_the_reference_records() -> None:
    s = load(KNEE, [*SMALL, 'host.lock_model="per-mdev"'])
    eng = watched(s)
    assert eng.apart == set(eng.vguest)  # app[3]'s and db[0]'s vCPUs: their own mutexes
    assert eng.to_side > 500  # (their checks and read sides make no entry while no program runs)
    assert any(eng.moved)  # a host program started while side entries waited: they moved
    assert eng.running == 0 and not eng.side  # every program ended; the side heap is empty
    assert eng.overtaken == 0
    same_records(s)


def test_entries_left_in_the_main_heap_run_in_key_order_with_the_side_heaps() -> None:
    """After a program ends, a vCPU may have entries in both heaps; the fleet, which runs the
    engine's own entries that come before its next request itself, must not run a main-heap
    entry while an earlier one waits aside (ties: many entries at the same nanosecond)."""
    s = load(TIES, ['host.lock_model="per-mdev"'])
    eng = watched(s)
    assert eng.apart and eng.to_side > 100 and any(eng.moved)
    assert eng.overtaken == 0
    same_records(s)


def test_a_shared_mutex_keeps_every_entry_in_the_main_heap() -> None:
    s = load(KNEE, SMALL)  # one global mutex: the fleet stops for every one-at-a-time request
    eng = watched(s)
    assert not eng.apart and eng.to_side == 0
    same_records(s)


@pytest.mark.parametrize("period_ms", [1, 50])
def test_a_user_process_that_runs_all_along_keeps_them_in_the_main_heap(period_ms: int) -> None:
    s = load(KNEE, [*SMALL, 'host.lock_model="per-mdev"'])

    def agent() -> Any:
        return monitor(s.n_guests, period_ms * 1_000_000)

    eng = watched(s, agent)
    # The agent starts at 0 and runs all along: only the vCPUs' first entries went aside,
    # and they moved into the main heap when it started.
    assert eng.apart and eng.to_side == eng.moved[0] == len(eng.apart)
    same_records(s, agent)
