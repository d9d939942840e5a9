"""kvm-s390 ``sie_exit``/``sie_enter`` traces (``trace-cmd report`` or ``perf script``, as
``hostsim run --trace-out`` writes them) read for calibration: every PQAP intercept with its
thread, exit and entry times, the time of the event that decided its class, and its class.

Unlike :func:`workloads.trace_read.read_trace` this needs no scenario (no vCPU mapping, no
arrivals): it keeps, per intercept, ``t_exit`` (``kvm_s390_sie_exit``), ``t_mid`` (the program
interrupt inject or the ``kvm_userspace_exit``; -1 for an answer in the kernel), ``t_enter``
(the next ``kvm_s390_sie_enter`` of the thread), the class (:data:`workloads.trace_format.CLASSES`)
and the condition code in the PSW mask at ``sie_enter`` (answered in the kernel; else -1). Line
syntax and the outcome rules are those of :mod:`workloads.trace_parse` and
:mod:`workloads.trace_read`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hostsim import arch
from workloads.capture_base import CaptureError, CaptureFormat, numbered, register, ts_ns
from workloads.trace_format import (
    EV_INJECT,
    EV_INTERCEPT,
    EV_SIE_ENTER,
    EV_SIE_EXIT,
    EV_USER_EXIT,
    IN_KERNEL,
    PGM_INTERRUPT,
    PROGRAM_CHECK,
    USERSPACE_EXIT,
)
from workloads.trace_parse import FIELDS_RE, LINE_RE, NON_EVENT_RE

SIE_DTYPE = np.dtype(
    [
        ("tid", np.int64),
        ("vid", np.int32),
        ("t_exit", np.int64),
        ("t_mid", np.int64),
        ("t_enter", np.int64),
        ("cls", np.int8),
        ("pgm", np.int16),
        ("cc", np.int8),
    ]
)
_KVM_PGM = (int(arch.PgmCode.PRIVILEGED_OP), int(arch.PgmCode.SPECIFICATION))


@dataclass
class SieCapture:
    """PQAP intercepts of a kvm-s390 trace (:data:`SIE_DTYPE` rows, in completion order)."""

    path: str
    fmt: str
    intercepts: np.ndarray = field(default_factory=lambda: np.zeros(0, SIE_DTYPE))
    incomplete: int = 0
    ts_digits: int = 0

    @property
    def duration(self) -> np.ndarray:
        """``sie_enter - sie_exit`` of each intercept (ns)."""
        return self.intercepts["t_enter"] - self.intercepts["t_exit"]


def read_sie_trace(path: str | Path) -> SieCapture:
    """Parse a kvm-s390 trace into PQAP intercepts (other events and instructions ignored)."""
    name = str(path)
    fmt = ""
    rx = None
    rows: list[tuple[int, ...]] = []
    state: dict[str, list[int]] = {}  # tid -> [pending exit t, open exit t, vid, mid, cls, pgm]
    incomplete = digits = 0
    for no, line in numbered(path):
        if not line.strip() or line.lstrip().startswith("#") or NON_EVENT_RE.match(line):
            if line.startswith("CPU:") and "LOST" in line:
                incomplete += sum(s[1] >= 0 for s in state.values())
                for s in state.values():
                    s[0] = s[1] = -1
            continue
        m = rx.match(line) if rx else None
        if m is None:
            for fm, r in LINE_RE.items():
                m = r.match(line)
                if m:
                    fmt, rx = fmt or fm, rx or r
                    break
        if m is None:
            raise CaptureError(
                name,
                no,
                f"expected a trace-cmd report or perf script event line, got {line[:80]!r}",
            )
        tid, sec, frac, ev, vid, psw, rest = m.groups()
        fre = FIELDS_RE.get(ev)
        if fre is None:
            continue
        f = fre.match(rest or "")
        if f is None:
            raise CaptureError(name, no, f"expected the fields of {ev}, got {(rest or '')[:60]!r}")
        t = ts_ns(sec, frac)
        digits = max(digits, len(frac))
        s = state.setdefault(tid, [-1, -1, 0, -1, IN_KERNEL, -1])
        if ev == EV_SIE_EXIT:
            if s[1] >= 0:
                incomplete += 1
            s[1] = -1
            s[0] = t if int(f.group(1)) == arch.SIE_ICPT_INSTRUCTION else -1
            s[2] = int(vid) if vid is not None else 0
        elif ev == EV_INTERCEPT:
            if int(f.group(1)[:4], 16) == arch.PQAP_OPCODE:
                s[1] = s[0] if s[0] >= 0 else t
                s[3], s[4], s[5] = -1, IN_KERNEL, -1
            s[0] = -1
        elif ev == EV_SIE_ENTER:
            if s[1] >= 0:
                cc = -1
                if s[4] == IN_KERNEL and psw is not None:
                    cc = (int(psw, 16) >> arch.PSW_CC_SHIFT) & 3
                rows.append((int(tid), s[2], s[1], s[3], t, s[4], s[5], cc))
            s[0] = s[1] = -1
        elif s[1] >= 0 and ev == EV_INJECT:
            if int(f.group(2), 16) == PGM_INTERRUPT and s[4] == IN_KERNEL:
                parm = int(f.group(3), 16)
                if parm in _KVM_PGM:
                    s[3], s[4], s[5] = t, PROGRAM_CHECK, parm
        elif (
            s[1] >= 0
            and ev == EV_USER_EXIT
            and (f.group(1) == "KVM_EXIT_S390_SIEIC" or int(f.group(2)) == arch.KVM_EXIT_S390_SIEIC)
        ):
            s[3], s[4] = t, USERSPACE_EXIT
    incomplete += sum(s[1] >= 0 for s in state.values())
    if not fmt:
        raise CaptureError(name, 0, "expected kvm-s390 trace lines; found none")
    return SieCapture(name, fmt, np.array(rows, SIE_DTYPE), incomplete, digits)


def _detect(lines: list[str]) -> bool:
    return any(EV_SIE_EXIT in x or EV_SIE_ENTER in x for x in lines)


def _read(path: str) -> SieCapture:
    return read_sie_trace(path)


FORMAT = register(
    CaptureFormat("sie-trace", "kvm-s390 sie_exit/sie_enter trace text", _detect, _read)
)
