"""Durations that cannot be misread (hostsim.units) and the one TOML writer (hostsim.toml_text).

Every duration says its unit: a string such as ``"10ms"`` or a key such as ``median_us``; a bare
number where a unit is needed is refused with a message naming the file, the key and what to
write. Whatever the writer writes loads back: a hypothesis round trip over guest names (newlines,
quotes, backslashes, unicode) and values, scenario -> ``resolved_toml`` -> ``loads``.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hostsim import toml_text, units
from hostsim.costs import COSTS
from hostsim.dists import DistError, parse_dist
from hostsim.scenario import from_dict, load, loads
from hostsim.scenario_toml import resolved_toml
from hostsim.scenario_types import Scenario, ScenarioError

G = '[[guests]]\nname = "a"\ncount = 2\n'


def error_of(text: str, sets: tuple[str, ...] = (), source: str = "my.toml") -> str:
    with pytest.raises(ScenarioError) as info:
        loads(text, source, sets)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"{source}: "), msg
    return msg


# --- the grammar ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("450ns", 450),
        ("10ms", 10_000_000),
        ("2.5 us", 2500),
        ("2.5us", 2500),
        ("0.45us", 450),  # exact: not 450.00000000000006
        ("10µs", 10_000),  # micro sign
        ("10μs", 10_000),  # Greek mu
        ("4s", 4_000_000_000),
        ("1e3ns", 1000),
        (".5ms", 500_000),
        (" 7 ms ", 7_000_000),
        ("0ns", 0),
        ("1.5ns", 1.5),
        ("0.0001us", 0.1),
    ],
)
def test_duration_strings(text: str, ns: float) -> None:
    got = units.parse_duration(text)
    assert got == ns and type(got) is type(ns)


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("10", ("expected a number and a unit", "ns, us, ms or s")),
        ("10 m", ("unknown unit 'm'", "ns, us, ms or s")),
        ("10 min", ("unknown unit 'min'",)),
        ("ms", ("expected a number and a unit",)),
        ("-5ms", ("not negative",)),
        ("10 ms s", ("not a duration",)),
        ("", ("not a duration",)),
        (10, ("a bare number is not a duration", '"10ms"', '"10ns"', "ns = 10")),
        (2.5, ("a bare number", '"2.5ms"')),
        (True, ("expected a duration",)),
        ([1], ("expected a duration",)),
    ],
)
def test_bad_duration_strings(value: Any, words: tuple[str, ...]) -> None:
    with pytest.raises(units.UnitError) as info:
        units.parse_duration(value)
    for w in words:
        assert w in str(info.value), str(info.value)


@given(st.integers(0, 2**53))
def test_unit_string_round_trip_int(ns: int) -> None:
    text = units.format_ns(ns)
    assert units.parse_duration(text) == ns
    assert text.endswith(("ns", "us", "ms", "s"))


@given(st.floats(0, 2.0**53, allow_nan=False, allow_infinity=False))
def test_unit_string_round_trip_float(ns: float) -> None:
    assert units.parse_duration(units.format_ns(ns)) == ns


def test_format_ns_picks_a_readable_unit() -> None:
    assert [units.format_ns(x) for x in (450, 2500, 10_000_000, 4e9, 1.5)] == [
        "450ns",
        "2.5us",
        "10ms",
        "4s",
        "1.5ns",
    ]


# Every spelling of every parameter gives the same distribution.
SPELLINGS: list[tuple[Any, dict[str, Any]]] = [
    ("250us", {"dist": "fixed", "ns": 250_000}),
    ({"dist": "fixed", "ns": 250_000}, {"dist": "fixed", "ns": 250_000}),
    ({"dist": "fixed", "us": 250}, {"dist": "fixed", "ns": 250_000}),
    ({"dist": "fixed", "ms": 0.25}, {"dist": "fixed", "ns": 250_000}),
    ({"dist": "fixed", "s": 0.00025}, {"dist": "fixed", "ns": 250_000}),
    ({"dist": "exponential", "mean_ms": 10}, {"dist": "exponential", "mean_ns": 10_000_000}),
    ({"dist": "exponential", "mean": "10ms"}, {"dist": "exponential", "mean_ns": 10_000_000}),
    ({"dist": "exponential", "mean_s": 0.01}, {"dist": "exponential", "mean_ns": 10_000_000}),
    (
        {"dist": "uniform", "low": "20ms", "high_ms": 30},
        {"dist": "uniform", "low_ns": 20_000_000, "high_ns": 30_000_000},
    ),
    (
        {"dist": "uniform", "low_us": 20_000, "high": "0.03s"},
        {"dist": "uniform", "low_ns": 20_000_000, "high_ns": 30_000_000},
    ),
    (
        {"dist": "lognormal", "median_us": 0.45, "p99_us": 1.5},
        {"dist": "lognormal", "median_ns": 450, "p99_ns": 1500},
    ),
    (
        {"dist": "lognormal", "median": "450ns", "p99": "1.5us"},
        {"dist": "lognormal", "median_ns": 450, "p99_ns": 1500},
    ),
    (
        {"dist": "lognormal", "median_ms": 0.00045, "sigma": 0.5},
        {"dist": "lognormal", "median_ns": 450, "sigma": 0.5},
    ),
    (
        {"dist": "empirical", "samples_us": [1, 2.5, 30]},
        {"dist": "empirical", "samples_ns": [1000, 2500, 30_000]},
    ),
    (
        {"dist": "empirical", "samples": ["1us", "2500ns", "0.03ms"]},
        {"dist": "empirical", "samples_ns": [1000, 2500, 30_000]},
    ),
]


@pytest.mark.parametrize(("value", "same_as"), SPELLINGS)
def test_every_spelling(value: Any, same_as: dict[str, Any]) -> None:
    assert parse_dist(value) == parse_dist(same_as)


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (200, ("a bare number is not a duration", '"200ms"', '"200ns"', "ns = 200")),
        ({"dist": "fixed", "ns": 1, "us": 1}, ("ns and us both give the value: keep one",)),
        (
            {"dist": "lognormal", "median_ns": 1, "median_us": 1, "sigma": 1},
            ("median_ns and median_us both give median",),
        ),
        (
            {"dist": "lognormal", "median": 450, "sigma": 1},
            ("median: a bare number", 'median = "450ms"', "median_ms = 450"),
        ),
        ({"dist": "exponential", "mean_us": "10us"}, ("mean_us", "says its unit", "mean = ")),
        (
            {"dist": "exponential", "mean": "10 parsecs"},
            (
                "mean:",
                "unknown unit 'parsecs'",
            ),
        ),
        ({"dist": "exponential", "mean_ns": 0}, ("mean_ns: expected a positive duration",)),
        ({"dist": "exponential"}, ("missing mean_ns",)),
        ({"dist": "uniform", "low": "2ms", "high": "1ms"}, ("high", "is below low")),
        (
            {"dist": "lognormal", "median": "1us", "p99_us": 1, "sigma": 1},
            ("exactly one of sigma or p99",),
        ),
        ({"dist": "empirical", "samples": [1, 2]}, ("samples[0]: a bare number",)),
        ({"dist": "empirical", "samples_us": []}, ("non-empty list",)),
        ({"dist": "fixed", "ns": 1, "mean_ns": 2}, ("unknown key 'mean_ns'", "'ns'")),
        ({"dist": "fixed", "minutes": 1}, ("unknown key 'minutes'", "_us")),
    ],
)
def test_bad_distributions(value: Any, words: tuple[str, ...]) -> None:
    with pytest.raises(DistError) as info:
        parse_dist(value)
    for w in words:
        assert w in str(info.value), str(info.value)


# --- bare durations in scenarios ---------------------------------------------------------------
def test_think_10_is_refused_naming_the_file_the_key_and_the_unit() -> None:
    msg = error_of(G + '[guests.workload]\nkind = "closed"\nthink = 10\n')
    assert msg.startswith("my.toml: guests[0].workload.think: a bare number is not a duration")
    assert "needs a unit (ns, us, ms or s)" in msg
    assert 'write "10ms" (or "10ns", "10us")' in msg
    assert '{ dist = "fixed", ns = 10 }' in msg
    assert 'hostsim used to read a bare number as ns: "10ns"' in msg


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[costs]\nhook_entry = 200\n" + G, "costs.hook_entry"),
        ("[costs]\nmsleep20 = 20_000_000\n" + G, "costs.msleep20"),
        (G + "[guests.workload]\ngap = 5000\n", "guests[0].workload.gap"),
        (
            G + '[guests.workload]\nretry = "on_idle"\nretry_poll = 250_000\n',
            "guests[0].workload.retry_poll",
        ),
        ("[run]\nduration = 4\n" + G, "run.duration"),
        (G + '[[events]]\nat = 100\nkind = "reset"\nguest = "a[0]"\n', "events[0].at"),
        (G + "[guests.workload]\nprobe = 40\n", "guests[0].workload.probe"),
    ],
)
def test_every_bare_duration_is_refused(text: str, key: str) -> None:
    msg = error_of(text)
    assert msg.startswith(f"my.toml: {key}: a bare number is not a duration"), msg


def test_every_shipped_scenario_has_units() -> None:
    root = Path(__file__).parent.parent
    files = [
        *root.glob("examples/*.toml"),
        *root.glob("workloads/*.toml"),
        *root.glob("bench/scenarios/*.toml"),
        *root.glob("tests/scenarios/*.toml"),
        root / "hostsim/data/default.toml",
    ]
    assert len(files) > 10
    for f in files:
        raw = tomllib.loads(f.read_text(encoding="utf-8"))
        if "sweep" not in raw:
            load(f)  # raises on a bare duration


def test_set_of_a_bare_cost_is_refused() -> None:
    msg = error_of("", ("costs.hook_entry=200",), "<built-in default>")
    assert msg.startswith("<built-in default>: costs.hook_entry: a bare number is not a duration")
    assert '"200ns"' in msg
    # ... and the spelling it suggests works on the command line (a bare word is a string)
    s = load(None, ["costs.hook_entry=200ns"])
    assert s.costs["hook_entry"] == parse_dist({"dist": "fixed", "ns": 200})


def test_cli_refuses_a_bare_set(tmp_path: Path) -> None:
    p = subprocess.run(
        [sys.executable, "-m", "hostsim", "run", "--set", "costs.hook_entry=200", "--quiet"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert p.returncode == 2
    assert "costs.hook_entry: a bare number is not a duration" in p.stderr


def test_ms_keys_take_a_number_or_a_string_under_the_unitless_name() -> None:
    a = load(None, ["run.duration_ms=4500", "events.0.at_ms=100"])
    b = load(None, ["run.duration=4.5s", "events.0.at=100ms"])
    assert (a.duration_ns, a.events) == (b.duration_ns, b.events)
    text = (
        '[run]\nduration = "10ms"\nwarmup = "2ms"\n'
        + G
        + (
            '[guests.workload]\nkind = "bursty"\non = "1ms"\noff_ms = 4\nstart = "3us"\n'
            '[[events]]\nat = "5ms"\nkind = "reset"\nguest = "a[1]"\n'
        )
    )
    s = loads(text)
    w = s.guests[0].workload
    assert (s.duration_ns, s.warmup_ns) == (10_000_000, 2_000_000)
    assert (w.on_ms, w.off_ms, w.start_ms) == (1.0, 4.0, 0.003)
    assert s.events[0].at_ns == 5_000_000
    # the resolved form writes the _ms keys, and loads back the same
    back = loads(resolved_toml(s))
    assert dataclasses.replace(back, source=s.source) == s


@pytest.mark.parametrize(
    ("text", "key", "words"),
    [
        ('[run]\nduration_ms = 10\nduration = "10ms"\n' + G, "run.duration", ("keep one",)),
        ('[run]\nduration_ms = "10ms"\n' + G, "run.duration_ms", ('write duration = "10ms"',)),
        ('[run]\nduration = "10 hours"\n' + G, "run.duration", ("unknown unit 'hours'",)),
        (G + '[[events]]\nkind = "reset"\nguest = "a[0]"\n', "events[0].at_ms", ("missing",)),
    ],
)
def test_ms_key_errors(text: str, key: str, words: tuple[str, ...]) -> None:
    msg = error_of(text)
    assert msg.startswith(f"my.toml: {key}: "), msg
    for w in words:
        assert w in msg, msg


def test_a_set_replaces_the_other_spelling() -> None:
    # the default gives run.duration_ms; --set run.duration replaces it (it is not "both")
    assert load(None, ["run.duration=5s"]).duration_ns == 5_000_000_000
    s = load(
        None,
        [
            'costs.sie_exit={ dist = "lognormal", median_ns = 450, p99_ns = 1500 }',
            "costs.sie_exit.median_us=1",
        ],
    )
    assert s.costs["sie_exit"].p("median_ns") == 1000


# --- the TOML writer ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "v",
    [
        "a\nb",
        'quote " and \\ backslash',
        "tab\tand \x00 \x7f \u2028",
        "ünïcødé ☃ 𝄞",
        "",
        1.5,
        float("inf"),
        -3,
        True,
        [1, "x", [2.5]],
        {"a b": 1, "": "e", "x.y": [1, 2]},
        {},
    ],
)
def test_value_reads_back(v: Any) -> None:
    line = toml_text.value(v)
    assert "\n" not in line
    assert tomllib.loads(f"v = {line}")["v"] == v


def test_comment_header_cannot_escape() -> None:
    text = toml_text.dumps({"a": 1}, ["one", "two\n[evil]\nb = 2"])
    assert text.startswith("# one\n# two\n# [evil]\n# b = 2\n")
    assert tomllib.loads(text) == {"a": 1}


def test_a_guest_name_with_a_newline_makes_a_loadable_resolved_toml() -> None:
    for name in ("a\nb", 'q"uo\\te', "dé ☃", "tab\there", "x = 1"):
        raw = {"guests": [{"name": name, "count": 2}], "events": []}
        raw["events"] = [{"at_ms": 1, "kind": "reset", "guest": f"{name}[1]"}]
        s = from_dict(raw)
        text = resolved_toml(s)
        back = loads(text, "scenario.resolved.toml")
        assert back.guests[0].name == name and back.events[0].label == f"{name}[1]"
        assert dataclasses.replace(back, source=s.source) == s


# A scenario drawn by hypothesis: guest names of any text, durations in every spelling.
NAMES = st.text(min_size=1, max_size=12).filter(lambda x: "[" not in x and "]" not in x)
UNIT = st.sampled_from(["ns", "us", "µs", "ms", "s"])


@st.composite
def durations(draw: st.DrawFn, lo: int = 0, hi: int = 10**8) -> Any:
    """A fixed duration of ``lo..hi`` ns, in a random spelling."""
    ns = draw(st.integers(lo, hi))
    unit = draw(UNIT)
    in_unit = ns / units.UNITS[unit] if unit != "ns" else ns  # exact: repr is the decimal
    how = draw(st.sampled_from(["string", "ns", "unit-key", "any-unit-string"]))
    if how == "string":
        return units.format_ns(ns)
    if how == "ns":
        return {"dist": "fixed", "ns": ns}
    if how == "unit-key":
        return {"dist": "fixed", unit.replace("µ", "u"): in_unit}
    return f"{in_unit!r}{unit}"


@st.composite
def dists(draw: st.DrawFn) -> Any:
    kind = draw(st.sampled_from(["fixed", "exponential", "uniform", "lognormal", "empirical"]))
    if kind == "fixed":
        return draw(durations(1))
    if kind == "exponential":
        v = draw(st.integers(1, 10**7))
        return draw(
            st.sampled_from(
                [
                    {"dist": kind, "mean_ns": v},
                    {"dist": kind, "mean": units.format_ns(v)},
                    {"dist": kind, "mean_us": v / 1000 if v % 1000 == 0 else v},
                ]
            )
        )
    if kind == "uniform":
        lo, hi = sorted(draw(st.lists(st.integers(0, 10**7), min_size=2, max_size=2)))
        return {"dist": kind, "low": units.format_ns(lo), "high_ns": hi}
    if kind == "lognormal":
        med = draw(st.integers(1, 10**6))
        if draw(st.booleans()):
            return {"dist": kind, "median": f"{med}ns", "sigma": draw(st.floats(0.01, 2))}
        return {"dist": kind, "median_ns": med, "p99": units.format_ns(med * 3)}
    xs = draw(st.lists(st.integers(0, 10**6), min_size=1, max_size=5))
    if draw(st.booleans()):
        return {"dist": kind, "samples": [units.format_ns(x) for x in xs]}
    return {"dist": kind, "samples_ns": xs}


@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, Any]:
    names = draw(st.lists(NAMES, min_size=1, max_size=3, unique=True))
    guests = []
    for name in names:
        kind = draw(st.sampled_from(["poisson", "closed", "bursty", "boot", "linux", "idle"]))
        w: dict[str, Any] = {"kind": kind}
        if kind == "poisson":
            w["rate_hz"] = draw(st.floats(1, 1e4))
        elif kind == "closed":
            w["think"] = draw(dists())
        elif kind == "bursty":
            w["on"] = units.format_ns(draw(st.integers(10**5, 10**8)))
            w["off_ms"] = draw(st.floats(0.1, 100))
        elif kind == "boot":
            w["spread_ms"] = draw(st.integers(0, 50))
        if draw(st.booleans()):
            w["gap"] = draw(dists())
        if draw(st.booleans()):
            w["start"] = units.format_ns(draw(st.integers(0, 10**7)))
        guests.append(
            {
                "name": name,
                "count": draw(st.integers(1, 3)),
                "vcpus": draw(st.integers(1, 3)),
                "workload": w,
            }
        )
    costs = draw(st.dictionaries(st.sampled_from(sorted(COSTS)), dists(), max_size=4))
    events = []
    for _ in range(draw(st.integers(0, 2))):
        g = draw(st.sampled_from(guests))
        at = draw(st.integers(0, 49))
        ev: dict[str, Any] = {"kind": draw(st.sampled_from(["reset", "detach", "guest_reset"]))}
        ev["guest"] = f"{g['name']}[{draw(st.integers(0, g['count'] - 1))}]"
        ev.update({"at": f"{at}ms"} if draw(st.booleans()) else {"at_ms": at})
        events.append(ev)
    run = {"duration": "50ms", "seed": draw(st.integers(0, 2**63 - 1))}
    return {"run": run, "costs": costs, "guests": guests, "events": events}


def _same(a: Scenario, b: Scenario) -> None:
    assert dataclasses.replace(b, source=a.source) == a


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_hypothesis_round_trip(raw: dict[str, Any]) -> None:
    s = from_dict(raw, "drawn")
    # the writer writes the raw tree, and it reads back as the same scenario
    assert tomllib.loads(toml_text.dumps(raw, "drawn")) == raw
    assert loads(toml_text.dumps(raw), "drawn") == s
    # scenario -> resolved TOML -> the same scenario, and the same resolved text
    text = resolved_toml(s)
    back = loads(text, "scenario.resolved.toml")
    _same(s, back)
    assert resolved_toml(back) == text


def test_dumps_lays_out_a_document_as_a_person_writes_it() -> None:
    data = {
        "run": {"seed": 1},
        "costs": {"pin": {"dist": "fixed", "ns": 200}},
        "host": {"domains": [0, 1, 2], "hardware": {"aqic_rc": {"0x00": 1.0}}},
        "guests": [{"name": 'a "b"\nc', "workload": {"kind": "linux"}}],
        "events": [{"at_ms": 1.0, "kind": "start"}, {"at_ms": 2.0, "kind": "stop"}],
    }
    text = toml_text.dumps(data, "a header\nof two lines")
    assert tomllib.loads(text) == data
    lines = text.splitlines()
    assert lines[:2] == ["# a header", "# of two lines"]
    assert 'pin = { dist = "fixed", ns = 200 }' in lines  # a short table of values: inline
    assert "domains = [0, 1, 2]" in lines  # an array on one line
    assert "aqic_rc = { 0x00 = 1.0 }" in lines
    assert lines.count("[[events]]") == 2 and 'workload = { kind = "linux" }' in lines
    assert lines.index("[[guests]]") < lines.index("[[events]]")
    resolved = resolved_toml(load(None))
    assert len(resolved.splitlines()) < 400  # the default: 36 guests, 35 events, 22 costs
