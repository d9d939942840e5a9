"""A reader of ``perf kvm stat report`` stdio output, written from perf's layout alone.

perf's ``print_result`` (``tools/perf/builtin-kvm.c``) prints ``Analyze events for ...:``, a
header line (``%40s`` event-set name such as ``VM-EXIT``, then ``Samples``, ``Samples%``,
``Time%``, ``Min Time``, ``Max Time``, ``Avg time``), a blank line, one line per event (the
name right-aligned in 40 columns, the count, two per cents, three times with a ``us`` suffix and
``( +-%7.2f%% )``), a blank line and ``Total Samples:%lu, Total events handled time:%.2fus.``.
Anything after that footer is not perf's table and is ignored, as a script reading perf would.
No hostsim code is used here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

HEADER = ("Samples", "Samples%", "Time%", "Min Time", "Max Time", "Avg time")
NAME_WIDTH = 40
_ROW = re.compile(
    r"^\s*(?P<samples>\d+)\s+(?P<spct>[\d.]+)%\s+(?P<tpct>[\d.]+)%\s+"
    r"(?P<min>[\d.]+)us\s+(?P<max>[\d.]+)us\s+(?P<avg>[\d.]+)us\s+"
    r"\(\s*\+-\s*(?P<rel>[\d.]+)%\s*\)\s*$"
)
_FOOTER = re.compile(r"^Total Samples:(\d+), Total events handled time:([\d.]+)us\.$")


@dataclass
class PerfEvent:
    """One row of the table (times in us, as printed)."""

    name: str
    samples: int
    samples_pct: float
    time_pct: float
    min_us: float
    max_us: float
    avg_us: float
    rel_stddev_pct: float


@dataclass
class PerfReport:
    """The parsed table: the event-set name, the rows and the footer's totals."""

    event_set: str
    events: list[PerfEvent] = field(default_factory=list)
    total_samples: int = 0
    total_time_us: float = 0.0

    def by_name(self) -> dict[str, PerfEvent]:
        """The rows keyed by event name."""
        return {e.name: e for e in self.events}


def parse(text: str) -> PerfReport:
    """Parse the first ``perf kvm stat report`` table in ``text``; ``ValueError`` if malformed."""
    lines = text.splitlines()
    try:
        start = next(i for i, ln in enumerate(lines) if ln.startswith("Analyze events for "))
    except StopIteration:
        raise ValueError("no 'Analyze events for' line") from None
    i = start + 1
    while i < len(lines) and not lines[i].strip():
        i += 1
    header = lines[i]
    event_set = header[:NAME_WIDTH].strip()
    cols = re.split(r"\s{2,}", header[NAME_WIDTH:].strip())
    if tuple(c.strip() for c in cols) != HEADER:
        raise ValueError(f"unexpected header columns {cols!r}")
    report = PerfReport(event_set)
    i += 1
    for line in lines[i:]:
        if not line.strip():
            continue
        footer = _FOOTER.match(line)
        if footer:
            report.total_samples = int(footer.group(1))
            report.total_time_us = float(footer.group(2))
            return report
        m = _ROW.match(line[NAME_WIDTH:])
        if len(line) <= NAME_WIDTH or line[NAME_WIDTH] != " " or not m:
            raise ValueError(f"not a perf kvm stat row: {line!r}")
        report.events.append(
            PerfEvent(
                name=line[:NAME_WIDTH].strip(),
                samples=int(m["samples"]),
                samples_pct=float(m["spct"]),
                time_pct=float(m["tpct"]),
                min_us=float(m["min"]),
                max_us=float(m["max"]),
                avg_us=float(m["avg"]),
                rel_stddev_pct=float(m["rel"]),
            )
        )
    raise ValueError("no 'Total Samples:' footer")
