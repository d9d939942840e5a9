"""Scenario loading: bad scenarios give one clear error each (file, key path, expectation), the
resolved TOML loads back to the same scenario, and ``--set`` overrides reach every key."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hostsim.run import simulate
from hostsim.scenario import apply_set, default_text, load, loads
from hostsim.scenario_toml import resolved_toml
from hostsim.scenario_types import HostEventKind, Scenario, ScenarioError

SCENARIOS = Path(__file__).parent / "scenarios"
SOURCE = "bad.toml"
#: A minimal valid guest group, appended where a case needs one.
G = '[[guests]]\nname = "a"\ncount = 2\nvcpus = 1\n'
EV = '[[events]]\nat_ms = 1\nkind = "reset"\n'


def error_of(text: str, sets: tuple[str, ...] = ()) -> str:
    """The one ScenarioError ``text`` gives, checked to be a single clean message."""
    with pytest.raises(ScenarioError) as info:
        loads(text, SOURCE, sets)
    e = info.value
    # One error: not chained to another exception, and a single line.
    assert e.__cause__ is None
    assert e.__context__ is None or e.__suppress_context__
    msg = str(e)
    assert "\n" not in msg
    assert msg.startswith(f"{SOURCE}: ")
    return msg


# (id, scenario text, key path the message must name, words of the expectation)
BAD: list[tuple[str, str, str, tuple[str, ...]]] = [
    # Wrong types.
    ("count-str", '[[guests]]\ncount = "x"\n', "guests[0].count", ("integer", "str 'x'")),
    ("vcpus-float", "[[guests]]\nvcpus = 1.5\n", "guests[0].vcpus", ("integer", "1.5")),
    ("duration-str", '[run]\nduration_ms = "long"\n' + G, "run.duration_ms", ("number",)),
    ("apxa-int", "[host]\napxa = 1\n" + G, "host.apxa", ("true or false",)),
    ("rate-str", G + '[guests.workload]\nrate_hz = "fast"\n', "guests[0].workload.rate_hz", ()),
    ("mdev-str", G + 'mdev = "yes"\n', "guests[0].mdev", ("true or false",)),
    ("run-not-table", "run = 3\n" + G, "run", ("expected a table",)),
    ("cost-bool", "[costs]\npin = true\n" + G, "costs.pin", ("distribution",)),
    ("seed-float", "[run]\nseed = 1.5\n" + G, "run.seed", ("integer",)),
    ("no-guests", "[run]\nseed = 1\n", "guests", ("[[guests]]",)),
    # Unknown keys, at every level.
    ("unknown-top", "foo = 1\n" + G, "foo", ("unknown key", "guests")),
    ("unknown-run", "[run]\ndurration_ms = 5\n" + G, "run.durration_ms", ("duration_ms",)),
    ("unknown-host", '[host]\nvarient = "x"\n' + G, "host.varient", ("variant",)),
    ("unknown-hw", "[host.hardware]\naqic = 1\n" + G, "host.hardware.aqic", ("aqic_rc",)),
    (
        "unknown-queue",
        "[[host.hardware.queues]]\nfoo = 1\n" + G,
        "host.hardware.queues[0].foo",
        ("unknown key",),
    ),
    ("unknown-guest", "[[guests]]\nvcpu = 2\n", "guests[0].vcpu", ("vcpus",)),
    (
        "unknown-workload",
        G + "[guests.workload]\nrate = 1\n",
        "guests[0].workload.rate",
        ("rate_hz",),
    ),
    ("unknown-cost", "[costs]\nsie_exitt = 5\n" + G, "costs.sie_exitt", ("sie_exit",)),
    (
        "unknown-dist-key",
        '[costs]\npin = { dist = "fixed", ns = 1, mean_ns = 2 }\n' + G,
        "costs.pin",
        ("mean_ns", "fixed"),
    ),
    ("unknown-event", G + EV + 'guest = "a[0]"\nwhen = 3\n', "events[0].when", ("at_ms",)),
    # An APQN given to two guests.
    (
        "apqn-two-groups",
        '[[guests]]\nname = "a"\ndomains = [[3]]\n[[guests]]\nname = "b"\ndomains = [[3]]\n',
        "guests[1].domains",
        ("APQN 00.0003", "a[0]", "b[0]"),
    ),
    (
        "apqn-in-group",
        '[[guests]]\nname = "a"\ncount = 2\ndomains = [[1, 2], [2]]\n',
        "guests[0].domains",
        ("APQN 00.0002", "a[0]", "a[1]"),
    ),
    (
        "apqn-explicit-vs-allocated",
        '[[guests]]\nname = "a"\ncount = 2\n[[guests]]\nname = "b"\ndomains = [[1]]\n',
        "guests[1].domains",
        ("APQN 00.0001", "a[1]", "b[0]"),
    ),
    # APQI above 15 (APID above 63) without APXA.
    ("apqi-host", "[host]\napxa = false\ndomains = [16]\n" + G, "host.domains", ("APQI 16",)),
    (
        "apqi-guest",
        "[host]\ndomains = [16, 17]\n[[guests]]\napxa = false\ndomains = [[16]]\n",
        "guests[0].domains",
        ("APQI 16", "APXA"),
    ),
    ("apid-host", "[host]\napxa = false\nadapters = [64]\n" + G, "host.adapters", ("APID 64",)),
    # Negative and empty durations.
    ("duration-negative", "[run]\nduration_ms = -5\n" + G, "run.duration_ms", (">= 0", "-5")),
    ("duration-zero", "[run]\nduration_ms = 0\n" + G, "run.duration_ms", ("positive",)),
    ("warmup-negative", "[run]\nwarmup_ms = -1\n" + G, "run.warmup_ms", (">= 0",)),
    (
        "cost-negative",
        '[costs]\npin = { dist = "fixed", ns = -1 }\n' + G,
        "costs.pin",
        ("non-negative", "-1"),
    ),
    ("cost-negative-str", '[costs]\nhost_aqic = "-1ns"\n' + G, "costs.host_aqic", ("negative",)),
    (
        "think-negative",
        G + '[guests.workload]\nkind = "closed"\nthink = { dist = "fixed", ms = -3 }\n',
        "guests[0].workload.think",
        ("non-negative",),
    ),
    (
        "event-negative",
        G + '[[events]]\nat_ms = -1\nkind = "reset"\nguest = "a[0]"\n',
        "events[0].at_ms",
        (">= 0",),
    ),
    (
        "start-negative",
        G + "[guests.workload]\nstart_ms = -1\n",
        "guests[0].workload.start_ms",
        (">= 0",),
    ),
    (
        "uniform-reversed",
        '[costs]\npin = { dist = "uniform", low_ns = 10, high_ns = 5 }\n' + G,
        "costs.pin",
        ("below",),
    ),
    # Warm-up not shorter than the run.
    (
        "warmup-equal",
        "[run]\nduration_ms = 10\nwarmup_ms = 10\n" + G,
        "run.warmup_ms",
        ("shorter than the run",),
    ),
    (
        "warmup-longer",
        "[run]\nduration_ms = 10\nwarmup_ms = 20\n" + G,
        "run.warmup_ms",
        ("shorter",),
    ),
    # Probabilities that do not sum to 1.
    (
        "aqic-sum",
        '[host.hardware]\naqic_rc = { "0x00" = 0.5, "0x05" = 0.4 }\n' + G,
        "host.hardware.aqic_rc",
        ("sum to 1", "0.9"),
    ),
    (
        "tapq-sum-queue",
        '[[host.hardware.queues]]\ntapq_rc = { "0x00" = 0.5 }\n' + G,
        "host.hardware.queues[0].tapq_rc",
        ("sum to 1",),
    ),
    (
        "probability-above-1",
        G + "[guests.workload]\nenable_fraction = 1.5\n",
        "guests[0].workload.enable_fraction",
        ("<= 1",),
    ),
    # Unknown choices.
    ("variant", '[host]\nvariant = "linux-9"\n' + G, "host.variant", ("upstream", "linux-9")),
    ("lock-model", '[host]\nlock_model = "rw"\n' + G, "host.lock_model", ("per-mdev",)),
    ("event-kind", G + EV.replace("reset", "explode") + 'guest = "a[0]"\n', "events[0].kind", ()),
    # Bad event guest labels.
    ("event-group", G + EV + 'guest = "zz[0]"\n', "events[0].guest", ("no guest group 'zz'",)),
    ("event-index-word", G + EV + 'guest = "a[x]"\n', "events[0].guest", ("group[index]",)),
    ("event-index-range", G + EV + 'guest = "a[2]"\n', "events[0].guest", ("2 guests",)),
    ("event-index-negative", G + EV + 'guest = "a[-1]"\n', "events[0].guest", ("group[index]",)),
    ("event-guest-int", G + EV + "guest = 0\n", "events[0].guest", ("group[index]",)),
    (
        "event-late",
        G + EV.replace("at_ms = 1", "at_ms = 5000") + 'guest = "a[0]"\n',
        "events[0].at_ms",
        ("end of the run",),
    ),
    (
        "event-no-time",
        G + '[[events]]\nkind = "reset"\nguest = "a[0]"\n',
        "events[0].at_ms",
        ("missing",),
    ),
    # Distributions.
    (
        "lognormal-both",
        '[costs]\npin = { dist = "lognormal", median_ns = 10, sigma = 1, p99_ns = 100 }\n' + G,
        "costs.pin",
        ("exactly one of sigma or p99_ns",),
    ),
    (
        "lognormal-neither",
        '[costs]\npin = { dist = "lognormal", median_ns = 10 }\n' + G,
        "costs.pin",
        ("exactly one",),
    ),
    ("dist-kind", '[costs]\npin = { dist = "gamma" }\n' + G, "costs.pin", ("exponential",)),
    # Workload kinds keep their own keys.
    (
        "think-on-poisson",
        G + "[guests.workload]\nthink = 5\n",
        "guests[0].workload.think",
        ("closed",),
    ),
    # Topology.
    (
        "duplicate-group",
        '[[guests]]\nname = "a"\n[[guests]]\nname = "a"\n',
        "guests[1].name",
        ("twice",),
    ),
    (
        "too-many-domains",
        "[host]\ndomains = 4\n[[guests]]\ncount = 5\n",
        "guests[0].domains_per_guest",
        ("need 5",),
    ),
    ("foreign-adapter", "[[guests]]\nadapters = [9]\n", "guests[0].adapters", ("adapter 9",)),
    ("not-toml", "[run\n", SOURCE, ("not valid TOML",)),
]


@pytest.mark.parametrize(("text", "key", "words"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_scenario_gives_one_clear_error(text: str, key: str, words: tuple[str, ...]) -> None:
    msg = error_of(text)
    assert f": {key}" in msg or msg.startswith(f"{key}:"), msg
    for w in words:
        assert w in msg, msg


def test_error_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "mine.toml"
    bad.write_text('[[guests]]\ncount = "x"\n')
    with pytest.raises(ScenarioError, match=r"^.*mine\.toml: guests\[0\]\.count: expected an"):
        load(bad)
    with pytest.raises(ScenarioError, match="cannot read"):
        load(tmp_path / "missing.toml")


def test_set_override_errors_go_through_validation() -> None:
    # A --set value gets the same checks as the file's own values, with the file named.
    msg = error_of(G, ("guests.0.count=x",))
    assert "guests[0].count" in msg and "str 'x'" in msg
    msg = error_of(G, ("run.duration_ms=-5",))
    assert "run.duration_ms" in msg
    msg = error_of(G, ("host.variant=linux-9",))
    assert "host.variant" in msg
    msg = error_of(G, ("run.nope=1",))
    assert "run.nope" in msg and "unknown key" in msg


@pytest.mark.parametrize("label", ["a[1", "a[1]]"])
def test_malformed_event_label_is_rejected(label: str) -> None:
    error_of(G + EV + f'guest = "{label}"\n')


# --- The resolved scenario -----------------------------------------------------------------------
def same(a: Scenario, b: Scenario) -> None:
    assert a.guests == b.guests
    assert a.host == b.host
    assert a.costs == b.costs
    assert a.events == b.events
    assert (a.duration_ns, a.warmup_ns, a.seed) == (b.duration_ns, b.warmup_ns, b.seed)
    assert dataclasses.replace(b, source=a.source) == a


ROUND_TRIP = [None, *sorted(SCENARIOS.glob("*.toml"))]


@pytest.mark.parametrize("path", ROUND_TRIP, ids=lambda p: "default" if p is None else p.stem)
def test_resolved_toml_loads_back_to_the_same_scenario(path: Path | None) -> None:
    s = load(path)
    text = resolved_toml(s)
    back = loads(text, "resolved.toml")
    same(s, back)
    # It is a fixed point: resolving the resolved scenario changes nothing.
    assert resolved_toml(back) == text


def test_resolved_toml_with_overrides_and_every_variant() -> None:
    s = load(
        SCENARIOS / "paths.toml",
        [
            "host.variant=hook-owns-fc",
            "host.lock_model=per-mdev",
            'costs.pin={dist="empirical", samples_ns=[100, 250, 4000]}',
            'costs.host_aqic={dist="lognormal", median_ns=900, p99_ns=3000}',
            'costs.lookup={dist="exponential", mean_ns=300}',
            "guests.0.workload.isc=5",
            'guests.0.workload.nib="0xabc000"',
        ],
    )
    back = loads(resolved_toml(s), "resolved.toml")
    same(s, back)
    assert back.host.variant == "hook-owns-fc"
    assert back.guests[0].workload.isc == 5
    assert back.guests[0].workload.nib == 0xABC000


def test_resolved_scenario_simulates_identically() -> None:
    s = load(SCENARIOS / "rwsem.toml", ["host.variant=merged-2019"])
    back = loads(resolved_toml(s), "resolved.toml")
    a = simulate(s, keep_records=True).records
    b = simulate(back, keep_records=True).records
    assert a is not None and b is not None
    assert np.array_equal(a, b)


# --- --set ---------------------------------------------------------------------------------------
def test_apply_set_reaches_tables_lists_and_inline_tables() -> None:
    s = load(
        None,
        [
            "guests.0.count=30",
            'guests.2.workload={ kind = "closed", think = "250us" }',
            "run.seed=99",
            "host.variant=merged-2019",
            'host.hardware.aqic_rc={ "0x00" = 0.5, "0x05" = 0.5 }',
            "events.3.at_ms=50",
        ],
    )
    assert s.guests[0].count == 30
    assert s.guests[2].workload.think is not None
    assert s.guests[2].workload.think.kind == "fixed"
    assert s.guests[2].workload.think.mean_ns == 250_000
    assert s.seed == 99
    assert s.host.variant == "merged-2019"
    assert s.host.hardware.aqic_rc == ((0x00, 0.5), (0x05, 0.5))
    assert s.events[0].kind == HostEventKind.START
    assert [e.at_ns for e in s.events if e.kind == HostEventKind.IRQ_DISABLE] == [50_000_000]
    assert load(SCENARIOS / "paths.toml", ["guests.0.count=3"]).guests[0].count == 3
    # Later --set wins; the file itself is not changed.
    s2 = load(None, ["run.seed=5", "run.seed=6"])
    assert s2.seed == 6
    assert load(None).seed == 1


def test_apply_set_values_are_toml_and_bare_words_are_strings() -> None:
    raw: dict = {"run": {}, "guests": [{"count": 1}]}
    apply_set(raw, "run.duration_ms=12.5")
    apply_set(raw, "host.apxa=false")
    apply_set(raw, "host.variant=v4-2019")
    apply_set(raw, "guests.0.domains=[[1, 2]]")
    apply_set(raw, " guests.0.name = db ")
    assert raw["run"]["duration_ms"] == 12.5
    assert raw["host"] == {"apxa": False, "variant": "v4-2019"}
    assert raw["guests"][0] == {"count": 1, "domains": [[1, 2]], "name": "db"}


@pytest.mark.parametrize(
    ("assignment", "words"),
    [
        ("nokey", ("expected key.path=value",)),
        ("guests.5.count=3", ("guests.5", "index below 1")),
        ("guests.x.count=3", ("guests.x", "index below 1")),
        ("guests.9=3", ("index below 1",)),
        ("run.duration_ms.x=1", ("run.duration_ms.x", "not a table")),
    ],
)
def test_apply_set_bad_paths(assignment: str, words: tuple[str, ...]) -> None:
    raw: dict = {"run": {"duration_ms": 5}, "guests": [{"count": 1}]}
    with pytest.raises(ScenarioError) as info:
        apply_set(raw, assignment)
    msg = str(info.value)
    assert msg.startswith("--set ")
    for w in words:
        assert w in msg, msg


def test_default_scenario_is_valid_and_has_what_it_promises() -> None:
    s = loads(default_text(), "<built-in default>")
    assert s == load(None)
    assert s.n_guests == 36
    assert {e.kind for e in s.events} == {
        HostEventKind.START,
        HostEventKind.REBOOT,
        HostEventKind.IRQ_DISABLE,
        HostEventKind.DETACH,
    }
    assert {g.workload.kind for g in s.guests} == {"linux", "poisson"}


# --- The CLI --------------------------------------------------------------------------------------
def test_cli_bad_scenario_exits_2_with_the_message(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[host]\nvariant = "linux-9"\n' + G)
    p = subprocess.run(
        [sys.executable, "-m", "hostsim", "run", str(bad), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert p.returncode == 2
    assert p.stdout == ""
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith(f"hostsim run: {bad}: host.variant: expected one of")
    assert "Traceback" not in p.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--set", "guests.7.count=1"], ("--set guests.7.count", "index below 4")),
        (["--set", "run.warmup_ms=5000"], ("run.warmup_ms", "shorter")),
    ],
)
def test_cli_bad_set_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], words: tuple[str, ...]
) -> None:
    from hostsim.cli import main

    assert main(["run", *args, "--out", str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hostsim run: ")
    for w in words:
        assert w in err
    assert not (tmp_path / "out").exists()


# --- Durations beyond int64 nanoseconds ----------------------------------------------------------
@pytest.mark.filterwarnings("ignore:invalid value encountered in cast:RuntimeWarning")
def test_think_time_beyond_int64_is_rejected_or_respected() -> None:
    text = (
        '[run]\nduration_ms = 1\n[[guests]]\n[guests.workload]\nkind = "closed"\n'
        'think = { dist = "fixed", ns = 1e19 }\n'
    )
    try:
        s = loads(text, SOURCE)
    except ScenarioError:
        return
    assert simulate(s, "fast").n_records == 0


@pytest.mark.filterwarnings("ignore:invalid value encountered in cast:RuntimeWarning")
def test_tiny_poisson_rate_is_rejected_or_respected() -> None:
    text = "[run]\nduration_ms = 1\n[[guests]]\n[guests.workload]\nrate_hz = 1e-10\n"
    try:
        s = loads(text, SOURCE)
    except ScenarioError:
        return
    assert simulate(s, "fast").n_records == 0


def test_the_benchmarks_default_is_the_built_in_default() -> None:
    import dataclasses

    bench = load(Path(__file__).parents[1] / "bench" / "scenarios" / "default.toml")
    assert dataclasses.replace(bench, source="x") == dataclasses.replace(load(None), source="x")
