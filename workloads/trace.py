"""Kernel trace import and export: kvm-s390 tracepoints as ``trace-cmd report`` or ``perf script``.

Formats and inference rules: ``shared/spec/trace-formats.md``; which tracepoint fires on which
path: ``shared/spec/kernel-pqap.md`` section 8.

**Export** (:class:`TraceWriter`, behind ``hostsim run --trace-out FILE``). For every simulated
request, in global timestamp order:

* ``kvm_s390_sie_exit`` and ``kvm_s390_intercept_instruction`` (``b2af000000000000``) at
  ``t_exit``;
* a program check: ``kvm_s390_inject_vcpu`` (type ``fffe0001``, ``parm`` = program code) at
  ``t_decode``;
* a userspace exit: ``kvm_userspace_exit`` (``KVM_EXIT_S390_SIEIC (13)``) at ``t_decode``, then
  QEMU's operation exception (``kvm_s390_inject_vcpu ... parm:1``) half-way to ``t_resume``;
* ``kvm_s390_sie_enter`` at ``t_resume``; answered in the kernel, its PSW shows the new
  condition code and the address past the 4-byte PQAP.

Thread ``tid = 10000 + global vCPU index``, comm ``CPU <vCPU id in its guest>/KVM``, host CPU
column ``global vCPU index % 8``, PSW address a fixed ``0x9a1c2e``. The file starts with two
``#`` lines; the second declares the thread map, so importing it back is exact. Timestamps are
printed with 9 decimals: real ``trace-cmd`` and ``perf`` print 6 (microseconds) by default, and
the reader accepts both, but only nanoseconds give an exact round trip.

**Import** (:func:`read_trace`). Streams the file (never holds it; per-thread state only). The
format is detected from the first line that is not a comment or a known header line. Traces carry
no registers; what is inferred is listed in :attr:`ImportedTrace.notes`:

* every ``b2af`` instruction intercept is a PQAP(AQIC) (ECA_APIE in effect: only AQIC traps);
* the outcome class follows from what the thread shows before its next ``kvm_s390_sie_enter``:
  a program-interrupt inject with ``parm`` 2 or 6 -> ``program_check``; ``kvm_userspace_exit``
  with ``KVM_EXIT_S390_SIEIC`` -> ``userspace_exit`` (a following ``parm:1`` inject is QEMU's
  operation exception, part of it); nothing -> ``in_kernel`` (the vfio_ap hook or RC 01);
* the measured duration is ``sie_enter - sie_exit``; the arrival time is the ``sie_exit``
  timestamp; APQNs are assigned round-robin per vCPU from its guest's matrix; GR1 is an enable
  (IR 1) with the group's ISC, GR2 the group's NIB, the PSW mask the one traced at ``sie_exit``.

Thread to vCPU mapping. With the ``# hostsim thread map: tid = B + global vCPU index`` header
(written by :class:`TraceWriter`): ``vCPU = tid - B``, and the vCPU id printed in the event
prefix must be that vCPU's index within its guest. Without it (real traces) a first cheap pass
collects each thread's vCPU id; threads sorted by tid ascending are cut into guests where the
vCPU id does not increase, guests are taken in scenario order, and the printed id is the vCPU
within its guest. A thread that lands beyond the scenario (more guests, or an id >= that guest's
vCPU count) is an "unknown vCPU". The rule cannot see a vCPU (or a guest) that never trapped: it
is exact for a hostsim trace without its header only when every vCPU trapped at least once.

Events that share a timestamp are written in (vCPU, request, event) order; the writer's ``perf``
lines name the systems of ``kernel-pqap.md`` section 8 (``kvm:``, and ``kvm-s390:`` for
``kvm_s390_inject_vcpu``); the reader keys on the event name only.

Errors (:class:`TraceError`, ``file:line: message``): an unknown format; a line that does not
parse (outside ``#`` comments, blank lines and known header lines) or a kvm event whose fields do
not parse (a truncated or corrupt line); a time going backwards, per thread at all, or globally
by more than :data:`GLOBAL_TOLERANCE_NS` (1 µs: ``trace-cmd`` merges per-CPU buffers whose
clocks may disagree slightly; a larger step back means concatenated or reordered files); an
unknown vCPU. ``skip_bad=True`` skips and counts
those lines instead (the unknown format of a file with no parseable line stays an error).
Intercepts still open at the end of the file, or cut by a new SIE exit or a ``LOST EVENTS``
marker, are counted as incomplete and left out; they are not errors.
"""

from __future__ import annotations

import gzip
import re
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from hostsim import arch
from hostsim.records import Path as RecPath
from hostsim.scenario_types import Scenario
from hostsim.topology import topology
from workloads.bursts import SCRIPT_DTYPE

FORMATS = ("trace-cmd", "perf")
#: Outcome classes, in the order of their integer codes.
CLASSES = ("userspace_exit", "program_check", "in_kernel")
USERSPACE_EXIT, PROGRAM_CHECK, IN_KERNEL = 0, 1, 2
TID_BASE = 10000  # TraceWriter: tid = TID_BASE + global vCPU index
HOST_CPUS = 8  # TraceWriter: host CPU column = global vCPU index % HOST_CPUS
PSW_ADDR = 0x00000000009A1C2E  # TraceWriter: the (invented) PSW address of the PQAP
PQAP_LEN = 4  # RRE: the PSW address after an answered PQAP
#: A line may be this much earlier than the latest line seen (per-CPU buffer merge skew).
GLOBAL_TOLERANCE_NS = 1000
PGM_INTERRUPT = 0xFFFE0001  # KVM_S390_PROGRAM_INT
MAX_MESSAGES = 5  # skipped-line messages kept

EV_SIE_EXIT = "kvm_s390_sie_exit"
EV_INTERCEPT = "kvm_s390_intercept_instruction"
EV_INJECT = "kvm_s390_inject_vcpu"
EV_USER_EXIT = "kvm_userspace_exit"
EV_SIE_ENTER = "kvm_s390_sie_enter"
_SYSTEM = {  # kernel-pqap.md section 8
    EV_SIE_EXIT: "kvm",
    EV_INTERCEPT: "kvm",
    EV_INJECT: "kvm-s390",
    EV_USER_EXIT: "kvm",
    EV_SIE_ENTER: "kvm",
}
_HEADER_MAP = "# hostsim thread map: tid = {base} + global vCPU index; host CPU = vCPU % {cpus}"


class TraceError(ValueError):
    """A trace that cannot be read: the message starts with ``file:line:``."""

    def __init__(self, file: str, line: int, message: str) -> None:
        super().__init__(f"{file}:{line}: {message}" if line > 0 else f"{file}: {message}")
        self.file = file
        self.line = line
        self.reason = message


# --- Export ----------------------------------------------------------------------------------
_EV_DTYPE = np.dtype(
    [
        ("t", np.int64),
        ("vcpu", np.int32),
        ("t_issue", np.int64),  # tie-break: request order within a vCPU
        ("e", np.int8),  # event index within the request
        ("typ", np.int8),  # 0 sie_exit, 1 intercept, 2 inject, 3 userspace exit, 4 sie_enter
        ("psw", np.uint64),
        ("addr", np.uint64),
        ("parm", np.int64),
    ]
)
_T_EXIT, _T_ICPT, _T_INJECT, _T_UEXIT, _T_ENTER = range(5)
_TYPE_EVENT = (EV_SIE_EXIT, EV_INTERCEPT, EV_INJECT, EV_USER_EXIT, EV_SIE_ENTER)


def _local_ids(s: Scenario) -> np.ndarray:
    """Each global vCPU's index within its guest (the kernel's vcpu_id)."""
    topo = topology(s)
    return np.arange(s.n_vcpus, dtype=np.int64) - topo.guest_first_vcpu[topo.vcpu_guest]


class TraceWriter:
    """Writes simulated requests as kvm-s390 tracepoint text (``trace-cmd`` or ``perf``).

    Call :meth:`add` with record chunks in canonical order (``t_issue`` never decreasing across
    calls), then :meth:`close`. Events are merged across requests and written in global time
    order; an event is written once no record still to come can precede it (a watermark: every
    event of a request is at or after its ``t_issue``). ``out`` is not closed.
    """

    def __init__(self, out: TextIO, scenario: Scenario, fmt: str = "trace-cmd") -> None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown trace format {fmt!r}; expected one of {list(FORMATS)}")
        self.out = out
        self.fmt = fmt
        self.lines = 0
        self._pending = np.zeros(0, _EV_DTYPE)
        self._watermark = -(2**62)
        self._closed = False
        local = _local_ids(scenario).tolist()
        self._local = local
        self._heads: list[str] = []
        for v, lid in enumerate(local):
            comm, tid, cpu = f"CPU {lid}/KVM", TID_BASE + v, v % HOST_CPUS
            if fmt == "trace-cmd":
                self._heads.append(f"{comm:>16}-{tid:<5} [{cpu:03d}] ")
            else:
                self._heads.append(f"{comm:>16} {tid:>6} [{cpu:03d}] ")
        if fmt == "trace-cmd":
            self._names = tuple(f"{n + ':':<21} " for n in _TYPE_EVENT)
        else:
            self._names = tuple(f"{_SYSTEM[n]}:{n}: " for n in _TYPE_EVENT)
        out.write(
            f"# hostsim trace-out ({fmt}): simulated kvm-s390 tracepoints, ns timestamps\n"
            + _HEADER_MAP.format(base=TID_BASE, cpus=HOST_CPUS)
            + "\n"
        )
        self.lines += 2

    def add(self, records: np.ndarray) -> None:
        """Queue a chunk of :data:`~hostsim.records.RECORD_DTYPE` rows and write what is final."""
        if self._closed:
            raise ValueError("TraceWriter.add() after close()")
        if len(records) == 0:
            return
        ti = records["t_issue"]
        if int(ti[0]) < self._watermark or np.any(ti[1:] < ti[:-1]):
            raise ValueError("records must come in canonical order (t_issue never decreasing)")
        events = np.concatenate([self._pending, _events_of(records)])
        events = events[np.lexsort((events["e"], events["t_issue"], events["vcpu"], events["t"]))]
        self._watermark = int(ti[-1])
        cut = int(np.searchsorted(events["t"], self._watermark, side="left"))
        self._write(events[:cut])
        self._pending = events[cut:].copy()

    def close(self) -> None:
        """Write every event still held back. Idempotent; does not close ``out``."""
        if not self._closed:
            self._write(self._pending)
            self._pending = self._pending[:0]
            self._closed = True

    def __enter__(self) -> TraceWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _write(self, ev: np.ndarray) -> None:
        if len(ev) == 0:
            return
        heads, names, local = self._heads, self._names, self._local
        out: list[str] = []
        for t, v, typ, psw, addr, parm in zip(
            ev["t"].tolist(),
            ev["vcpu"].tolist(),
            ev["typ"].tolist(),
            ev["psw"].tolist(),
            ev["addr"].tolist(),
            ev["parm"].tolist(),
            strict=True,
        ):
            lid = local[v]
            if typ == _T_EXIT:
                body = f"{lid:02d}[{psw:016x}-{addr:016x}]: exit sie icptcode 4 (Instruction)"
            elif typ == _T_ICPT:
                body = (
                    f"{lid:02d}[{psw:016x}-{addr:016x}]: "
                    "intercepted instruction b2af000000000000 (0xb2af)"
                )
            elif typ == _T_INJECT:
                body = (
                    f"inject (vcpu {lid}): type:fffe0001 (program interrupt) "
                    f"parm:{parm & 0xFFFFFFFF:x} parm64:0"
                )
            elif typ == _T_UEXIT:
                body = "reason KVM_EXIT_S390_SIEIC (13)"
            else:
                body = f"{lid:02d}[{psw:016x}-{addr:016x}]: entering sie flags 0"
            sec, ns = divmod(t, 1_000_000_000)
            out.append(f"{heads[v]}{sec:5d}.{ns:09d}: {names[typ]}{body}\n")
        self.out.write("".join(out))
        self.lines += len(out)


def _events_of(rec: np.ndarray) -> np.ndarray:
    """The tracepoint events of a chunk of records (unsorted)."""
    path = rec["path"]
    us = path == RecPath.USERSPACE_EXIT
    pc = path == RecPath.PROGRAM_CHECK
    kern = ~(us | pc)
    cc = rec["cc"]
    answered = kern & (cc >= 0)
    psw = rec["psw_mask"].astype(np.uint64)
    cc_bits = np.where(answered, cc, 0).astype(np.uint64) << np.uint64(arch.PSW_CC_SHIFT)
    psw_after = np.where(answered, (psw & np.uint64(arch.MASK64 ^ arch.PSW_CC_MASK)) | cc_bits, psw)
    addr = np.full(len(rec), PSW_ADDR, np.uint64)
    addr_after = np.where(answered, np.uint64(PSW_ADDR + PQAP_LEN), addr)
    parts = []

    def part(mask: np.ndarray | None, t: np.ndarray, e: int, typ: int, **kw: Any) -> None:
        sel = slice(None) if mask is None else mask
        n = len(rec) if mask is None else int(mask.sum())
        a = np.zeros(n, _EV_DTYPE)
        a["t"] = t[sel]
        a["vcpu"] = rec["vcpu"][sel]
        a["t_issue"] = rec["t_issue"][sel]
        a["e"] = e
        a["typ"] = typ
        a["psw"] = kw.get("psw", psw)[sel]
        a["addr"] = kw.get("addr", addr)[sel]
        if "parm" in kw:
            a["parm"] = kw["parm"][sel]
        parts.append(a)

    t_exit, t_decode, t_resume = rec["t_exit"], rec["t_decode"], rec["t_resume"]
    part(None, t_exit, 0, _T_EXIT)
    part(None, t_exit, 1, _T_ICPT)
    part(pc, t_decode, 2, _T_INJECT, parm=rec["pgm_code"].astype(np.int64))
    part(us, t_decode, 2, _T_UEXIT)
    mid = t_decode + (t_resume - t_decode) // 2
    part(us, mid, 3, _T_INJECT, parm=np.full(len(rec), arch.PgmCode.OPERATION, np.int64))
    part(None, t_resume, 4, _T_ENTER, psw=psw_after, addr=addr_after)
    return np.concatenate(parts)


def write_trace(
    out: TextIO, scenario: Scenario, records: np.ndarray, fmt: str = "trace-cmd"
) -> int:
    """Write ``records`` (canonical order) as a whole trace; returns the number of lines."""
    w = TraceWriter(out, scenario, fmt)
    w.add(records)
    w.close()
    return w.lines


# --- Measured durations ---------------------------------------------------------------------
def record_class(records: np.ndarray) -> np.ndarray:
    """Outcome class code of each record (:data:`CLASSES`) from its ``path``."""
    path = records["path"]
    out = np.full(len(records), IN_KERNEL, np.int8)
    out[path == RecPath.USERSPACE_EXIT] = USERSPACE_EXIT
    out[path == RecPath.PROGRAM_CHECK] = PROGRAM_CHECK
    return out


def duration_stats(d: np.ndarray) -> dict[str, Any]:
    """``n``, ``min``, ``mean``, ``p50``, ``p99``, ``max`` of durations in ns (None when empty).

    Percentiles are observed values (``inverted_cdf``), so they stay exact integers.
    """
    d = np.asarray(d, np.int64)
    if len(d) == 0:
        return {"n": 0, "min": None, "mean": None, "p50": None, "p99": None, "max": None}
    p50, p99 = np.percentile(d, [50, 99], method="inverted_cdf")
    return {
        "n": len(d),
        "min": int(d.min()),
        "mean": int(d.sum()) / len(d),
        "p50": int(p50),
        "p99": int(p99),
        "max": int(d.max()),
    }


def _measured(cls: np.ndarray, dur: np.ndarray) -> dict[str, dict[str, Any]]:
    return {name: duration_stats(dur[cls == i]) for i, name in enumerate(CLASSES)}


def measured_from_records(records: np.ndarray) -> dict[str, dict[str, Any]]:
    """Simulated intercept durations (``t_resume - t_exit``) per outcome class, as in a trace."""
    return _measured(record_class(records), records["t_resume"] - records["t_exit"])


def format_calibration(
    trace: dict[str, dict[str, Any]], simulated: dict[str, dict[str, Any]]
) -> str:
    """A table of measured (trace) against simulated intercept durations per class, in µs."""

    def us(v: Any) -> str:
        return "-" if v is None else f"{v / 1000:.3f}"

    cols = ("class", "N trace", "N sim")
    stats = ("mean", "p50", "p99")
    head = [*cols] + [f"{s} {w}" for s in stats for w in ("trace", "sim")]
    rows = [head]
    for name in CLASSES:
        a, b = trace.get(name, {}), simulated.get(name, {})
        row = [name, str(a.get("n", 0)), str(b.get("n", 0))]
        for s in stats:
            row += [us(a.get(s)), us(b.get(s))]
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["intercept duration sie_exit -> sie_enter (us): trace vs simulation"]
    for r in rows:
        cells = [r[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(r[1:], widths[1:], strict=True)
        ]
        lines.append("  ".join(cells))
    return "\n".join(lines)


# --- Import ------------------------------------------------------------------------------------
# Capturing groups, in order: tid, sec, frac, event, vid, psw, rest (read with m.groups()).
_TS = r"(?P<sec>\d+)\.(?P<frac>\d{1,9})"
_VCPU_TP = r"(?:(?P<vid>\d+)\[(?P<psw>[0-9a-fA-F]{1,16})-[0-9a-fA-F]{1,16}\]:\s+)?"
_REST = r"(?P<rest>.*\S)?\s*$"
_LINE_RE = {
    "trace-cmd": re.compile(
        r"^\s*.+?-(?P<tid>\d+)\s+(?:\(\s*[\d-]+\)\s+)?\[\d+\]\s+(?:\S{1,6}\s+)?"
        + _TS
        + r":\s+(?P<event>[\w-]+):\s*"
        + _VCPU_TP
        + _REST
    ),
    "perf": re.compile(
        r"^\s*.+?\s+(?:\d+/)?(?P<tid>\d+)\s+\[\d+\]\s+"
        + _TS
        + r":\s+(?:\d+\s+)?[\w-]+:(?P<event>[\w-]+):\s*"
        + _VCPU_TP
        + _REST
    ),
}
_QEMU_LOG_RE = re.compile(r"^\d+@\d+\.\d+:\w+")
_NON_EVENT_RE = re.compile(
    r"^(?:cpus=\d+|version\s*=.*|CPU\s*\d+ is empty|CPU:\s*\d+ \[LOST \d+ EVENTS\]"
    r"|\s+[0-9a-fA-F]{6,} .*)\s*$"
)
_LOST_RE = re.compile(r"^CPU:\s*\d+ \[LOST \d+ EVENTS\]")
_MAP_RE = re.compile(r"^#\s*hostsim thread map: tid = (\d+) \+ global vCPU index")
_FIELDS_RE = {
    EV_SIE_EXIT: re.compile(r"^exit sie icptcode (\d+) \(.*\)$"),
    EV_INTERCEPT: re.compile(r"^intercepted instruction ([0-9a-fA-F]{16}) \(.*\)$"),
    EV_INJECT: re.compile(
        r"^inject \(vcpu (\d+)\): type:([0-9a-fA-F]+) \(.*\) parm:([0-9a-fA-F]+) "
        r"parm64:([0-9a-fA-F]+)$"
    ),
    EV_USER_EXIT: re.compile(r"^reason (\S+) \((-?\d+)\)$"),
    EV_SIE_ENTER: re.compile(r"^entering sie flags ([0-9a-fA-F]+)$"),
}
#: The usual field texts, checked by string equality before any regex (the hot path).
_FAST = {
    EV_SIE_EXIT: "exit sie icptcode 4 (Instruction)",
    EV_INTERCEPT: "intercepted instruction b2af000000000000 (0xb2af)",
    EV_SIE_ENTER: "entering sie flags 0",
}
_KVM_PGM = (int(arch.PgmCode.PRIVILEGED_OP), int(arch.PgmCode.SPECIFICATION))
_QEMU_PGM = int(arch.PgmCode.OPERATION)
_PREFIXED = frozenset((EV_SIE_EXIT, EV_INTERCEPT, EV_SIE_ENTER))
_SCALE = tuple(10 ** (9 - k) for k in range(10))
_BINARY = ((b"\x17\x08\x44tracing", "trace-cmd report"), (b"PERFILE", "perf script"))


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

    @property
    def intercepts(self) -> int:
        """Complete PQAP intercepts imported."""
        return sum(len(a) for a in self.arrivals.values())


def _open(path: Path) -> TextIO:
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")


def _lines(path: Path, name: str) -> Iterator[tuple[int, str]]:
    """Numbered lines (newline kept), streamed."""
    try:
        fh = _open(path)
    except OSError as e:
        raise TraceError(name, 0, f"cannot read: {e.strerror}") from None
    with fh:
        yield from enumerate(fh, 1)


def _detect(path: Path, name: str, skip_bad: bool) -> tuple[str, int | None]:
    """The format (from the first event line) and the hostsim thread-map base, if declared."""
    try:
        with open(path, "rb") as fh:
            magic = fh.read(16)
    except OSError as e:
        raise TraceError(name, 0, f"cannot read: {e.strerror}") from None
    for m, tool in _BINARY:
        if magic.startswith(m) or magic[1:].startswith(m):
            raise TraceError(
                name, 1, f"unknown trace format: a binary file; convert it with {tool}"
            )
    base = None
    first_bad: tuple[int, str] | None = None
    for no, line in _lines(path, name):
        if not line.strip():
            continue
        if line.lstrip().startswith("#"):
            m = _MAP_RE.match(line.lstrip())
            if m:
                base = int(m.group(1))
            continue
        for fmt, rx in _LINE_RE.items():
            if rx.match(line):
                return fmt, base
        if _NON_EVENT_RE.match(line):
            continue
        if _QEMU_LOG_RE.match(line):
            raise TraceError(
                name,
                no,
                "unknown trace format: a QEMU log-backend trace carries no kvm-s390 "
                "tracepoints; record with trace-cmd or perf",
            )
        if first_bad is None:
            first_bad = (no, line)
        if not skip_bad:
            break
    if first_bad is None:
        raise TraceError(name, 0, "no trace lines found")
    no, line = first_bad
    raise TraceError(
        name,
        no,
        "unknown trace format (expected `trace-cmd report` or `perf script` text): "
        f"{line.strip()[:80]!r}",
    )


def _thread_ids(path: Path, name: str, rx: re.Pattern[str]) -> dict[int, int]:
    """First pass: each thread's vCPU id (from the first prefixed kvm-s390 event it shows)."""
    ids: dict[int, int] = {}
    for _, line in _lines(path, name):
        m = rx.match(line)
        if m is None or m.group("event") not in _PREFIXED or m.group("vid") is None:
            continue
        tid = int(m.group("tid"))
        if tid not in ids:
            ids[tid] = int(m.group("vid"))
    return ids


def _map_by_rule(
    ids: dict[int, int], first_vcpu: np.ndarray, guest_vcpus: np.ndarray
) -> tuple[dict[int, int], dict[int, str], int]:
    """Threads -> global vCPUs by the generic rule; unmappable threads get a message instead."""
    mapped: dict[int, int] = {}
    unknown: dict[int, str] = {}
    guest, prev = -1, None
    for tid in sorted(ids):
        vid = ids[tid]
        if prev is None or vid <= prev:
            guest += 1
        prev = vid
        if guest >= len(first_vcpu):
            unknown[tid] = (
                f"unknown vCPU: thread {tid} (vCPU id {vid:02d}) falls in guest {guest} by the "
                f"thread mapping rule, but the scenario has {len(first_vcpu)} guests"
            )
        elif vid >= guest_vcpus[guest]:
            unknown[tid] = (
                f"unknown vCPU: thread {tid} shows vCPU id {vid:02d}, but guest {guest} of the "
                f"scenario has {guest_vcpus[guest]} vCPUs"
            )
        else:
            mapped[tid] = int(first_vcpu[guest]) + vid
    return mapped, unknown, guest + 1


class _Thread:
    """Per-thread state of the import pass."""

    __slots__ = (
        "cls",
        "last",
        "local",
        "open_psw",
        "open_t",
        "pend_psw",
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
        self.open_t = -1  # an open PQAP intercept: its sie_exit time
        self.open_psw = ""
        self.cls = IN_KERNEL
        self.pgm = -1


class _Importer:
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
        self.match = _LINE_RE[fmt].match
        self.threads: dict[str, _Thread] = {}
        self.t_buf = [array("q") for _ in range(n_vcpus)]
        self.psw_buf = [array("Q") for _ in range(n_vcpus)]
        self.cls_buf = [array("b") for _ in range(n_vcpus)]
        self.dur_buf = [array("q") for _ in range(n_vcpus)]
        self.pgm_buf = [array("h") for _ in range(n_vcpus)]
        self.skipped = 0
        self.messages: list[str] = []
        self.incomplete = self.lost = self.qemu_ops = self.no_exit = self.other_insn = 0
        self.latest = self.floor = -(2**62)  # floor: latest - GLOBAL_TOLERANCE_NS
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
            return self._other_line(no, line)
        tid_s, sec, frac, ev, vid_s, psw_s, rest = m.groups()
        fre = _FIELDS_RE.get(ev)
        if fre is None:
            return None  # an unrelated event
        f = None
        if ev in _PREFIXED:
            if vid_s is None:
                raise TraceError(self.name, no, f"corrupt or truncated {ev} line (vCPU prefix)")
        else:
            vid_s = None
        fast = _FAST.get(ev)
        if fast is None or rest != fast:
            f = fre.match(rest or "")
            if f is None:
                raise TraceError(self.name, no, f"corrupt or truncated {ev} line (fields)")
        nd = len(frac)
        t = int(sec + frac) if nd == 9 else int(sec + frac) * _SCALE[nd]
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
            if f is None or int(f.group(1)) == arch.SIE_ICPT_INSTRUCTION:
                th.pend_t, th.pend_psw = t, psw_s
            else:
                th.pend_t = -1
        elif ev == EV_INTERCEPT:
            if f is None or int(f.group(1)[:4], 16) == arch.PQAP_OPCODE:
                if th.pend_t >= 0:
                    th.open_t, th.open_psw = th.pend_t, th.pend_psw
                else:
                    self.no_exit += 1
                    th.open_t, th.open_psw = t, psw_s
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
        if _NON_EVENT_RE.match(line):
            if _LOST_RE.match(line):
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


def read_trace(path: str | Path, scenario: Scenario, skip_bad: bool = False) -> ImportedTrace:
    """Import a ``trace-cmd report`` or ``perf script`` text trace (``.gz`` too), streaming.

    Raises :class:`TraceError` (``file:line: message``) on an unknown format, a corrupt line,
    time going backwards or an unknown vCPU; with ``skip_bad`` such lines are skipped and counted.
    """
    p = Path(path)
    name = str(path)
    fmt, base = _detect(p, name, skip_bad)
    topo = topology(scenario)
    first_vcpu = topo.guest_first_vcpu
    guest_vcpus = np.bincount(topo.vcpu_guest, minlength=scenario.n_guests)
    mapped: dict[int, int] = {}
    unknown: dict[int, str] = {}
    notes: list[str] = []
    if base is None:
        ids = _thread_ids(p, name, _LINE_RE[fmt])
        mapped, unknown, n_found = _map_by_rule(ids, first_vcpu, guest_vcpus)
        notes.append(
            "threads: no hostsim thread map in the file, so vCPU threads were sorted by tid, cut "
            "into guests where the printed vCPU id does not increase, and the guests taken in "
            f"scenario order ({len(ids)} threads -> {n_found} guests; the scenario has "
            f"{scenario.n_guests}); the printed id is the vCPU within its guest"
        )
    else:
        notes.append(f"threads: tid = {base} + global vCPU index (hostsim thread map in the file)")
    imp = _Importer(name, fmt, scenario.n_vcpus, _local_ids(scenario), base, mapped, unknown)
    imp.run(_lines(p, name), skip_bad)

    arrivals, outcome, duration, pgm = _arrivals(
        scenario, topo, imp.t_buf, imp.psw_buf, imp.cls_buf, imp.dur_buf, imp.pgm_buf
    )
    n = scenario.n_vcpus
    all_cls = np.concatenate([outcome[v] for v in range(n)] or [np.zeros(0, np.int8)])
    all_dur = np.concatenate([duration[v] for v in range(n)] or [np.zeros(0, np.int64)])
    measured = _measured(all_cls, all_dur)
    notes += _notes(
        scenario, topo, fmt, imp.ts_digits, measured, imp.qemu_ops, imp.no_exit, imp.other_insn
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
    )


def _ts(t: int) -> str:
    sec, ns = divmod(t, 1_000_000_000)
    return f"{sec}.{ns:09d}"


def _arrivals(
    s: Scenario,
    topo: Any,
    t_buf: list[array],
    psw_buf: list[array],
    cls_buf: list[array],
    dur_buf: list[array],
    pgm_buf: list[array],
) -> tuple[dict[int, np.ndarray], ...]:
    """Script rows per vCPU: APQNs round-robin from the guest's matrix, registers inferred."""
    arrivals, outcome, duration, pgm = {}, {}, {}, {}
    fc = np.uint64(arch.FunctionCode.AQIC) << np.uint64(arch.GR0_FC_SHIFT)
    for v in range(s.n_vcpus):
        w = s.guests[int(topo.vcpu_group[v])].workload
        apqns = topo.guest_apqns[int(topo.vcpu_guest[v])]
        n = len(t_buf[v])
        rows = np.zeros(n, SCRIPT_DTYPE)
        if n:
            rows["t"] = np.frombuffer(t_buf[v], np.int64)
            q = apqns[np.arange(n) % len(apqns)] if len(apqns) else np.zeros(n, np.uint16)
            rows["gpr0"] = fc | q.astype(np.uint64)
            rows["psw_mask"] = np.frombuffer(psw_buf[v], np.uint64)
        rows["gpr1"] = arch.make_gr1_aqic(1, w.isc)
        rows["gpr2"] = w.nib
        arrivals[v] = rows
        outcome[v] = np.frombuffer(cls_buf[v], np.int8).copy()
        duration[v] = np.frombuffer(dur_buf[v], np.int64).copy()
        pgm[v] = np.frombuffer(pgm_buf[v], np.int16).copy()
    return arrivals, outcome, duration, pgm


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
        "NIB, PSW mask as traced at sie_exit",
    ]
    if measured["program_check"]["n"]:
        notes.append(
            "program checks: the registers that caused them are not in the trace; a replay "
            "reproduces them only where the scenario (e.g. no facility 65) or the traced PSW "
            "(problem state) does"
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
