"""Kernel trace text syntax and the passes over a file that come before the import pass: the
line and field regexes of ``trace-cmd report`` and ``perf script`` kvm-s390 events, streamed line
reading (``.gz`` too), format detection and the thread to vCPU mapping of real traces.

The format is detected from the first line that is not a comment or a known header line; a
``# hostsim thread map`` comment (written by :class:`workloads.trace_write.TraceWriter`) declares
the tid base. Binary ``trace-cmd``/``perf`` data and QEMU log-backend traces are recognised and
refused with a hint.

Thread to vCPU mapping. With the ``# hostsim thread map: tid = B + global vCPU index`` header:
``vCPU = tid - B``, and the vCPU id printed in the event prefix must be that vCPU's index within
its guest. Without it (real traces) a first cheap pass (:func:`thread_ids`) collects each
thread's vCPU id; threads sorted by tid ascending are cut into guests where the vCPU id does not
increase, guests are taken in scenario order, and the printed id is the vCPU within its guest
(:func:`map_by_rule`). A thread that lands beyond the scenario (more guests, or an id >= that
guest's vCPU count) is an "unknown vCPU". The rule cannot see a vCPU (or a guest) that never
trapped: it is exact for a hostsim trace without its header only when every vCPU trapped at
least once. The per-line pass that uses all this is :class:`workloads.trace_importer.Importer`.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

import numpy as np

from workloads.trace_format import (
    EV_INJECT,
    EV_INTERCEPT,
    EV_SIE_ENTER,
    EV_SIE_EXIT,
    EV_USER_EXIT,
    TraceError,
)

# Capturing groups, in order: tid, sec, frac, event, vid, psw, rest (read with m.groups()).
_TS = r"(?P<sec>\d+)\.(?P<frac>\d{1,9})"
_VCPU_TP = r"(?:(?P<vid>\d+)\[(?P<psw>[0-9a-fA-F]{1,16})-[0-9a-fA-F]{1,16}\]:\s+)?"
_REST = r"(?P<rest>.*\S)?\s*$"
#: Per format: one event line.
LINE_RE = {
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
NON_EVENT_RE = re.compile(
    r"^(?:cpus=\d+|version\s*=.*|CPU\s*\d+ is empty|CPU:\s*\d+ \[LOST \d+ EVENTS\]"
    r"|\s+[0-9a-fA-F]{6,} .*)\s*$"
)
LOST_RE = re.compile(r"^CPU:\s*\d+ \[LOST \d+ EVENTS\]")
_MAP_RE = re.compile(r"^#\s*hostsim thread map: tid = (\d+) \+ global vCPU index")
#: Per kvm event: its fields (the text after the vCPU prefix).
FIELDS_RE = {
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
FAST_FIELDS = {
    EV_SIE_EXIT: "exit sie icptcode 4 (Instruction)",
    EV_INTERCEPT: "intercepted instruction b2af000000000000 (0xb2af)",
    EV_SIE_ENTER: "entering sie flags 0",
}
#: Events printed with the ``NN[psw-addr]:`` vCPU prefix.
PREFIXED = frozenset((EV_SIE_EXIT, EV_INTERCEPT, EV_SIE_ENTER))
#: ``SCALE[k]``: nanoseconds per unit of a timestamp printed with k decimals.
SCALE = tuple(10 ** (9 - k) for k in range(10))
_BINARY = ((b"\x17\x08\x44tracing", "trace-cmd report"), (b"PERFILE", "perf script"))


def _open(path: Path) -> TextIO:
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")


def numbered_lines(path: Path, name: str) -> Iterator[tuple[int, str]]:
    """Numbered lines (newline kept), streamed."""
    try:
        fh = _open(path)
    except OSError as e:
        raise TraceError(name, 0, f"cannot read: {e.strerror}") from None
    with fh:
        yield from enumerate(fh, 1)


def detect_format(path: Path, name: str, skip_bad: bool) -> tuple[str, int | None]:
    """The format (from the first event line) and the hostsim thread-map base, if declared."""
    try:
        with open(path, "rb") as fh:
            magic = fh.read(16)
    except OSError as e:
        raise TraceError(name, 0, f"cannot read: {e.strerror}") from None
    for sig, tool in _BINARY:
        if magic.startswith(sig) or magic[1:].startswith(sig):
            raise TraceError(
                name, 1, f"unknown trace format: a binary file; convert it with {tool}"
            )
    base = None
    first_bad: tuple[int, str] | None = None
    for no, line in numbered_lines(path, name):
        if not line.strip():
            continue
        if line.lstrip().startswith("#"):
            m = _MAP_RE.match(line.lstrip())
            if m:
                base = int(m.group(1))
            continue
        for fmt, rx in LINE_RE.items():
            if rx.match(line):
                return fmt, base
        if NON_EVENT_RE.match(line):
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


def thread_ids(path: Path, name: str, rx: re.Pattern[str]) -> dict[int, int]:
    """First pass: each thread's vCPU id (from the first prefixed kvm-s390 event it shows)."""
    ids: dict[int, int] = {}
    for _, line in numbered_lines(path, name):
        m = rx.match(line)
        if m is None or m.group("event") not in PREFIXED or m.group("vid") is None:
            continue
        tid = int(m.group("tid"))
        if tid not in ids:
            ids[tid] = int(m.group("vid"))
    return ids


def map_by_rule(
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
