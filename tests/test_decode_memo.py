"""The fast engine's decode memo gives decode_one's decision for every input, repeated or not."""

from __future__ import annotations

import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hostsim import decode_memo
from hostsim.decode import decode_one
from hostsim.intercept import Intercept
from hostsim.variants import DEFAULT_VARIANT, VARIANTS

from .test_decode_properties import intercepts


@settings(max_examples=200, deadline=None)
@given(st.lists(intercepts(), min_size=1, max_size=8), st.sampled_from(sorted(VARIANTS)))
def test_memo_decides_as_decode_one(xs: list[Intercept], name: str) -> None:
    variant = VARIANTS[name]
    memo = decode_memo.DecodeMemo()
    for x in xs + xs:  # every input twice: the second time from the memo
        assert memo(x, variant) == decode_one(x, variant)
    assert memo.hits >= len(xs)


def test_memo_sees_a_changed_intercept_and_a_changed_answer() -> None:
    """The engines change an intercept between decodes (the hook's registration, the queue's
    answers): the memo decides the changed input, not the one it saw first."""
    variant = VARIANTS[DEFAULT_VARIANT]
    memo = decode_memo.DecodeMemo()
    x = Intercept(gpr0=(3 << 24) | 0x0102, gpr1=1 << 47)
    first = memo(x, variant)
    x.hook_registered = False
    assert memo(x, variant) == decode_one(x, variant) != first
    y = copy.copy(x)
    y.hook_registered = True
    y.hw_aqic = [0x02 << 24]
    assert memo(y, variant) == decode_one(y, variant)


def test_memo_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(decode_memo, "LIMIT", 4)
    variant = VARIANTS[DEFAULT_VARIANT]
    memo = decode_memo.DecodeMemo()
    for apqn in range(10):
        x = Intercept(gpr0=(3 << 24) | apqn)
        assert memo(x, variant) == decode_one(x, variant)
    assert len(memo._memo) <= 4
