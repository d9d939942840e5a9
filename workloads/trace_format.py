"""Kernel trace vocabulary shared by the writer and the reader: formats, outcome classes,
kvm-s390 event names, :class:`TraceError` and the vCPU ids the kernel prints.

Traces are kvm-s390 tracepoints as ``trace-cmd report`` or ``perf script`` text. Formats and
inference rules: ``shared/spec/trace-formats.md``; which tracepoint fires on which path:
``shared/spec/kernel-pqap.md`` section 8. Export: :mod:`workloads.trace_write`. Import:
:mod:`workloads.trace_read`, over :mod:`workloads.trace_parse` (line syntax, format detection,
thread to vCPU mapping) and :mod:`workloads.trace_importer` (the per-line pass). Measured
durations and the calibration table: :mod:`workloads.trace_durations`.

Errors (:class:`TraceError`, ``file:line: message``): an unknown format; a line that does not
parse (outside ``#`` comments, blank lines and known header lines) or a kvm event whose fields do
not parse (a truncated or corrupt line); a time going backwards, per thread at all, or globally
by more than :data:`GLOBAL_TOLERANCE_NS` (1 µs: ``trace-cmd`` merges per-CPU buffers whose
clocks may disagree slightly; a larger step back means concatenated or reordered files); an
unknown vCPU. ``skip_bad=True`` skips and counts those lines instead (the unknown format of a file
with no parseable line stays an error). Intercepts still open at the end of the file, or cut by a
new SIE exit or a ``LOST EVENTS`` marker, are counted as incomplete and left out; they are not
errors.
"""

from __future__ import annotations

import numpy as np

from hostsim.scenario_types import Scenario
from hostsim.topology import topology

FORMATS = ("trace-cmd", "perf")
#: Outcome classes, in the order of their integer codes.
CLASSES = ("userspace_exit", "program_check", "in_kernel")
USERSPACE_EXIT, PROGRAM_CHECK, IN_KERNEL = 0, 1, 2
#: A line may be this much earlier than the latest line seen (per-CPU buffer merge skew).
GLOBAL_TOLERANCE_NS = 1000
PGM_INTERRUPT = 0xFFFE0001  # KVM_S390_PROGRAM_INT

EV_SIE_EXIT = "kvm_s390_sie_exit"
EV_INTERCEPT = "kvm_s390_intercept_instruction"
EV_INJECT = "kvm_s390_inject_vcpu"
EV_USER_EXIT = "kvm_userspace_exit"
EV_SIE_ENTER = "kvm_s390_sie_enter"


class TraceError(ValueError):
    """A trace that cannot be read: the message starts with ``file:line:``."""

    def __init__(self, file: str, line: int, message: str) -> None:
        super().__init__(f"{file}:{line}: {message}" if line > 0 else f"{file}: {message}")
        self.file = file
        self.line = line
        self.reason = message


def local_ids(s: Scenario) -> np.ndarray:
    """Each global vCPU's index within its guest (the kernel's vcpu_id)."""
    topo = topology(s)
    return np.arange(s.n_vcpus, dtype=np.int64) - topo.guest_first_vcpu[topo.vcpu_guest]
