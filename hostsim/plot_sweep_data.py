"""A sweep folder (``hostsim sweep``) read back for the sweep plots.

:class:`SweepFolder` holds the sweep's description (``sweep.meta.json``), its table and its
knees, and groups the table's rows into one line per combination of the other factors;
:func:`runs_by_point` reads replication 0 of each point from the runs directory (for the CDFs).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from hostsim.plot_style import PlotError
from hostsim.records import PATH_NAMES
from hostsim.sweep_spec import label
from hostsim.sweep_table import KNEE_FILE, META_FILE, RUNS_DIR, TABLE_STEM
from hostsim.table import read_table


class SweepFolder:
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

    def interval(self, name: str, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The 95 % interval ``(lo, hi)`` of column ``name`` at rows ``idx``.

        From the table's ``_lo``/``_hi`` columns (which stay in the metric's range); a sweep
        folder written before they existed falls back to ``mean ± ci95``, with a lower end at
        or below zero left out (NaN) rather than clipped to an invented floor."""
        if f"{name}_lo" in self.t:
            return self.col(f"{name}_lo", idx), self.col(f"{name}_hi", idx)
        y, ci = self.col(name, idx), self.col(f"{name}_ci95", idx)
        lo = y - ci
        return np.where(lo > 0, lo, np.nan), y + ci

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
            ", mean and 95 % interval" if ci else ""
        )


def paths_in(sw: SweepFolder) -> list[str]:
    """The paths with latency columns in the table: ``all`` first, then in path order."""
    return [p for p in ("all", *PATH_NAMES) if f"{p}_p99_us" in sw.t]


def runs_by_point(sw: SweepFolder) -> dict[tuple[Any, ...], dict[str, Any]]:
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


def guest_factor(sw: SweepFolder) -> str | None:
    """The first ``guests.N.count`` factor, or None."""
    for k in sw.keys:
        parts = k.split(".")
        if len(parts) == 3 and parts[0] == "guests" and parts[1].isdigit() and parts[2] == "count":
            return k
    return None
