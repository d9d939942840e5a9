"""PNG plots of a run's result folder or of a sweep folder (matplotlib, Agg backend).

Result folder (``hostsim run``):

* ``latency_cdf.png``: latency CDF per path (log µs) and the tail (1 - CDF) on log-log axes;
* ``latency_timeline.png``: every request's latency against its issue time, host events marked.

Sweep folder (``hostsim sweep``):

* ``latency_vs_load.png``: p50 and p99 per path against the load factor, one line per combination
  of the other factors, 95 % CI bands, the knee marked;
* ``throughput_mutex_vs_load.png``: throughput (and the offered load), mutex utilisation and
  mutex wait p99 against the load factor;
* ``cdf_by_load.png``: the latency CDF of the knee path at each load (replication 0);
* ``p99_vs_guests.png``: p99 and p99.9 against a guest-count factor (``guests.N.count``);
* ``boot_storm_vs_guests.png``: boot-storm completion time against the guest count, for sweeps
  of boot storms (every guest group ``kind = "boot"``); skipped with a note otherwise.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pyarrow.parquet as pq
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from hostsim.records import PATH_NAMES
from hostsim.results import HOST_EVENTS_FILE, RECORDS_FILE, SUMMARY_FILE, read_host_events
from hostsim.scenario_types import HostEventKind
from hostsim.sweep import KNEE_FILE, META_FILE, RUNS_DIR, TABLE_STEM, label
from hostsim.table import read_table

DPI = 120
#: Fixed colour per path, so every plot tells the paths apart the same way.
PATH_COLORS: dict[str, str] = {
    "all": "black",
    "userspace_exit": "tab:purple",
    "program_check": "tab:red",
    "no_hook_rc01": "tab:green",
    "hook_software": "tab:brown",
    "hook_enable": "tab:blue",
    "hook_disable": "tab:orange",
}
PATH_LABELS: dict[str, str] = {
    "all": "all requests",
    "userspace_exit": "exit to userspace",
    "program_check": "program check",
    "no_hook_rc01": "no hook: RC 01, CC 3",
    "hook_software": "hook, no adapter call",
    "hook_enable": "hook: enable",
    "hook_disable": "hook: disable",
}
MAX_TIMELINE_POINTS = 60_000


class PlotError(ValueError):
    """A folder that cannot be plotted."""


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def _style(ax: Axes) -> None:
    ax.grid(True, which="major", alpha=0.35)
    ax.grid(True, which="minor", alpha=0.12)
    ax.spines[["top", "right"]].set_visible(False)


def _tick(v: float) -> str:
    """A log-axis tick label without exponents: 0.5, 2, 100, 10,000."""
    return f"{v:,.0f}" if v >= 1000 else f"{v:g}"


def _us_formatter(ax: Axes, axis: str = "x") -> None:
    """Plain numbers on a log axis (call after plotting); more ticks when the range is narrow."""
    a = ax.xaxis if axis == "x" else ax.yaxis
    lo, hi = ax.get_xlim() if axis == "x" else ax.get_ylim()
    if lo > 0 and hi / lo < 4:  # under a decade: plain evenly spaced ticks read best
        a.set_major_locator(matplotlib.ticker.MaxNLocator(nbins=6))
    elif lo > 0 and hi / lo < 30:
        a.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    a.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: _tick(v)))
    a.set_minor_formatter(matplotlib.ticker.NullFormatter())


# --- result folders -------------------------------------------------------------------------------
def _run_title(summary: Mapping[str, Any]) -> str:
    m = summary.get("hostsim", {})
    return (
        f"{m.get('scenario', '?')}: {m.get('guests', '?')} guests, {m.get('vcpus', '?')} vCPUs, "
        f"{m.get('variant', '?')}, {m.get('lock_model', '?')} lock, seed {m.get('seed', '?')}"
    )


def _measured_latencies(folder: Path, summary: Mapping[str, Any]) -> dict[str, np.ndarray]:
    t = pq.read_table(folder / RECORDS_FILE, columns=["path", "t_issue", "t_resume"])
    path = t.column("path").to_numpy()
    t_issue = t.column("t_issue").to_numpy()
    t_resume = t.column("t_resume").to_numpy()
    start = int(summary.get("window", {}).get("start_ns", 0))
    ok = (t_issue >= start) & (t_resume >= 0)
    lat = (t_resume - t_issue)[ok]
    p = path[ok]
    out = {"all": np.sort(lat)}
    for i, name in enumerate(PATH_NAMES):
        v = lat[p == i]
        if v.size:
            out[name] = np.sort(v)
    return out


def plot_latency_cdf(folder: str | Path, out_dir: str | Path) -> Path:
    """Latency CDF per path (left) and its tail 1 - CDF (right), in µs on log axes."""
    folder = Path(folder)
    summary = json.loads((folder / SUMMARY_FILE).read_text(encoding="utf-8"))
    lats = _measured_latencies(folder, summary)
    if lats["all"].size == 0:
        raise PlotError(f"{folder}: no measured requests to plot")
    fig, (ax, tail) = plt.subplots(1, 2, figsize=(13, 5.6), layout="constrained")
    for name, v in lats.items():
        us = v / 1000
        n = us.size
        y = np.arange(1, n + 1) / n
        kw = {
            "color": PATH_COLORS.get(name, "grey"),
            "lw": 2.2 if name == "all" else 1.6,
            "ls": "--" if name == "all" else "-",
            "label": f"{PATH_LABELS.get(name, name)} (N={n:,})",
            "drawstyle": "steps-post",
        }
        ax.plot(us, y, **kw)
        # Tail: 1 - F just below each sample, so the last sample sits at 1/N, not 0.
        tail.plot(us, 1 - (np.arange(n) / n), **kw)
    for a in (ax, tail):
        a.set_xscale("log")
        a.set_xlabel("latency, issue to resume (µs, log scale)")
        _us_formatter(a)
        _style(a)
    ax.set_ylabel("fraction of requests at or below")
    ax.set_ylim(0, 1.01)
    ax.set_title("Latency CDF per path")
    tail.set_yscale("log")
    tail.set_ylabel("fraction of requests above (1 - CDF, log scale)")
    tail.set_title("Tail: where p99 and p99.9 fall")
    lo = 0.5 / lats["all"].size
    tail.set_ylim(lo, 1.5)
    for q, txt in ((1e-2, "p99"), (1e-3, "p99.9")):
        if q > lo:
            tail.axhline(q, color="grey", lw=0.8, ls=":")
            tail.annotate(
                txt,
                (0, q),
                xycoords=("axes fraction", "data"),
                xytext=(4, 3),
                textcoords="offset points",
                ha="left",
                fontsize=8,
                color="dimgrey",
            )
    ax.legend(loc="lower right", fontsize=8, framealpha=0.9)
    fig.suptitle(_run_title(summary), fontsize=11)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return _save(fig, out / "latency_cdf.png")


def plot_latency_timeline(folder: str | Path, out_dir: str | Path) -> Path:
    """Each request's latency against its issue time (log µs), host events as vertical lines."""
    folder = Path(folder)
    summary = json.loads((folder / SUMMARY_FILE).read_text(encoding="utf-8"))
    t = pq.read_table(folder / RECORDS_FILE, columns=["path", "t_issue", "t_resume"])
    path = t.column("path").to_numpy()
    t_issue = t.column("t_issue").to_numpy()
    t_resume = t.column("t_resume").to_numpy()
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
    fig, ax = plt.subplots(figsize=(13, 5.6), layout="constrained")
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
    _us_formatter(ax, "y")
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
    if (folder / HOST_EVENTS_FILE).exists():
        ev = read_host_events(folder)
        for e in ev:
            x = e["t_at"] / 1e6
            ax.axvline(x, color="crimson", lw=1, ls="--", alpha=0.8)
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
    ax.set_title("Request latency over the run (host events dashed)")
    ax.set_xlim(0, summary.get("window", {}).get("end_ns", t_issue.max()) / 1e6)
    _style(ax)
    ax.legend(loc="center right", fontsize=8, markerscale=2, framealpha=0.95)
    fig.suptitle(_run_title(summary), fontsize=11)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return _save(fig, out / "latency_timeline.png")


# --- sweep folders --------------------------------------------------------------------------------
class _Sweep:
    """A sweep folder read back: its description, table and knees."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
        table = folder / f"{TABLE_STEM}.parquet"
        if not table.exists():
            raise PlotError(f"{folder}: no {table.name}; run the sweep first")
        self.t = read_table(table)
        self.keys: list[str] = [f["key"] for f in self.meta["factors"]]
        self.load: str | None = self.meta.get("load_factor")
        if self.load is None:  # fall back to the first numeric factor
            for f in self.meta["factors"]:
                if all(isinstance(v, int | float) and not isinstance(v, bool) for v in f["values"]):
                    self.load = f["key"]
                    break
        self.others = [k for k in self.keys if k != self.load]
        self.knee_path = self.meta.get("knee", {}).get("path", "all")
        self.knee_pct = self.meta.get("knee", {}).get("percentile", "p99")
        self.knees: list[dict[str, str]] = []
        if (folder / KNEE_FILE).exists():
            import csv

            with open(folder / KNEE_FILE, encoding="utf-8", newline="") as fh:
                self.knees = list(csv.DictReader(fh))
        self.n = len(self.t["replications"])

    def groups(self, x_key: str) -> list[tuple[str, np.ndarray]]:
        """(label, row indices sorted by ``x_key``) per combination of the other factors."""
        others = [k for k in self.keys if k != x_key]
        combos: dict[tuple[Any, ...], list[int]] = {}
        for i in range(self.n):
            if self.t["replications"][i]:
                combos.setdefault(tuple(self.t[k][i] for k in others), []).append(i)
        out = []
        for combo, idx in combos.items():
            idx_a = np.array(idx)
            xs = np.array([float(self.t[x_key][i]) for i in idx])
            name = ", ".join(
                str(v) if len(others) == 1 else f"{label(k)}={v}"
                for k, v in zip(others, combo, strict=True)
            )
            out.append((name or "all points", idx_a[np.argsort(xs, kind="stable")]))
        return out

    def legend_title(self, x_key: str) -> str | None:
        others = [k for k in self.keys if k != x_key]
        return label(others[0]) if len(others) == 1 else None

    def col(self, name: str, idx: np.ndarray) -> np.ndarray:
        if name not in self.t:
            return np.full(idx.size, np.nan)
        return np.array([np.nan if v is None else float(v) for v in np.asarray(self.t[name])[idx]])

    def knee_for(self, group_label: str, x_key: str) -> dict[str, str] | None:
        if x_key != self.load:
            return None
        for k in self.knees:
            name = ", ".join(
                str(k[o]) if len(self.others) == 1 else f"{label(o)}={k[o]}" for o in self.others
            )
            if (name or "all points") == group_label and k.get("knee_load"):
                return k
        return None

    def title(self, ci: bool = True) -> str:
        m = self.meta
        reps = f"{m['replications']} replication{'s' if m['replications'] != 1 else ''} per point"
        return f"sweep {Path(m['sweep_file']).name} on {m['base']}: {reps}" + (
            ", mean ±95 % CI" if ci else ""
        )


def _colors(n: int) -> list[Any]:
    cmap = plt.get_cmap("tab10")
    return [cmap(i % 10) for i in range(n)]


MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def _band(ax: Axes, x: np.ndarray, y: np.ndarray, ci: np.ndarray, color: Any, **kw: Any) -> None:
    ok = np.isfinite(y)
    kw.setdefault("marker", "o")
    ax.plot(x[ok], y[ok], color=color, ms=4.5, **kw)
    lo, hi = y - np.nan_to_num(ci), y + np.nan_to_num(ci)
    if np.isfinite(ci[ok]).any():
        floor = np.nanmin(y[ok]) * 0.5 if ax.get_yscale() == "log" else -np.inf
        ax.fill_between(x[ok], np.maximum(lo[ok], floor), hi[ok], color=color, alpha=0.18, lw=0)


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


def _paths_in(sw: _Sweep) -> list[str]:
    return [p for p in ("all", *PATH_NAMES) if f"{p}_p99_us" in sw.t]


def plot_latency_vs_load(sw: _Sweep, out: Path, x_key: str, name: str) -> Path:
    """p50 (dashed) and p99 (solid) per path against ``x_key``, CI bands, knees marked."""
    paths = _paths_in(sw)
    ncol = min(2, len(paths))
    nrow = math.ceil(len(paths) / ncol)
    fig, axes = plt.subplots(
        nrow, ncol, figsize=(6.5 * ncol, 4.2 * nrow), squeeze=False, layout="constrained"
    )
    groups = sw.groups(x_key)
    colors = _colors(len(groups))
    for ax, path in zip(axes.flat, paths, strict=False):
        ax.set_yscale("log")
        for j, ((g, idx), c) in enumerate(zip(groups, colors, strict=True)):
            mk = MARKERS[j % len(MARKERS)]
            x = sw.col(x_key, idx)
            p99 = sw.col(f"{path}_p99_us", idx)
            ci99 = sw.col(f"{path}_p99_us_ci95", idx)
            _band(ax, x, p99, ci99, c, lw=2, marker=mk, label=f"{g} p99")
            p50 = sw.col(f"{path}_p50_us", idx)
            ci50 = sw.col(f"{path}_p50_us_ci95", idx)
            _band(ax, x, p50, ci50, c, lw=1.2, ls="--", marker=mk, alpha=0.8)
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
        _us_formatter(ax, "y")
        _style(ax)
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
    return _save(fig, out / name)


def plot_throughput_mutex(sw: _Sweep, out: Path) -> Path:
    """Throughput vs offered, mutex utilisation and mutex wait p99 against the load factor."""
    assert sw.load is not None
    x_key = sw.load
    fig, axes = plt.subplots(1, 3, figsize=(17, 5), layout="constrained")
    groups = sw.groups(x_key)
    colors = _colors(len(groups))
    thr, util, wait = axes
    wait.set_yscale("log")
    offered: tuple[np.ndarray, np.ndarray] | None = None
    for j, ((g, idx), c) in enumerate(zip(groups, colors, strict=True)):
        mk = MARKERS[j % len(MARKERS)]
        x = sw.col(x_key, idx)
        t = sw.col("throughput_per_s", idx)
        _band(thr, x, t, sw.col("throughput_per_s_ci95", idx), c, lw=2, marker=mk, label=g)
        off = sw.col("offered_per_s", idx)
        if offered is None and np.nanmax(off) > 0:
            offered = (x, off)
        u = 100 * sw.col("mutex_utilisation", idx)
        u_ci = 100 * sw.col("mutex_utilisation_ci95", idx)
        _band(util, x, u, u_ci, c, lw=2, marker=mk, label=g)
        w = sw.col("mutex_wait_p99_us", idx)
        w = np.where(w > 0, w, np.nan)  # a zero wait has no place on a log axis
        _band(wait, x, w, sw.col("mutex_wait_p99_us_ci95", idx), c, lw=2, marker=mk, label=g)
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
    _us_formatter(wait, "y")
    for ax in axes:
        ax.set_xlabel(label(x_key))
        _style(ax)
    thr.legend(fontsize=8, title=sw.legend_title(x_key), title_fontsize=8)
    fig.suptitle(f"Throughput and the vfio_ap mutex vs {label(x_key)}\n{sw.title()}", fontsize=11)
    return _save(fig, out / "throughput_mutex_vs_load.png")


def _runs_by_point(sw: _Sweep) -> dict[tuple[Any, ...], dict[str, Any]]:
    """Replication-0 runs of the sweep's points, by factor values."""
    wanted = {tuple(sw.t[k][i] for k in sw.keys) for i in range(sw.n)}
    out: dict[tuple[Any, ...], dict[str, Any]] = {}
    for f in sorted((sw.folder / RUNS_DIR).glob("*.json")):
        try:
            r = json.loads(f.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if r.get("replication") != 0:
            continue
        vals = tuple(r.get("factors", {}).get(k) for k in sw.keys)
        if vals in wanted:
            out[vals] = r
    return out


def plot_cdf_by_load(sw: _Sweep, out: Path, max_panels: int = 6) -> Path | None:
    """CDF of the knee path at each load, one panel per combination of the other factors."""
    assert sw.load is not None
    runs = _runs_by_point(sw)
    groups = sw.groups(sw.load)
    if not runs or not groups or len(groups) > max_panels:
        return None
    ncol = min(3, len(groups))
    nrow = math.ceil(len(groups) / ncol)
    fig, axes = plt.subplots(
        nrow,
        ncol,
        figsize=(5.6 * ncol, 4.4 * nrow),
        squeeze=False,
        sharey=True,
        layout="constrained",
    )
    loads = sorted({float(v) for v in sw.t[sw.load]})
    cmap = plt.get_cmap("viridis")
    norm = matplotlib.colors.Normalize(min(loads), max(loads) if len(loads) > 1 else min(loads) + 1)
    for ax, (g, idx) in zip(axes.flat, groups, strict=False):
        for i in idx:
            vals = tuple(sw.t[k][i] for k in sw.keys)
            r = runs.get(vals)
            p = None if r is None else r["paths"].get(sw.knee_path)
            if not p:
                continue
            cdf = np.array(p["cdf"], dtype=float)
            x = float(sw.t[sw.load][i])
            ax.plot(cdf[:, 1] / 1000, cdf[:, 0] / 100, color=cmap(norm(x)), lw=1.6, marker=".")
        ax.set_xscale("log")
        _us_formatter(ax)
        ax.set_title(g if g != "all points" else PATH_LABELS.get(sw.knee_path, sw.knee_path))
        ax.set_xlabel(f"{PATH_LABELS.get(sw.knee_path, sw.knee_path)} latency (µs, log scale)")
        ax.set_ylim(0, 1.02)
        _style(ax)
    for ax in axes[:, 0]:
        ax.set_ylabel("fraction at or below")
    for ax in list(axes.flat)[len(groups) :]:
        ax.set_visible(False)
    sm = matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap)
    fig.colorbar(sm, ax=axes, label=label(sw.load), shrink=0.9)
    fig.suptitle(
        f"Latency distribution at each {label(sw.load)} (replication 0; fio percentiles)\n"
        f"{sw.title(ci=False)}",
        fontsize=11,
    )
    return _save(fig, out / "cdf_by_load.png")


def plot_p99_vs_guests(sw: _Sweep, out: Path, gk: str) -> Path:
    """p99 (solid) and p99.9 (dotted) of all requests against the guest count, CI bands."""
    fig, ax = plt.subplots(figsize=(9, 5.4), layout="constrained")
    ax.set_yscale("log")
    groups = sw.groups(gk)
    for j, ((g, idx), c) in enumerate(zip(groups, _colors(len(groups)), strict=True)):
        mk = MARKERS[j % len(MARKERS)]
        x = sw.col(gk, idx)
        p99 = sw.col("all_p99_us", idx)
        _band(ax, x, p99, sw.col("all_p99_us_ci95", idx), c, lw=2, marker=mk, label=f"{g} p99")
        p999 = sw.col("all_p999_us", idx)
        ci = sw.col("all_p999_us_ci95", idx)
        _band(ax, x, p999, ci, c, lw=1.2, ls=":", marker=mk, label=f"{g} p99.9")
        knee = sw.knee_for(g, gk)
        if knee is not None and sw.knee_path == "all":
            y = sw.col(f"all_{sw.knee_pct}_us", idx)[np.isclose(x, float(knee["knee_load"]))]
            _mark_knee(ax, knee, c, float(y[0]) if y.size else None)
    ax.set_xlabel(f"{label(gk)} (guests in the group)")
    ax.set_ylabel("latency, all requests (µs, log scale)")
    _us_formatter(ax, "y")
    _style(ax)
    ax.legend(fontsize=8, title=sw.legend_title(gk), title_fontsize=8)
    fig.suptitle(f"p99 and p99.9 latency vs guest count\n{sw.title()}", fontsize=11)
    return _save(fig, out / "p99_vs_guests.png")


def plot_boot_storm(sw: _Sweep, out: Path, gk: str) -> Path:
    """Boot-storm completion time (first AQIC to last resume) against the guest count."""
    fig, ax = plt.subplots(figsize=(9, 5.4), layout="constrained")
    groups = sw.groups(gk)
    for j, ((g, idx), c) in enumerate(zip(groups, _colors(len(groups)), strict=True)):
        x = sw.col(gk, idx)
        y = sw.col("boot_completion_ms", idx)
        ci = sw.col("boot_completion_ms_ci95", idx)
        _band(ax, x, y, ci, c, lw=2, marker=MARKERS[j % len(MARKERS)], label=g)
    ax.set_xlabel(f"{label(gk)} (guests booting)")
    ax.set_ylabel("boot storm completion (ms of simulated time)")
    ax.set_ylim(bottom=0)
    _style(ax)
    ax.legend(fontsize=8, title=sw.legend_title(gk), title_fontsize=8)
    fig.suptitle(
        f"Boot storm: first AQIC issued to last one resumed, vs guest count\n{sw.title()}",
        fontsize=11,
    )
    return _save(fig, out / "boot_storm_vs_guests.png")


def _guest_factor(sw: _Sweep) -> str | None:
    for k in sw.keys:
        parts = k.split(".")
        if len(parts) == 3 and parts[0] == "guests" and parts[1].isdigit() and parts[2] == "count":
            return k
    return None


def plot_sweep(folder: str | Path, out_dir: str | Path) -> tuple[list[Path], list[str]]:
    """Every plot a sweep folder supports; returns (files written, notes on what was skipped)."""
    sw = _Sweep(Path(folder))
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
    gk = _guest_factor(sw)
    if gk is not None:
        made.append(plot_p99_vs_guests(sw, out, gk))
        boot = sw.col("boot_completion_ms", np.arange(sw.n))
        if np.isfinite(boot).any():
            made.append(plot_boot_storm(sw, out, gk))
        else:
            notes.append(
                "boot_storm_vs_guests.png skipped: no boot-storm completion time in these results"
                ' (a sweep of scenarios whose guests all have workload kind = "boot" has one)'
            )
    else:
        notes.append(
            "p99_vs_guests.png and boot_storm_vs_guests.png skipped: no guests.N.count factor"
        )
    return made, notes


def plot_result(folder: str | Path, out_dir: str | Path) -> tuple[list[Path], list[str]]:
    """Every plot of a run's result folder; returns (files written, notes)."""
    folder = Path(folder)
    if not (folder / RECORDS_FILE).exists():
        raise PlotError(f"{folder}: no {RECORDS_FILE}")
    return [plot_latency_cdf(folder, out_dir), plot_latency_timeline(folder, out_dir)], []


def plot_path(path: str | Path, out_dir: str | Path | None = None) -> tuple[list[Path], list[str]]:
    """Plot a result folder or a sweep folder into ``out_dir`` (default: ``<path>/plots``)."""
    p = Path(path)
    out = Path(out_dir) if out_dir is not None else p / "plots"
    if (p / META_FILE).exists():
        return plot_sweep(p, out)
    if (p / SUMMARY_FILE).exists():
        return plot_result(p, out)
    raise PlotError(f"{p}: neither a result folder (summary.json) nor a sweep folder ({META_FILE})")


# --- variant comparison ---------------------------------------------------------------------------
def _short(v: float) -> str:
    """A bar label: 21938 -> "21,938", 6.958 -> "6.96"."""
    if not math.isfinite(v):
        return ""
    return f"{v:,.0f}" if v >= 100 else f"{v:.3g}"


def plot_comparison(cmp: Any, path: str | Path) -> Path:
    """Latency per variant x lock model (left) and the outcome counts that differ (right).

    ``cmp`` is a :class:`hostsim.compare.Comparison`.
    """
    from hostsim.compare import SECTION_TITLES, differing_outcomes

    fig, (lat_ax, out_ax) = plt.subplots(
        1, 2, figsize=(15, 5.6), layout="constrained", width_ratios=(1.1, 1)
    )
    nv, nl = len(cmp.variants), len(cmp.lock_models)
    width = 0.8 / (2 * nl)
    colors = _colors(nl)
    x = np.arange(nv)
    for j, lm in enumerate(cmp.lock_models):
        for k, (p, alpha, hatch) in enumerate(((50.0, 0.45, "//"), (99.0, 0.95, None))):
            vals = []
            for v in cmp.variants:
                lat = cmp.run(v, lm).summary["all"]["lat_ns"]
                vals.append(lat["percentile"][f"{p:.6f}"] / 1000 if lat["N"] else np.nan)
            pos = x - 0.4 + width * (2 * j + k + 0.5)
            bars = lat_ax.bar(
                pos,
                vals,
                width,
                color=colors[j],
                alpha=alpha,
                hatch=hatch,
                edgecolor="white" if hatch else None,
                label=f"{lm} lock, p{p:g}",
            )
            lat_ax.bar_label(
                bars, labels=[_short(v) for v in vals], fontsize=7, padding=2, rotation=0
            )
    lat_ax.set_yscale("log")
    lat_ax.set_xticks(x, cmp.variants)
    lat_ax.set_xlabel("kernel variant")
    lat_ax.set_ylabel("latency, all requests (µs, log scale)")
    lat_ax.set_title("Latency p50 (hatched) and p99 per variant and lock model")
    lat_ax.margins(y=0.15)
    _us_formatter(lat_ax, "y")
    _style(lat_ax)
    lat_ax.grid(False, axis="x", which="both")
    lat_ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2 * nl)

    lm = cmp.lock_models[0]
    diff = differing_outcomes(cmp, lm)
    if not diff:
        out_ax.axis("off")
        out_ax.text(
            0.5,
            0.5,
            "Outcome counts are the same under every variant\n(this scenario does not reach"
            " the requests whose semantics differ)",
            ha="center",
            va="center",
            fontsize=10,
            transform=out_ax.transAxes,
        )
    else:
        y = np.arange(len(diff))
        h = 0.8 / nv
        vcolors = plt.get_cmap("Set2")
        for i, v in enumerate(cmp.variants):
            counts = [cmp.run(v, lm).outcomes.get(s, {}).get(c, 0) for s, c in diff]
            bars = out_ax.barh(y - 0.4 + h * (i + 0.5), counts, h, color=vcolors(i % 8), label=v)
            out_ax.bar_label(bars, fmt="%d", fontsize=7, padding=2)
        out_ax.set_yticks(y, [f"{SECTION_TITLES[s]}: {c}" for s, c in diff])
        out_ax.invert_yaxis()
        out_ax.set_xlabel("measured requests")
        out_ax.set_title(f"Outcome counts that differ between variants ({lm} lock)")
        out_ax.margins(x=0.15)
        _style(out_ax)
        out_ax.grid(False, axis="y", which="both")
        out_ax.legend(
            fontsize=8, title="variant", title_fontsize=8, loc="upper left", bbox_to_anchor=(1, 1)
        )
    fig.suptitle(
        f"{cmp.scenario}, seed {cmp.seed}: the same requests under each kernel variant",
        fontsize=11,
    )
    return _save(fig, Path(path))
