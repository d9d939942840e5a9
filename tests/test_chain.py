"""The request's stage chain (hostsim.chain): its scalar and vectorised evaluators agree."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hostsim import chain
from hostsim.costs import PER_CALL_COSTS
from hostsim.decode import Decision
from hostsim.locks import LockTable
from hostsim.request_draws import Costs
from hostsim.rules import Kind, all_rule_ids, rule_code
from hostsim.scenario import default_text, loads

SCENARIO = loads(default_text())
RULES = ["disable.done", *[r for r in all_rule_ids() if r != "disable.done"][:3]]

decisions = st.builds(
    lambda kind, rule, aqic, tapq, sleeps, hook, mutex, pin, gisc: Decision(
        kind=kind,
        rule=rule,
        gr1=0,
        cc=None,
        pgm_code=None,
        response_code=None,
        guest_visible_rc=None,
        hw_aqic_calls=aqic,
        hw_tapq_calls=tapq,
        sleeps=sleeps,
        hook_called=hook or mutex,
        mutex=mutex,
        pin=pin,
        gisc=gisc,
    ),
    st.sampled_from(list(Kind)),
    st.sampled_from(RULES),
    st.integers(0, PER_CALL_COSTS["host_aqic"]),
    st.integers(0, PER_CALL_COSTS["host_tapq"]),
    st.integers(0, PER_CALL_COSTS["msleep20"]),
    st.booleans(),
    st.booleans(),
    st.booleans(),
    st.booleans(),
)


def batch_of(ds: list[Decision]) -> SimpleNamespace:
    """The decisions as a batch decision's arrays."""
    field = lambda name, dtype: np.array([getattr(d, name) for d in ds], dtype)  # noqa: E731
    return SimpleNamespace(
        kind=field("kind", np.int8),
        rule=np.array([rule_code(d.rule) for d in ds], np.int16),
        hw_aqic_calls=field("hw_aqic_calls", np.int64),
        hw_tapq_calls=field("hw_tapq_calls", np.int64),
        sleeps=field("sleeps", np.int64),
        hook_called=field("hook_called", bool),
        mutex=field("mutex", bool),
        pin=field("pin", bool),
        gisc=field("gisc", bool),
    )


def scalar_marks(d: Decision, costs: Costs, r: int) -> dict[str, int]:
    """Walk a request's whole program with every wait zero, one step at a time."""
    f: Any = SimpleNamespace()
    program = chain.PREFIX + chain.PROGRAMS[chain.category_of(d)]
    i, t = 0, 0
    while True:
        t, wait = chain.walk(program, i, t, d, costs, r, 0, f)
        if wait is None:
            return vars(f)
        setattr(f, wait.mark, t)
        i = program.index(wait, i) + 1


@settings(max_examples=60, deadline=None)
@given(st.lists(decisions, min_size=1, max_size=30), st.integers(0, 3))
def test_walk_batch_equals_the_scalar_walk(ds: list[Decision], group: int) -> None:
    group = min(group, len(SCENARIO.guests) - 1)
    n = len(ds)
    lv, k = np.arange(n, dtype=np.int64) % 5, np.arange(n, dtype=np.int64) * 3
    vec = Costs(SCENARIO, group, lv, k)  # 1-D keys: the plan's draws
    one = Costs(SCENARIO, group, lv[:, None], k[:, None])  # (rows, 1): a block's
    b = batch_of(ds)
    cat = chain.categories(b)
    assert cat.tolist() == [chain.category_of(d) for d in ds]
    assert chain.paths(b).tolist() == [int(chain.path_of(d)) for d in ds]
    marks = chain.walk_batch(b, cat, vec, SCENARIO.costs)
    for r, d in enumerate(ds):
        want = scalar_marks(d, one, r)
        got = {name: int(col[r]) for name, col in marks.items()}
        assert {name: got[name] for name in want} == want
        assert all(got[name] == 0 for name in set(got) - set(want))  # marks it never reaches


def test_every_waiting_program_shares_its_steps_up_to_each_wait() -> None:
    """After a wait the decision may change: the new category goes on after the same wait."""
    for wait in (chain.READ, chain.MUTEX):
        prefixes = {
            chain.PROGRAMS[c][: chain.PROGRAMS[c].index(wait)]
            for c in chain.PROGRAMS
            if wait in chain.PROGRAMS[c]
        }
        assert len(prefixes) == 1


@pytest.mark.parametrize("seg", sorted(chain.SEGMENTS))
def test_every_segment_cost_is_a_scenario_cost(seg: str) -> None:
    assert all(t.cost in SCENARIO.costs for t in chain.SEGMENTS[seg])


@pytest.mark.parametrize("cat", sorted(chain.PROGRAMS))
def test_every_request_program_takes_its_locks_in_order_and_releases_them(cat: int) -> None:
    table = LockTable(1)
    held: list[int] = []
    for step in chain.PREFIX + chain.PROGRAMS[cat]:
        if isinstance(step, chain.Wait):
            new = table.instance(step.lock)
            table.check_order(held, new, f"category {cat}")  # raises against the order
            held.append(new)
        elif isinstance(step, chain.Release):
            assert held and held[-1] == table.instance(step.lock), "released innermost first"
            held.pop()
    assert not held
