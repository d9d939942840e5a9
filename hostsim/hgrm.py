"""HdrHistogram percentile-distribution text (``.hgrm``): writer and reader.

The writer follows Java HdrHistogram's ``AbstractHistogram.outputPercentileDistribution`` (what
wrk and the HdrHistogram web plotter use): a header, one line per percentile tick (5 ticks per
half distance to 100 %), then the ``#[Mean ...]``, ``#[Max ...]`` and ``#[Buckets ...]`` footers.
It is written here rather than taken from the ``hdrhistogram`` package, whose
``output_percentile_distribution`` does not scale the standard deviation and whose percentile
iterator does not truncate the tick exponent as Java does (so its ticks are irregular).
Values are recorded in ns and written in microseconds (scaling ratio 1000).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from hdrh.histogram import HdrHistogram

from hostsim.histograms import counts_view

#: ns -> us, as wrk prints its ``.hgrm`` output.
US_SCALING = 1000.0


def _value_ranges(hist: HdrHistogram, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lowest equivalent value and size of the equivalent range for counts indexes."""
    shbcm = hist.sub_bucket_half_count_magnitude
    half = hist.sub_bucket_half_count
    bucket = (idx >> shbcm) - 1
    sub = (idx & (half - 1)) + half
    first = bucket < 0
    sub = np.where(first, sub - half, sub)
    bucket = np.where(first, 0, bucket)
    lowest = sub << (bucket + hist.unit_magnitude)
    size = np.ones_like(idx) << (bucket + hist.unit_magnitude)
    return lowest, size


def percentile_lines(
    hist: HdrHistogram, ticks_per_half_distance: int = 5
) -> list[tuple[int, float, int]]:
    """``(value, percentile level, total count)`` rows of Java's percentile iterator."""
    total = int(hist.total_count)
    if total == 0:
        return []
    counts = counts_view(hist)
    nz = np.flatnonzero(counts)
    cum = np.cumsum(counts[nz]).tolist()
    lowest, size = _value_ranges(hist, nz.astype(np.int64))
    highest = (lowest + size - 1).tolist()
    rows: list[tuple[int, float, int]] = []
    level = 0.0
    for value, c in zip(highest, cum, strict=True):
        current = (100.0 * c) / total
        while current >= level:
            rows.append((value, level, c))
            ticks = ticks_per_half_distance * 2 ** (
                int(math.log(100.0 / (100.0 - level)) / math.log(2)) + 1
            )
            level += 100.0 / ticks
            if c == total or level >= 100.0:
                break
    rows.append((highest[-1], 100.0, total))
    return rows


def mean_stddev(hist: HdrHistogram) -> tuple[float, float]:
    """HdrHistogram's mean and (population) standard deviation over median-equivalent values."""
    total = int(hist.total_count)
    if total == 0:
        return 0.0, 0.0
    counts = counts_view(hist)
    nz = np.flatnonzero(counts)
    lowest, size = _value_ranges(hist, nz.astype(np.int64))
    median = (lowest + (size >> 1)).tolist()
    cnt = counts[nz].tolist()
    mean = sum(m * c for m, c in zip(median, cnt, strict=True)) / total
    var = math.fsum((m - mean) ** 2 * c for m, c in zip(median, cnt, strict=True)) / total
    return mean, math.sqrt(var)


def format_hgrm(
    hist: HdrHistogram, scaling: float = US_SCALING, ticks_per_half_distance: int = 5
) -> str:
    """The percentile distribution of ``hist`` as ``.hgrm`` text, values divided by ``scaling``."""
    sig = hist.significant_figures
    out = [f"{'Value':>12} {'Percentile':>14} {'TotalCount':>10} {'1/(1-Percentile)':>14}\n\n"]
    for value, level, count in percentile_lines(hist, ticks_per_half_distance):
        v = value / scaling
        if level != 100.0:
            inv = 1.0 / (1.0 - level / 100.0)
            out.append(f"{v:12.{sig}f} {level / 100:2.12f} {count:10d} {inv:14.2f}\n")
        else:
            out.append(f"{v:12.{sig}f} {level / 100:2.12f} {count:10d}\n")
    mean, stddev = mean_stddev(hist)
    max_value = hist.get_max_value() / scaling
    out.append(
        f"#[Mean    = {mean / scaling:12.{sig}f}, StdDeviation   = {stddev / scaling:12.{sig}f}]\n"
    )
    out.append(f"#[Max     = {max_value:12.{sig}f}, Total count    = {hist.total_count:12d}]\n")
    out.append(
        f"#[Buckets = {hist.bucket_count:12d}, SubBuckets     = {hist.sub_bucket_count:12d}]\n"
    )
    return "".join(out)


def write_hgrm(hist: HdrHistogram, path: str | Path, scaling: float = US_SCALING) -> None:
    """Write ``hist`` as an ``.hgrm`` file (values divided by ``scaling``: ns -> us by default)."""
    Path(path).write_text(format_hgrm(hist, scaling), encoding="utf-8")


@dataclass
class Hgrm:
    """A parsed ``.hgrm`` file: the percentile rows and the footer values (in file units)."""

    rows: list[tuple[float, float, int]] = field(default_factory=list)  # value, pct, count
    mean: float = 0.0
    stddev: float = 0.0
    max: float = 0.0
    total_count: int = 0
    buckets: int = 0
    sub_buckets: int = 0

    def value_at(self, percentile: float) -> float:
        """Value of the first row at or above ``percentile`` (0..100)."""
        for value, pct, _ in self.rows:
            if pct * 100.0 >= percentile:
                return value
        return self.rows[-1][0] if self.rows else 0.0


def _footer(line: str) -> dict[str, str]:
    body = line.strip().lstrip("#").strip("[]")
    return {k.strip(): v.strip() for k, v in (part.split("=") for part in body.split(","))}


def parse_hgrm(text: str) -> Hgrm:
    """Parse ``.hgrm`` text; raises ``ValueError`` on a malformed line."""
    h = Hgrm()
    lines = text.splitlines()
    if not lines or lines[0].split()[:3] != ["Value", "Percentile", "TotalCount"]:
        raise ValueError("not an .hgrm file: missing the 'Value Percentile TotalCount' header")
    for n, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        try:
            if line.startswith("#[Mean"):
                f = _footer(line)
                h.mean, h.stddev = float(f["Mean"]), float(f["StdDeviation"])
            elif line.startswith("#[Max"):
                f = _footer(line)
                h.max, h.total_count = float(f["Max"]), int(f["Total count"])
            elif line.startswith("#[Buckets"):
                f = _footer(line)
                h.buckets, h.sub_buckets = int(f["Buckets"]), int(f["SubBuckets"])
            else:
                fields = line.split()
                if len(fields) not in (3, 4):
                    raise ValueError(f"{len(fields)} fields")
                h.rows.append((float(fields[0]), float(fields[1]), int(fields[2])))
        except (KeyError, ValueError) as e:
            raise ValueError(f".hgrm line {n}: cannot parse {line!r} ({e})") from None
    return h


def read_hgrm(path: str | Path) -> Hgrm:
    """Read and parse an ``.hgrm`` file."""
    return parse_hgrm(Path(path).read_text(encoding="utf-8"))
