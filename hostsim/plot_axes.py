"""Plots that draw on a matplotlib ``Axes`` the caller owns (notebooks, the library API).

These never create, save or close a figure and never touch the backend; the PNG files of
``hostsim plot`` (:mod:`hostsim.plot_run`) are drawn with the same functions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from matplotlib.axes import Axes

from hostsim.plot_style import PATH_COLORS, PATH_LABELS, style_axes, us_formatter
from hostsim.records import PATH_NAMES


def latencies_by_path(path: np.ndarray, lat_ns: np.ndarray) -> dict[str, np.ndarray]:
    """Sorted latencies (ns): ``"all"`` first, then each path with samples, in path order."""
    out = {"all": np.sort(lat_ns)}
    for i, name in enumerate(PATH_NAMES):
        v = lat_ns[path == i]
        if v.size:
            out[name] = np.sort(v)
    return out


def draw_latency_cdf(ax: Axes, lats: Mapping[str, np.ndarray], *, tail: bool = False) -> Axes:
    """The latency CDF of each entry of ``lats`` (sorted ns, by path name) in µs on a log x
    axis; ``tail``: 1 - CDF on log-log axes with the p99 and p99.9 levels marked."""
    total = max((v.size for v in lats.values()), default=0)
    for name, v in lats.items():
        us = np.asarray(v) / 1000
        n = us.size
        if n == 0:
            continue
        kw: dict[str, Any] = {
            "color": PATH_COLORS.get(name, "grey"),
            "lw": 2.2 if name == "all" else 1.6,
            "ls": "--" if name == "all" else "-",
            "label": f"{PATH_LABELS.get(name, name)} (N={n:,})",
            "drawstyle": "steps-post",
        }
        # Tail: 1 - F just below each sample, so the last sample sits at 1/N, not 0.
        y = 1 - (np.arange(n) / n) if tail else np.arange(1, n + 1) / n
        ax.plot(us, y, **kw)
    ax.set_xscale("log")
    ax.set_xlabel("latency, issue to resume (µs, log scale)")
    us_formatter(ax)
    style_axes(ax)
    if not tail:
        ax.set_ylabel("fraction of requests at or below")
        ax.set_ylim(0, 1.01)
        ax.set_title("Latency CDF per path")
        return ax
    ax.set_yscale("log")
    ax.set_ylabel("fraction of requests above (1 - CDF, log scale)")
    ax.set_title("Tail: where p99 and p99.9 fall")
    lo = 0.5 / max(total, 1)
    ax.set_ylim(lo, 1.5)
    for q, txt in ((1e-2, "p99"), (1e-3, "p99.9")):
        if q > lo:
            ax.axhline(q, color="grey", lw=0.8, ls=":")
            ax.annotate(
                txt,
                (0, q),
                xycoords=("axes fraction", "data"),
                xytext=(4, 3),
                textcoords="offset points",
                ha="left",
                fontsize=8,
                color="dimgrey",
            )
    return ax


def draw_latency_timeline(
    ax: Axes, path: np.ndarray, t_issue_ns: np.ndarray, lat_ns: np.ndarray
) -> Axes:
    """Each request's latency (µs, log) against its issue time (ms), coloured by path."""
    order = sorted(range(len(PATH_NAMES)), key=lambda i: -int(np.count_nonzero(path == i)))
    for i in order:  # the commonest path first, so rare paths are drawn on top
        name = PATH_NAMES[i]
        m = path == i
        if m.any():
            rare = int(m.sum()) < 2000
            ax.scatter(
                t_issue_ns[m] / 1e6,
                lat_ns[m] / 1000,
                s=14 if rare else 4,
                alpha=0.8 if rare else 0.5,
                lw=0,
                color=PATH_COLORS.get(name, "grey"),
                label=f"{PATH_LABELS.get(name, name)} (N={int(m.sum()):,})",
                rasterized=True,
            )
    ax.set_yscale("log")
    ax.set_xlabel("issue time (ms)")
    ax.set_ylabel("latency, issue to resume (µs, log scale)")
    us_formatter(ax, "y")
    style_axes(ax)
    return ax
