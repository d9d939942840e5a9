"""The queueing-theory showcase (``hostsim validate``) at CI size: the same three checks with
fewer requests. Each check's tolerance follows from its own sample (the 99.9 % interval of its
batch means), so the same PASS rule holds at 250,000 requests as at 40 million."""

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
    assert c.passed, c.line()
    assert c.line().startswith("PASS")


def test_closed_population_matches_mva() -> None:
    resp, thr = validate.closed(requests=250_000)
    assert thr.passed, thr.line()
    assert resp.passed, resp.line()


def test_a_check_fails_when_theory_is_outside_what_its_sample_allows() -> None:
    c = validate.Check("x", "mean", theory=100.0, simulated=103.0, ci95=1.0, requests=1000)
    assert c.tolerance == pytest.approx(1.0 / 2.045 * 3.659)
    assert not c.passed and c.line().startswith("FAIL")
    wide = validate.Check("x", "mean", theory=100.0, simulated=103.0, ci95=2.5, requests=10)
    assert wide.passed


def test_validate_cli_says_pass_or_fail_per_line(capsys: pytest.CaptureFixture[str]) -> None:
    from hostsim.cli import main

    rc = main(["validate", "--requests", "200000", "--closed-requests", "200000"])
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 5 and all(line[:4] in ("PASS", "FAIL") for line in out)
    assert out[-1].startswith("PASS: 4 of 4 checks") and rc == 0
