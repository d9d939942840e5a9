"""A large plan draws each request's first hardware answers only (``plan.LAZY_HW_ROWS``).

The requests whose decision makes a second AQIC or TAPQ call (a failed enable's disable loop,
a TAPQ loop waiting for the I bit) have their later answers drawn and are decoded again; the
plan must be the one made with every answer drawn, row for row.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import hostsim.plan as plan
from hostsim.model import Model
from hostsim.run import simulate
from hostsim.scenario import load

RETRIES = Path(__file__).parent / "scenarios" / "retries.toml"
#: answers that send many requests through the later calls: BUSY and RESET IN PROGRESS
#: enables (the disable loop), disables (1 in 3) whose TAPQs see the I bit on
HW = [
    'host.hardware.aqic_rc={"0x00" = 0.7, "0x05" = 0.2, "0x02" = 0.1}',
    "host.hardware.tapq_irq_enabled=0.5",
    'host.hardware.tapq_rc={"0x00" = 0.8, "0x05" = 0.2}',
    "guests.1.workload.enable_fraction=0.66",
    'costs.msleep20="20000ns"',
]


def _plans(m: Model, group: int, n: int, regs: bool) -> tuple[dict[str, np.ndarray], np.ndarray]:
    lv = np.arange(n, dtype=np.int64) % (m.s.guests[group].count * m.s.guests[group].vcpus)
    k = np.arange(n, dtype=np.int64) // 7
    own = None
    if regs:  # a retry's registers: those of another request, its queue's answers
        other = m.draws(group, lv, k + 1).regs
        own = {name: np.asarray(a).copy() for name, a in other.items()}
    return plan.make_plan(m, group, lv, k, regs=own)


@pytest.mark.parametrize("regs", [False, True])
def test_a_lazy_plan_is_the_whole_plan(regs: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    m = Model(load(RETRIES, HW))
    group = 1  # Poisson, enables and disables
    monkeypatch.setattr(plan, "LAZY_HW_ROWS", 1 << 40)
    whole, whole_tail = _plans(m, group, 20_000, regs)
    monkeypatch.setattr(plan, "LAZY_HW_ROWS", 1)
    lazy, lazy_tail = _plans(m, group, 20_000, regs)
    later = int(
        np.count_nonzero((whole_tail["hw_aqic_calls"] > 1) | (whole_tail["hw_tapq_calls"] > 1))
    )
    assert later > 1000  # many rows read a later answer
    assert whole_tail.tobytes() == lazy_tail.tobytes()
    for name in plan.PLAN_COLUMNS:
        assert np.array_equal(whole[name], lazy[name]), name


def test_lazy_answers_keep_the_records(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every plan lazy, and none: the fast engine's records, and the reference's."""
    s = load(RETRIES, HW)
    monkeypatch.setattr(plan, "LAZY_HW_ROWS", 1)
    lazy = simulate(s, "fast", keep_records=True).records
    monkeypatch.setattr(plan, "LAZY_HW_ROWS", 1 << 40)
    whole = simulate(s, "fast", keep_records=True).records
    assert len(lazy) > 5000
    assert lazy.tobytes() == whole.tobytes()
    assert lazy.tobytes() == simulate(s, "reference", keep_records=True).records.tobytes()
