"""Kernel trace import and export (workloads/trace_*.py): round trip, spec templates, bad input,
streaming."""

from __future__ import annotations

import io
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from hostsim import arch, records
from hostsim.records import Path as RecPath
from hostsim.run import simulate
from hostsim.scenario import loads
from hostsim.scenario_types import Scenario
from workloads.bursts import SCRIPT_DTYPE
from workloads.trace_durations import format_calibration, measured_from_records, record_class
from workloads.trace_format import (
    CLASSES,
    FORMATS,
    IN_KERNEL,
    PROGRAM_CHECK,
    USERSPACE_EXIT,
    TraceError,
)
from workloads.trace_read import ImportedTrace, format_import, read_trace
from workloads.trace_write import TraceWriter, write_trace

DATA = Path(__file__).parent / "data" / "trace"

#: Normal guests, an idle guest in the middle (its vCPUs never trap), a guest without ECA_APIE
#: (userspace exits), one without facility 65 (program checks) and one without an mdev (RC 01).
ROUND_TRIP = """
[run]
duration_ms = 40
seed = 7

[host]
adapters = [1, 2]
domains = 8

[[guests]]
name = "good"
count = 2
vcpus = 2
domains_per_guest = 2
[guests.workload]
rate_hz = 3000
enable_fraction = 0.8

[[guests]]
name = "quiet"
count = 1
vcpus = 2
[guests.workload]
kind = "idle"

[[guests]]
name = "noapie"
count = 1
vcpus = 2
eca_apie = false
[guests.workload]
rate_hz = 2000

[[guests]]
name = "nofac65"
count = 1
vcpus = 2
facility65 = false
[guests.workload]
rate_hz = 2000

[[guests]]
name = "nomdev"
count = 1
vcpus = 2
mdev = false
[guests.workload]
rate_hz = 2000
isc = 5
"""

ONE_GUEST = """
[run]
duration_ms = 10

[[guests]]
name = "g"
count = 1
vcpus = 2
"""


@pytest.fixture(scope="module")
def run() -> tuple[Scenario, np.ndarray]:
    s = loads(ROUND_TRIP, "round-trip.toml")
    rec = simulate(s, "fast", keep_records=True).records
    assert rec is not None
    return s, rec


@pytest.fixture(scope="module")
def one_guest() -> Scenario:
    return loads(ONE_GUEST, "one-guest.toml")


def _write(path: Path, s: Scenario, rec: np.ndarray, fmt: str, sizes: tuple[int, ...]) -> int:
    """Write ``rec`` in chunks of the given sizes (cycled), as the CLI would."""
    with open(path, "w", encoding="utf-8") as fh:
        w = TraceWriter(fh, s, fmt)
        i = k = 0
        while i < len(rec):
            n = sizes[k % len(sizes)]
            w.add(rec[i : i + n])
            i += n
            k += 1
        w.close()
        w.close()  # idempotent
        return w.lines


def _check_round_trip(imp: ImportedTrace, s: Scenario, rec: np.ndarray) -> None:
    cls = record_class(rec)
    assert imp.intercepts == len(rec)
    assert imp.skipped == 0 and imp.incomplete == 0
    assert set(imp.arrivals) == set(range(s.n_vcpus))
    for v in range(s.n_vcpus):
        mine = rec["vcpu"] == v
        rv = rec[mine]
        arr = imp.arrivals[v]
        assert arr.dtype == SCRIPT_DTYPE
        np.testing.assert_array_equal(arr["t"], rv["t_exit"])
        np.testing.assert_array_equal(arr["psw_mask"], rv["psw_mask"])
        np.testing.assert_array_equal(imp.outcome[v], cls[mine])
        np.testing.assert_array_equal(imp.duration[v], rv["t_resume"] - rv["t_exit"])
        pc = rv["path"] == RecPath.PROGRAM_CHECK
        np.testing.assert_array_equal(imp.pgm_code[v][pc], rv["pgm_code"][pc])
        assert np.all(imp.pgm_code[v][~pc] == -1)
    assert imp.measured == measured_from_records(rec)


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip(tmp_path: Path, run: tuple[Scenario, np.ndarray], fmt: str) -> None:
    s, rec = run
    paths = np.bincount(rec["path"], minlength=len(RecPath))
    assert paths[RecPath.USERSPACE_EXIT] and paths[RecPath.PROGRAM_CHECK]
    assert paths[RecPath.NO_HOOK_RC01] and paths[RecPath.HOOK_ENABLE]
    trace = tmp_path / f"run.{fmt}.txt"
    n = _write(trace, s, rec, fmt, (1, 7, 64, 3, 500))
    assert n == len(trace.read_text(encoding="utf-8").splitlines())
    imp = read_trace(trace, s)
    assert imp.fmt == fmt and imp.lines == n and imp.ts_digits == 9
    _check_round_trip(imp, s, rec)
    # The idle guest (global vCPUs 4 and 5) has no thread in the trace: the thread map header
    # keeps the guests after it in place.
    assert len(imp.arrivals[4]) == len(imp.arrivals[5]) == 0


def test_round_trip_rows_are_replayable(tmp_path: Path, run: tuple[Scenario, np.ndarray]) -> None:
    """The inferred registers: AQIC, APQNs round-robin from the guest's matrix, the ISC/NIB."""
    s, rec = run
    trace = tmp_path / "run.txt"
    _write(trace, s, rec, "trace-cmd", (4096,))
    imp = read_trace(trace, s)
    from hostsim.topology import topology

    topo = topology(s)
    for v, rows in imp.arrivals.items():
        w = s.guests[int(topo.vcpu_group[v])].workload
        apqns = topo.guest_apqns[int(topo.vcpu_guest[v])]
        assert np.all(arch.fc(rows["gpr0"]) == arch.FunctionCode.AQIC)
        want = apqns[np.arange(len(rows)) % len(apqns)]
        np.testing.assert_array_equal(arch.apqn(rows["gpr0"]), want)
        assert np.all(arch.ir(rows["gpr1"]) == 1) and np.all(arch.isc(rows["gpr1"]) == w.isc)
        assert np.all(rows["gpr2"] == w.nib) and np.all(rows["think"] == 0)
    text = format_import(imp)
    assert "inferred:" in text and "round-robin" in text and "AQIC" in text
    assert "ISC" in text and "program checks" in text


def test_writer_whole_and_chunked_agree(run: tuple[Scenario, np.ndarray]) -> None:
    s, rec = run
    whole = io.StringIO()
    write_trace(whole, s, rec, "perf")
    chunked = io.StringIO()
    w = TraceWriter(chunked, s, "perf")
    for i in range(0, len(rec), 13):
        w.add(rec[i : i + 13])
    w.close()
    assert whole.getvalue() == chunked.getvalue()
    lines = whole.getvalue().splitlines()
    assert lines[0].startswith("# hostsim trace-out (perf)")
    body = [ln for ln in lines if not ln.startswith("#")]
    times = [ln.split("] ", 1)[1].split(":", 1)[0].strip() for ln in body]
    ns = [int(a) * 10**9 + int(b) for a, b in (t.split(".") for t in times)]
    assert ns == sorted(ns)
    assert all("kvm-s390:kvm_s390_inject_vcpu" in ln for ln in body if "inject" in ln)
    assert all(" kvm:kvm_s390_sie_e" in ln for ln in body if "sie_e" in ln)


def test_writer_rejects_out_of_order(run: tuple[Scenario, np.ndarray]) -> None:
    s, rec = run
    w = TraceWriter(io.StringIO(), s)
    w.add(rec[100:200])
    with pytest.raises(ValueError, match="canonical order"):
        w.add(rec[:50])


def test_generic_thread_rule_without_header(tmp_path: Path) -> None:
    """A hostsim trace without its thread-map header is mapped by the generic rule; exact when
    every vCPU trapped at least once."""
    s = loads(
        ROUND_TRIP,
        "round-trip.toml",
        ["guests.1.workload.kind=poisson", "guests.1.workload.rate_hz=3000"],
    )
    rec = simulate(s, "fast", keep_records=True).records
    assert rec is not None and len(np.unique(rec["vcpu"])) == s.n_vcpus
    buf = io.StringIO()
    write_trace(buf, s, rec, "trace-cmd")
    trace = tmp_path / "noheader.txt"
    trace.write_text(
        "".join(ln for ln in buf.getvalue().splitlines(True) if not ln.startswith("#"))
    )
    imp = read_trace(trace, s, rebase=False)
    _check_round_trip(imp, s, rec)
    assert any("sorted by tid" in n for n in imp.notes)
    # Without the header it reads as a capture: rebased to its earliest event.
    first = int(rec["t_exit"].min())
    rebased = read_trace(trace, s)
    assert rebased.t0 == first and rebased.shift == first
    for v in range(s.n_vcpus):
        np.testing.assert_array_equal(rebased.arrivals[v]["t"], imp.arrivals[v]["t"] - first)


def test_spec_templates_trace_cmd(one_guest: Scenario) -> None:
    """The spec's synthetic lines: 6-decimal times, comm with spaces, the flags column."""
    imp = read_trace(DATA / "template-trace-cmd.txt", one_guest)
    assert imp.fmt == "trace-cmd" and imp.ts_digits == 6
    assert imp.skipped == 0 and imp.incomplete == 0
    # thread 4321 shows vCPU 00 -> global vCPU 0; thread 4322 shows 01 -> global vCPU 1; a
    # capture is rebased: its earliest event (1000.000100 s) is time 0
    assert imp.t0 == imp.shift == 1000_000_100_000
    assert imp.arrivals[0]["t"].tolist() == [0]
    assert imp.outcome[0].tolist() == [IN_KERNEL]
    assert imp.duration[0].tolist() == [7_000]
    assert imp.arrivals[0]["psw_mask"].tolist() == [0x0704C00180000000]
    assert imp.arrivals[1]["t"].tolist() == [100_000]
    assert imp.outcome[1].tolist() == [PROGRAM_CHECK]
    assert imp.duration[1].tolist() == [5_000]
    assert imp.pgm_code[1].tolist() == [6]
    m = imp.measured
    one = {"n": 1, "min": 7000, "mean": 7000.0, "p50": 7000, "p99": 7000, "max": 7000}
    assert m["in_kernel"] == one
    assert m["program_check"]["n"] == 1 and m["userspace_exit"]["n"] == 0
    assert any("other instructions ignored" in n for n in imp.notes)
    assert any("6 decimals" in n for n in imp.notes)


def test_spec_templates_perf(tmp_path: Path, one_guest: Scenario) -> None:
    imp = read_trace(DATA / "template-perf.txt", one_guest)
    assert imp.fmt == "perf"
    assert imp.arrivals[1]["t"].tolist() == [0]
    assert read_trace(DATA / "template-perf.txt", one_guest, rebase=False).arrivals[1][
        "t"
    ].tolist() == [1000_000_200_000]
    assert imp.outcome[1].tolist() == [USERSPACE_EXIT]
    assert imp.duration[1].tolist() == [9_000]
    assert len(imp.arrivals[0]) == 0
    # QEMU's operation exception after the exit is part of the userspace exit; 9-decimal times
    # and perf's pid/tid column are accepted too.
    extra = (
        " CPU 1/KVM 4300/4322 [005]  1000.000300123: kvm:kvm_s390_sie_exit: 01[0704c00180000000-"
        "00000000009a1c2e]: exit sie icptcode 4 (Instruction)\n"
        " CPU 1/KVM 4300/4322 [005]  1000.000300123: kvm:kvm_s390_intercept_instruction: 01["
        "0704c00180000000-00000000009a1c2e]: intercepted instruction b2af000000000000 (0xb2af)\n"
        " CPU 1/KVM 4300/4322 [005]  1000.000300200: kvm:kvm_userspace_exit: reason "
        "KVM_EXIT_S390_SIEIC (13)\n"
        " CPU 1/KVM 4300/4322 [005]  1000.000304000: kvm-s390:kvm_s390_inject_vcpu: inject (vcpu "
        "1): type:fffe0001 (program interrupt) parm:1 parm64:0\n"
        " CPU 1/KVM 4300/4322 [005]  1000.000305001: kvm:kvm_s390_sie_enter: 01[0704c00180000000-"
        "00000000009a1c2e]: entering sie flags 0\n"
    )
    f = tmp_path / "perf.txt"
    f.write_text((DATA / "template-perf.txt").read_text() + extra)
    imp = read_trace(f, one_guest)
    assert imp.outcome[1].tolist() == [USERSPACE_EXIT, USERSPACE_EXIT]
    assert imp.duration[1].tolist() == [9_000, 4_878]
    assert imp.ts_digits == 9
    assert any("QEMU" in n for n in imp.notes)


def test_gzip_and_open_intercept_at_eof(tmp_path: Path, one_guest: Scenario) -> None:
    import gzip

    lines = (DATA / "template-trace-cmd.txt").read_text().splitlines(True)
    cut = [ln for ln in lines if "1000.000304" not in ln]  # the last sie_enter never came
    f = tmp_path / "cut.txt.gz"
    with gzip.open(f, "wt") as fh:
        fh.write("".join(cut))
    imp = read_trace(f, one_guest)
    assert imp.incomplete == 0  # that intercept was of another instruction
    cut = [ln for ln in lines if "1000.000107" not in ln]
    g = tmp_path / "cut2.txt"
    g.write_text("".join(cut))
    imp = read_trace(g, one_guest)
    assert imp.incomplete == 1 and len(imp.arrivals[0]) == 0 and len(imp.arrivals[1]) == 1


# --- Bad input ---------------------------------------------------------------------------------
def _file(tmp_path: Path, text: str, name: str = "bad.txt") -> Path:
    f = tmp_path / name
    f.write_text(text)
    return f


def _template() -> list[str]:
    return (DATA / "template-trace-cmd.txt").read_text().splitlines(True)


def test_unknown_format(tmp_path: Path, one_guest: Scenario) -> None:
    f = _file(tmp_path, "# a comment\n\nhello world, this is not a trace\n")
    with pytest.raises(TraceError, match=r"bad\.txt:3: unknown trace format"):
        read_trace(f, one_guest)
    q = _file(tmp_path, "4321@1000.000100:kvm_run_exit cpu_index 0, reason 13\n", "qemu.txt")
    with pytest.raises(TraceError, match=r"qemu\.txt:1: .*QEMU log-backend"):
        read_trace(q, one_guest)
    b = tmp_path / "trace.dat"
    b.write_bytes(b"\x17\x08\x44tracing6\x00\x00\x00")
    with pytest.raises(TraceError, match=r"trace\.dat:1: .*trace-cmd report"):
        read_trace(b, one_guest)
    with pytest.raises(TraceError, match="no trace lines"):
        read_trace(_file(tmp_path, "# only\n", "empty.txt"), one_guest)


def test_corrupt_line(tmp_path: Path, one_guest: Scenario) -> None:
    lines = _template()
    i = next(i for i, ln in enumerate(lines) if "b2af000000000000" in ln)
    lines[i] = lines[i][: lines[i].index("b2af") + 6] + "\n"  # truncated instruction
    f = _file(tmp_path, "".join(lines))
    with pytest.raises(TraceError, match=rf"bad\.txt:{i + 1}: corrupt or truncated"):
        read_trace(f, one_guest)
    imp = read_trace(f, one_guest, skip_bad=True)
    assert imp.skipped == 1 and f"bad.txt:{i + 1}:" in imp.skip_messages[0]
    assert len(imp.arrivals[0]) == 0 and len(imp.arrivals[1]) == 1  # that intercept is lost
    assert "1 bad lines skipped" in format_import(imp)
    # a line that is no trace-cmd text at all, and a truncated last line without a newline
    g = _file(tmp_path, "".join(_template()) + "garbage here\n CPU 0/KVM-4321  [003] 1000.00")
    n = len(_template())
    with pytest.raises(TraceError, match=rf"bad\.txt:{n + 1}: corrupt"):
        read_trace(g, one_guest)
    imp = read_trace(g, one_guest, skip_bad=True)
    assert imp.skipped == 2 and imp.intercepts == 2


def test_time_going_backwards(tmp_path: Path, one_guest: Scenario) -> None:
    lines = _template()
    i = next(i for i, ln in enumerate(lines) if "1000.000107" in ln)
    lines[i] = lines[i].replace("1000.000107", "1000.000050")  # before its own sie_exit
    f = _file(tmp_path, "".join(lines))
    with pytest.raises(TraceError, match=rf"bad\.txt:{i + 1}: time goes backwards"):
        read_trace(f, one_guest)
    imp = read_trace(f, one_guest, skip_bad=True)
    assert imp.skipped == 1
    # Globally: another thread's line 0.5 µs early is tolerated, 2 µs early is not.
    lines = _template()
    j = next(i for i, ln in enumerate(lines) if "1000.000205: kvm_s390_sie_enter" in ln)
    ok = lines[j].replace("1000.000205", "1000.000203")  # after 4322's own inject at .000202
    lines.insert(j + 3, ok.replace("[002]", "[001]"))  # after 4321's .000300 lines: 97 µs late
    f2 = _file(tmp_path, "".join(lines), "global.txt")
    with pytest.raises(TraceError, match=rf"global\.txt:{j + 4}: time goes backwards"):
        read_trace(f2, one_guest)


def test_unknown_vcpu(
    tmp_path: Path, one_guest: Scenario, run: tuple[Scenario, np.ndarray]
) -> None:
    # A second guest's thread (its vCPU id starts again at 00): the scenario has one guest.
    lines = _template()
    other = [
        ln.replace("CPU 0/KVM-4321", "CPU 0/KVM-4400").replace("1000.0001", "1000.0004")
        for ln in lines[5:8]
    ]
    f = _file(tmp_path, "".join(lines + other))
    with pytest.raises(TraceError, match=rf"bad\.txt:{len(lines) + 1}: unknown vCPU: thread 4400"):
        read_trace(f, one_guest)
    imp = read_trace(f, one_guest, skip_bad=True)
    assert imp.skipped == 3 and imp.intercepts == 2
    # A vCPU id beyond the guest's vCPU count.
    g = _file(tmp_path, "".join(lines).replace("-4322 ", "-4399 ").replace("01[", "02["), "id.txt")
    with pytest.raises(TraceError, match=r"id\.txt:\d+: unknown vCPU: .* has 2 vCPUs"):
        read_trace(g, one_guest)
    # A hostsim trace read against a smaller scenario: beyond its vCPUs by the thread map.
    s, rec = run
    h = tmp_path / "hostsim.txt"
    _write(h, s, rec, "trace-cmd", (1000,))
    with pytest.raises(TraceError, match=r"hostsim\.txt:\d+: unknown vCPU"):
        read_trace(h, one_guest)


# --- Measured durations ------------------------------------------------------------------------
def test_measured_from_records_and_calibration(run: tuple[Scenario, np.ndarray]) -> None:
    _, rec = run
    m = measured_from_records(rec)
    assert set(m) == set(CLASSES)
    d = rec["t_resume"] - rec["t_exit"]
    assert sum(m[c]["n"] for c in CLASSES) == len(rec)
    us = d[rec["path"] == RecPath.USERSPACE_EXIT]
    assert m["userspace_exit"]["min"] == us.min() and m["userspace_exit"]["max"] == us.max()
    assert m["userspace_exit"]["mean"] == us.sum() / len(us)
    assert m["userspace_exit"]["p50"] in us  # observed values, exact integers
    empty = measured_from_records(records.empty(0))
    assert empty["in_kernel"] == {k: (0 if k == "n" else None) for k in empty["in_kernel"]}
    table = format_calibration(m, empty)
    lines = table.splitlines()
    assert "trace vs simulation" in lines[0]
    assert lines[1].split()[:3] == ["class", "N", "trace"]
    assert lines[2].split()[0] == "userspace_exit" and lines[2].split()[2] == "0"
    assert f"{m['userspace_exit']['mean'] / 1000:.3f}" in lines[2] and " - " in lines[2]


# --- Streaming ---------------------------------------------------------------------------------
def test_streaming_bounded_memory(tmp_path: Path) -> None:
    """~200k lines (~27 MB) read with a peak well below the file's size."""
    s = loads(ONE_GUEST.replace("count = 1", "count = 4"), "four.toml")
    n = 67_000  # 3 lines each, answered in the kernel
    rec = records.empty(n)
    i = np.arange(n)
    rec["vcpu"] = i % s.n_vcpus
    rec["guest"] = rec["vcpu"] // 2
    rec["t_issue"] = i * 1_000
    rec["t_exit"] = rec["t_issue"] + 100
    rec["t_decode"] = rec["t_exit"] + 300
    rec["t_resume"] = rec["t_exit"] + 2_000 + (i % 7) * 10
    rec["path"] = RecPath.HOOK_ENABLE
    rec["cc"] = 0
    rec["psw_mask"] = arch.PSW_DEFAULT_SUPERVISOR
    trace = tmp_path / "big.txt"
    lines = _write(trace, s, rec, "trace-cmd", (8192,))
    assert lines >= 200_000
    size = trace.stat().st_size
    tracemalloc.start()
    try:
        imp = read_trace(trace, s)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert imp.intercepts == n and imp.lines == lines
    assert imp.measured["in_kernel"]["min"] == 2_000 and imp.measured["in_kernel"]["max"] == 2_060
    assert peak < 12 * 2**20 < size / 2, (peak, size)
