"""Plots of one run's result folder (``hostsim run``).

* ``latency_cdf.png``: latency CDF per path (log µs) and the tail (1 - CDF) on log-log axes;
* ``latency_timeline.png``: every request's latency against its issue time, host events marked
  (each one named when there are few; with many, as in a boot storm, only as lines);
* ``boot_storm.png`` for a run with guest starts or reboots: each start's parts and the guests
  ready over time, on the storm's own span (:mod:`hostsim.plot_storm`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from hostsim.plot_axes import draw_latency_cdf, latencies_by_path
from hostsim.plot_storm import plot_boot_storm
from hostsim.plot_style import (
    PATH_COLORS,
    PATH_LABELS,
    PlotError,
    save_figure,
    style_axes,
    subplots,
    us_formatter,
)
from hostsim.records import HOST_EVENT_DTYPE, PATH_NAMES
from hostsim.results import (
    HOST_EVENTS_FILE,
    RECORDS_FILE,
    SUMMARY_FILE,
    read_columns,
    read_host_events,
)
from hostsim.scenario_types import HostEventKind

MAX_TIMELINE_POINTS = 60_000
#: Host events named on the timeline; beyond this many they are drawn as lines only.
MAX_NAMED_EVENTS = 12


def _run_title(summary: Mapping[str, Any]) -> str:
    m = summary.get("hostsim", {})
    return (
        f"{m.get('scenario', '?')}: {m.get('guests', '?')} guests, {m.get('vcpus', '?')} vCPUs, "
        f"{m.get('variant', '?')}, {m.get('lock_model', '?')} lock, seed {m.get('seed', '?')}"
    )


def _measured_latencies(folder: Path, summary: Mapping[str, Any]) -> dict[str, np.ndarray]:
    t = read_columns(folder / RECORDS_FILE, "records", ["path", "t_issue", "t_resume"])
    path, t_issue, t_resume = t["path"], t["t_issue"], t["t_resume"]
    start = int(summary.get("window", {}).get("start_ns", 0))
    ok = (t_issue >= start) & (t_resume >= 0)
    return latencies_by_path(path[ok], (t_resume - t_issue)[ok])


def plot_latency_cdf(folder: str | Path, out_dir: str | Path) -> Path:
    """Latency CDF per path (left) and its tail 1 - CDF (right), in µs on log axes."""
    folder = Path(folder)
    summary = json.loads((folder / SUMMARY_FILE).read_text(encoding="utf-8"))
    lats = _measured_latencies(folder, summary)
    if lats["all"].size == 0:
        raise PlotError(f"{folder}: no measured requests to plot")
    fig, (ax, tail) = subplots(1, 2, figsize=(13, 5.6), layout="constrained")
    draw_latency_cdf(ax, lats)
    draw_latency_cdf(tail, lats, tail=True)
    ax.legend(loc="lower right", fontsize=8, framealpha=0.9)
    fig.suptitle(_run_title(summary), fontsize=11)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return save_figure(fig, out / "latency_cdf.png")


def plot_latency_timeline(folder: str | Path, out_dir: str | Path) -> Path:
    """Each request's latency against its issue time (log µs), host events as vertical lines."""
    folder = Path(folder)
    summary = json.loads((folder / SUMMARY_FILE).read_text(encoding="utf-8"))
    t = read_columns(folder / RECORDS_FILE, "records", ["path", "t_issue", "t_resume"])
    path, t_issue, t_resume = t["path"], t["t_issue"], t["t_resume"]
    done = t_resume >= 0
    path, t_issue, lat = path[done], t_issue[done], (t_resume - t_issue)[done]
    if lat.size == 0:
        raise PlotError(f"{folder}: no finished requests to plot")
    keep = np.ones(lat.size, bool)
    if lat.size > MAX_TIMELINE_POINTS:  # thin the body, keep every request above p99
        rng = np.random.default_rng(0)
        cut = np.quantile(lat, 0.99)
        frac = MAX_TIMELINE_POINTS / lat.size
        keep = (lat >= cut) | (rng.random(lat.size) < frac)
    fig, ax = subplots(figsize=(13, 5.6), layout="constrained")
    order = sorted(range(len(PATH_NAMES)), key=lambda i: -int(np.count_nonzero(path == i)))
    for i in order:  # the commonest path first, so rare paths are drawn on top
        name = PATH_NAMES[i]
        m = keep & (path == i)
        if m.any():
            rare = int(m.sum()) < 2000
            ax.scatter(
                t_issue[m] / 1e6,
                lat[m] / 1000,
                s=14 if rare else 4,
                alpha=0.8 if rare else 0.5,
                lw=0,
                color=PATH_COLORS[name],
                label=PATH_LABELS[name],
                rasterized=True,
            )
    ax.set_yscale("log")
    us_formatter(ax, "y")
    start = summary.get("window", {}).get("start_ns", 0) / 1e6
    if start > 0:
        ax.axvspan(0, start, color="grey", alpha=0.12, lw=0)
        ax.annotate(
            "warm-up",
            (start / 2, 1),
            xycoords=("data", "axes fraction"),
            xytext=(0, -12),
            textcoords="offset points",
            ha="center",
            fontsize=8,
            color="dimgrey",
        )
    has_events = (folder / HOST_EVENTS_FILE).exists()
    ev = read_host_events(folder) if has_events else np.zeros(0, HOST_EVENT_DTYPE)
    many = len(ev) > MAX_NAMED_EVENTS
    lw, alpha = (0.5, 0.35) if many else (1.0, 0.8)
    for e in ev:
        x = e["t_at"] / 1e6
        ax.axvline(x, color="crimson", lw=lw, ls="--", alpha=alpha)
        if many:
            continue
        kind = HostEventKind(int(e["kind"])).name.lower()
        ax.annotate(
            f"{kind} (guest {int(e['guest'])})",
            (x, 1),
            xycoords=("data", "axes fraction"),
            xytext=(3, -12),
            textcoords="offset points",
            fontsize=8,
            color="crimson",
        )
    ax.set_xlabel("issue time (ms of simulated time)")
    ax.set_ylabel("latency, issue to resume (µs, log scale)")
    events = f"{len(ev)} host events" if many else "host events"
    ax.set_title(f"Request latency over the run ({events} dashed)")
    ax.set_xlim(0, summary.get("window", {}).get("end_ns", t_issue.max()) / 1e6)
    style_axes(ax)
    ax.legend(loc="center right", fontsize=8, markerscale=2, framealpha=0.95)
    fig.suptitle(_run_title(summary), fontsize=11)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return save_figure(fig, out / "latency_timeline.png")


def plot_result(folder: str | Path, out_dir: str | Path) -> tuple[list[Path], list[str]]:
    """Every plot of a run's result folder; returns (files written, notes)."""
    folder = Path(folder)
    if not (folder / RECORDS_FILE).exists():
        raise PlotError(f"{folder}: no {RECORDS_FILE}")
    made = [plot_latency_cdf(folder, out_dir), plot_latency_timeline(folder, out_dir)]
    summary = json.loads((folder / SUMMARY_FILE).read_text(encoding="utf-8"))
    if (summary.get("starts") or {}).get("events"):
        made.append(plot_boot_storm(summary, Path(out_dir)))
    return made, []
