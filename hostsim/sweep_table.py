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


def load_runs(p: Plan, store: RunStore) -> list[list[dict[str, Any] | None]]:
    """Each point's saved runs in replication order (None where a run has not finished)."""
    return [[store.load(k) for k in keys] for keys in p.keys]


def build_table(
    p: Plan, store: RunStore, runs: list[list[dict[str, Any] | None]] | None = None
) -> dict[str, list[Any]]:
    """The sweep table from the runs directory, in the sweep's point order."""
    runs = load_runs(p, store) if runs is None else runs
    finished = [[r for r in rows if r is not None] for rows in runs]
    return aggregate(p.spec.factor_keys, p.points, finished)


def _knees(spec: SweepSpec, table: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    assert spec.load_factor is not None
    return knee_table(
        table,
        spec.load_factor,
        spec.other_keys,
        path=spec.knee_path,
        percentile=spec.knee_percentile,
        multiple=spec.knee_multiple,
        growth=spec.knee_growth,
    )


def _combo(spec: SweepSpec, knee: Mapping[str, Any]) -> tuple[Any, ...]:
    return tuple(knee[o] for o in spec.other_keys)


def knees_of(
    spec: SweepSpec,
    table: Mapping[str, Sequence[Any]],
    p: Plan | None = None,
    runs: Sequence[Sequence[Mapping[str, Any] | None]] | None = None,
) -> list[dict[str, Any]]:
    """The knee per combination of the other factors (empty without a load factor).

    The knee is found on the replications' mean curve. With ``p`` and ``runs`` (each point's
    runs in replication order) the rule is applied again to each replication's own curve, and
    every knee row says how many replications agree with the mean curve's knee
    (``replications_agree`` of ``replications_with_curve``; ``knee_loads``: each replication's
    knee, ``-`` where none fired), so that a knee carried by one outlier run shows as
    ``1 of 3``.
    """
    if spec.load_factor is None or not table.get(spec.load_factor):
        return []
    knees = _knees(spec, table)
    if p is None or runs is None:
        return knees
    per_rep: list[dict[tuple[Any, ...], Any]] = []  # per replication: combo -> its knee
    for r in range(spec.replications):
        got = [(i, rows[r]) for i, rows in enumerate(runs) if len(rows) > r]
        done = [(i, run) for i, run in got if run is not None]
        if done:
            points = [p.points[i] for i, _ in done]
            one = aggregate(spec.factor_keys, points, [[run] for _, run in done])
            per_rep.append({_combo(spec, q): q["knee_load"] for q in _knees(spec, one)})
    for k in knees:
        combo = _combo(spec, k)
        loads = [rep[combo] for rep in per_rep if combo in rep]
        k["replications_with_curve"] = len(loads)
        k["replications_agree"] = loads.count(k["knee_load"])
        k["knee_loads"] = ";".join("-" if x is None else f"{x:g}" for x in loads)
    return knees


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


def _finite(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _pm(mean: Any, ci: Any, fmt: str, lo: Any = None, hi: Any = None) -> str:
    """``mean [lo, hi]`` (the range-keeping interval) or, for tables without it, ``mean ±ci``."""
    s = _num(mean, fmt)
    if s == "-":
        return s
    if _finite(lo) and _finite(hi):
        return f"{s} [{format(lo, fmt)}, {format(hi, fmt)}]"
    if _finite(ci):
        s += f" ±{format(ci, fmt)}"
    return s


def _value(v: Any) -> str:
    return toml_text.value(v) if not isinstance(v, str) else v


def format_sweep(spec: SweepSpec, table: Mapping[str, Sequence[Any]]) -> str:
    """The sweep table for a terminal: factors, throughput, latency, mutex.

    Each metric is its mean over the replications and its 95 % interval ``[lo, hi]``
    (:func:`hostsim.table.interval95`: on the logs, so never below zero)."""
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

        def pm(c: str, fmt: str, scale: float = 1.0) -> str:
            def sc(v: Any) -> Any:
                return v * scale if _finite(v) else v

            return _pm(sc(g(c)), sc(g(f"{c}_ci95")), fmt, sc(g(f"{c}_lo")), sc(g(f"{c}_hi")))

        rows.append(
            [
                *(_value(table[k][i]) for k in spec.factor_keys),
                str(table["replications"][i]),
                _num(g("offered_per_s"), ".0f"),
                pm("throughput_per_s", ".0f"),
                pm(f"{kp}_p50_us", ".2f"),
                pm(f"{kp}_p99_us", ".2f"),
                pm("mutex_utilisation", ".2f", 100.0),
                pm("mutex_wait_p99_us", ".2f"),
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
    agree = any("replications_agree" in k for k in knees)
    if agree:
        headers.append("reps agree")
    rows = [
        [
            *(_value(k[key]) for key in spec.other_keys),
            _num(k["knee_load"], "g") if k["knee_load"] is not None else "not reached",
            k["criterion"],
            _num(k["last_ok_load"], "g"),
            _num(k["baseline_us"], ".2f"),
            _num(k["at_knee_us"], ".2f"),
            _num(k["throughput_efficiency"], ".2f"),
            *(
                [f"{k['replications_agree']} of {k['replications_with_curve']} ({k['knee_loads']})"]
                if agree
                else []
            ),
        ]
        for k in knees
    ]
    return format_text(headers, rows)
