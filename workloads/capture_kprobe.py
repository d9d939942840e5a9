"""The kprobe/bpftrace register capture of vfio_ap's ``handle_pqap``
(``workloads/bpftrace/handle_pqap.bt``): one ``PQAP`` line per hook call with GR0-GR2 at entry,
the return value and GR1 at return (the status word), and the call's duration::

    PQAP <t_ns> <tid> <vcpu_id> <gr0> <gr1> <gr2> <ret> <gr1_out> <dur_ns>

bpftrace's own ``Attaching N probes...`` line, ``#`` comments and blank lines are skipped; any
other line is an error. Decoding helpers: :mod:`hostsim.arch`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hostsim import arch
from workloads.capture_base import CaptureError, CaptureFormat, numbered, register

EOPNOTSUPP = 95
_LINE_RE = re.compile(
    r"^PQAP\s+(?P<t>\d+)\s+(?P<tid>\d+)\s+(?P<vcpu>\d+)\s+(?P<gr0>[0-9a-fA-F]{1,16})\s+"
    r"(?P<gr1>[0-9a-fA-F]{1,16})\s+(?P<gr2>[0-9a-fA-F]{1,16})\s+(?P<ret>-?\d+)\s+"
    r"(?P<out>[0-9a-fA-F]{1,16})\s+(?P<dur>\d+)\s*$"
)
_SKIP_RE = re.compile(r"^\s*(?:#.*|Attaching \d+ probes?\.\.\.|)$")
HANDLE_PQAP_DTYPE = np.dtype(
    [
        ("t", np.int64),
        ("tid", np.int64),
        ("vcpu", np.int32),
        ("gpr0", np.uint64),
        ("gpr1", np.uint64),
        ("gpr2", np.uint64),
        ("ret", np.int32),
        ("gpr1_out", np.uint64),
        ("dur", np.int64),
    ]
)


@dataclass
class HandlePqapCapture:
    """Hook calls as a structured array (:data:`HANDLE_PQAP_DTYPE`)."""

    path: str
    calls: np.ndarray = field(default_factory=lambda: np.zeros(0, HANDLE_PQAP_DTYPE))

    @property
    def enable(self) -> np.ndarray:
        """IR bit of GR1 at entry (True: an enable)."""
        return (self.calls["gpr1"] >> np.uint64(arch.GR1_IR_SHIFT)) & np.uint64(1) == 1

    @property
    def rc(self) -> np.ndarray:
        """Response code in the returned status word."""
        return (
            (self.calls["gpr1_out"] >> np.uint64(arch.STATUS_RC_SHIFT)) & np.uint64(0xFF)
        ).astype(np.int16)

    @property
    def to_userspace(self) -> np.ndarray:
        """Calls that returned -EOPNOTSUPP (no AIV: the PQAP goes on to userspace)."""
        return self.calls["ret"] == -EOPNOTSUPP


def read_kprobe_pqap(path: str | Path) -> HandlePqapCapture:
    """Parse the output of ``handle_pqap.bt``."""
    name = str(path)
    rows = []
    for no, line in numbered(path):
        if _SKIP_RE.match(line):
            continue
        m = _LINE_RE.match(line.strip())
        if m is None:
            raise CaptureError(
                name,
                no,
                "expected `PQAP t_ns tid vcpu gr0 gr1 gr2 ret gr1_out dur_ns` "
                f"(handle_pqap.bt), got {line.strip()[:80]!r}",
            )
        rows.append(
            (
                int(m.group("t")),
                int(m.group("tid")),
                int(m.group("vcpu")),
                int(m.group("gr0"), 16),
                int(m.group("gr1"), 16),
                int(m.group("gr2"), 16),
                int(m.group("ret")),
                int(m.group("out"), 16),
                int(m.group("dur")),
            )
        )
    return HandlePqapCapture(name, np.array(rows, HANDLE_PQAP_DTYPE))


def _detect(lines: list[str]) -> bool:
    return any(x.startswith("# hostsim handle_pqap") or _LINE_RE.match(x.strip()) for x in lines)


FORMAT = register(
    CaptureFormat("kprobe-pqap", "handle_pqap.bt register capture", _detect, read_kprobe_pqap)
)
