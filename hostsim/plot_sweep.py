"""Plots of a sweep folder (``hostsim sweep``).

* ``latency_vs_load.png``: p50 and p99 per path against the load factor, one line per combination
  of the other factors, 95 % CI bands, the knee marked;
* ``throughput_mutex_vs_load.png``: throughput (and the offered load), mutex utilisation and
  mutex wait p99 against the load factor;
* ``cdf_by_load.png``: the latency CDF of the knee path at each load (replication 0), and its
  tail (1 - CDF, log-log) below it;
* ``p99_vs_guests.png``: p99 and p99.9 against a guest-count factor (``guests.N.count``);
* ``boot_storm_vs_guests.png``: boot-storm completion time against the guest count, for sweeps
  of boot storms (guest ``start`` events, or every group ``kind = "boot"``); skipped with a
  note otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes

from hostsim.plot_style import (
    PATH_LABELS,
    color_cycle,
    save_figure,
    style_axes,
    subplots,
    us_formatter,
)
from hostsim.plot_sweep_data import SweepFolder, guest_factor, paths_in, runs_by_point
from hostsim.sweep_spec import label

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def _band(
    ax: Axes,
    x: np.ndarray,
    y: np.ndarray,
    band: tuple[np.ndarray, np.ndarray],
    color: Any,
    **kw: Any,
) -> None:
    """The mean line and its 95 % interval as a band (no band where the interval is unknown)."""
    ok = np.isfinite(y)
    kw.setdefault("marker", "o")
    ax.plot(x[ok], y[ok], color=color, ms=4.5, **kw)
    lo, hi = band
    has = ok & np.isfinite(lo) & np.isfinite(hi)
    if ax.get_yscale() == "log":
        has &= lo > 0
    if has.any():
        ax.fill_between(
            x, np.where(has, lo, np.nan), np.where(has, hi, np.nan), color=color, alpha=0.18, lw=0
        )


def _mark_knee(ax: Axes, knee: Mapping[str, str], color: Any, y: float | None) -> None:
    x = float(knee["knee_load"])
    ax.axvline(x, color=color, ls=":", lw=1.4)
    if y is not None and math.isfinite(y):
        ax.plot([x], [y], marker="X", ms=11, color=color, mec="black", mew=0.8, zorder=5)
    ax.annotate(
        f"knee {x:g} ({knee['criterion']})",
        (x, 0.03),
        xycoords=("data", "axes fraction"),
        xytext=(3, 0),
        textcoords="offset points",
        va="bottom",
        fontsize=8,
        color=color,
        rotation=90,
        bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none", "alpha": 0.8},
    )


def plot_latency_vs_load(sw: SweepFolder, out: Path, x_key: str, name: str) -> Path:
    """p50 (dashed) and p99 (solid) per path against ``x_key``, CI bands, knees marked."""
    paths = paths_in(sw)
    ncol = min(2, len(paths))
    nrow = math.ceil(len(paths) / ncol)
    fig, axes = subplots(
        nrow, ncol, figsize=(6.5 * ncol, 4.2 * nrow), squeeze=False, layout="constrained"
    )
    groups = sw.groups(x_key)
    colors = color_cycle(len(groups))
    for ax, path in zip(axes.flat, paths, strict=False):
        ax.set_yscale("log")
        for j, ((g, idx), c) in enumerate(zip(groups, colors, strict=True)):
            mk = MARKERS[j % len(MARKERS)]
            x = sw.col(x_key, idx)
            p99 = sw.col(f"{path}_p99_us", idx)
            band = sw.interval(f"{path}_p99_us", idx)
            _band(ax, x, p99, band, c, lw=2, marker=mk, label=f"{g} p99")
            p50 = sw.col(f"{path}_p50_us", idx)
            band = sw.interval(f"{path}_p50_us", idx)
            _band(ax, x, p50, band, c, lw=1.2, ls="--", marker=mk, alpha=0.8)
            knee = sw.knee_for(g, x_key)
            if knee is not None and path == sw.knee_path:
                kx = float(knee["knee_load"])
                y = sw.col(f"{path}_{sw.knee_pct}_us", idx)[np.isclose(x, kx)]
                _mark_knee(ax, knee, c, float(y[0]) if y.size else None)
        ax.set_title(
            PATH_LABELS.get(path, path) + ("  (knee path)" if path == sw.knee_path else "")
        )
        ax.set_xlabel(label(x_key))
        ax.set_ylabel("latency (µs, log scale)")
        us_formatter(ax, "y")
        style_axes(ax)
    for ax in list(axes.flat)[len(paths) :]:
        ax.set_visible(False)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    handles.append(matplotlib.lines.Line2D([], [], color="grey", ls="--", lw=1.2))
    labels.append("p50 (dashed, same colour)")
    fig.legend(
        handles,
        labels,
        loc="outside right upper",
        fontsize=8,
        title=sw.legend_title(x_key),
        title_fontsize=8,
    )
    fig.suptitle(f"Latency percentiles vs {label(x_key)}\n{sw.title()}", fontsize=11)
    return save_figure(fig, out / name)


def plot_throughput_mutex(sw: SweepFolder, out: Path) -> Path:
    """Throughput vs offered, mutex utilisation and mutex wait p99 against the load factor."""
    assert sw.load is not None
    x_key = sw.load
    fig, axes = subplots(1, 3, figsize=(17, 5), layout="constrained")
    groups = sw.groups(x_key)
    colors = color_cycle(len(groups))
    thr, util, wait = axes
    wait.set_yscale("log")
    offered: tuple[np.ndarray, np.ndarray] | None = None
    for j, ((g, idx), c) in enumerate(zip(groups, colors, strict=True)):
        mk = MARKERS[j % len(MARKERS)]
        x = sw.col(x_key, idx)
        t = sw.col("throughput_per_s", idx)
        _band(thr, x, t, sw.interval("throughput_per_s", idx), c, lw=2, marker=mk, label=g)
        off = sw.col("offered_per_s", idx)
        if offered is None and np.nanmax(off) > 0:
            offered = (x, off)
        u = 100 * sw.col("mutex_utilisation", idx)
        u_lo, u_hi = sw.interval("mutex_utilisation", idx)
        _band(util, x, u, (100 * u_lo, 100 * u_hi), c, lw=2, marker=mk, label=g)
        w = sw.col("mutex_wait_p99_us", idx)
        w = np.where(w > 0, w, np.nan)  # a zero wait has no place on a log axis
        _band(wait, x, w, sw.interval("mutex_wait_p99_us", idx), c, lw=2, marker=mk, label=g)
        knee = sw.knee_for(g, x_key)
        if knee is not None:
            y = t[np.isclose(x, float(knee["knee_load"]))]
            _mark_knee(thr, knee, c, float(y[0]) if y.size else None)
    if offered is not None:
        thr.plot(*offered, color="grey", ls="--", lw=1.2, label="offered (open-loop groups)")
    util.axhline(100, color="grey", lw=0.8, ls=":")
    thr.yaxis.set_major_formatter(matplotlib.ticker.StrMethodFormatter("{x:,.0f}"))
    thr.set_title("Throughput (requests per simulated second)")
    thr.set_ylabel("requests/s")
    util.set_title(
        "Mutex utilisation (held time / window;\nper-mdev: summed over the guests' mutexes)"
    )
    util.set_ylabel("utilisation (%)")
    util.set_ylim(bottom=0)
    wait.set_title("Mutex wait p99 (requests that took the mutex)")
    wait.set_ylabel("wait (µs, log scale)")
    us_formatter(wait, "y")
    for ax in axes:
        ax.set_xlabel(label(x_key))
        style_axes(ax)
    thr.legend(fontsize=8, title=sw.legend_title(x_key), title_fontsize=8)
    fig.suptitle(f"Throughput and the vfio_ap mutex vs {label(x_key)}\n{sw.title()}", fontsize=11)
    return save_figure(fig, out / "throughput_mutex_vs_load.png")


def plot_cdf_by_load(sw: SweepFolder, out: Path, max_panels: int = 6) -> Path | None:
    """The knee path's latency distribution at each load, per combination of the other factors.

    Each combination has two panels: the CDF (log µs) and below it the tail, 1 - CDF on log-log
    axes, where p99 and p99.9 are as far apart as p50 and p90 (on the linear CDF they are a few
    pixels under the top edge)."""
    assert sw.load is not None
    runs = runs_by_point(sw)
    groups = sw.groups(sw.load)
    if not runs or not groups or len(groups) > max_panels:
        return None
    ncol = min(3, len(groups))
    nrow = math.ceil(len(groups) / ncol)
    fig, axes = subplots(
        2 * nrow,
        ncol,
        figsize=(5.6 * ncol, 7.6 * nrow),
        squeeze=False,
        sharex="col",
        layout="constrained",
    )
    loads = sorted({float(v) for v in sw.t[sw.load]})
    cmap = plt.get_cmap("viridis")
    norm = matplotlib.colors.Normalize(min(loads), max(loads) if len(loads) > 1 else min(loads) + 1)
    name = PATH_LABELS.get(sw.knee_path, sw.knee_path)
    for k, (g, idx) in enumerate(groups):
        ax, tail = axes[2 * (k // ncol), k % ncol], axes[2 * (k // ncol) + 1, k % ncol]
        for i in idx:
            vals = tuple(sw.t[key][i] for key in sw.keys)
            r = runs.get(vals)
            p = None if r is None else r["paths"].get(sw.knee_path)
            if not p:
                continue
            cdf = np.array(p["cdf"], dtype=float)
            c = cmap(norm(float(sw.t[sw.load][i])))
            ax.plot(cdf[:, 1] / 1000, cdf[:, 0] / 100, color=c, lw=1.6, marker=".")
            body = cdf[cdf[:, 0] < 100]  # the max has no tail left to draw
            tail.plot(body[:, 1] / 1000, 1 - body[:, 0] / 100, color=c, lw=1.6, marker=".")
        ax.set_xscale("log")
        ax.set_title(g if g != "all points" else name)
        ax.set_ylim(0, 1.02)
        ax.set_ylabel("fraction at or below")
        tail.set_xscale("log")
        tail.set_yscale("log")
        tail.set_ylabel("fraction above (1 - CDF)")
        for q, lbl in ((1e-2, "p99"), (1e-3, "p99.9")):
            tail.axhline(q, color="grey", lw=0.7, ls=":")
            tail.annotate(
                lbl,
                (1, q),
                xycoords=("axes fraction", "data"),
                xytext=(-3, 2),
                textcoords="offset points",
                ha="right",
                fontsize=7,
                color="dimgrey",
            )
        tail.set_xlabel(f"{name} latency (µs, log scale)")
        us_formatter(tail)
        style_axes(ax)
        style_axes(tail)
    for k in range(len(groups), nrow * ncol):
        axes[2 * (k // ncol), k % ncol].set_visible(False)
        axes[2 * (k // ncol) + 1, k % ncol].set_visible(False)
    sm = matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap)
    fig.colorbar(sm, ax=axes, label=label(sw.load), shrink=0.9)
    fig.suptitle(
        f"Latency distribution at each {label(sw.load)}: CDF and tail (replication 0; fio"
        f" percentiles)\n{sw.title(ci=False)}",
        fontsize=11,
    )
    return save_figure(fig, out / "cdf_by_load.png")


def plot_p99_vs_guests(sw: SweepFolder, out: Path, gk: str) -> Path:
    """p99 (solid) and p99.9 (dotted) of all requests against the guest count, CI bands."""
    fig, ax = subplots(figsize=(9, 5.4), layout="constrained")
    ax.set_yscale("log")
    groups = sw.groups(gk)
    for j, ((g, idx), c) in enumerate(zip(groups, color_cycle(len(groups)), strict=True)):
        mk = MARKERS[j % len(MARKERS)]
        x = sw.col(gk, idx)
        p99 = sw.col("all_p99_us", idx)
        _band(ax, x, p99, sw.interval("all_p99_us", idx), c, lw=2, marker=mk, label=f"{g} p99")
        p999 = sw.col("all_p999_us", idx)
        band = sw.interval("all_p999_us", idx)
        _band(ax, x, p999, band, c, lw=1.2, ls=":", marker=mk, label=f"{g} p99.9")
        knee = sw.knee_for(g, gk)
        if knee is not None and sw.knee_path == "all":
            y = sw.col(f"all_{sw.knee_pct}_us", idx)[np.isclose(x, float(knee["knee_load"]))]
            _mark_knee(ax, knee, c, float(y[0]) if y.size else None)
    ax.set_xlabel(f"{label(gk)} (guests in the group)")
    ax.set_ylabel("latency, all requests (µs, log scale)")
    us_formatter(ax, "y")
    style_axes(ax)
    ax.legend(fontsize=8, title=sw.legend_title(gk), title_fontsize=8)
    fig.suptitle(f"p99 and p99.9 latency vs guest count\n{sw.title()}", fontsize=11)
    return save_figure(fig, out / "p99_vs_guests.png")


def plot_boot_storm(sw: SweepFolder, out: Path, gk: str) -> Path:
    """Boot-storm completion time (first AQIC to last resume) against the guest count."""
    fig, ax = subplots(figsize=(9, 5.4), layout="constrained")
    groups = sw.groups(gk)
    for j, ((g, idx), c) in enumerate(zip(groups, color_cycle(len(groups)), strict=True)):
        x = sw.col(gk, idx)
        y = sw.col("boot_completion_ms", idx)
        band = sw.interval("boot_completion_ms", idx)
        _band(ax, x, y, band, c, lw=2, marker=MARKERS[j % len(MARKERS)], label=g)
    ax.set_xlabel(f"{label(gk)} (guests booting)")
    ax.set_ylabel("boot storm completion (ms of simulated time)")
    ax.set_ylim(bottom=0)
    style_axes(ax)
    ax.legend(fontsize=8, title=sw.legend_title(gk), title_fontsize=8)
    fig.suptitle(
        f"Boot storm: completion (first start to last guest ready), vs guest count\n{sw.title()}",
        fontsize=11,
    )
    return save_figure(fig, out / "boot_storm_vs_guests.png")


def plot_sweep(folder: str | Path, out_dir: str | Path) -> tuple[list[Path], list[str]]:
    """Every plot a sweep folder supports; returns (files written, notes on what was skipped)."""
    sw = SweepFolder(Path(folder))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    made: list[Path] = []
    notes: list[str] = []
    if sw.load is None:
        notes.append("no numeric factor: nothing to plot against a load")
    else:
        made.append(plot_latency_vs_load(sw, out, sw.load, "latency_vs_load.png"))
        made.append(plot_throughput_mutex(sw, out))
        cdf = plot_cdf_by_load(sw, out)
        if cdf is not None:
            made.append(cdf)
        else:
            notes.append("cdf_by_load.png skipped (no run files, or too many factor combinations)")
    gk = guest_factor(sw)
    if gk is not None:
        made.append(plot_p99_vs_guests(sw, out, gk))
        boot = sw.col("boot_completion_ms", np.arange(sw.n))
        if np.isfinite(boot).any():
            made.append(plot_boot_storm(sw, out, gk))
        else:
            notes.append(
                "boot_storm_vs_guests.png skipped: no boot-storm completion time in these results"
                " (a sweep of scenarios with guest start events has one)"
            )
    else:
        notes.append(
            "p99_vs_guests.png and boot_storm_vs_guests.png skipped: no guests.N.count factor"
        )
    return made, notes
