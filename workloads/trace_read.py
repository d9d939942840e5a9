"""Kernel trace import (:func:`read_trace`): a ``trace-cmd report`` or ``perf script`` text
trace turned into per-vCPU replay arrivals with measured durations, plus :func:`format_import`.

Streams the file (never holds it; per-thread state only). Traces carry no registers; what is
inferred is listed in :attr:`ImportedTrace.notes`:

* every ``b2af`` instruction intercept is a PQAP(AQIC) (ECA_APIE in effect: only AQIC traps);
* the outcome class follows from what the thread shows before its next ``kvm_s390_sie_enter``:
  a program-interrupt inject with ``parm`` 2 or 6 -> ``program_check``; ``kvm_userspace_exit``
  with ``KVM_EXIT_S390_SIEIC`` -> ``userspace_exit`` (a following ``parm:1`` inject is QEMU's
  operation exception, part of it); nothing -> ``in_kernel`` (the vfio_ap hook or RC 01);
* the measured duration is ``sie_enter - sie_exit``; the arrival time is the ``sie_exit``
  timestamp; APQNs are assigned round-robin per vCPU from its guest's matrix; GR1 is an enable
  (IR 1) with the group's ISC, GR2 the group's NIB, the PSW mask the one traced at ``sie_exit``;
  then each intercept's registers are chosen so that it takes its traced class on the scenario
  (:mod:`workloads.trace_classes`);
* intercept code 4 (instruction) and 104 (a protected guest's instruction, ``0x68``) alike;
* time base: a capture's timestamps are seconds since boot, so it is rebased (``rebase``; by
  default unless the file is a hostsim trace, whose times are already simulation times): its
  earliest kvm-s390 event becomes time 0 (:attr:`ImportedTrace.shift` is what was subtracted).

Format detection and thread to vCPU mapping: :mod:`workloads.trace_parse`; the per-line pass:
:mod:`workloads.trace_importer`; errors: :mod:`workloads.trace_format`.
"""

from __future__ import annotations

from array import array
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hostsim import arch
from hostsim.scenario_types import Scenario
from hostsim.topology import topology
from workloads.bursts import SCRIPT_DTYPE
from workloads.trace_classes import class_notes, class_registers
from workloads.trace_durations import measured_by_class
from workloads.trace_format import CLASSES, local_ids
from workloads.trace_importer import NO_TIME, Importer
from workloads.trace_parse import LINE_RE, detect_format, map_by_rule, numbered_lines, thread_ids

CLASS_CHUNK = 4096  # intercepts per decode of the replayed registers (bounds its memory)


@dataclass
class ImportedTrace:
    """What :func:`read_trace` found: per-vCPU arrivals, measured durations, and how."""

    path: str
    fmt: str
    #: per global vCPU (every vCPU of the scenario): SCRIPT_DTYPE rows, for Model.use_replay
    arrivals: dict[int, np.ndarray]
    #: per global vCPU, one entry per arrival: outcome class code (CLASSES), duration (ns),
    #: program code (-1 unless a program check)
    outcome: dict[int, np.ndarray]
    duration: dict[int, np.ndarray]
    pgm_code: dict[int, np.ndarray]
    #: per outcome class: duration_stats() of the measured sie_exit -> sie_enter durations
    measured: dict[str, dict[str, Any]]
    notes: list[str] = field(default_factory=list)
    skipped: int = 0
    skip_messages: list[str] = field(default_factory=list)
    incomplete: int = 0
    lines: int = 0
    ts_digits: int = 0  # most timestamp decimals seen (6: µs resolution, 9: ns)
    #: the earliest kvm-s390 event's timestamp in the file (ns; 0 without any)
    t0: int = 0
    #: what was subtracted from the file's timestamps (``t0`` when rebased, else 0)
    shift: int = 0
    #: PQAP intercepts traced with intercept code 104 (protected guests)
    pv: int = 0
    #: (class, rule id or None) -> intercepts: how the replayed registers decode
    classes: dict[tuple[str, str | None], int] = field(default_factory=dict)

    @property
    def intercepts(self) -> int:
        """Complete PQAP intercepts imported."""
        return sum(len(a) for a in self.arrivals.values())

    @property
    def last_arrival(self) -> int:
        """The latest arrival time after the shift (ns; -1 without any intercept)."""
        return max((int(a["t"][-1]) for a in self.arrivals.values() if len(a)), default=-1)

    @property
    def not_reproduced(self) -> int:
        """Intercepts whose traced class no register state reproduces on the scenario."""
        return sum(n for (_, r), n in self.classes.items() if r is None)


def read_trace(
    path: str | Path, scenario: Scenario, skip_bad: bool = False, rebase: bool | None = None
) -> ImportedTrace:
    """Import a ``trace-cmd report`` or ``perf script`` text trace (``.gz`` too), streaming.

    ``rebase``: make the earliest event time 0 (None: unless the file is a hostsim trace).

    Raises :class:`~workloads.trace_format.TraceError` (``file:line: message``) on an unknown
    format, a corrupt line, time going backwards or an unknown vCPU; with ``skip_bad`` such lines
    are skipped and counted.
    """
    p = Path(path)
    name = str(path)
    fmt, base = detect_format(p, name, skip_bad)
    topo = topology(scenario)
    first_vcpu = topo.guest_first_vcpu
    guest_vcpus = np.bincount(topo.vcpu_guest, minlength=scenario.n_guests)
    mapped: dict[int, int] = {}
    unknown: dict[int, str] = {}
    notes: list[str] = []
    if base is None:
        ids = thread_ids(p, name, LINE_RE[fmt])
        mapped, unknown, n_found = map_by_rule(ids, first_vcpu, guest_vcpus)
        notes.append(
            "threads: no hostsim thread map in the file, so vCPU threads were sorted by tid, cut "
            "into guests where the printed vCPU id does not increase, and the guests taken in "
            f"scenario order ({len(ids)} threads -> {n_found} guests; the scenario has "
            f"{scenario.n_guests}); the printed id is the vCPU within its guest"
        )
    else:
        notes.append(f"threads: tid = {base} + global vCPU index (hostsim thread map in the file)")
    imp = Importer(name, fmt, scenario.n_vcpus, local_ids(scenario), base, mapped, unknown)
    imp.run(numbered_lines(p, name), skip_bad)

    t0 = 0 if imp.first == NO_TIME else imp.first
    if rebase is None:
        rebase = base is None
    shift = t0 if rebase else 0
    tally: Counter[tuple[str, str | None]] = Counter()
    arrivals, outcome, duration, pgm = _arrivals(
        scenario, topo, imp.t_buf, imp.psw_buf, imp.cls_buf, imp.dur_buf, imp.pgm_buf, shift, tally
    )
    n = scenario.n_vcpus
    all_cls = np.concatenate([outcome[v] for v in range(n)] or [np.zeros(0, np.int8)])
    all_dur = np.concatenate([duration[v] for v in range(n)] or [np.zeros(0, np.int64)])
    measured = measured_by_class(all_cls, all_dur)
    notes += _notes(
        scenario, topo, fmt, imp.ts_digits, measured, imp.qemu_ops, imp.no_exit, imp.other_insn
    )
    notes.append(_time_note(t0, shift, base is not None))
    notes += class_notes(scenario, tally)
    if imp.pv:
        pv_groups = {g.name for g in scenario.guests if g.pv}
        notes.append(
            f"{imp.pv} intercepts with intercept code 104 (a protected guest's instruction, "
            "0x68) read as PQAP intercepts"
            + ("" if pv_groups else "; the scenario has no PV guest (pv = true)")
        )
    if imp.incomplete:
        notes.append(
            f"{imp.incomplete} intercepts were incomplete (no sie_enter before the end of the "
            "trace, a new SIE exit or lost events) and were left out"
        )
    if imp.lost:
        notes.append(
            f"trace-cmd reported lost events {imp.lost} times: open intercepts were dropped"
        )
    if imp.skipped:
        notes.append(f"{imp.skipped} bad lines skipped")
    return ImportedTrace(
        name,
        fmt,
        arrivals,
        outcome,
        duration,
        pgm,
        measured,
        notes,
        imp.skipped,
        imp.messages,
        imp.incomplete,
        imp.lines,
        imp.ts_digits,
        t0,
        shift,
        imp.pv,
        dict(tally),
    )


def _ts(t: int) -> str:
    sec, ns = divmod(t, 1_000_000_000)
    return f"{sec}.{ns:09d} s"


def _time_note(t0: int, shift: int, hostsim: bool) -> str:
    if shift:
        return (
            f"time base: the capture's earliest kvm-s390 event ({_ts(t0)}) is time 0 "
            "(timestamps are seconds since boot)"
        )
    if hostsim:
        return "time base: a hostsim trace (thread map): its timestamps are simulation times, kept"
    return f"time base: timestamps kept as traced (earliest event {_ts(t0)})"


def _arrivals(
    s: Scenario,
    topo: Any,
    t_buf: list[array[int]],
    psw_buf: list[array[int]],
    cls_buf: list[array[int]],
    dur_buf: list[array[int]],
    pgm_buf: list[array[int]],
    shift: int,
    tally: Counter[tuple[str, str | None]],
) -> tuple[dict[int, np.ndarray], ...]:
    """Script rows per vCPU: APQNs round-robin from the guest's matrix, registers inferred
    (then chosen per traced class), times less ``shift``."""
    arrivals, outcome, duration, pgm = {}, {}, {}, {}
    fc = np.uint64(arch.FunctionCode.AQIC) << np.uint64(arch.GR0_FC_SHIFT)
    for v in range(s.n_vcpus):
        w = s.guests[int(topo.vcpu_group[v])].workload
        apqns = topo.guest_apqns[int(topo.vcpu_guest[v])]
        n = len(t_buf[v])
        rows = np.zeros(n, SCRIPT_DTYPE)
        if n:
            rows["t"] = np.frombuffer(t_buf[v], np.int64) - shift
            q = apqns[np.arange(n) % len(apqns)] if len(apqns) else np.zeros(n, np.uint16)
            rows["gpr0"] = fc | q.astype(np.uint64)
            rows["psw_mask"] = np.frombuffer(psw_buf[v], np.uint64)
        rows["gpr1"] = arch.make_gr1_aqic(1, w.isc)
        rows["gpr2"] = w.nib
        arrivals[v] = rows
        outcome[v] = np.frombuffer(cls_buf[v], np.int8).copy()
        duration[v] = np.frombuffer(dur_buf[v], np.int64).copy()
        pgm[v] = np.frombuffer(pgm_buf[v], np.int16).copy()
    for group in range(len(s.guests)):
        vs = [int(v) for v in np.flatnonzero(topo.vcpu_group == group)]
        for seg in _segments(vs, arrivals, CLASS_CHUNK):
            rows = np.concatenate([arrivals[v][lo:hi] for v, lo, hi in seg])
            cls = np.concatenate([outcome[v][lo:hi] for v, lo, hi in seg])
            code = np.concatenate([pgm[v][lo:hi] for v, lo, hi in seg])
            class_registers(s, group, rows, cls, code, tally)
            at = 0
            for v, lo, hi in seg:
                arrivals[v]["gpr0"][lo:hi] = rows["gpr0"][at : at + hi - lo]
                arrivals[v]["psw_mask"][lo:hi] = rows["psw_mask"][at : at + hi - lo]
                at += hi - lo
    return arrivals, outcome, duration, pgm


def _segments(
    vs: list[int], arrivals: dict[int, np.ndarray], chunk: int
) -> Iterator[list[tuple[int, int, int]]]:
    """The rows of vCPUs ``vs`` as batches of (vCPU, start, stop) of at most ``chunk`` rows."""
    batch: list[tuple[int, int, int]] = []
    size = 0
    for v in vs:
        n, lo = len(arrivals[v]), 0
        while lo < n:
            take = min(n - lo, chunk - size)
            batch.append((v, lo, lo + take))
            size += take
            lo += take
            if size == chunk:
                yield batch
                batch, size = [], 0
    if batch:
        yield batch


def _notes(
    s: Scenario,
    topo: Any,
    fmt: str,
    ts_digits: int,
    measured: dict[str, dict[str, Any]],
    qemu_ops: int,
    no_exit: int,
    other_insn: int,
) -> list[str]:
    notes = [
        f"format: {fmt} text, timestamps with {ts_digits} decimals"
        + ("" if ts_digits >= 9 else " (durations are only as fine as that)"),
        "function code: every b2af intercept taken as PQAP(AQIC), fc 3 (with ECA_APIE in effect "
        "only AQIC is intercepted)",
        "outcome: from what the vCPU thread shows before its next sie_enter: a program-interrupt "
        "inject (parm 2 or 6) is a program check, kvm_userspace_exit KVM_EXIT_S390_SIEIC an exit "
        "to userspace, nothing an answer in the kernel (the vfio_ap hook or RC 01)",
        "arrival time: the sie_exit timestamp (the guest's issue time is not traced); measured "
        "duration: sie_enter - sie_exit",
        "APQNs: assigned round-robin per vCPU from its guest's matrix in the scenario",
        "registers unknown: GR1 = IR 1 (enable) with the guest group's ISC, GR2 = the group's "
        "NIB, PSW mask as traced at sie_exit (then chosen per class, below)",
    ]
    if measured["program_check"]["n"]:
        notes.append(
            "program checks: the registers that caused them are not in the trace; the program "
            "code (2 or 6) picks the register state that reproduces it"
        )
    if qemu_ops:
        notes.append(
            f"{qemu_ops} operation exceptions injected after userspace exits taken as QEMU's "
            "answer (part of the userspace exit)"
        )
    if no_exit:
        notes.append(f"{no_exit} b2af intercepts had no sie_exit line: timed from the intercept")
    if other_insn:
        notes.append(f"{other_insn} intercepts of other instructions ignored")
    empty = [str(g) for g in range(s.n_guests) if len(topo.guest_apqns[g]) == 0]
    if empty:
        notes.append(f"no APQNs in the scenario for guest(s) {', '.join(empty)}: APQN 0000 used")
    return notes


def format_import(imp: ImportedTrace) -> str:
    """What was read and inferred: counts, the notes and the first skipped-line messages."""
    counts = ", ".join(f"{imp.measured[c]['n']} {c}" for c in CLASSES)
    out = [
        f"trace {imp.path} ({imp.fmt}): {imp.lines} lines, {imp.intercepts} PQAP intercepts "
        f"({counts}), {imp.incomplete} incomplete, {imp.skipped} bad lines skipped",
        "inferred:",
    ]
    out += [f"  - {n}" for n in imp.notes]
    if imp.skip_messages:
        out.append("skipped lines (first ones):")
        out += [f"  {m}" for m in imp.skip_messages]
    return "\n".join(out)
