"""Capture readers (workloads.capture): each sample file parses to the values it shows, each
format is detected from content or named with ``format=``, and a bad line is named by file and
line (``file:line: expected ...``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from workloads.capture import FORMATS, detect_capture_format, read_capture
from workloads.capture_base import CaptureError, duration_ns
from workloads.capture_fgraph import FuncGraph
from workloads.capture_kprobe import HandlePqapCapture
from workloads.capture_lock import LockContention, LockEvents, lock_name
from workloads.capture_perf_stat import PerfKvmStat
from workloads.capture_s390dbf import S390dbfCapture
from workloads.capture_sie import SieCapture
from workloads.trace_format import IN_KERNEL, USERSPACE_EXIT

DATA = Path(__file__).parent / "data"
CAP = DATA / "capture"
SAMPLES = {
    "perf-kvm-stat": CAP / "perf_kvm_stat.txt",
    "perf-lock-contention": CAP / "perf_lock_contention.txt",
    "lock-events": CAP / "lock_events.txt",
    "kprobe-pqap": CAP / "handle_pqap.txt",
    "function-graph": CAP / "function_graph.txt",
    "s390dbf": CAP / "s390dbf_crycb.txt",
    "sie-trace": DATA / "trace" / "template-perf.txt",
}


def test_every_format_has_a_sample_and_is_detected():
    assert set(SAMPLES) == set(FORMATS)
    for fmt, path in SAMPLES.items():
        assert detect_capture_format(path) == fmt


def test_duration_units():
    assert duration_ns("6.03 s") == 6_030_000_000
    assert duration_ns("557 ns") == 557
    assert duration_ns("41.20 ms") == 41_200_000
    assert duration_ns("12.45us") == 12_450
    assert duration_ns("x") is None


def test_perf_kvm_stat():
    c = read_capture(SAMPLES["perf-kvm-stat"])
    assert isinstance(c, PerfKvmStat)
    assert c.target == "all VMs" and c.vcpu == "all VCPUs" and c.total_samples == 4346
    assert [r.name for r in c.rows] == ["Wait state", "UNKNOWN", "STSI", "I/O request"]
    u = c.row("UNKNOWN")
    assert (u.samples, u.min_ns, u.max_ns, u.mean_ns) == (2759, 4120, 215300, 24600.0)
    # perf's "+-" is the relative standard error of the mean: sd = rel * mean * sqrt(n)
    assert u.stddev_ns == pytest.approx(0.0112 * 24600 * 2759**0.5)


def test_perf_kvm_stat_old_columns(tmp_path):
    p = tmp_path / "old.txt"
    p.write_text(
        "Analyze events for all VCPUs:\n\n"
        "             VM-EXIT    Samples  Samples%     Time%         Avg time\n\n"
        "             UNKNOWN         10   100.00%   100.00%     12.00us ( +-   3.00% )\n"
    )
    r = read_capture(p, "perf-kvm-stat").rows[0]
    assert (r.name, r.samples, r.min_ns, r.mean_ns) == ("UNKNOWN", 10, None, 12000.0)


def test_perf_lock_contention():
    c = read_capture(SAMPLES["perf-lock-contention"])
    assert isinstance(c, LockContention) and c.mode == "caller"
    got = [(r.lock, r.contended, r.total_ns, r.max_ns, r.avg_ns) for r in c.rows]
    assert got[0] == ("mdevs_lock", 12, 41_200_000, 24_900_000, 3_430_000)
    assert got[1][0] == "pqap_hook_rwsem"  # KVM's handle_pqap takes the rwsem
    assert got[3][0] == "pqap_hook_rwsem"  # unset_kvm's down_write
    assert got[4][0] == "" and got[4][4] == 917
    assert sorted(c.by_lock()) == ["", "mdevs_lock", "pqap_hook_rwsem"]


def test_perf_lock_contention_address_mode_and_stacks(tmp_path):
    p = tmp_path / "l.txt"
    p.write_text(
        "   contended   total wait     max wait     avg wait            address   symbol\n\n"
        "           3     14.99 us     14.44 us      5.00 us   ffffffff851c0940   "
        "mdevs_lock (mutex)\n"
        "           2      2.75 us      2.56 us      1.38 us   ffff98d7031fb498   &kmalloc-512"
        " (mutex)\n"
        "                        0xffffffff9a23f4b5  __mutex_lock+0x45\n"
        "                        0xffffffff99bbd4dd  vfio_ap_mdev_ioctl+0x2d [vfio_ap]\n"
    )
    c = read_capture(p)
    assert c.mode == "address"
    assert [r.lock for r in c.rows] == ["mdevs_lock", "mdevs_lock"]
    assert c.rows[1].stack[1].startswith("vfio_ap_mdev_ioctl")


def test_lock_name_rules():
    assert lock_name("mutex", "handle_pqap+0x1a4") == "mdevs_lock"
    assert lock_name("rwsem", "handle_pqap+0xd2") == "pqap_hook_rwsem"
    assert lock_name("mutex", "", "", ["__mutex_lock+0x1", "kvm_arch_crypto_set_masks+0x9"]) == (
        "kvm->lock"
    )
    assert lock_name("mutex", "pipe_read+0x57") == ""


def test_lock_events():
    c = read_capture(SAMPLES["lock-events"])
    assert isinstance(c, LockEvents) and c.unpaired == 0
    got = [(c.lock_of(w), w.tid, w.wait_ns, w.flags) for w in c.waits]
    assert got == [
        ("pqap_hook_rwsem", 4321, 4_000, "READ"),
        ("mdevs_lock", 4322, 3_400_000, "MUTEX|SPIN"),  # spin, then sleep: from the first begin
        ("mdevs_lock", 5000, 3_306_000, "MUTEX"),
        ("mdevs_lock", 4324, 25_206_000, "MUTEX"),  # behind the reset ioctl
        ("lock@3ffaa000000", 4323, 50_000, "WRITE"),  # no call chain, no `# lock` name
    ]
    assert c.waits[0].caller == "handle_pqap+0xd2"
    # holds seen through queued waiters: the guest AQIC 6 us, then the ioctl 25.1 ms
    assert [(h.caller, h.hold_ns) for h in c.holds()] == [
        ("handle_pqap+0x1a4", 6_000),
        ("vfio_ap_mdev_ioctl+0x5e", 25_100_000),
    ]


def test_kprobe_pqap():
    c = read_capture(SAMPLES["kprobe-pqap"])
    assert isinstance(c, HandlePqapCapture) and len(c.calls) == 5
    assert c.calls["gpr0"][0] == 0x03000005 and c.calls["dur"][0] == 5123
    assert c.enable.tolist() == [True, True, False, True, True]
    assert c.rc.tolist() == [0, 0, 0, 0, 7]
    assert c.to_userspace.tolist() == [False, False, False, True, False]


def test_function_graph():
    c = read_capture(SAMPLES["function-graph"])
    assert isinstance(c, FuncGraph) and c.unclosed == 0
    by = {x.func: x for x in c.calls}
    assert by["vfio_ap_irq_enable"].dur_ns == 5123
    assert by["vfio_ap_irq_enable"].t_start == 1000_000_120_000
    ioctl, reset = by["vfio_ap_mdev_ioctl"], by["vfio_ap_mdev_reset_queues"]
    assert (ioctl.dur_ns, ioctl.t_start, ioctl.depth) == (25_110_000, 1000_100_000_000, 0)
    assert (reset.parent, reset.depth, reset.module) == ("vfio_ap_mdev_ioctl", 1, "vfio_ap")
    assert by["apq_reset_check"].task == "kworker-77"
    assert c.durations("vfio_ap_irq_disable") == [8_400_250]


def test_function_graph_trace_cmd_report(tmp_path):
    p = tmp_path / "fg.txt"
    p.write_text(
        "  CPU 0/KVM-4321  [003]  1000.200001: funcgraph_entry:        5.123 us   |  "
        "vfio_ap_irq_enable();\n"
        "  qemu-system-s39-5000  [002]  1000.300000: funcgraph_entry:                   |  "
        "vfio_ap_mdev_ioctl() {\n"
        "  qemu-system-s39-5000  [001]  1000.325300: funcgraph_exit:       * 25300.000 us |  }\n"
    )
    c = read_capture(p)
    assert [(x.func, x.task, x.t_start, x.dur_ns) for x in c.calls] == [
        ("vfio_ap_irq_enable", "CPU 0/KVM-4321", 1000_200_001_000, 5123),
        ("vfio_ap_mdev_ioctl", "qemu-system-s39-5000", 1000_300_000_000, 25_300_000),
    ]


def test_s390dbf():
    c = read_capture(SAMPLES["s390dbf"])
    assert isinstance(c, S390dbfCapture) and c.other_lines == 1
    u = c.updates
    assert [x.kind for x in u] == ["set", "set", "clear"]
    assert (u[0].vm, u[0].adapters, u[0].domains) == ("kvm-5000", (0,), (13,))
    assert u[1].domains == (13, 14)
    ops = c.host_operations()
    assert [(o["kind"], o["at_ns"]) for o in ops] == [
        ("attach", 0),
        ("assign", 9_876_544_000),
        ("detach", 20_376_544_000),
    ]


def test_s390dbf_scenario_events():
    from hostsim.scenario import loads
    from workloads.capture_s390dbf import scenario_events

    ev = scenario_events(read_capture(SAMPLES["s390dbf"]), {"kvm-5000": "app[0]"})
    assert ev == [
        {"at_ms": 0.0, "kind": "attach", "guest": "app[0]"},
        {"at_ms": 20376.544, "kind": "detach", "guest": "app[0]"},
    ]
    body = "".join(
        f'[[events]]\nat_ms = {e["at_ms"]}\nkind = "{e["kind"]}"\nguest = "{e["guest"]}"\n'
        for e in ev
    )
    s = loads(
        '[run]\nduration_ms = 30000\n[[guests]]\nname = "app"\n[guests.workload]\n'
        "rate_hz = 1\n" + body
    )
    assert len(s.events) == 2


def test_s390dbf_format01(tmp_path):
    p = tmp_path / "kvm-77-sprintf"
    p.write_text(
        "00 01733140000:000001 3 - 0000 0000000000abcdef  SET CRYCB: apm c0 aqm 8000 adm 0\n"
    )
    u = read_capture(p).updates[0]
    assert (u.vm, u.adapters, u.domains) == ("kvm-77", (56, 57), (0,))


def test_sie_trace():
    c = read_capture(SAMPLES["sie-trace"])
    assert isinstance(c, SieCapture) and c.fmt == "perf"
    assert len(c.intercepts) >= 1
    first = c.intercepts[0]
    assert first["cls"] == USERSPACE_EXIT and first["t_mid"] - first["t_exit"] == 1000
    assert np.all(c.duration > 0)
    assert set(np.unique(c.intercepts["cls"]).tolist()) <= {0, 1, IN_KERNEL}


BAD = {
    "perf-kvm-stat": (9, "UNKNOWN   lots of samples", "expected a table row"),
    "perf-lock-contention": (4, "   12 forty ms", "expected a row"),
    "lock-events": (
        4,
        "       CPU 0/KVM  4321 [003]  1000.000100: lock:contention_begin: zz",
        "expected `ADDR (flags=...)`",
    ),
    "kprobe-pqap": (3, "PQAP 1 2 3", "expected `PQAP t_ns tid vcpu"),
    "function-graph": (
        5,
        " 1000.000120 |   3)  CPU 0/K-4321  |  garbage",
        "expected a function_graph line",
    ),
    "s390dbf": (3, "SET CRYCB without a header", "expected an s390dbf sprintf line"),
    "sie-trace": (
        2,
        "CPU 1/KVM 4322 [005] 1000.000200: kvm:kvm_s390_sie_exit: "
        "01[0704c00180000000-00000000009a1c2e]: exit sie nonsense",
        "expected the fields of kvm_s390_sie_exit",
    ),
}


@pytest.mark.parametrize("fmt", sorted(BAD))
def test_bad_line_names_file_and_line(fmt, tmp_path):
    no, text, expect = BAD[fmt]
    lines = SAMPLES[fmt].read_text().splitlines()
    lines[no - 1] = text
    p = tmp_path / SAMPLES[fmt].name
    p.write_text("\n".join(lines) + "\n")
    with pytest.raises(CaptureError) as e:
        read_capture(p, fmt)
    assert str(e.value).startswith(f"{p}:{no}: ")
    assert expect in str(e.value)


def test_binary_capture_gets_a_hint(tmp_path):
    p = tmp_path / "perf.data.guest"
    p.write_bytes(b"PERFILE2" + bytes(64))
    with pytest.raises(CaptureError, match="perf script"):
        read_capture(p)


def test_unknown_format_and_undetectable(tmp_path):
    p = tmp_path / "x.txt"
    p.write_text("hello\n")
    with pytest.raises(CaptureError, match="expected one of the capture formats"):
        read_capture(p)
    with pytest.raises(CaptureError, match="unknown capture format 'nope'"):
        read_capture(p, "nope")


def test_calibrate_reads_every_sample():
    from hostsim.calibrate import calibrate, to_toml
    from hostsim.scenario import load

    cal = calibrate([str(p) for p in SAMPLES.values()], load(None))
    text = to_toml(cal)
    assert "mdevs_lock" in text and "APCB updates" in text and "perf kvm stat UNKNOWN" in text
    assert {"host_aqic", "reset_interval", "mdev_kvm_update", "kvm_decode"} <= set(cal.fits)
