"""How long msleep(20) and the reset interval last, by kernel release and HZ (spec
``host-operations.md`` section 4)."""

from __future__ import annotations

import pytest

from hostsim import sleeps
from hostsim.scenario import loads
from hostsim.scenario_types import ScenarioError

MS = 1_000_000
GUESTS = '[[guests]]\nname = "a"\ncount = 1\nvcpus = 1\n'


def host(body: str) -> str:
    return f"[host]\n{body}\n{GUESTS}"


@pytest.mark.parametrize(
    ("kernel", "hz", "low_ms", "high_ms"),
    [
        ("6.11", 100, 30, 40),  # msecs_to_jiffies(20) + 1 = 3 jiffies, rounded up to the 4th tick
        ("6.12", 100, 20, 30),  # 4381b895f544: no extra jiffy
        ("6.11", 1000, 21, 22),
        ("6.12", 1000, 20, 21),
        ("5.3", 100, 30, 40),
        ("6.15", 250, 20, 24),
    ],
)
def test_msleep_20_lasts_by_release_and_hz(kernel: str, hz: int, low_ms: int, high_ms: int) -> None:
    assert sleeps.msleep_range_ns(20, kernel, hz) == (low_ms * MS, high_ms * MS)


def test_the_worst_disable_loop_is_300_to_400_ms_up_to_6_11_and_200_to_300_from_6_12() -> None:
    for kernel, (lo, hi) in (("6.11", (300, 400)), ("6.12", (200, 300))):
        low, high = sleeps.msleep_range_ns(20, kernel, 100)
        assert (10 * low, 10 * high) == (lo * MS, hi * MS)


def test_release_parsing() -> None:
    assert sleeps.release("6.12.3") == (6, 12)
    assert sleeps.release("6.12-rc1") == (6, 12)
    with pytest.raises(ValueError, match=r"MAJOR\.MINOR"):
        sleeps.release("six")


@pytest.mark.parametrize(
    ("variant", "low_ms"), [("upstream", 20), ("merged-2019", 30), ("v4-2019", 30)]
)
def test_each_variant_sleeps_as_its_release(variant: str, low_ms: int) -> None:
    s = loads(host(f'variant = "{variant}"'))
    for name in ("msleep20", "reset_interval"):
        d = s.costs[name]
        assert d.kind == "uniform" and d.p("low_ns") == low_ms * MS
        assert d.p("high_ns") == (low_ms + 10) * MS


def test_host_kernel_and_hz_set_the_sleeps_unless_the_cost_is_given() -> None:
    s = loads(host('kernel = "6.6"\nhz = 1000'))
    assert s.host.kernel == "6.6" and s.host.hz == 1000
    assert s.costs["msleep20"].p("low_ns") == 21 * MS
    s = loads(host('kernel = "6.6"') + '[costs]\nmsleep20 = "25ms"\n')
    assert s.costs["msleep20"].kind == "fixed" and s.costs["reset_interval"].p("low_ns") == 30 * MS


@pytest.mark.parametrize(
    ("body", "key"),
    [
        ('kernel = "six"', "host.kernel"),
        ("hz = 99", "host.hz"),
        ("hz = 250.0", "host.hz"),  # equal to a choice, but not an integer (once taken as one)
    ],
)
def test_bad_kernel_or_hz_names_the_key(body: str, key: str) -> None:
    with pytest.raises(ScenarioError, match=key.replace(".", r"\.")):
        loads(host(body))
