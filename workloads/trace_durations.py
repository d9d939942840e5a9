"""Intercept durations per outcome class, from simulated records or a trace: the statistics
(:func:`duration_stats`) and the measured-against-simulated calibration table that
``hostsim replay`` prints after replaying a kernel trace.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hostsim.records import Path as RecPath
from workloads.trace_format import CLASSES, IN_KERNEL, PROGRAM_CHECK, USERSPACE_EXIT


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


def measured_by_class(cls: np.ndarray, dur: np.ndarray) -> dict[str, dict[str, Any]]:
    """:func:`duration_stats` of the durations ``dur`` per outcome class (``cls``: class codes)."""
    return {name: duration_stats(dur[cls == i]) for i, name in enumerate(CLASSES)}


def measured_from_records(records: np.ndarray) -> dict[str, dict[str, Any]]:
    """Simulated intercept durations (``t_resume - t_exit``) per outcome class, as in a trace."""
    return measured_by_class(record_class(records), records["t_resume"] - records["t_exit"])


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
