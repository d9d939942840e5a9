"""The fleet's scalar stretches time runs of requests at once (``FleetScalar._segment``).

A segment is the next requests of a stretch before any engine event or successor can act,
with the heap's entries among them; it is cut where a successor comes first, and it plans
the next epoch when a request's successor is not planned yet. These scenarios make all of that
happen (a large fleet with host events, closed loops beside it, global and per-mdev locks) and
check the records against the reference engine and against stretches with no segments.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import hostsim.fleet_scalar as fleet_scalar
from hostsim.run import simulate
from hostsim.scenario import load

BENCH = Path(__file__).parents[1] / "bench" / "scenarios"
MIXED = BENCH / "mixed-9600.toml"


def _mixed(apps: int, ms: int, *extra: str) -> Any:
    """The bench's mixed host, smaller: ``apps`` guests of 40 Poisson vCPUs beside the closed
    loops, with the detach, attach and irq disable inside ``ms``."""
    return load(
        MIXED,
        [
            f"guests.0.count={apps}",
            f"run.duration_ms={ms}",
            f"events.0.at_ms={ms // 5}",
            f"events.1.at_ms={ms // 2}",
            f"events.2.at_ms={3 * ms // 4}",
            *extra,
        ],
    )


def _counting(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Count the segments, the requests they commit and the heap entries they take in."""
    seen: Counter[str] = Counter()
    real = fleet_scalar.FleetScalar._segment

    def segment(self: Any, cols: Any, heap: Any, *rest: int) -> Any:
        done, taken, cut = real(self, cols, heap, *rest)
        seen["segments"] += 1
        seen["requests"] += len(done[0])
        seen["from_heap"] += len(done[0]) - taken
        seen["cut"] += cut
        return done, taken, cut

    monkeypatch.setattr(fleet_scalar.FleetScalar, "_segment", segment)
    return seen


@pytest.mark.parametrize(
    ("apps", "ms", "lock"),
    [
        (60, 300, "global"),
        (60, 300, "per-mdev"),
        # stretches that end at their budget while the heap holds later entries (this case once
        # caught a segment that took those entries in before the run's own)
        (240, 200, "global"),
    ],
)
def test_segments_match_the_reference(
    apps: int, ms: int, lock: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = _mixed(apps, ms, f'host.lock_model="{lock}"')
    seen = _counting(monkeypatch)
    fast = simulate(s, "fast", keep_records=True).records
    ref = simulate(s, "reference", keep_records=True).records
    assert len(ref) > 5000
    assert seen["requests"] > 1000 and seen["from_heap"] > 0 and seen["cut"] > 0, seen
    assert np.array_equal(ref, fast)


def test_segments_do_not_change_a_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """A large fleet whose stretches end at their budget and plan epochs inside segments: the
    records of stretches without segments, byte for byte."""
    seen, n = _same_without_segments(_mixed(240, 900), monkeypatch)
    assert n > 80_000 and seen["requests"] > n // 2, seen


@pytest.mark.parametrize(
    ("scenario", "sets"),
    [
        # bursts: segments cut short by successors, the heap's many entries taken in
        ("bursty-1000.toml", ["run.duration_ms=400"]),
        # BUSY enables retried on idle (successors planned as retries inside a segment)
        ("retry-1000.toml", ["run.duration_ms=300", "guests.0.workload.rate_hz=400"]),
    ],
)
def test_segments_keep_every_workload(
    scenario: str, sets: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Segments change no record of the bench's other shapes (fast engine with and without)."""
    _same_without_segments(load(BENCH / scenario, sets), monkeypatch)


@pytest.mark.parametrize(("apps", "seed", "lock"), [(120, 7, "global"), (240, 11, "per-mdev")])
def test_segments_keep_other_seeds(
    apps: int, seed: int, lock: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = _mixed(apps, 300, f"run.seed={seed}", f'host.lock_model="{lock}"')
    _same_without_segments(s, monkeypatch)


def _same_without_segments(s: Any, monkeypatch: pytest.MonkeyPatch) -> tuple[Counter[str], int]:
    """Run ``s`` with segments and without (the fast engine): the same records, byte for
    byte; returns what the segments did and how many records there are."""
    seen = _counting(monkeypatch)
    with_segments = simulate(s, "fast", keep_records=True).records
    assert seen["requests"] > 1000, seen
    monkeypatch.setattr(fleet_scalar, "SEGMENT", 1 << 40)
    without = simulate(s, "fast", keep_records=True).records
    assert with_segments.tobytes() == without.tobytes()
    return seen, len(with_segments)
