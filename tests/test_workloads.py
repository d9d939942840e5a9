"""Workload generators: their statistics, and that both engines see the same requests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hostsim import arch
from hostsim.records import Path as RPath
from hostsim.rules import rule_code
from hostsim.run import simulate
from hostsim.scenario import loads
from hostsim.scenario_types import ScenarioError
from hostsim.topology import topology
from workloads.replay import ReplayError, ReplayFeed
from workloads.steady import BURSTY_UNIT_MEAN_NS, NEVER_NS, BurstyClock

HERE = Path(__file__).parent


def _scenario(body: str, run: str = "duration_ms = 1000\nseed = 3") -> str:
    return f"[run]\n{run}\n[host]\nadapters = 2\ndomains = 64\n{body}"


def test_poisson_rate_per_vcpu() -> None:
    """Open-loop Poisson: each vCPU issues rate_hz on average (light load: no waiting)."""
    s = loads(_scenario("[[guests]]\ncount = 10\nvcpus = 10\n[guests.workload]\nrate_hz = 200"))
    rec = simulate(s, keep_records=True).records
    per_vcpu = np.bincount(rec["vcpu"], minlength=100)
    assert abs(per_vcpu.mean() - 200) < 3 * np.sqrt(200 / 100)  # within 3 sigma of the mean
    gaps = np.diff(np.sort(rec["t_arrival"][rec["vcpu"] == 0]))
    assert abs(gaps.mean() / 5e6 - 1) < 0.25  # exponential gaps of mean 1/rate


def test_closed_loop_think_time() -> None:
    """Closed loop: the next issue is exactly think after the previous resume."""
    s = loads(
        _scenario(
            '[[guests]]\ncount = 2\nvcpus = 2\n[guests.workload]\nkind = "closed"\nthink = "1ms"',
            "duration_ms = 100\nseed = 3",
        )
    )
    rec = simulate(s, keep_records=True).records
    for v in range(4):
        r = rec[rec["vcpu"] == v]
        assert np.all(r["t_issue"][1:] - r["t_resume"][:-1] == 1_000_000)


def test_bursty_arrivals_follow_the_on_off_schedule() -> None:
    """MMPP: arrivals cluster in the group's on periods at rate_on_hz, rate_off_hz off."""
    body = (
        '[[guests]]\ncount = 5\nvcpus = 4\n[guests.workload]\nkind = "bursty"\n'
        "rate_on_hz = 2000\nrate_off_hz = 20\non_ms = 20\noff_ms = 80"
    )
    s = loads(_scenario(body, "duration_ms = 4000\nseed = 9"))
    res = simulate(s, keep_records=True)
    from hostsim.model import Model

    clock = Model(s).clocks[0]
    t = res.records["t_arrival"]
    on = np.array([clock.on_at(int(x)) for x in t])
    on_time = sum(
        min(b, s.duration_ns) - a
        for i, (a, b) in enumerate(zip(clock.starts[:-1], clock.starts[1:], strict=False))
        if i % 2 == 0 and a < s.duration_ns
    )
    off_time = s.duration_ns - on_time
    rate_on = on.sum() / 20 / (on_time / 1e9)
    rate_off = (~on).sum() / 20 / (off_time / 1e9)
    assert abs(rate_on / 2000 - 1) < 0.1
    assert rate_off < 60  # 20 Hz expected; an order of magnitude below the on rate
    assert 0.1 < on_time / s.duration_ns < 0.35  # on 20 ms of every 100 ms on average


def test_bursty_clock_time_change_is_exact() -> None:
    """The time change lands where the cumulative intensity reaches the unit draw."""
    gen = np.random.default_rng(1)
    c = BurstyClock(gen, 10**9, 1e6, 4e6, 1000.0, 0.0)
    a = c.next_arrival(0, 10**9, 1e9)  # one unit of intensity: 1 ms of "on" at 1000 Hz
    assert abs(c.intensity(a) - 1.0) < 1e-6
    assert c.on_at(a - 1)


def test_boot_storm_counts_are_guests_times_apqns() -> None:
    """A boot storm issues one AQIC enable per APQN per guest, all from vCPU 0."""
    body = (
        "[[guests]]\ncount = 50\nvcpus = 3\ndomains_per_guest = 1\n"
        '[guests.workload]\nkind = "boot"\nspread_ms = 500'
    )
    s = loads(_scenario(body))
    rec = simulate(s, keep_records=True).records
    assert len(rec) == 50 * 2  # 2 adapters x 1 domain each
    first_vcpu = topology(s).guest_first_vcpu
    assert set(rec["vcpu"].tolist()) <= set(first_vcpu.tolist())
    assert np.all(arch.ir(rec["gpr1"]) == 1)
    assert np.all(rec["path"] == RPath.HOOK_ENABLE)
    per_guest = np.bincount(rec["guest"], minlength=50)
    assert np.all(per_guest == 2)


def test_boot_storm_is_deterministic_and_same_in_both_engines() -> None:
    """Busy answers at boot with retrying guests: both engines, twice, the same records."""
    s = loads(_boot_busy())
    a = simulate(s, "reference", keep_records=True).records
    b = simulate(s, "fast", keep_records=True).records
    assert np.array_equal(a, b)
    assert np.array_equal(b, simulate(s, "fast", keep_records=True).records)


def _boot_busy() -> str:
    return (
        "[run]\nduration_ms = 300\nseed = 4\n[host]\nadapters = 2\ndomains = 64\n"
        '[host.hardware]\naqic_rc = { "0x00" = 0.7, "0x05" = 0.3 }\n'
        '[[guests]]\ncount = 30\nvcpus = 2\n[guests.workload]\nkind = "boot"\nspread_ms = 50\n'
        'retry = "on_idle"\n'
    )


def _persistent_busy(retry: str) -> str:
    return (
        "[run]\nduration_ms = 200\nseed = 2\n[host]\nadapters = 1\ndomains = 4\n"
        '[host.hardware]\naqic_rc = { "0x05" = 1.0 }\n'
        '[costs]\nmsleep20 = "20ms"\n'
        '[[guests]]\ncount = 1\nvcpus = 1\n[guests.workload]\nkind = "boot"\nspread_ms = 0\n'
        f'retry = "{retry}"\nretry_poll = "250us"\n'
    )


def test_retry_on_idle_under_persistent_busy() -> None:
    """Linux 6.7+ guests re-issue a BUSY enable at every idle poll; older ones do not.

    With every AQIC BUSY, each enable runs the disable loop (6 busy AQICs, 6 x 20 ms sleeps:
    120 ms held under the mutex), then the guest retries 250 us after it resumed."""
    old = simulate(loads(_persistent_busy("none")), keep_records=True).records
    assert len(old) == 1  # one APQN, one AQIC, no retry
    new = simulate(loads(_persistent_busy("on_idle")), keep_records=True).records
    assert np.all(new["guest_visible_rc"] == arch.RC.BUSY)
    assert np.all(new["sleeps"] == 6) and np.all(new["hw_aqic_calls"] == 7)
    gaps = new["t_issue"][1:] - new["t_resume"][:-1]
    assert np.all(gaps == 250_000)
    expected = 1 + (200_000_000 - new["t_resume"][0]) // (new["t_resume"][1] - new["t_resume"][0])
    assert abs(len(new) - expected) <= 1


def test_adversarial_and_nested_mixes_hit_their_rules() -> None:
    body = (
        "[[guests]]\ncount = 4\nvcpus = 4\napxa = false\nfacility15 = false\n"
        "[guests.workload]\nrate_hz = 500\n"
        "adversarial = { problem_state = 0.1, reserved_bits = 0.1, t_bit = 0.1, "
        "apxa_range = 0.1, other_fc = 0.1, nib_zero = 0.1, unassigned = 0.1 }\n"
    )
    s = loads(
        _scenario(body, "duration_ms = 500\nseed = 8").replace("domains = 64", "domains = 16")
    )
    rec = simulate(s, keep_records=True).records
    rules = set(rec["rule"].tolist())
    for rid in (
        "kvm.problem_state",
        "kvm.reserved_bits_41_47",
        "kvm.t_bit_without_apft",
        "kvm.apxa_range",
        "kvm.fc_not_aqic",
        "enable.nib_zero",
        "hook.queue_not_found",
    ):
        assert rule_code(rid) in rules, rid
    share = np.mean(rec["path"] != RPath.HOOK_ENABLE)
    assert 0.6 < share < 0.8  # 70 % malformed


def test_nested_fc_mix() -> None:
    body = (
        "[[guests]]\ncount = 2\nvcpus = 2\n[guests.workload]\nrate_hz = 1000\n"
        'fc_mix = { "0x00" = 0.8, "0x04" = 0.1, "0x03" = 0.1 }\n'
    )
    rec = simulate(loads(_scenario(body, "duration_ms = 500\nseed = 1")), keep_records=True).records
    fc = arch.fc(rec["gpr0"])
    assert abs(np.mean(fc == 0) - 0.8) < 0.05
    assert np.all(rec["path"][fc != 3] == RPath.USERSPACE_EXIT)


def test_hotplug_assign_then_enable_after_rescan() -> None:
    body = (
        '[[guests]]\nname = "g"\ncount = 1\nvcpus = 1\n[guests.workload]\nkind = "closed"\n'
        'think = "5ms"\n'
        '[[events]]\nat_ms = 100\nkind = "assign"\nguest = "g[0]"\ndomains = [40]\n'
        '[[events]]\nat_ms = 300\nkind = "unassign"\nguest = "g[0]"\ndomains = [0]\n'
    )
    s = loads(_scenario(body, "duration_ms = 600\nseed = 3"))
    rec = simulate(s, keep_records=True).records
    apqn = rec["apqn"]
    new = (apqn & 0xFF) == 40
    assert new.any() and rec["t_issue"][new].min() >= 100_000_000
    gone = (apqn & 0xFF) == 0
    assert rec["t_issue"][gone].max() < 300_000_000 + 10_000_000
    ref = simulate(s, "reference", keep_records=True).records
    assert np.array_equal(ref, rec)


def test_record_then_replay_is_identical(tmp_path: Path) -> None:
    from hostsim.scenario import load

    s = load(HERE / "scenarios" / "workloads.toml")
    for ext in ("jsonl", "csv"):
        path = tmp_path / f"arrivals.{ext}"
        orig = simulate(s, keep_records=True, record=path).records
        feed = ReplayFeed(path, topology(s).vcpu_guest)
        again = simulate(s, keep_records=True, replay=feed).records
        assert np.array_equal(orig, again)


def test_replay_runs_in_the_fleet_and_both_engines_agree(tmp_path: Path) -> None:
    """Replayed vCPUs are the fast engine's fleet (planned from their rows, a row issued at
    ``max(t, resume + think)``), and both engines replay the same records: from a streamed
    recording, and from per-vCPU script arrays with think times."""
    from hostsim.engine_fast import FastEngine
    from hostsim.model import Model
    from hostsim.scenario import load
    from hostsim.sink import RecordSink
    from workloads.bursts import SCRIPT_DTYPE

    s = load(HERE / "scenarios" / "workloads.toml")
    path = tmp_path / "arrivals.jsonl"
    orig = simulate(s, keep_records=True, record=path).records
    assert orig is not None
    runs = {
        e: simulate(s, e, keep_records=True, replay=ReplayFeed(path, topology(s).vcpu_guest))
        for e in ("reference", "fast")
    }
    assert np.array_equal(runs["reference"].records, runs["fast"].records)
    assert np.array_equal(runs["fast"].records, orig)
    scripts = {}
    for v in np.unique(orig["vcpu"]).tolist():
        r = orig[orig["vcpu"] == v]
        rows = np.zeros(len(r), SCRIPT_DTYPE)
        rows["t"] = r["t_arrival"]
        rows["think"] = (np.arange(len(r)) % 3) * 40_000
        for name in ("gpr0", "gpr1", "gpr2", "psw_mask"):
            rows[name] = r[name]
        scripts[v] = rows
    m = Model(s)
    m.use_replay(scripts)
    assert len(FastEngine(m, RecordSink(lambda rows: None)).fleet.vcpus) > len(scripts) // 2
    ref = simulate(s, "reference", keep_records=True, replay=scripts).records
    fast = simulate(s, "fast", keep_records=True, replay=scripts).records
    assert ref is not None and len(ref) > 1000
    assert np.array_equal(ref, fast)
    assert not np.array_equal(ref, orig)  # the think times moved some issues


def test_replay_feed_reads_its_spill_in_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The feed parses the recording once and reads the good rows back from its binary spill a
    chunk at a time: with chunks of 7 rows, a vCPU's rows span many chunks and both engines
    still replay the recorded run exactly; ``rows_of`` hands out a vCPU's rows in order."""
    from hostsim.scenario import load
    from workloads import replay

    monkeypatch.setattr(replay, "_CHUNK", 7)
    s = load(HERE / "scenarios" / "workloads.toml")
    path = tmp_path / "arrivals.jsonl"
    orig = simulate(s, keep_records=True, record=path).records
    assert orig is not None
    vg = topology(s).vcpu_guest
    for e in ("reference", "fast"):
        again = simulate(s, e, keep_records=True, replay=ReplayFeed(path, vg)).records
        assert np.array_equal(orig, again), e
    feed = ReplayFeed(path, vg)
    v = int(np.bincount(orig["vcpu"]).argmax())
    mine = orig[orig["vcpu"] == v]
    got: list[int] = []
    while (part := feed.rows_of(v, len(got), 5)).size:
        got.extend(part["t"].tolist())
    assert got == mine["t_arrival"].tolist() and len(got) > 7
    assert feed.row(v, len(got)) is None


def test_replay_errors_name_file_and_line(tmp_path: Path) -> None:
    vg = np.zeros(4, np.int32)
    head = '{"format": "hostsim-arrivals", "version": 1}\n'
    row = (
        '{{"t_ns": {t}, "guest": 0, "vcpu": {v}, "gpr0": "0x3000000", "gpr1": "0", '
        '"gpr2": "0", "psw": "0"}}\n'
    )
    cases = {
        "backwards": head + row.format(t=5, v=0) + row.format(t=2, v=0),
        "unknown_vcpu": head + row.format(t=5, v=9),
        "truncated": head + '{"t_ns": 5, "gu\n',
        "out_of_range": head + row.format(t=2**63, v=0),
    }
    for name, text in cases.items():
        p = tmp_path / f"{name}.jsonl"
        p.write_text(text)
        with pytest.raises(ReplayError, match=rf"{name}\.jsonl:[23]:"):
            ReplayFeed(p, vg)
        feed = ReplayFeed(p, vg, skip_bad=True)
        assert feed.n_skipped == 1
    bad = tmp_path / "x.txt"
    bad.write_text("hello")
    with pytest.raises(ReplayError, match="unknown arrival format"):
        ReplayFeed(bad, vg)
    wrong = tmp_path / "w.jsonl"
    wrong.write_text('{"format": "other"}\n')
    with pytest.raises(ReplayError, match=r"w\.jsonl:1"):
        ReplayFeed(wrong, vg)


def test_workload_errors() -> None:
    with pytest.raises(ScenarioError, match=r"guests\[0\].workload.rate_hz: 'rate_hz' belongs"):
        loads(_scenario('[[guests]]\n[guests.workload]\nkind = "closed"\nrate_hz = 3'))
    with pytest.raises(ScenarioError, match=r"adversarial.bogus"):
        loads(_scenario("[[guests]]\n[guests.workload]\nadversarial = { bogus = 0.1 }"))
    with pytest.raises(ScenarioError, match=r"events\[0\].domains"):
        loads(
            _scenario(
                '[[guests]]\nname = "g"\n[[events]]\nat_ms = 1\nkind = "assign"\nguest = "g[0]"'
            )
        )


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    on_ms=st.sampled_from([0.5, 2.0, 20.0]),
    off_ms=st.sampled_from([0.5, 5.0, 200.0]),
    rate_on=st.sampled_from([50.0, 2000.0]),
    rate_off=st.sampled_from([0.0, 10.0]),
)
def test_bursty_clock_vectorised_equals_scalar(
    seed: int, on_ms: float, off_ms: float, rate_on: float, rate_off: float
) -> None:
    """The fleet's array form of the on/off time change gives the scalar's arrivals exactly,
    including past the clock's last period (an "off" period at rate 0: never)."""
    rng = np.random.default_rng(seed)
    c = BurstyClock(
        np.random.default_rng(seed + 1), 10**9, on_ms * 1e6, off_ms * 1e6, rate_on, rate_off
    )
    prev = rng.integers(0, 11 * 10**8, 300)
    unit = np.rint(rng.exponential(BURSTY_UNIT_MEAN_NS, 300)).astype(np.int64)
    want = [
        c.next_arrival(int(p), int(u), BURSTY_UNIT_MEAN_NS) for p, u in zip(prev, unit, strict=True)
    ]
    assert c.next_arrivals(prev, unit, BURSTY_UNIT_MEAN_NS).tolist() == want


def test_bursty_clock_ending_off_at_rate_zero_never_arrives() -> None:
    c = BurstyClock(np.random.default_rng(3), 10**8, 1e6, 1e8, 1000.0, 0.0)
    assert c.rates[-1] == 0.0  # the last period (to infinity) is off
    assert c.next_arrival(10**9, 10**9, BURSTY_UNIT_MEAN_NS) == NEVER_NS
