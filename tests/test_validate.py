"""The queueing-theory showcase (``hostsim validate``) at CI size: the same three checks with
fewer requests, so a looser tolerance (the documented run uses 40 million per check, 1 %)."""

from __future__ import annotations

import pytest

from hostsim import validate


def test_mva_matches_the_closed_form_for_one_customer() -> None:
    """With one customer there is no queue: R = S and X = 1 / (Z + S)."""
    x, r = validate.mva(1, 900.0, 100.0)
    assert r == 100.0 and x == pytest.approx(1 / 1000)


@pytest.mark.parametrize("check", ["mm1", "md1"])
def test_open_queue_matches_theory(check: str) -> None:
    c = getattr(validate, check)(rho=0.9, requests=250_000, vcpus=5_000)
    assert c.rel_error < 0.08 or abs(c.simulated - c.theory) <= c.ci95, c.line()


def test_closed_population_matches_mva() -> None:
    resp, thr = validate.closed(requests=250_000)
    assert thr.rel_error < 0.02, thr.line()
    assert resp.rel_error < 0.06, resp.line()
