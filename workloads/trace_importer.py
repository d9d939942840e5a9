"""The kernel trace import pass: per-line checks and the per-thread intercept state machine
(:class:`Importer`), which classifies each PQAP intercept and buffers it per vCPU.

Kept apart from :func:`workloads.trace_read.read_trace` (which sets it up and turns its buffers
into arrivals) because it is the hot path: short methods keep the per-line work cheap. Outcome
rules: :mod:`workloads.trace_read`; errors it raises: :mod:`workloads.trace_format`.
"""

from __future__ import annotations

import re
from array import array
from collections.abc import Iterator

import numpy as np

from hostsim import arch
from workloads.trace_format import (
    EV_INJECT,
    EV_INTERCEPT,
    EV_SIE_ENTER,
    EV_SIE_EXIT,
    GLOBAL_TOLERANCE_NS,
    IN_KERNEL,
    PGM_INTERRUPT,
    PROGRAM_CHECK,
    USERSPACE_EXIT,
    TraceError,
)
from workloads.trace_parse import (
    FAST_FIELDS,
    FIELDS_RE,
    LINE_RE,
    LOST_RE,
    NON_EVENT_RE,
    PREFIXED,
    SCALE,
)

MAX_MESSAGES = 5  # skipped-line messages kept
_KVM_PGM = (int(arch.PgmCode.PRIVILEGED_OP), int(arch.PgmCode.SPECIFICATION))
_QEMU_PGM = int(arch.PgmCode.OPERATION)
_INSN_ICPT = (arch.SIE_ICPT_INSTRUCTION, arch.SIE_ICPT_PV_INSTRUCTION)
NO_TIME = 2**62  # Importer.first before any event


class _Thread:
    """Per-thread state of the import pass."""

    __slots__ = (
        "cls",
        "last",
        "local",
        "open_psw",
        "open_pv",
        "open_t",
        "pend_psw",
        "pend_pv",
        "pend_t",
        "pgm",
        "v",
        "vid",
    )

    def __init__(self, v: int, local: int, vid: str) -> None:
        self.v = v  # global vCPU
        self.local = local  # vCPU id within the guest
        self.vid = vid  # ... as printed
        self.last = -1  # time of the thread's latest event
        self.pend_t = -1  # time of an icptcode-4 sie_exit awaiting its intercept line
        self.pend_psw = ""
        self.pend_pv = False  # ... with intercept code 104 (a PV guest's instruction)
        self.open_t = -1  # an open PQAP intercept: its sie_exit time
        self.open_psw = ""
        self.open_pv = False
        self.cls = IN_KERNEL
        self.pgm = -1


class Importer:
    """The import pass: line parsing and checks (:meth:`parse`), then the per-thread state
    machine (:meth:`apply`). Kept in short methods: the per-line work stays cheap, also under
    ``tracemalloc`` (whose cost per allocation grows with the length of the running function)."""

    def __init__(
        self,
        name: str,
        fmt: str,
        n_vcpus: int,
        local_ids: np.ndarray,
        base: int | None,
        mapped: dict[int, int],
        unknown: dict[int, str],
    ) -> None:
        self.name, self.fmt, self.n_vcpus, self.base = name, fmt, n_vcpus, base
        self.local_ids = local_ids.tolist()
        self.mapped, self.unknown = mapped, unknown
        self.match = LINE_RE[fmt].match
        self.threads: dict[str, _Thread] = {}
        self.t_buf = [array("q") for _ in range(n_vcpus)]
        self.psw_buf = [array("Q") for _ in range(n_vcpus)]
        self.cls_buf = [array("b") for _ in range(n_vcpus)]
        self.dur_buf = [array("q") for _ in range(n_vcpus)]
        self.pgm_buf = [array("h") for _ in range(n_vcpus)]
        self.skipped = 0
        self.messages: list[str] = []
        self.incomplete = self.lost = self.qemu_ops = self.no_exit = self.other_insn = 0
        self.pv = 0  # PQAP intercepts with intercept code 104 (PV guests)
        self.latest = self.floor = -(2**62)  # floor: latest - GLOBAL_TOLERANCE_NS
        self.first = NO_TIME  # the earliest kvm-s390 event
        self.ts_digits = 0
        self.lines = 0

    def run(self, lines: Iterator[tuple[int, str]], skip_bad: bool) -> None:
        """Read every line; bad ones raise, or are counted with ``skip_bad``."""
        parse, apply = self.parse, self.apply
        for no, line in lines:
            try:
                ev = parse(no, line)
            except TraceError as e:
                if not skip_bad:
                    raise
                self.skipped += 1
                if len(self.messages) < MAX_MESSAGES:
                    self.messages.append(str(e))
                continue
            if ev is not None:
                apply(*ev)
        self.incomplete += sum(th.open_t >= 0 for th in self.threads.values())

    def parse(
        self, no: int, line: str
    ) -> tuple[_Thread, str, int, re.Match[str] | None, str] | None:
        """Check one line; what the state machine needs of it (None: nothing to do)."""
        self.lines = no
        m = self.match(line)
        if m is None:
            self._other_line(no, line)  # raises on a bad line
            return None
        tid_s, sec, frac, ev, vid_s, psw_s, rest = m.groups()
        fre = FIELDS_RE.get(ev)
        if fre is None:
            return None  # an unrelated event
        f = None
        if ev in PREFIXED:
            if vid_s is None:
                raise TraceError(self.name, no, f"corrupt or truncated {ev} line (vCPU prefix)")
        else:
            vid_s = None
        fast = FAST_FIELDS.get(ev)
        if fast is None or rest != fast:
            f = fre.match(rest or "")
            if f is None:
                raise TraceError(self.name, no, f"corrupt or truncated {ev} line (fields)")
        nd = len(frac)
        t = int(sec + frac) if nd == 9 else int(sec + frac) * SCALE[nd]
        if t < self.floor:
            raise TraceError(
                self.name,
                no,
                f"time goes backwards: {_ts(t)} after {_ts(self.latest)} "
                f"(more than {GLOBAL_TOLERANCE_NS} ns)",
            )
        th = self.threads.get(tid_s)
        if th is None:
            th = self._place(tid_s, vid_s, no)
        elif vid_s is not None and vid_s != th.vid and int(vid_s) != th.local:
            raise TraceError(
                self.name,
                no,
                f"thread {tid_s} showed vCPU id {th.local:02d} before, now {int(vid_s):02d}",
            )
        if th is not None and t < th.last:
            raise TraceError(
                self.name,
                no,
                f"time goes backwards on thread {tid_s}: {_ts(t)} after {_ts(th.last)}",
            )
        if t > self.latest:
            self.latest, self.floor = t, t - GLOBAL_TOLERANCE_NS
        if t < self.first:
            self.first = t
        if nd > self.ts_digits:
            self.ts_digits = nd
        if th is None:
            return None
        th.last = t
        return th, ev, t, f, psw_s

    def apply(self, th: _Thread, ev: str, t: int, f: re.Match[str] | None, psw_s: str) -> None:
        """Advance the thread's intercept state machine by one good kvm event."""
        if ev == EV_SIE_EXIT:
            if th.open_t >= 0:
                self.incomplete += 1
                th.open_t = -1
            if f is None:
                th.pend_t, th.pend_psw, th.pend_pv = t, psw_s, False
            elif int(f.group(1)) in _INSN_ICPT:
                th.pend_t, th.pend_psw = t, psw_s
                th.pend_pv = int(f.group(1)) == arch.SIE_ICPT_PV_INSTRUCTION
            else:
                th.pend_t = -1
        elif ev == EV_INTERCEPT:
            if f is None or int(f.group(1)[:4], 16) == arch.PQAP_OPCODE:
                if th.pend_t >= 0:
                    th.open_t, th.open_psw, th.open_pv = th.pend_t, th.pend_psw, th.pend_pv
                else:
                    self.no_exit += 1
                    th.open_t, th.open_psw, th.open_pv = t, psw_s, False
                th.cls, th.pgm = IN_KERNEL, -1
            else:
                self.other_insn += 1
            th.pend_t = -1
        elif ev == EV_SIE_ENTER:
            if th.open_t >= 0:
                v = th.v
                self.t_buf[v].append(th.open_t)
                self.psw_buf[v].append(int(th.open_psw, 16))
                self.cls_buf[v].append(th.cls)
                self.dur_buf[v].append(t - th.open_t)
                self.pgm_buf[v].append(th.pgm)
                self.pv += th.open_pv
                th.open_t = -1
            th.pend_t = -1
        elif th.open_t >= 0:
            assert f is not None
            self._inside(th, ev, f)

    def _inside(self, th: _Thread, ev: str, f: re.Match[str]) -> None:
        """An inject or a userspace exit while a PQAP intercept is open."""
        if ev == EV_INJECT:
            if int(f.group(2), 16) == PGM_INTERRUPT and int(f.group(1)) == th.local:
                parm = int(f.group(3), 16)
                if th.cls == IN_KERNEL and parm in _KVM_PGM:
                    th.cls, th.pgm = PROGRAM_CHECK, parm
                elif th.cls == USERSPACE_EXIT and parm == _QEMU_PGM:
                    self.qemu_ops += 1
        else:  # EV_USER_EXIT
            reason, code = f.group(1), int(f.group(2))
            if reason == "KVM_EXIT_S390_SIEIC" or (
                code == arch.KVM_EXIT_S390_SIEIC and reason not in ("restart", "error")
            ):
                th.cls = USERSPACE_EXIT

    def _other_line(self, no: int, line: str) -> None:
        """A line that is not an event: comments, blank and known header lines, else bad."""
        if line.lstrip().startswith("#") or not line.strip():
            return None
        if NON_EVENT_RE.match(line):
            if LOST_RE.match(line):
                self.lost += 1
                for th in self.threads.values():
                    self.incomplete += th.open_t >= 0
                    th.open_t = th.pend_t = -1
            return None
        raise TraceError(self.name, no, f"corrupt or truncated line (not {self.fmt} text)")

    def _place(self, tid_s: str, vid_s: str | None, no: int) -> _Thread | None:
        """A new thread's state (None: not a vCPU thread we can place, yet)."""
        if vid_s is None:
            return None  # placed by its first prefixed event, which shows its vCPU id
        tid, vid, name = int(tid_s), int(vid_s), self.name
        if self.base is not None:
            v = tid - self.base
            if not 0 <= v < self.n_vcpus:
                raise TraceError(
                    name,
                    no,
                    f"unknown vCPU: thread {tid} is global vCPU {v} by the hostsim thread map, "
                    f"but the scenario has {self.n_vcpus} vCPUs",
                )
            if vid != self.local_ids[v]:
                raise TraceError(
                    name,
                    no,
                    f"unknown vCPU: thread {tid} (global vCPU {v}) shows vCPU id {vid:02d}, but "
                    f"that is vCPU {self.local_ids[v]:02d} of its guest in the scenario",
                )
        else:
            if tid in self.unknown:
                raise TraceError(name, no, self.unknown[tid])
            if tid not in self.mapped:
                return None  # the first pass did not place it (it cannot happen)
            v = self.mapped[tid]
            if vid != self.local_ids[v]:
                raise TraceError(
                    name, no, f"thread {tid} showed another vCPU id before, now {vid:02d}"
                )
        th = _Thread(v, self.local_ids[v], vid_s)
        self.threads[tid_s] = th
        return th


def _ts(t: int) -> str:
    sec, ns = divmod(t, 1_000_000_000)
    return f"{sec}.{ns:09d}"
