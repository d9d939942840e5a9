"""A sweep's results on disk: the runs directory (resume), the table and knees, terminal text.

Each finished run is saved at once as ``<out>/runs/<key>.json`` (:class:`RunStore`, written
atomically; ``key`` from :func:`hostsim.sweep_plan.run_key`), and a sweep started again skips
every run whose file exists. The table (``sweep.parquet``, ``sweep.csv``) and the knees
(``knee.csv``) are rebuilt from the runs directory in the sweep's own point order
(:func:`build_table`, :func:`knees_of`, :func:`write_outputs`), so the local pool and Dask give
identical files. :func:`format_sweep` and :func:`format_knees` render them for a terminal.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hostsim import __version__, toml_text
from hostsim.knee import knee_table
from hostsim.sweep_plan import Plan
from hostsim.sweep_spec import SweepError, SweepSpec, label
from hostsim.table import aggregate, format_text, to_csv_text, write_atomic, write_table

META_FILE = "sweep.meta.json"
TABLE_STEM = "sweep"
KNEE_FILE = "knee.csv"
RUNS_DIR = "runs"


# --- the runs directory ---------------------------------------------------------------------------
class RunStore:
    """``<out>/runs/<key>.json``: one small JSON per finished run, written atomically."""

    def __init__(self, folder: str | Path) -> None:
        self.dir = Path(folder) / RUNS_DIR
        self.dir.mkdir(parents=True, exist_ok=True)

    def path(self, key: str) -> Path:
        return self.dir / f"{key}.json"

    def has(self, key: str) -> bool:
        return self.load(key) is not None

    def load(self, key: str) -> dict[str, Any] | None:
        """The saved row of run ``key``, or None (missing or unreadable: run it again)."""
        try:
            row = json.loads(self.path(key).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return row if isinstance(row, dict) and row.get("key") == key else None

    def save(self, row: Mapping[str, Any], scenario_toml: str | None = None) -> Path:
        """Save a finished run (with the resolved scenario it ran, when given)."""
        data = dict(row)
        if scenario_toml is not None:
            data["scenario"] = scenario_toml
        p = self.path(str(row["key"]))
        write_atomic(p, (json.dumps(data, sort_keys=True, indent=1) + "\n").encode("utf-8"))
        return p


# --- the sweep folder -----------------------------------------------------------------------------
def meta(spec: SweepSpec) -> dict[str, Any]:
    """The sweep's description saved as ``sweep.meta.json`` (read by ``hostsim plot``)."""
    return {
        "sweep_file": spec.source,
        "base": spec.base_source,
        "engine": spec.engine,
        "replications": spec.replications,
        "seed": spec.seed,
        "replication_seeds": spec.seeds(),
        "set": {k: v for k, v in spec.sets},
        "factors": [{"key": f.key, "values": list(f.values)} for f in spec.factors],
        "load_factor": spec.load_factor,
        "knee": {
            "path": spec.knee_path,
            "percentile": spec.knee_percentile,
            "multiple": spec.knee_multiple,
            "growth": spec.knee_growth,
        },
        "hostsim_version": __version__,
    }


def prepare_out(out: Path) -> None:
    """Create the sweep folder ``out``; refuse a file, or a folder with other things in it."""
    if out.exists():
        if not out.is_dir():
            raise SweepError(f"{out}: exists and is not a folder")
        is_sweep = (out / META_FILE).exists() or (out / RUNS_DIR).is_dir()
        if not is_sweep and any(out.iterdir()):
            raise SweepError(f"{out}: exists, is not empty and is not a sweep folder")
    out.mkdir(parents=True, exist_ok=True)


def build_table(p: Plan, store: RunStore) -> dict[str, list[Any]]:
    """The sweep table from the runs directory, in the sweep's point order."""
    runs = []
    for keys in p.keys:
        rows = [store.load(k) for k in keys]
        runs.append([r for r in rows if r is not None])
    return aggregate(p.spec.factor_keys, p.points, runs)


def knees_of(spec: SweepSpec, table: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """The knee per combination of the other factors (empty without a load factor)."""
    if spec.load_factor is None or not table.get(spec.load_factor):
        return []
    return knee_table(
        table,
        spec.load_factor,
        spec.other_keys,
        path=spec.knee_path,
        percentile=spec.knee_percentile,
        multiple=spec.knee_multiple,
        growth=spec.knee_growth,
    )


def write_outputs(
    spec: SweepSpec, out: Path, table: Mapping[str, Sequence[Any]], knees: list[dict[str, Any]]
) -> None:
    """Write the table, the knees and the sweep description into ``out``."""
    write_table(table, out / TABLE_STEM)
    if knees:
        cols = {k: [row[k] for row in knees] for k in knees[0]}
        write_atomic(out / KNEE_FILE, to_csv_text(cols).encode("utf-8"))
    elif (out / KNEE_FILE).exists():
        (out / KNEE_FILE).unlink()


# --- text output ----------------------------------------------------------------------------------
def _num(v: Any, fmt: str) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return format(v, fmt)


def _pm(mean: Any, ci: Any, fmt: str) -> str:
    s = _num(mean, fmt)
    if s != "-" and isinstance(ci, float) and math.isfinite(ci):
        s += f" ±{format(ci, fmt)}"
    return s


def _value(v: Any) -> str:
    return toml_text.value(v) if not isinstance(v, str) else v


def format_sweep(spec: SweepSpec, table: Mapping[str, Sequence[Any]]) -> str:
    """The sweep table for a terminal: factors, throughput, latency, mutex (mean ±95 % CI)."""
    kp = spec.knee_path
    headers = [
        *(label(k) for k in spec.factor_keys),
        "reps",
        "offered/s",
        "throughput/s",
        f"{kp} p50(us)",
        f"{kp} p99(us)",
        "mutex util%",
        "wait p99(us)",
    ]
    rows = []
    for i in range(len(table["replications"])):

        def g(c: str, i: int = i) -> Any:
            return table[c][i] if c in table else None

        util, util_ci = g("mutex_utilisation"), g("mutex_utilisation_ci95")
        rows.append(
            [
                *(_value(table[k][i]) for k in spec.factor_keys),
                str(table["replications"][i]),
                _num(g("offered_per_s"), ".0f"),
                _pm(g("throughput_per_s"), g("throughput_per_s_ci95"), ".0f"),
                _pm(g(f"{kp}_p50_us"), g(f"{kp}_p50_us_ci95"), ".2f"),
                _pm(g(f"{kp}_p99_us"), g(f"{kp}_p99_us_ci95"), ".2f"),
                _pm(
                    None if util is None else 100 * util,
                    None if util_ci is None else 100 * util_ci,
                    ".2f",
                ),
                _pm(g("mutex_wait_p99_us"), g("mutex_wait_p99_us_ci95"), ".2f"),
            ]
        )
    return format_text(headers, rows)


def format_knees(spec: SweepSpec, knees: Sequence[Mapping[str, Any]]) -> str:
    """The knee table for a terminal."""
    headers = [
        *(label(k) for k in spec.other_keys),
        f"knee {label(spec.load_factor or '')}",
        "criterion",
        "last below",
        f"{spec.knee_path} {spec.knee_percentile} base(us)",
        f"{spec.knee_percentile} at knee(us)",
        "thr. growth",
    ]
    rows = [
        [
            *(_value(k[key]) for key in spec.other_keys),
            _num(k["knee_load"], "g") if k["knee_load"] is not None else "not reached",
            k["criterion"],
            _num(k["last_ok_load"], "g"),
            _num(k["baseline_us"], ".2f"),
            _num(k["at_knee_us"], ".2f"),
            _num(k["throughput_efficiency"], ".2f"),
        ]
        for k in knees
    ]
    return format_text(headers, rows)
