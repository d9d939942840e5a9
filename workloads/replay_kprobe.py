"""Replay of a kprobe/bpftrace register capture (``workloads/bpftrace/handle_pqap.bt``): the
only capture that carries a PQAP's registers, so they are replayed exactly.

Each ``PQAP`` line is one call of vfio_ap's hook: its GR0-GR2 at entry become the replayed
request's registers, unchanged; the PSW is the default supervisor PSW (the hook is only reached
from supervisor state); the arrival is the call's timestamp, rebased so that the first call is
time 0. Threads map to the scenario's vCPUs by the same rule as kernel traces (sorted by tid, a
new guest where the printed vCPU id does not increase). A call that returned ``-EOPNOTSUPP`` is
a userspace exit, any other an in-kernel answer; the capture cannot see what never reached the
hook (program checks, KVM's own RC 01). Its durations are the hook's own (entry to return),
shorter than an intercept's ``sie_exit -> sie_enter``: the notes say so.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hostsim import arch
from hostsim.scenario_types import Scenario
from hostsim.topology import topology
from workloads.bursts import SCRIPT_DTYPE
from workloads.capture_base import numbered
from workloads.capture_kprobe import read_kprobe_pqap
from workloads.trace_durations import measured_by_class
from workloads.trace_format import IN_KERNEL, USERSPACE_EXIT, TraceError
from workloads.trace_parse import map_by_rule
from workloads.trace_read import ImportedTrace

FORMAT = "kprobe-pqap"


def read_kprobe_trace(path: str | Path, scenario: Scenario) -> ImportedTrace:
    """Import a ``handle_pqap.bt`` capture as replay arrivals with its registers exactly.

    Raises :class:`~workloads.trace_format.TraceError` for a thread no vCPU of the scenario
    matches (and :class:`~workloads.capture_base.CaptureError` for a malformed line)."""
    name = str(path)
    cap = read_kprobe_pqap(path)
    calls = cap.calls[np.argsort(cap.calls["t"], kind="stable")]  # (time order)
    topo = topology(scenario)
    guest_vcpus = np.bincount(topo.vcpu_guest, minlength=scenario.n_guests)
    ids: dict[int, int] = {}
    for tid, vid in zip(calls["tid"].tolist(), calls["vcpu"].tolist(), strict=True):
        ids.setdefault(tid, vid)
    mapped, unknown, n_found = map_by_rule(ids, topo.guest_first_vcpu, guest_vcpus)
    if unknown:
        tid = min(unknown)
        line = next(no for no, text in numbered(path) if text.split()[2:3] == [str(tid)])
        raise TraceError(name, line, unknown[tid])
    t0 = int(calls["t"][0]) if len(calls) else 0
    vcpu = np.array([mapped[t] for t in calls["tid"].tolist()], np.int64)
    order = np.argsort(cap.calls["t"], kind="stable")
    cls = np.where(cap.to_userspace[order], USERSPACE_EXIT, IN_KERNEL)
    arrivals, outcome, duration, pgm = {}, {}, {}, {}
    for v in range(scenario.n_vcpus):
        mine = calls[vcpu == v]
        rows = np.zeros(len(mine), SCRIPT_DTYPE)
        rows["t"] = mine["t"] - t0
        rows["gpr0"], rows["gpr1"], rows["gpr2"] = mine["gpr0"], mine["gpr1"], mine["gpr2"]
        rows["psw_mask"] = arch.PSW_DEFAULT_SUPERVISOR
        arrivals[v] = rows
        outcome[v] = cls[vcpu == v].astype(np.int8)
        duration[v] = mine["dur"].astype(np.int64)
        pgm[v] = np.full(len(mine), -1, np.int16)
    measured = measured_by_class(cls.astype(np.int8), calls["dur"].astype(np.int64))
    notes = [
        f"{FORMAT}: {len(calls)} vfio_ap handle_pqap calls; registers (GR0-GR2) replayed exactly,"
        " the PSW the default supervisor PSW",
        f"threads: sorted by tid, cut into guests where the printed vCPU id does not increase "
        f"({len(ids)} threads -> {n_found} guests; the scenario has {scenario.n_guests})",
        f"time base: rebased, the first call ({t0 / 1e9:.6f} s) is time 0",
        "durations in the trace column are the hook's own (handle_pqap entry to return), not"
        " sie_exit -> sie_enter: shorter than the simulated intercepts by the SIE exit, KVM's"
        " decode and the SIE entry",
        "program checks and KVM's own RC 01 never reach the hook: the capture has none",
    ]
    return ImportedTrace(
        name,
        FORMAT,
        arrivals,
        outcome,
        duration,
        pgm,
        measured,
        notes,
        t0=t0,
        shift=t0,
    )
