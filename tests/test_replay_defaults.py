"""``hostsim replay`` reproduces by default (issue 13): a recording replays with the seed and
scenario it names, a capture is rebased and replayed in its traced classes, what replay learned
is saved in the result folder, and PV intercepts and real PSWs are read and written."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import numpy as np
import pytest

from hostsim import arch
from hostsim.cli import main
from hostsim.results import read_host_events, read_records
from hostsim.run import simulate
from hostsim.scenario import loads
from hostsim.scenario_types import Scenario
from hostsim.variants import VARIANTS
from workloads.replay import read_header
from workloads.replay_run import EXIT_NOTHING, REPLAY_FILE, TABLE_FILE
from workloads.trace_classes import class_registers, decoded_class
from workloads.trace_durations import measured_from_records, record_class
from workloads.trace_format import CLASSES, IN_KERNEL, PROGRAM_CHECK, USERSPACE_EXIT
from workloads.trace_read import read_trace
from workloads.trace_write import PSW_ADDR, write_trace

#: Two guest groups, host events (a guest reset, a hot-plug) so that there are host-event rows.
RECORDED = """
[run]
duration_ms = 60
seed = 1

[host]
adapters = [1, 2]
domains = 8

[host.hardware]
aqic_rc = { "0x00" = 0.95, "0x05" = 0.05 }

[[guests]]
name = "app"
count = 2
vcpus = 2
domains_per_guest = 2
[guests.workload]
rate_hz = 2000
adversarial = { problem_state = 0.05, other_fc = 0.05 }

[[guests]]
name = "db"
count = 1
vcpus = 2
[guests.workload]
kind = "closed"
think = { dist = "exponential", mean_ns = 1_000_000 }

[[events]]
at_ms = 20
kind = "guest_reset"
guest = "app[0]"

[[events]]
at_ms = 30
kind = "assign"
guest = "db[0]"
domains = [6]
"""

#: Healthy guests whose intercepts take all three classes only through their registers.
CAPTURED = """
[run]
duration_ms = 30
seed = 3

[host]
adapters = [1]
domains = 4

[[guests]]
name = "g"
count = 2
vcpus = 2
domains_per_guest = 2
[guests.workload]
rate_hz = 3000
adversarial = { problem_state = 0.1, reserved_bits = 0.1, other_fc = 0.15 }
"""


def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    rc = main(argv)
    out, err = capsys.readouterr()
    return rc, out, err


def _same_folders(a: Path, b: Path, summary: bool = True) -> None:
    ra, rb = read_records(a), read_records(b)
    assert len(ra) > 100 and np.array_equal(ra, rb)
    ha, hb = read_host_events(a), read_host_events(b)
    assert len(ha) > 0 and np.array_equal(ha, hb)
    if summary:
        assert (a / "summary.json").read_text() == (b / "summary.json").read_text()


# --- Item 1: recordings ----------------------------------------------------------------------
@pytest.mark.parametrize("ext", ["jsonl", "csv"])
def test_record_then_replay_with_no_flag_is_identical(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], ext: str
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("s.toml").write_text(RECORDED)
    rec = f"a.{ext}"
    rc, _, _ = _cli(
        ["run", "s.toml", "--seed", "5", "--record", rec, "--out", "run", "--quiet"], capsys
    )
    assert rc == 0
    head = read_header(rec)
    assert head["seed"] == 5 and head["scenario"] == "s.toml"
    assert "seed = 5" in head["scenario_toml"] and len(head["scenario_sha256"]) == 64
    Path("s.toml").unlink()  # the embedded scenario is enough
    rc, out, err = _cli(["replay", rec], capsys)
    assert rc == 0 and "WARNING" not in err and "overrides" not in err
    res = tmp_path / "hostsim-results" / "replay-a"
    _same_folders(tmp_path / "run", res)
    info = json.loads((res / REPLAY_FILE).read_text())
    assert info["seed"] == 5 and info["seed_from"] == "recording"
    assert info["scenario_from"] == "recording (embedded)"
    assert info["read"] == info["simulated"] == len(read_records(res))
    assert "replay.json" in out


def test_explicit_seed_and_scenario_override_and_say_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("s.toml").write_text(RECORDED)
    _cli(["run", "s.toml", "--seed", "5", "--record", "a.jsonl", "--out", "run", "--quiet"], capsys)
    rc, _, err = _cli(["replay", "a.jsonl", "--seed", "6", "--out", "r6", "--quiet"], capsys)
    assert rc == 0 and "--seed 6 overrides the seed 5 that a.jsonl names" in err
    assert json.loads(Path("r6", REPLAY_FILE).read_text())["seed"] == 6
    Path("t.toml").write_text(RECORDED.replace("rate_hz = 2000", "rate_hz = 10"))
    rc, _, err = _cli(["replay", "a.jsonl", "--scenario", "t.toml", "--out", "rt"], capsys)
    assert rc == 0 and "--scenario t.toml overrides the scenario that a.jsonl names (s.toml" in err
    # the recorded seed still applies: the workload is the recording's, so records agree
    assert json.loads(Path("rt", REPLAY_FILE).read_text())["seed"] == 5
    _same_folders(Path("run"), Path("rt"), summary=False)  # it names t.toml


def test_bad_recording_headers_name_file_and_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("s.toml").write_text(RECORDED)
    _cli(["run", "s.toml", "--record", "a.jsonl", "--out", "run", "--quiet"], capsys)
    lines = Path("a.jsonl").read_text().splitlines(True)
    Path("edited.jsonl").write_text(lines[0].replace("rate_hz = 2000", "rate_hz = 9") + lines[1])
    rc, _, err = _cli(["replay", "edited.jsonl", "--out", "r"], capsys)
    assert rc == 2 and "edited.jsonl:1: the embedded scenario_toml does not match" in err
    Path("m.csv").write_text("# hostsim-arrivals version 1\n# meta {oops\nt_ns\n")
    rc, _, err = _cli(["replay", "m.csv", "--out", "r"], capsys)
    assert rc == 2 and "m.csv:2: corrupt meta line" in err


def test_replay_that_simulates_nothing_or_less_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("s.toml").write_text(RECORDED)
    _cli(["run", "s.toml", "--record", "a.jsonl", "--out", "run", "--quiet"], capsys)
    n = len(read_records("run"))
    rc, _, err = _cli(["replay", "a.jsonl", "--set", "run.duration_ms=35", "--out", "r"], capsys)
    m = re.search(r"WARNING: only (\d+) of the (\d+) requests read from a\.jsonl", err)
    assert rc == 0 and m and int(m.group(1)) < n == int(m.group(2))
    assert "likely cause: the file's arrivals run to" in err and "ends at 35 ms" in err
    assert "only" in json.loads(Path("r", REPLAY_FILE).read_text())["warnings"][0]
    # A recording whose arrivals all come after the end of its scenario's run.
    lines = Path("a.jsonl").read_text().splitlines(True)
    late = [
        re.sub(r'"t_ns": (\d+)', lambda x: f'"t_ns": {int(x[1]) + 10**9}', ln) for ln in lines[1:]
    ]
    late = [
        re.sub(r'"issue_ns": (\d+)', lambda x: f'"issue_ns": {int(x[1]) + 10**9}', ln)
        for ln in late
    ]
    Path("late.jsonl").write_text(lines[0] + "".join(late))
    rc, _, err = _cli(["replay", "late.jsonl", "--out", "r2", "--quiet"], capsys)
    assert rc == EXIT_NOTHING
    assert f"WARNING: nothing was simulated: {n} requests were read from late.jsonl" in err
    assert "ends at 60 ms (run.duration_ms)" in err


# --- Items 1 and 2: a capture at 1000 s --------------------------------------------------------
def _capture(tmp: Path, s: Scenario, rec: np.ndarray, fmt: str) -> Path:
    """``rec`` as a real capture looks: no hostsim header, seconds since boot (1000 s on),
    microsecond timestamps."""
    buf = io.StringIO()
    write_trace(buf, s, rec, fmt)
    lines = []
    for ln in buf.getvalue().splitlines(True):
        if ln.startswith("#"):
            continue
        lines.append(
            re.sub(
                r" +(\d+)\.(\d{9}):",
                lambda m: f" {1000 + int(m[1])}.{m[2][:6]}:",
                ln,
                count=1,
            )
        )
    path = tmp / f"capture-{fmt}.txt"
    path.write_text("".join(lines))
    return path


@pytest.fixture(scope="module")
def captured() -> tuple[Scenario, np.ndarray]:
    s = loads(CAPTURED, "captured.toml")
    rec = simulate(s, keep_records=True).records
    assert rec is not None
    return s, rec


@pytest.mark.parametrize("fmt", ["trace-cmd", "perf"])
def test_capture_at_1000s_replays_every_pqap_in_its_class(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    captured: tuple[Scenario, np.ndarray],
    fmt: str,
) -> None:
    s, rec = captured
    monkeypatch.chdir(tmp_path)
    cap = _capture(tmp_path, s, rec, fmt)
    assert cap.read_text().split("] ", 1)[1].startswith("1000.")
    Path("host.toml").write_text(CAPTURED.replace("adversarial", "# adversarial"))
    rc, out, err = _cli(["replay", cap.name, "--scenario", "host.toml"], capsys)
    assert rc == 0 and "WARNING" not in err
    assert "trace rebased: its earliest event (1000.000" in err
    res = tmp_path / "hostsim-results" / f"replay-{cap.stem}"
    got = read_records(res)
    traced = np.bincount(record_class(rec), minlength=3)
    assert traced[USERSPACE_EXIT] > 10 and traced[PROGRAM_CHECK] > 10 and traced[IN_KERNEL] > 10
    assert len(got) == len(rec)
    np.testing.assert_array_equal(np.bincount(record_class(got), minlength=3), traced)
    # per vCPU and in order, each replayed request takes its traced class
    for v in range(s.n_vcpus):
        np.testing.assert_array_equal(
            record_class(got[got["vcpu"] == v]), record_class(rec[rec["vcpu"] == v])
        )
    assert set(np.unique(got["pgm_code"][got["path"] == 2])) <= {2, 6}
    # Item 5: the table and the notes are saved.
    table = json.loads((res / TABLE_FILE).read_text())
    imp = read_trace(cap, loads(CAPTURED, "captured.toml"))
    sim = measured_from_records(got)
    assert table["unit"] == "ns"
    for c in CLASSES:
        assert table["classes"][c]["trace"] == imp.measured[c]
        assert table["classes"][c]["sim"] == json.loads(json.dumps(sim[c]))
        assert table["classes"][c]["sim"]["n"] == traced[CLASSES.index(c)]
    info = json.loads((res / REPLAY_FILE).read_text())
    assert info["kind"] == "trace" and info["format"] == fmt
    assert info["t0_ns"] == imp.t0 and imp.t0 // 10**9 == 1000
    assert info["read"] == info["simulated"] == len(rec) and info["warnings"] == []
    assert info["notes"] == imp.notes
    assert any(n.startswith("classes: ") and "problem-state bit 15" in n for n in info["notes"])
    assert any("via kvm.fc_not_aqic" in n for n in info["notes"])
    status = json.loads((res / "status.json").read_text())
    assert {TABLE_FILE, REPLAY_FILE} <= set(status["files"])
    assert "trace vs simulation" in out and "userspace_exit" in out
    # the run lasts until the last intercept plus the drain
    last = max(int(a["t"][-1]) for a in imp.arrivals.values() if len(a))
    assert info["duration_ns"] == pytest.approx(last + 50_000_000, abs=2)


def test_register_choice_in_small_chunks_is_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, captured: tuple[Scenario, np.ndarray]
) -> None:
    import workloads.trace_read as tr

    s, rec = captured
    cap = _capture(tmp_path, s, rec, "perf")
    whole = read_trace(cap, s)
    monkeypatch.setattr(tr, "CLASS_CHUNK", 7)  # batches cut across vCPUs and inside them
    small = read_trace(cap, s)
    assert small.classes == whole.classes and small.not_reproduced == 0
    for v in range(s.n_vcpus):
        np.testing.assert_array_equal(small.arrivals[v], whole.arrivals[v])


def test_user_duration_is_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], captured: tuple[Scenario, np.ndarray]
) -> None:
    s, rec = captured
    cap = _capture(tmp_path, s, rec, "trace-cmd")
    host = tmp_path / "host.toml"
    host.write_text(CAPTURED)
    out = tmp_path / "r"
    argv = ["replay", str(cap), "--scenario", str(host), "--out", str(out), "--quiet"]
    rc, _, err = _cli([*argv, "--set", "run.duration_ms=5"], capsys)
    assert rc == 0 and "WARNING: only" in err and "ends at 5 ms" in err
    assert json.loads((out / REPLAY_FILE).read_text())["duration_ns"] == 5_000_000


def test_hostsim_trace_keeps_its_times_and_duration(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("s.toml").write_text(RECORDED)
    _cli(["run", "s.toml", "--trace-out", "t.txt", "--out", "run", "--quiet"], capsys)
    rc, _, err = _cli(["replay", "t.txt", "--scenario", "s.toml", "--out", "r", "--quiet"], capsys)
    assert rc == 0 and "WARNING" not in err and "rebased" not in err
    info = json.loads(Path("r", REPLAY_FILE).read_text())
    assert info["shift_ns"] == 0 and info["duration_ns"] == 60_000_000
    assert info["duration_from"] == "scenario (it covers the trace)"
    a, b = read_records("run"), read_records("r")
    assert info["read"] == info["simulated"] == len(a) == len(b)
    np.testing.assert_array_equal(np.sort(b["t_arrival"]), np.sort(a["t_exit"]))
    np.testing.assert_array_equal(
        np.bincount(record_class(a), minlength=3), np.bincount(record_class(b), minlength=3)
    )


# --- Item 2: the register choice, for every variant -------------------------------------------
ONE = """
[run]
duration_ms = 10
[host]
variant = "{variant}"
[[guests]]
name = "g"
count = 1
vcpus = 1
"""


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_chosen_registers_decode_to_the_traced_class(variant: str) -> None:
    from collections import Counter

    from workloads.bursts import SCRIPT_DTYPE

    s = loads(ONE.format(variant=variant), "one.toml")
    n = 6
    rows = np.zeros(n, SCRIPT_DTYPE)
    rows["gpr0"] = (3 << 24) | 0x0001
    rows["gpr1"] = arch.make_gr1_aqic(1, 3)
    rows["gpr2"] = 0x1000
    rows["psw_mask"] = arch.PSW_DEFAULT_SUPERVISOR
    rows["psw_mask"][5] |= arch.PSW_MASK_PSTATE  # a traced in-kernel answer in problem state
    outcome = [IN_KERNEL, PROGRAM_CHECK, PROGRAM_CHECK, USERSPACE_EXIT, IN_KERNEL, IN_KERNEL]
    outcome = np.array(outcome, np.int8)
    pgm = np.array([-1, 2, 6, -1, -1, -1], np.int16)
    tally: Counter = Counter()
    class_registers(s, 0, rows, outcome, pgm, tally)
    cls, code, _ = decoded_class(s, 0, rows["gpr0"], rows["gpr1"], rows["gpr2"], rows["psw_mask"])
    np.testing.assert_array_equal(cls, outcome)
    assert code[1] == 2 and code[2] == 6
    assert (rows["psw_mask"][1] & arch.PSW_MASK_PSTATE) and not rows["psw_mask"][
        5
    ] & arch.PSW_MASK_PSTATE
    assert arch.fc(rows["gpr0"][3]) == arch.FunctionCode.QCI and arch.fc(rows["gpr0"][0]) == 3
    assert None not in {r for _, r in tally}
    # ``hostsim decode`` (the scalar evaluator behind the CLI) agrees, line by line.
    from hostsim.decode_io import run_decode

    regs = ("gpr0", "gpr1", "gpr2", "psw_mask")
    text = "".join(
        json.dumps({**{k: int(r[k]) for k in regs}, "variant": variant}) + "\n" for r in rows
    )
    out = io.StringIO()
    assert run_decode(io.StringIO(text), "<rows>", out, None) == 0
    kinds = [json.loads(ln)["kind"] for ln in out.getvalue().splitlines()]
    want = {USERSPACE_EXIT: "USERSPACE_EXIT", PROGRAM_CHECK: "PROGRAM_INTERRUPT"}
    for k, c in zip(kinds, outcome.tolist(), strict=True):
        assert k == want[c] if c in want else k in ("HOOK_HANDLED", "NO_HOOK_RC01")


def test_classes_a_scenario_cannot_take_are_counted(tmp_path: Path) -> None:
    """A traced in-kernel answer on a guest the scenario gives no ECA_APIE cannot be one."""
    data = Path(__file__).parent / "data" / "trace" / "template-trace-cmd.txt"
    s = loads(ONE.format(variant="upstream").replace("vcpus = 1", "vcpus = 2\neca_apie = false"))
    imp = read_trace(data, s)
    assert imp.not_reproduced == 2  # the in-kernel answer and the program check
    assert any(
        n.startswith("classes NOT reproduced: 1 in_kernel, 1 program_check") for n in imp.notes
    )


# --- Item 6: PV intercept code and the PSW as a real intercept shows it --------------------------
PV = """
[run]
duration_ms = 20
seed = 2
[host]
adapters = [1]
domains = 4
[[guests]]
name = "plain"
count = 1
vcpus = 2
[guests.workload]
rate_hz = 2000
adversarial = { problem_state = 0.2 }
[[guests]]
name = "secure"
count = 1
vcpus = 2
pv = true
[guests.workload]
rate_hz = 2000
"""


@pytest.mark.parametrize("fmt", ["trace-cmd", "perf"])
def test_pv_intercept_code_and_psw_written_and_read(tmp_path: Path, fmt: str) -> None:
    s = loads(PV, "pv.toml")
    rec = simulate(s, keep_records=True).records
    assert rec is not None
    buf = io.StringIO()
    write_trace(buf, s, rec, fmt)
    text = buf.getvalue()
    exits = [ln for ln in text.splitlines() if "sie_exit" in ln]
    pv_exits = [ln for ln in exits if "icptcode 104 (0x68)" in ln]
    secure = rec["guest"] == 1
    assert len(pv_exits) == int(secure.sum()) > 0
    assert all("CPU" in ln for ln in pv_exits)
    assert len(exits) - len(pv_exits) == int((~secure).sum())
    # The PSW address is past the PQAP at exit and the same at entry, answered or not.
    addrs = re.findall(r"\[[0-9a-f]{16}-([0-9a-f]{16})\]: (exit|entering)", text)
    assert addrs and {int(a, 16) for a, _ in addrs} == {PSW_ADDR}
    f = tmp_path / "pv.txt"
    f.write_text(text)
    imp = read_trace(f, s)
    assert imp.pv == int(secure.sum()) and imp.intercepts == len(rec)
    assert any("intercept code 104" in n for n in imp.notes)
    for v in range(s.n_vcpus):
        np.testing.assert_array_equal(imp.arrivals[v]["t"], rec["t_exit"][rec["vcpu"] == v])
        np.testing.assert_array_equal(imp.outcome[v], record_class(rec[rec["vcpu"] == v]))


def test_reader_accepts_a_real_pv_capture(tmp_path: Path) -> None:
    """A capture of a PV guest: intercept code 104, the address unchanged from exit to entry."""
    s = loads(ONE.format(variant="upstream").replace("vcpus = 1", "vcpus = 1\npv = true"))
    pre = " CPU 0/KVM-4321  [003] "
    psw = "00[0704c00180000000-00000000009a1c2e]:"
    f = tmp_path / "pv.txt"
    f.write_text(
        f"{pre}2000.000100: kvm_s390_sie_exit:    {psw} exit sie icptcode 104 (0x68)\n"
        f"{pre}2000.000100: kvm_s390_intercept_instruction: {psw} intercepted instruction "
        "b2af000000000000 (0xb2af)\n"
        f"{pre}2000.000108: kvm_s390_sie_enter:   {psw} entering sie flags 0\n"
        f"{pre}2000.000200: kvm_s390_sie_exit:    {psw} exit sie icptcode 104 (0x68)\n"
        f"{pre}2000.000200: kvm_s390_intercept_instruction: {psw} intercepted instruction "
        "b205000000000000 (STCK)\n"
        f"{pre}2000.000203: kvm_s390_sie_enter:   {psw} entering sie flags 0\n"
    )
    imp = read_trace(f, s)
    assert imp.intercepts == 1 and imp.pv == 1 and imp.incomplete == 0
    assert imp.arrivals[0]["t"].tolist() == [0] and imp.duration[0].tolist() == [8_000]
    assert imp.outcome[0].tolist() == [IN_KERNEL]
    assert any("other instructions ignored" in n for n in imp.notes)
