"""``perf kvm stat report`` text (also ``perf kvm stat live`` and ``record`` + ``report``).

The table ``perf`` prints (``tools/perf/builtin-kvm.c`` ``print_result``; the name column is 40
characters wide, shortened here; ``tests/data/capture/perf_kvm_stat.txt`` has the real widths)::

    Analyze events for all VMs, all VCPUs:

        VM-EXIT    Samples  Samples%     Time%    Min Time    Max Time         Avg time

        UNKNOWN       2759    62.07%    40.15%      4.12us    215.30us     12.45us ( +-   3.21% )

    Total Samples:4445, Total events handled time:85012.34us.

On s390 the key of an instruction intercept is the instruction (``icpt_insn_codes``); PQAP has
no entry there, so every PQAP lands in the ``UNKNOWN`` row, together with any other unlisted
instruction (``host-operations.md`` section 7). The ``( +- x% )`` column is perf's relative
standard error of the mean (``stddev_stats``: ``sqrt(var / n)`` with ``var = M2 / (n - 1)``), so
a row gives n, min, max, mean *and* the standard deviation (:attr:`KvmStatRow.stddev_ns`).
Older perf prints no Min/Max columns; both forms are read.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from workloads.capture_base import CaptureError, CaptureFormat, numbered, register

_ROW_RE = re.compile(
    r"^\s*(?P<name>\S.*?)\s+(?P<n>\d+)\s+(?P<spct>[\d.]+)%\s+(?P<tpct>[\d.]+)%\s+"
    r"(?:(?P<min>[\d.]+)us\s+(?P<max>[\d.]+)us\s+)?(?P<avg>[\d.]+)us\s+"
    r"\(\s*\+-\s*(?P<rel>[\d.]+|nan|-nan)%\s*\)\s*$"
)
_HEADER_RE = re.compile(r"^\s*\S.*\s+Samples\s+Samples%\s+Time%\s+.*Avg time\s*$")
_ANALYZE_RE = re.compile(
    r"^\s*Analyze events for (?:(?P<target>.*?),\s*)?(?P<vcpu>all VCPUs|VCPU \d+):"
)
_TOTAL_RE = re.compile(
    r"^\s*Total Samples:\s*(?P<n>\d+), Total events handled time:\s*(?P<t>[\d.]+)us\.?\s*$"
)
_SKIP_RE = re.compile(r"^\s*(?:#.*|\d\d:\d\d:\d\d\.\d{6}|Lost events:\s*\d+|)\s*$")
UNKNOWN = "UNKNOWN"


@dataclass(frozen=True)
class KvmStatRow:
    """One row of the table; times in nanoseconds (min/max None on old perf)."""

    name: str
    samples: int
    samples_pct: float
    time_pct: float
    min_ns: int | None
    max_ns: int | None
    mean_ns: float
    rel_stderr_pct: float
    line: int

    @property
    def stddev_ns(self) -> float:
        """The standard deviation recovered from perf's relative standard error of the mean."""
        if math.isnan(self.rel_stderr_pct):
            return 0.0
        return self.rel_stderr_pct / 100 * self.mean_ns * math.sqrt(self.samples)


@dataclass
class PerfKvmStat:
    """A ``perf kvm stat report``: the rows, what was analysed, and the totals line."""

    path: str
    event: str = "VM-EXIT"
    target: str = ""
    vcpu: str = ""
    rows: list[KvmStatRow] = field(default_factory=list)
    total_samples: int | None = None
    total_time_ns: int | None = None

    def row(self, name: str) -> KvmStatRow | None:
        """The row called ``name`` (the first, if perf printed several)."""
        return next((r for r in self.rows if r.name == name), None)


def read_perf_kvm_stat(path: str | Path) -> PerfKvmStat:
    """Parse ``perf kvm stat report`` text; a line that is none of its shapes is an error."""
    name = str(path)
    out = PerfKvmStat(name)
    header = False
    for no, line in numbered(path):
        if _SKIP_RE.match(line):
            continue
        m = _ANALYZE_RE.match(line)
        if m:
            out.target, out.vcpu = m.group("target") or "", m.group("vcpu")
            continue
        if _HEADER_RE.match(line):
            out.event = line.split()[0]
            header = True
            continue
        m = _TOTAL_RE.match(line)
        if m:
            out.total_samples = int(m.group("n"))
            out.total_time_ns = round(float(m.group("t")) * 1000)
            continue
        m = _ROW_RE.match(line)
        if m is None or not header:
            what = "a table row" if header else "the `VM-EXIT Samples Samples% ...` header"
            raise CaptureError(
                name, no, f"expected {what} of `perf kvm stat report`, got {line.strip()[:80]!r}"
            )
        rel = m.group("rel")
        out.rows.append(
            KvmStatRow(
                m.group("name"),
                int(m.group("n")),
                float(m.group("spct")),
                float(m.group("tpct")),
                None if m.group("min") is None else round(float(m.group("min")) * 1000),
                None if m.group("max") is None else round(float(m.group("max")) * 1000),
                float(m.group("avg")) * 1000,
                math.nan if "nan" in rel else float(rel),
                no,
            )
        )
    if not header:
        raise CaptureError(name, 0, "expected a `perf kvm stat report` table; found none")
    return out


def _detect(lines: list[str]) -> bool:
    return any(_HEADER_RE.match(x) for x in lines) or any(_ANALYZE_RE.match(x) for x in lines)


FORMAT = register(
    CaptureFormat("perf-kvm-stat", "perf kvm stat report table", _detect, read_perf_kvm_stat)
)
