"""The hardware answers of one request in plain Python (``hw_profiles.answers_one``) equal the
vectorised mapping (``hw_profiles.answers``) for every profile and uniform, bucket edges
included."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from hostsim.hw_profiles import Profile, answers, answers_one, deterministic, profile
from hostsim.intercept import AQIC_SLOTS, TAPQ_SLOTS
from hostsim.scenario_types import Hardware


@st.composite
def hardware(draw: st.DrawFn) -> Hardware:
    def table() -> tuple[tuple[int, float], ...]:
        rcs = draw(st.lists(st.integers(0, 0xFF), min_size=1, max_size=4, unique=True))
        weights = draw(st.lists(st.integers(1, 8), min_size=len(rcs), max_size=len(rcs)))
        total = sum(weights)
        return tuple((rc, w / total) for rc, w in zip(rcs, weights, strict=True))

    edge = st.sampled_from([0.0, 0.25, 0.5, 1.0])
    return Hardware(
        aqic_rc=table(),
        tapq_rc=table(),
        tapq_irq_enabled=draw(edge | st.floats(0.0, 1.0)),
        pin_fail=draw(edge | st.floats(0.0, 1.0)),
    )


def _uniforms(p: Profile, width: int) -> st.SearchStrategy[list[float]]:
    """Uniforms in [0, 1), the profile's own cumulative edges among them (the ties of
    ``searchsorted(side="right")``)."""
    edges = [float(x) for x in np.concatenate([p.aqic_cdf, p.tapq_cdf]) if x < 1.0]
    u = st.floats(0.0, 1.0, exclude_max=True)
    if edges:
        u = u | st.sampled_from(edges)
    return st.lists(u, min_size=width, max_size=width)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_one_request_answers_equal_the_vectorised(data: st.DataObject) -> None:
    p = profile(data.draw(hardware()))
    prof = np.zeros(1, np.int16)
    if data.draw(st.booleans()) and deterministic([p]):
        want = answers([p], prof, None, None, None, None)
        got = answers_one(p, None, None, None, None)
    else:
        au = data.draw(_uniforms(p, AQIC_SLOTS))
        tu = data.draw(_uniforms(p, TAPQ_SLOTS))
        iu = data.draw(_uniforms(p, TAPQ_SLOTS))
        pu = data.draw(_uniforms(p, 1))[0]
        want = answers([p], prof, np.array([au]), np.array([tu]), np.array([iu]), np.array([pu]))
        got = answers_one(p, au, tu, iu, pu)
    aq, trc, tirq, pin = (w[0] for w in want)
    assert got[0] == aq.tolist()
    assert got[1] == trc.tolist()
    assert got[2] == tirq.tolist()
    assert got[3] == bool(pin)
    assert all(type(x) is int for x in got[0] + got[1])
    assert all(type(x) is bool for x in got[2]) and type(got[3]) is bool


def test_a_deterministic_profile_answers_its_one_answer() -> None:
    p = profile(Hardware(aqic_rc=((5, 1.0),), tapq_rc=((2, 1.0),), tapq_irq_enabled=1.0))
    aq, trc, tirq, pin = answers_one(p, None, None, None, None)
    assert aq == [5 << 16] * AQIC_SLOTS and trc == [2] * TAPQ_SLOTS
    assert tirq == [True] * TAPQ_SLOTS and pin is True
