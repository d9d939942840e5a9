"""Replay of the kprobe register capture (``workloads/bpftrace/handle_pqap.bt``): the one
capture that carries GR0-GR2, replayed exactly (issue 13 item 2)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hostsim.results import read_records
from hostsim.rules import Kind
from hostsim.run import simulate
from hostsim.scenario import loads
from workloads.replay_run import plan_replay, run_replay
from workloads.trace_format import TraceError

SCENARIO = """
[run]
duration_ms = 200
seed = 4
[host]
adapters = 4
domains = 16
[[guests]]
name = "vm"
count = 3
vcpus = 2
domains_per_guest = 2
[guests.workload]
kind = "poisson"
rate_hz = 300
enable_fraction = 0.8
adversarial = { unassigned = 0.1 }
"""


def capture(rec: np.ndarray, base: float = 1000.0) -> str:
    """The hook calls of ``rec`` as handle_pqap.bt prints them, at ``base`` s since boot; vCPU
    threads numbered per guest as KVM does (tid order = vCPU order, ids restart per guest)."""
    out = ["Attaching 4 probes...", "# hostsim handle_pqap 1: PQAP t_ns tid vcpu gr0 ..."]
    hooked = rec[rec["t_rwsem"] >= 0] if (rec["t_rwsem"] >= 0).any() else rec
    for r in hooked:
        t = int(base * 1e9) + int(r["t_issue"])
        tid = 5000 + int(r["vcpu"])
        ret = -95 if r["kind"] == Kind.USERSPACE_EXIT else 0
        out.append(
            f"PQAP {t} {tid} {int(r['vcpu']) % 2} {int(r['gpr0']):016x} {int(r['gpr1']):016x} "
            f"{int(r['gpr2']):016x} {ret} {int(r['gpr1_out']):016x} 5000"
        )
    return "\n".join(out) + "\n"


def test_a_kprobe_capture_replays_with_its_registers_exactly(tmp_path: Path) -> None:
    s = loads(SCENARIO)
    rec = simulate(s, "fast", keep_records=True).records
    rec = rec[rec["kind"] != Kind.PROGRAM_INTERRUPT]  # never reaches the hook
    src = tmp_path / "scenario.toml"
    src.write_text(SCENARIO)
    cap = tmp_path / "handle_pqap.txt"
    cap.write_text(capture(rec))
    plan = plan_replay(str(cap), str(src))
    assert plan.imported is not None and plan.imported.fmt == "kprobe-pqap"
    assert any("registers (GR0-GR2) replayed exactly" in n for n in plan.imported.notes)
    _, got = run_replay(plan, "fast", tmp_path / "out")
    out = read_records(tmp_path / "out")
    assert got.simulated == len(rec)
    key = np.lexsort((out["seq"], out["vcpu"]))
    want = np.lexsort((rec["seq"], rec["vcpu"]))
    for col in ("vcpu", "gpr0", "gpr1", "gpr2"):
        assert np.array_equal(np.asarray(out[col])[key], rec[col][want]), col
    # rebased: the first call is time 0
    assert int(np.min(out["t_arrival"])) == 0


def test_a_kprobe_thread_the_scenario_lacks_names_the_line(tmp_path: Path) -> None:
    src = tmp_path / "scenario.toml"
    src.write_text(SCENARIO.replace("count = 3", "count = 1"))
    cap = tmp_path / "handle_pqap.txt"
    cap.write_text(
        "Attaching 4 probes...\n"
        "PQAP 1000 7001 0 0000000003000005 0000800000000003 0000000012345000 0 0 100\n"
        "PQAP 2000 7002 0 0000000003000005 0000800000000003 0000000012345000 0 0 100\n"
    )
    with pytest.raises(TraceError, match=r"handle_pqap.txt:3: unknown vCPU: thread 7002"):
        plan_replay(str(cap), str(src))
