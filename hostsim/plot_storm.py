"""The boot-storm plot of one run (``boot_storm.png``), scaled to the storm's own span.

A run with guest ``start`` or ``reboot`` events has a ``starts`` section in its summary
(:mod:`hostsim.starts`). Its plot has two panels over the same time axis, from the first start
to the last guest ready (not the whole run, which may be many times longer):

* one bar per start, from the event to the guest's ready time, in the parts hostsim splits it
  into (the host's lock wait and work, the guest's boot, its enable burst); a start whose guest
  never got ready is a grey bar to the end of the span;
* how many guests are ready over time.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from hostsim.plot_style import PlotError, save_figure, style_axes, subplots
from hostsim.starts import PARTS

PART_COLORS = {
    "lock_wait": "#d62728",
    "host_work": "#ff7f0e",
    "boot": "#9ecae1",
    "enable_burst": "#2ca02c",
}
PART_LABELS = {
    "lock_wait": "host: waiting for locks",
    "host_work": "host: open, APCB update, reset",
    "boot": "guest boot and AP bus probe",
    "enable_burst": "guest's enable burst",
}


def storm_span_ms(starts: Mapping[str, Any]) -> tuple[float, float]:
    """The storm's span in ms, ``(first start, last ready)``; the last start when none is ready."""
    rows = starts.get("events") or []
    if not rows:
        raise PlotError("no guest starts or reboots in this run")
    t0 = min(r["at_ns"] for r in rows)
    ends = [r["at_ns"] + r["ready_ns"] for r in rows if r["ready_ns"] is not None]
    t1 = max(ends) if ends else max(r["at_ns"] for r in rows)
    return t0 / 1e6, max(t1, t0 + 1) / 1e6


def plot_boot_storm(summary: Mapping[str, Any], out: Path) -> Path:
    """``boot_storm.png`` from a run summary's ``starts`` section (module docstring)."""
    starts = summary.get("starts") or {}
    rows = sorted(starts.get("events") or [], key=lambda r: (r["at_ns"], r["event"]))
    t0, t1 = storm_span_ms(starts)
    pad = 0.03 * (t1 - t0)
    n = len(rows)
    fig, (gantt, ready) = subplots(
        2,
        1,
        figsize=(12, 3.2 + min(0.045 * n, 7.0) + 2.6),
        sharex=True,
        height_ratios=[max(1.2, min(0.045 * n, 7.0)), 1.6],
        layout="constrained",
    )
    y = np.arange(n)
    left = np.array([r["at_ns"] / 1e6 for r in rows])
    h = 0.8 if n <= 60 else 1.0
    for p in PARTS:
        width = np.array([(r[p] or 0) / 1e6 if r["ready_ns"] is not None else 0.0 for r in rows])
        gantt.barh(y, width, left=left, height=h, color=PART_COLORS[p], lw=0, label=PART_LABELS[p])
        left = left + width
    stuck = np.array([r["ready_ns"] is None for r in rows])
    if stuck.any():
        at = np.array([r["at_ns"] / 1e6 for r in rows])[stuck]
        gantt.barh(y[stuck], t1 - at, left=at, height=h, color="lightgrey", lw=0, label="not ready")
    gantt.invert_yaxis()
    gantt.set_ylabel(f"guest starts ({n}), in start order")
    if n > 30:
        gantt.set_yticks([])
    else:
        gantt.set_yticks(y, [r["guest"] for r in rows], fontsize=7)
    gantt.legend(loc="upper right", fontsize=8, framealpha=0.95)
    gantt.set_title("Each start: from the event to every queue enabled")
    style_axes(gantt)
    done = np.sort([(r["at_ns"] + r["ready_ns"]) / 1e6 for r in rows if r["ready_ns"] is not None])
    if done.size:
        ready.step(
            np.concatenate([[t0], done, [t1 + pad]]),
            np.concatenate([[0], np.arange(1, done.size + 1), [done.size]]),
            where="post",
            color="#2ca02c",
            lw=2,
        )
    ready.axhline(n, color="grey", lw=0.8, ls=":")
    ready.set_ylim(0, n * 1.05 + 0.5)
    ready.set_ylabel("guests ready")
    ready.set_xlabel("simulated time (ms)")
    ready.set_xlim(t0 - pad, t1 + pad)
    style_axes(ready)
    storm = starts.get("storm_ns")
    what = f"storm {storm / 1e6:.1f} ms" if storm is not None else "storm not finished"
    fig.suptitle(
        f"Boot storm: {starts.get('ready', 0)} of {n} starts ready, {what} "
        f"(axis: the storm's span, not the {summary.get('window', {}).get('end_ns', 0) / 1e6:g} "
        "ms run)",
        fontsize=11,
    )
    out.mkdir(parents=True, exist_ok=True)
    return save_figure(fig, out / "boot_storm.png")
