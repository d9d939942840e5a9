"""Sweep tables: compact per-run metrics, means with 95 % confidence intervals, Parquet and CSV.

A *run row* (:func:`run_metrics`) is the small dict a sweep worker sends back for one simulation:
throughput, offered load, mutex utilisation and wait, and per path (plus ``all``) the sample count,
mean, a few percentiles and a short CDF (fio's percentile list with min and max). Latencies in run
rows are integer ns, as in the summary.

The *sweep table* (:func:`aggregate`) has one row per sweep point: the factor values, how many
replications finished, and for every metric its mean across replications (``<metric>``), a 95 %
interval that stays in the metric's range (``<metric>_lo``, ``<metric>_hi``: Student t on the
logs, or the logit of a utilisation, :func:`interval95`), and the half-width of the symmetric
Student t interval (``<metric>_ci95``, which at 3 replications of a tail percentile can reach
below zero; kept for old readers). NaN with a single replication. Latency columns are in
microseconds (``_us``). A sweep of boot storms (guest ``start`` / ``reboot`` events, or every
group ``kind = "boot"``) also has ``boot_completion_ms``: the first start to the last guest
ready (synthetic boots: first AQIC issued to last one resumed); NaN when the storm had not
finished at the end of the run.
"""

from __future__ import annotations

import csv
import io
import itertools
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from hostsim.moments import FIO_PERCENTILES, percentile_key
from hostsim.records import PATH_NAMES
from hostsim.scenario_types import HostEventKind, Scenario

#: Two-sided 95 % Student t quantiles t(0.975, df) for df = 1 .. 30.
_T975 = (
    12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281,
    2.2010, 2.1788, 2.1604, 2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860,
    2.0796, 2.0739, 2.0687, 2.0639, 2.0595, 2.0555, 2.0518, 2.0484, 2.0452, 2.0423,
)  # fmt: skip
#: Beyond df = 30: (df, quantile) anchors, interpolated linearly in 1 / df (df = inf: 1.96).
_T975_TAIL = ((30, 2.0423), (40, 2.0211), (60, 2.0003), (120, 1.9799))
_Z975 = 1.959964

#: Summary percentiles kept as named columns: (summary key, column suffix).
PERCENTILES: tuple[tuple[float, str], ...] = (
    (50.0, "p50"),
    (90.0, "p90"),
    (99.0, "p99"),
    (99.9, "p999"),
)
#: Per-path statistics in the table, in column order (all but ``n`` are latencies in us).
PATH_STATS: tuple[str, ...] = ("n", "mean_us", "p50_us", "p90_us", "p99_us", "p999_us", "max_us")
#: Run-level metrics in the table, in column order.
RUN_METRICS: tuple[str, ...] = (
    "offered_per_s",
    "throughput_per_s",
    "mutex_utilisation",
    "mutex_wait_mean_us",
    "mutex_wait_p99_us",
)
SIG_DIGITS = 7


def t_quantile_975(df: int) -> float:
    """The 0.975 quantile of Student's t with ``df`` degrees of freedom (for 95 % intervals)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    if df <= 30:
        return _T975[df - 1]
    anchors = (*_T975_TAIL, (math.inf, _Z975))
    for (d0, q0), (d1, q1) in itertools.pairwise(anchors):
        if d0 <= df <= d1:
            x0, x1, x = 1 / d0, (0.0 if math.isinf(d1) else 1 / d1), 1 / df
            return q0 + (q1 - q0) * (x0 - x) / (x0 - x1)
    return _Z975  # pragma: no cover


def mean_ci95(values: Iterable[float]) -> tuple[float, float, int]:
    """``(mean, half-width of the 95 % CI, n)`` of the finite values; NaNs where undefined."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=float)
    n = int(v.size)
    if n == 0:
        return math.nan, math.nan, 0
    mean = float(v.mean())
    if n == 1:
        return mean, math.nan, 1
    sd = float(v.std(ddof=1))
    return mean, t_quantile_975(n - 1) * sd / math.sqrt(n), n


def interval95(values: Iterable[float], upper: float | None = None) -> tuple[float, float]:
    """A 95 % interval of the mean that cannot leave the metric's range, ``(lo, hi)``.

    Latencies, rates and times are positive: the Student t interval is taken on their logs and
    mapped back (a fraction in ``(0, upper)``, a utilisation, on its logit), so with 3
    replications of a tail percentile it widens upwards instead of going below zero. A value at
    the range's edge (a zero) gives the symmetric interval clipped to the range; a value above
    ``upper`` (the per-mdev utilisation, summed over many mutexes) drops the upper bound. The
    interval always contains the arithmetic mean. NaNs with fewer than two values."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=float)
    n = int(v.size)
    if n < 2:
        return math.nan, math.nan
    mean = float(v.mean())
    t = t_quantile_975(n - 1)
    if upper is not None and (v > upper).any():
        upper = None
    hi_edge = math.inf if upper is None else upper
    if (v > 0).all() and (v < hi_edge).all():
        bound = upper
        z = np.log(v) if bound is None else np.log(v / (bound - v))

        def back(y: float) -> float:
            y = max(min(y, 700.0), -700.0)  # beyond, exp overflows: the ends are 0 or inf anyway
            return math.exp(y) if bound is None else bound / (1 + math.exp(-y))

        half = t * float(z.std(ddof=1)) / math.sqrt(n)
        mid = float(z.mean())
        lo, hi = back(mid - half), back(mid + half)
    else:
        half = t * float(v.std(ddof=1)) / math.sqrt(n)
        lo, hi = max(mean - half, 0.0), min(mean + half, hi_edge)
    return min(lo, mean), max(hi, mean)


#: Metrics bounded above (their interval is taken on the logit).
_UPPER = {"mutex_utilisation": 1.0}


def _sig(x: float) -> float:
    """``x`` rounded to :data:`SIG_DIGITS` significant digits (NaN stays NaN)."""
    return x if not math.isfinite(x) else float(f"{x:.{SIG_DIGITS}g}")


# --- one run ------------------------------------------------------------------------------------
def offered_per_s(s: Scenario) -> float:
    """Open-loop request rate of a scenario (requests/s): sum of Poisson groups' rates.

    Closed-loop groups have no offered rate of their own (they issue as fast as they are served)
    and count zero here.
    """
    return float(
        sum(
            g.count * g.vcpus * g.workload.rate_hz for g in s.guests if g.workload.kind == "poisson"
        )
    )


def _lat(lat: Mapping[str, Any]) -> dict[str, Any]:
    pct = lat["percentile"]
    out: dict[str, Any] = {"N": int(lat["N"]), "mean": float(lat["mean"]), "max": int(lat["max"])}
    for p, name in PERCENTILES:
        out[name] = int(pct[percentile_key(p)])
    cdf = [[0.0, int(lat["min"])]]
    cdf += [[p, int(pct[percentile_key(p)])] for p in FIO_PERCENTILES]
    cdf.append([100.0, int(lat["max"])])
    out["cdf"] = cdf
    return out


def is_boot_storm(s: Scenario) -> bool:
    """True when guests start or reboot (``start`` / ``reboot`` events), or when every guest
    group is a synthetic ``boot`` (or idles): a storm with a completion time."""
    if any(e.kind in (HostEventKind.START, HostEventKind.REBOOT) for e in s.events):
        return True
    kinds = [getattr(g.workload, "kind", "") for g in s.guests]
    return "boot" in kinds and all(k in ("boot", "idle") for k in kinds)


def boot_completion_ns(summary: Mapping[str, Any], s: Scenario) -> int | None:
    """How long a boot storm took (None if unfinished): with guest starts, from the first
    start to the last guest with every queue's interrupts on (:mod:`hostsim.starts`); for a
    synthetic ``boot`` storm, first AQIC issued to last one resumed.

    Only defined for a boot storm (:func:`is_boot_storm`); a guest not ready, or a request
    still open, at the end of the run means the storm did not finish.
    """
    st = summary.get("starts") or {}
    if st.get("n"):
        return int(st["storm_ns"]) if st["ready"] == st["n"] else None
    span = summary.get("span") or {}
    first, last = int(span.get("first_issue_ns", -1)), int(span.get("last_resume_ns", -1))
    if not is_boot_storm(s) or first < 0 or last < 0 or summary["counts"].get("incomplete", 0):
        return None
    return last - first


def run_metrics(summary: Mapping[str, Any], s: Scenario) -> dict[str, Any]:
    """The compact row of one run: what a sweep keeps of its summary (latencies in ns)."""
    mutex = summary["mutex"]
    counts = summary["counts"]
    paths = {"all": _lat(summary["all"]["lat_ns"])}
    for name in PATH_NAMES:
        p = summary["paths"].get(name)
        if p and p["N"]:
            paths[name] = _lat(p["lat_ns"])
    return {
        "offered_per_s": offered_per_s(s),
        "throughput_per_s": float(summary["throughput_per_s"]),
        "completed_in_window": int(counts["completed_in_window"]),
        "measured": int(counts["measured"]),
        "incomplete": int(counts["incomplete"]),
        "mutex_utilisation": float(mutex["utilisation"]),
        "mutex_wait_mean_ns": float(mutex["wait_ns"]["mean"]),
        "mutex_wait_p99_ns": int(mutex["wait_ns"]["percentile"][percentile_key(99.0)]),
        "mutex_wait_n": int(mutex["wait_ns"]["N"]),
        "mutex_hold_mean_ns": float(mutex["hold_ns"]["mean"]),
        "boot_storm": is_boot_storm(s),
        "boot_completion_ns": boot_completion_ns(summary, s),
        "paths": paths,
    }


def _run_value(run: Mapping[str, Any], column: str) -> float:
    """One run's value of a table column (NaN when the run has no such samples)."""
    if column in ("offered_per_s", "throughput_per_s", "mutex_utilisation"):
        return float(run[column])
    if column == "mutex_wait_mean_us":
        return float(run["mutex_wait_mean_ns"]) / 1000 if run["mutex_wait_n"] else math.nan
    if column == "mutex_wait_p99_us":
        return float(run["mutex_wait_p99_ns"]) / 1000 if run["mutex_wait_n"] else math.nan
    if column == "boot_completion_ms":
        v = run.get("boot_completion_ns")
        return math.nan if v is None else v / 1e6
    for name in ("all", *PATH_NAMES):
        stat = column[len(name) + 1 :]
        if column.startswith(name + "_") and stat in PATH_STATS:
            break
    else:
        raise KeyError(f"not a sweep table metric: {column!r}")
    p = run["paths"].get(name)
    if stat == "n":
        return float(p["N"]) if p else 0.0
    if not p or not p["N"]:
        return math.nan
    key = stat.removesuffix("_us")
    return float(p[key]) / 1000


def metric_columns(runs: Iterable[Mapping[str, Any]]) -> list[str]:
    """Metric column names for these runs: run metrics, then ``all`` and each path with samples."""
    runs = list(runs)
    present = {name for r in runs for name, p in r["paths"].items() if p["N"]}
    paths = ["all", *(n for n in PATH_NAMES if n in present)]
    boot = ["boot_completion_ms"] if any(r.get("boot_storm") for r in runs) else []
    return [*RUN_METRICS, *boot, *(f"{p}_{stat}" for p in paths for stat in PATH_STATS)]


def aggregate(
    factor_keys: Sequence[str],
    points: Sequence[Sequence[Any]],
    runs_by_point: Sequence[Sequence[Mapping[str, Any]]],
) -> dict[str, list[Any]]:
    """The sweep table as columns: one row per point, factor values, then mean and CI columns.

    ``runs_by_point[i]`` holds the finished runs of point ``i`` in replication order.
    """
    all_runs = [r for rs in runs_by_point for r in rs]
    metrics = metric_columns(all_runs)
    cols: dict[str, list[Any]] = {k: [] for k in factor_keys}
    cols["replications"] = []
    for m in metrics:
        cols[m] = []
        cols[f"{m}_ci95"] = []
        cols[f"{m}_lo"] = []
        cols[f"{m}_hi"] = []
    for values, runs in zip(points, runs_by_point, strict=True):
        for k, v in zip(factor_keys, values, strict=True):
            cols[k].append(v)
        cols["replications"].append(len(runs))
        for m in metrics:
            values = [_run_value(r, m) for r in runs]
            mean, ci, _ = mean_ci95(values)
            lo, hi = interval95(values, _UPPER.get(m))
            cols[m].append(_sig(mean))
            cols[f"{m}_ci95"].append(_sig(ci))
            cols[f"{m}_lo"].append(_sig(lo))
            cols[f"{m}_hi"].append(_sig(hi))
    return cols


# --- files --------------------------------------------------------------------------------------
def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return "" if math.isnan(v) else repr(float(f"{v:.12g}"))
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def to_csv_text(cols: Mapping[str, Sequence[Any]]) -> str:
    """The table as CSV text (``\\n`` line ends, NaN as an empty cell)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    names = list(cols)
    w.writerow(names)
    n = len(next(iter(cols.values()))) if cols else 0
    for i in range(n):
        w.writerow([_cell(cols[c][i]) for c in names])
    return buf.getvalue()


def _arrow_column(values: Sequence[Any]) -> pa.Array:
    if values and all(isinstance(v, bool) for v in values):
        return pa.array(values, pa.bool_())
    if values and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return pa.array(values, pa.int64())
    if values and all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return pa.array([float(v) for v in values], pa.float64())
    return pa.array([_cell(v) for v in values], pa.string())


def to_arrow(cols: Mapping[str, Sequence[Any]]) -> pa.Table:
    """The table as an Arrow table (mixed-type factor columns become strings)."""
    return pa.table({k: _arrow_column(list(v)) for k, v in cols.items()})


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary sibling and ``os.replace``."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def write_table(cols: Mapping[str, Sequence[Any]], stem: Path) -> tuple[Path, Path]:
    """Write ``<stem>.parquet`` and ``<stem>.csv`` atomically; returns both paths."""
    pq_path, csv_path = stem.with_suffix(".parquet"), stem.with_suffix(".csv")
    sink = pa.BufferOutputStream()
    pq.write_table(to_arrow(cols), sink, compression="zstd")
    write_atomic(pq_path, sink.getvalue().to_pybytes())
    write_atomic(csv_path, to_csv_text(cols).encode("utf-8"))
    return pq_path, csv_path


def read_table(path: str | Path) -> dict[str, list[Any]]:
    """A table written by :func:`write_table` (the Parquet file) as a dict of columns."""
    return pq.read_table(path).to_pydict()


def format_text(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain right-aligned text table."""
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows, strict=True)]
    lines = ["  ".join(str(c).rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    head = "  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True))
    return "\n".join([head, *lines]) + "\n"
