"""What an engineer can capture on a real s390 KVM host (``host-operations.md`` section 7),
read into one typed object per format: :func:`read_capture`.

| format | object | reader |
|---|---|---|
| ``sie-trace`` | :class:`~workloads.capture_sie.SieCapture` | kvm-s390 trace text |
| ``perf-kvm-stat`` | :class:`~workloads.capture_perf_stat.PerfKvmStat` | ``perf kvm stat report`` |
| ``perf-lock-contention`` | :class:`~workloads.capture_lock.LockContention` | ``perf lock con`` |
| ``lock-events`` | :class:`~workloads.capture_lock.LockEvents` | raw ``lock:contention_*`` |
| ``kprobe-pqap`` | :class:`~workloads.capture_kprobe.HandlePqapCapture` | ``handle_pqap.bt`` |
| ``function-graph`` | :class:`~workloads.capture_fgraph.FuncGraph` | function_graph text |
| ``s390dbf`` | :class:`~workloads.capture_s390dbf.S390dbfCapture` | ``SET CRYCB`` lines |

The format is detected from the first lines' content, or named. Errors are
:class:`~workloads.capture_base.CaptureError` (``file:line: expected ...``). Commands that record
each format: ``docs/captures.md``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

# Importing the readers registers them.
from workloads import (  # noqa: F401
    capture_fgraph,
    capture_kprobe,
    capture_lock,
    capture_perf_stat,
    capture_s390dbf,
    capture_sie,
)
from workloads.capture_base import REGISTRY, CaptureError, head

#: Detection order: the most specific content first; kvm-s390 event text last (a file of lock
#: or function_graph events may carry kvm events too).
FORMATS: tuple[str, ...] = (
    "kprobe-pqap",
    "perf-kvm-stat",
    "perf-lock-contention",
    "s390dbf",
    "function-graph",
    "lock-events",
    "sie-trace",
)
_BINARY = (
    (
        b"PERFILE",
        "convert it with `perf script --ns`, `perf kvm stat report` or `perf lock report`",
    ),
    (b"\x17\x08\x44tracing", "convert it with `trace-cmd report -t`"),
)
assert set(FORMATS) == set(REGISTRY), "a registered capture format is missing from FORMATS"


def detect_capture_format(path: str | Path) -> str:
    """The format of a capture file, from its first lines."""
    try:
        with open(path, "rb") as fh:
            magic = fh.read(16)
    except OSError as e:
        raise CaptureError(str(path), 0, f"cannot read: {e.strerror}") from None
    for m, hint in _BINARY:
        if magic.startswith(m) or magic[1:].startswith(m):
            raise CaptureError(str(path), 1, f"expected text, got a binary file: {hint}")
    lines = head(path)
    for name in FORMATS:
        if REGISTRY[name].detect(lines):
            return name
    first = next((x.strip() for x in lines if x.strip() and not x.startswith("#")), "")
    raise CaptureError(
        str(path),
        0,
        f"expected one of the capture formats {list(FORMATS)} (see docs/captures.md); "
        f"the first line is {first[:80]!r}",
    )


def read_capture(path: str | Path, format: str | None = None) -> Any:
    """Read one capture file (``format`` detected when None) into its typed object."""
    if format is None:
        format = detect_capture_format(path)
    if format not in REGISTRY:
        raise CaptureError(
            str(path), 0, f"unknown capture format {format!r}; expected {list(FORMATS)}"
        )
    return REGISTRY[format].read(str(path))
