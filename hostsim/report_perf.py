"""The ``perf kvm stat report`` table of a run, in perf's own stdio layout.

perf (``tools/perf/builtin-kvm.c``, ``print_result``) prints::

    Analyze events for all VMs, all VCPUs:

    <%40s VM-EXIT> <%10s Samples> <%9s Samples%> <%9s Time%> <%11s Min Time> <%11s Max Time>
        <%16s Avg time>

    <%40s name> <%10d count> <%8.2f%%> <%8.2f%%> <%9.2fus> <%9.2fus> <%9.2fus> ( +-%7.2f%% )
    ...

    Total Samples:<n>, Total events handled time:<%.2f>us.

(the header is one line, each field followed by one space), the rows sorted by samples, largest
first (perf's default ``--key sample``; ``--key time`` sorts by the average time). The ``+-``
figure is perf's relative standard deviation of the mean, ``100 * stddev / sqrt(n) / mean``. An
event's time is the intercept, SIE exit to SIE entry: in hostsim a request's issue-to-resume
latency.

Two views of the rows (:data:`PERF_STYLES`): ``perf`` gives one row per PQAP path (what perf
would show if it could tell the paths apart), ``perf-unknown`` gives the single ``UNKNOWN`` row
real perf on s390 shows, because PQAP (``b2af``) is missing from ``icpt_insn_codes``
(``host-operations.md`` section 7). Either way the per-path split with percentiles follows the
footer as hostsim's own addition (:func:`format_path_split`), so that a parser of perf's output
reads the table up to the ``Total Samples:`` line and stops there.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hostsim.records import PATH_NAMES

#: The report styles of ``hostsim run --report``: perf's table per path, perf's single UNKNOWN
#: row, or hostsim's own percentile table (the layout before perf compatibility).
PERF_STYLES: tuple[str, ...] = ("perf", "perf-unknown", "hostsim")

#: The name perf on s390 gives an instruction intercept missing from ``icpt_insn_codes``.
UNKNOWN = "UNKNOWN"
#: perf's ``KVM_EVENT_NAME_LEN`` (``decode_str_len``): the width of the event-name column.
NAME_WIDTH = 40
#: perf's header for the exit events' table (``exit_events.name``).
EVENT_HEADER = "VM-EXIT"


@dataclass(frozen=True)
class PerfRow:
    """One event row: a name and its sample statistics (times in ns)."""

    name: str
    samples: int
    total_ns: int
    min_ns: int
    max_ns: int
    mean_ns: float
    stddev_ns: float

    @property
    def rel_stddev(self) -> float:
        """perf's ``rel_stddev_stats``: the mean's standard error as a per cent of the mean."""
        if self.samples < 2 or self.mean_ns == 0:
            return 0.0
        return 100.0 * (self.stddev_ns / math.sqrt(self.samples)) / self.mean_ns


def _row(name: str, body: Mapping[str, Any]) -> PerfRow:
    lat = body["lat_ns"]
    n = int(body["N"])
    total = body.get("total_ns")
    if total is None:  # a summary written before total_ns existed
        total = round(float(lat["mean"]) * n)
    return PerfRow(
        name=name,
        samples=n,
        total_ns=int(total),
        min_ns=int(lat["min"]),
        max_ns=int(lat["max"]),
        mean_ns=float(lat["mean"]),
        stddev_ns=float(lat["stddev"]),
    )


def path_names(summary: Mapping[str, Any]) -> list[str]:
    """The summary's paths with samples: ``Path`` order, then any others by name."""
    paths = summary["paths"]
    names = [n for n in PATH_NAMES if paths.get(n, {}).get("N")]
    return names + sorted(n for n in paths if n not in PATH_NAMES and paths[n].get("N"))


def perf_rows(
    summary: Mapping[str, Any], *, unknown: bool = False, key: str = "sample"
) -> list[PerfRow]:
    """The table's rows: per path, or the one ``UNKNOWN`` row; sorted by ``key`` as perf does
    (``sample``: samples, ``time``: average time; largest first, ties in path order)."""
    if key not in ("sample", "time"):
        raise ValueError(f"unknown sort key {key!r}: expected 'sample' or 'time'")
    if unknown:
        rows = [_row(UNKNOWN, summary["all"])] if summary["all"]["N"] else []
    else:
        rows = [_row(n, summary["paths"][n]) for n in path_names(summary)]
    if key == "sample":
        return sorted(rows, key=lambda r: -r.samples)
    return sorted(rows, key=lambda r: -r.mean_ns)


def _us(ns: float) -> float:
    return ns / 1000.0


def _share(part: float, whole: float) -> float:
    return 100.0 * part / whole if whole else 0.0


def format_perf_table(rows: list[PerfRow]) -> list[str]:
    """perf's ``print_result`` lines for ``rows``, from the blank lines before
    ``Analyze events`` to the blank line after the ``Total Samples:`` footer."""
    total_n = sum(r.samples for r in rows)
    total_t = sum(r.total_ns for r in rows)
    header = (
        f"{EVENT_HEADER:>{NAME_WIDTH}} {'Samples':>10} {'Samples%':>9} {'Time%':>9} "
        f"{'Min Time':>11} {'Max Time':>11} {'Avg time':>16} "
    )
    out = ["", "", "Analyze events for all VMs, all VCPUs:", "", header, ""]
    for r in rows:
        avg = _us(r.total_ns / r.samples) if r.samples else 0.0
        out.append(
            f"{r.name:>{NAME_WIDTH}} {r.samples:10d} {_share(r.samples, total_n):8.2f}% "
            f"{_share(r.total_ns, total_t):8.2f}% {_us(r.min_ns):9.2f}us {_us(r.max_ns):9.2f}us "
            f"{avg:9.2f}us ( +-{r.rel_stddev:7.2f}% )"
        )
    out += [
        "",
        f"Total Samples:{total_n}, Total events handled time:{_us(total_t):.2f}us.",
        "",
    ]
    return out


_SPLIT_COLUMNS = ("Path", "Samples", "Samples%", "Time%", "Min(us)", "Avg(us)", "p50(us)",
                  "p99(us)", "p99.9(us)", "Max(us)")  # fmt: skip


def _pct_us(lat: Mapping[str, Any], key: str) -> str:
    return f"{float(lat['percentile'].get(key, 0)) / 1000:.2f}"


def format_path_split(summary: Mapping[str, Any], *, unknown: bool = False) -> list[str]:
    """hostsim's addition after perf's footer: the per-path split with percentiles (us)."""
    names = path_names(summary)
    rows = [_row(n, summary["paths"][n]) for n in names]
    total_n = sum(r.samples for r in rows)
    total_t = sum(r.total_ns for r in rows)
    cells = [list(_SPLIT_COLUMNS)]
    for name, r in zip(names, rows, strict=True):
        lat = summary["paths"][name]["lat_ns"]
        cells.append(
            [
                name,
                str(r.samples),
                f"{_share(r.samples, total_n):.2f}%",
                f"{_share(r.total_ns, total_t):.2f}%",
                f"{_us(r.min_ns):.2f}",
                f"{_us(r.mean_ns):.2f}",
                _pct_us(lat, "50.000000"),
                _pct_us(lat, "99.000000"),
                _pct_us(lat, "99.900000"),
                f"{_us(r.max_ns):.2f}",
            ]
        )
    widths = [max(len(row[i]) for row in cells) for i in range(len(_SPLIT_COLUMNS))]
    table = ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    title = (
        f"hostsim: the {UNKNOWN} row split by PQAP path (real perf on s390 cannot):"
        if unknown
        else "hostsim: PQAP paths with percentiles (perf kvm stat has none):"
    )
    return [title, "", table[0], "", *table[1:]]


def format_perf(summary: Mapping[str, Any], style: str = "perf", key: str = "sample") -> list[str]:
    """The perf-compatible table of ``style`` (``perf`` or ``perf-unknown``) and hostsim's
    per-path split after its footer, as lines."""
    if style not in ("perf", "perf-unknown"):
        raise ValueError(f"not a perf style: {style!r}")
    unknown = style == "perf-unknown"
    return [
        *format_perf_table(perf_rows(summary, unknown=unknown, key=key)),
        *format_path_split(summary, unknown=unknown),
    ]
