"""Capacity sweeps: a base scenario times factors times replications, run in parallel, resumable.

A sweep file (TOML) names a base scenario, fixed overrides, factors and a replication count::

    [sweep]
    base = "default"          # the built-in scenario, or a path relative to the sweep file
    replications = 3
    seed = 42
    engine = "fast"
    load_factor = "guests.0.workload.rate_hz"   # the offered-load factor (for the knee)
    [sweep.set]                                 # fixed overrides (quote dotted keys)
    "run.duration_ms" = 500
    [sweep.factors]                             # the grid: every combination is a point
    "guests.0.count" = [8, 16, 28]
    "host.lock_model" = ["global", "per-mdev"]
    "guests.0.workload.rate_hz" = { start = 10, stop = 100, num = 4 }

A factor is any scenario key path (list elements by index, as for ``--set``) with a list of values
or a range: ``{ start, stop, num }`` (evenly spaced, both ends included; ``scale = "log"`` for
geometric spacing) or ``{ start, stop, step }`` (``stop`` included when a step lands on it).
Integer ends give integer values (rounded, repeats dropped); write ``10.0`` for floats.
``[sweep.knee]`` may set ``path`` (``"all"`` or a path name), ``multiple`` and ``growth``
(see :mod:`hostsim.knee`), and ``percentile`` (``"p99"``; or ``"p50"``, ``"p90"``, ``"p999"``)
for a latency criterion on another percentile.

**Seeds.** Replication ``r`` of *every* point runs with ``run.seed`` derived from
``SeedSequence(sweep.seed, spawn_key=(r,))`` and nothing else: the factor values do not enter the
seed. Points therefore share their random numbers (common random numbers: the same arrivals and
draws wherever the factor does not change them), so differences between points are differences
of the factors, not of luck, and comparisons across a factor are much less noisy than with
independent seeds. Replications differ from each other, which is what the confidence intervals
measure.

**Runs and resuming.** Each point x replication is one independent :func:`hostsim.run.simulate`
of its resolved scenario. Workers receive the resolved scenario as TOML text, so a Dask worker
needs hostsim installed but no files. A finished run is saved at once as
``<out>/runs/<key>.json`` (written atomically), where ``key`` hashes the resolved scenario text,
the seed, the engine and the hostsim version; a sweep started again skips every run whose file
exists. The table (``sweep.parquet``, ``sweep.csv``) and the knees (``knee.csv``) are rebuilt from
the runs directory in the sweep's own point order, so the local pool and Dask give identical
files.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
import math
import os
import sys
import time
import tomllib
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from hostsim import __version__
from hostsim.knee import DEFAULT_GROWTH, DEFAULT_MULTIPLE, knee_table
from hostsim.records import PATH_NAMES
from hostsim.run import ENGINES, simulate
from hostsim.scenario import apply_set, default_text, from_dict, loads
from hostsim.scenario_toml import resolved_toml
from hostsim.scenario_types import ScenarioError
from hostsim.table import (
    aggregate,
    format_text,
    run_metrics,
    to_csv_text,
    write_atomic,
    write_table,
)

SWEEP_KEYS = {"base", "replications", "seed", "engine", "load_factor", "set", "factors", "knee"}
KNEE_KEYS = {"path", "percentile", "multiple", "growth"}
KNEE_PERCENTILES = ("p50", "p90", "p99", "p999")
META_FILE = "sweep.meta.json"
TABLE_STEM = "sweep"
KNEE_FILE = "knee.csv"
RUNS_DIR = "runs"


class SweepError(ValueError):
    """A sweep that cannot be run: names the sweep file and the key."""


class SweepRunError(SweepError):
    """Runs of a sweep failed, or the Dask scheduler could not be reached."""


@dataclass(frozen=True)
class Factor:
    """One swept scenario key and its values, in the order given."""

    key: str
    values: tuple[Any, ...]


@dataclass(frozen=True)
class SweepSpec:
    """A validated sweep file."""

    source: str  # the sweep file, for messages
    base_source: str  # "<built-in default>" or the base scenario's path
    base_text: str
    sets: tuple[tuple[str, Any], ...]
    factors: tuple[Factor, ...]
    replications: int = 1
    seed: int = 0
    engine: str = "fast"
    load_factor: str | None = None
    knee_path: str = "all"
    knee_percentile: str = "p99"
    knee_multiple: float = DEFAULT_MULTIPLE
    knee_growth: float = DEFAULT_GROWTH
    text: str = ""  # the sweep file as written

    @property
    def factor_keys(self) -> list[str]:
        return [f.key for f in self.factors]

    @property
    def other_keys(self) -> list[str]:
        """The factors other than the load factor (the knee is found per combination of them)."""
        return [k for k in self.factor_keys if k != self.load_factor]

    def points(self) -> list[tuple[Any, ...]]:
        """Every combination of factor values, the first factor varying slowest."""
        return list(itertools.product(*(f.values for f in self.factors)))

    def seeds(self) -> list[int]:
        """``run.seed`` of each replication (the same for every point)."""
        return [replication_seed(self.seed, r) for r in range(self.replications)]


def replication_seed(sweep_seed: int, replication: int) -> int:
    """The run seed of replication ``replication``: from the sweep seed and the index only."""
    ss = np.random.SeedSequence(sweep_seed, spawn_key=(replication,))
    return int(ss.generate_state(1, np.uint64)[0]) & (2**63 - 1)


def label(key: str) -> str:
    """A scenario key path for people: ``guests.0.count`` -> ``guests[0].count``."""
    parts = key.split(".")
    out = parts[0]
    for p in parts[1:]:
        out += f"[{p}]" if p.isdigit() else f".{p}"
    return out


def toml_literal(v: Any) -> str:
    """``v`` as a TOML value (the right-hand side of a ``--set``)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        return repr(v) if math.isfinite(v) else ("inf" if v > 0 else "-inf")
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(toml_literal(x) for x in v) + "]"
    if isinstance(v, dict):
        items = ", ".join(f"{json.dumps(str(k))} = {toml_literal(x)}" for k, x in v.items())
        return "{ " + items + " }"
    raise TypeError(f"cannot write {type(v).__name__} as a TOML value")


# --- parsing --------------------------------------------------------------------------------------
def _range(err: Callable[[str], SweepError], r: dict[str, Any]) -> tuple[Any, ...]:
    allowed = {"start", "stop", "num", "step", "scale"}
    for k in r:
        if k not in allowed:
            raise err(f"unknown range key {k!r}; expected start, stop and num or step (scale)")
    if "start" not in r or "stop" not in r or ("num" in r) == ("step" in r):
        raise err("a range needs start, stop and exactly one of num or step")
    nums = [r[k] for k in ("start", "stop", "step") if k in r]
    if any(isinstance(x, bool) or not isinstance(x, int | float) for x in nums):
        raise err("range start, stop and step must be numbers")
    start, stop = r["start"], r["stop"]
    integral = all(isinstance(x, int) for x in nums)
    scale = r.get("scale", "linear")
    if scale not in ("linear", "log"):
        raise err(f'scale must be "linear" or "log", got {scale!r}')
    if "num" in r:
        num = r["num"]
        if isinstance(num, bool) or not isinstance(num, int) or num < 1:
            raise err(f"num must be an integer >= 1, got {num!r}")
        if scale == "log":
            if start <= 0 or stop <= 0:
                raise err("a log range needs start and stop > 0")
            vals = np.geomspace(start, stop, num)
        else:
            vals = np.linspace(start, stop, num)
    else:
        if scale == "log":
            raise err("a log range takes num, not step")
        step = r["step"]
        if step == 0 or (stop - start) * step < 0:
            raise err(f"step {step!r} does not lead from {start!r} to {stop!r}")
        n = math.floor((stop - start) / step + 1e-9) + 1
        vals = start + step * np.arange(n)
    out = [round(float(x)) if integral else float(f"{float(x):.12g}") for x in vals]
    return tuple(dict.fromkeys(out))  # drop repeats, keep order


def _factor(source: str, key: Any, v: Any) -> Factor:
    where = f'sweep.factors."{key}"'

    def err(msg: str) -> SweepError:
        return SweepError(f"{source}: {where}: {msg}")

    if not isinstance(key, str) or not key or any(not p for p in key.split(".")):
        raise err('expected a scenario key path like "guests.0.count"')
    if isinstance(v, dict):
        values = _range(err, v)
    elif isinstance(v, list):
        values = tuple(v)
    else:
        raise err(
            "expected a list of values or a range { start, stop, num } / { start, stop, step }"
        )
    if not values:
        raise err("expected at least one value")
    shown = [toml_literal(x) for x in values]
    if len(set(shown)) != len(shown):
        raise err(f"values repeat: {', '.join(shown)}")
    return Factor(key, values)


def _check_seed_key(source: str, where: str, key: str) -> None:
    if key in ("run.seed", "run"):
        raise SweepError(
            f"{source}: {where}: run.seed is set by the sweep (sweep.seed and the replication)"
        )


def loads_sweep(text: str, source: str = "<sweep>", base_dir: str | Path = ".") -> SweepSpec:
    """Parse and validate a sweep file's text; ``base_dir`` resolves a relative ``base``."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SweepError(f"{source}: not valid TOML: {e}") from None

    def err(where: str, msg: str) -> SweepError:
        return SweepError(f"{source}: {where}: {msg}")

    for k in raw:
        if k != "sweep":
            raise err(k, "unknown key; a sweep file has one [sweep] table")
    t = raw.get("sweep")
    if not isinstance(t, dict):
        raise err("sweep", "missing: expected a [sweep] table")
    for k in t:
        if k not in SWEEP_KEYS:
            raise err(f"sweep.{k}", f"unknown key; expected one of {sorted(SWEEP_KEYS)}")

    base = t.get("base", "default")
    if not isinstance(base, str) or not base:
        raise err("sweep.base", f'expected "default" or a scenario file path, got {base!r}')
    if base == "default":
        base_text, base_source = default_text(), "<built-in default>"
    else:
        p = Path(base)
        if not p.is_absolute():
            p = Path(base_dir) / p
        try:
            base_text = p.read_text(encoding="utf-8")
        except OSError as e:
            raise err("sweep.base", f"cannot read {p}: {e.strerror}") from None
        base_source = os.path.normpath(p)

    def integer(key: str, default: int, lo: int, hi: int) -> int:
        v = t.get(key, default)
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise err(f"sweep.{key}", f"expected an integer {lo}..{hi}, got {v!r}")
        return v

    replications = integer("replications", 1, 1, 10_000)
    seed = integer("seed", 0, 0, 2**63 - 1)
    engine = t.get("engine", "fast")
    if engine not in ENGINES:
        raise err("sweep.engine", f"expected one of {list(ENGINES)}, got {engine!r}")

    sets_raw = t.get("set", {})
    if not isinstance(sets_raw, dict):
        raise err("sweep.set", 'expected a table of "key.path" = value')
    for k in sets_raw:
        _check_seed_key(source, f'sweep.set."{k}"', k)
    f_raw = t.get("factors", {})
    if not isinstance(f_raw, dict) or not f_raw:
        raise err("sweep.factors", 'expected a table of "key.path" = [values] with at least one')
    factors = tuple(_factor(source, k, v) for k, v in f_raw.items())
    for f in factors:
        _check_seed_key(source, f'sweep.factors."{f.key}"', f.key)
        if f.key in sets_raw:
            raise err(f'sweep.factors."{f.key}"', "is also fixed in [sweep.set]")

    load = t.get("load_factor")
    if load is not None:
        if load not in f_raw:
            raise err(
                "sweep.load_factor", f"expected one of the factors {list(f_raw)}, got {load!r}"
            )
        vals = next(f.values for f in factors if f.key == load)
        if any(isinstance(x, bool) or not isinstance(x, int | float) for x in vals):
            raise err("sweep.load_factor", f"the load factor {load!r} must have numeric values")

    knee = t.get("knee", {})
    if not isinstance(knee, dict):
        raise err("sweep.knee", "expected a table with path, multiple, growth")
    for k in knee:
        if k not in KNEE_KEYS:
            raise err(f"sweep.knee.{k}", f"unknown key; expected one of {sorted(KNEE_KEYS)}")
    kpath = knee.get("path", "all")
    if kpath not in ("all", *PATH_NAMES):
        raise err("sweep.knee.path", f"expected one of {['all', *PATH_NAMES]}, got {kpath!r}")
    kpct = knee.get("percentile", "p99")
    if kpct not in KNEE_PERCENTILES:
        raise err(
            "sweep.knee.percentile", f"expected one of {list(KNEE_PERCENTILES)}, got {kpct!r}"
        )
    mult = knee.get("multiple", DEFAULT_MULTIPLE)
    if isinstance(mult, bool) or not isinstance(mult, int | float) or not mult > 1:
        raise err("sweep.knee.multiple", f"expected a number > 1, got {mult!r}")
    growth = knee.get("growth", DEFAULT_GROWTH)
    if isinstance(growth, bool) or not isinstance(growth, int | float) or not 0 < growth <= 1:
        raise err("sweep.knee.growth", f"expected a number in (0, 1], got {growth!r}")

    return SweepSpec(
        source=source,
        base_source=base_source,
        base_text=base_text,
        sets=tuple(sets_raw.items()),
        factors=factors,
        replications=replications,
        seed=seed,
        engine=engine,
        load_factor=load,
        knee_path=kpath,
        knee_percentile=kpct,
        knee_multiple=float(mult),
        knee_growth=float(growth),
        text=text,
    )


def load_sweep(path: str | Path) -> SweepSpec:
    """Read and validate a sweep file."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise SweepError(f"{path}: cannot read: {e.strerror}") from None
    return loads_sweep(text, str(path), Path(path).parent)


# --- planning -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunTask:
    """One simulation of a sweep: what a worker needs (the resolved scenario as text)."""

    key: str
    point: int
    replication: int
    seed: int
    engine: str
    scenario_toml: str
    factors: tuple[tuple[str, Any], ...]


@dataclass
class Plan:
    """A sweep expanded: the points, the run key of each point x replication, the tasks."""

    spec: SweepSpec
    points: list[tuple[Any, ...]]
    keys: list[list[str]]  # [point][replication]
    tasks: dict[str, RunTask] = field(default_factory=dict)  # by key (identical runs once)


def run_key(scenario_toml: str, seed: int, engine: str) -> str:
    """The name of a run in the runs directory: a hash of what determines its result."""
    h = hashlib.sha256()
    for part in (f"hostsim {__version__}", engine, str(seed), scenario_toml):
        h.update(part.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()[:24]


def _point_desc(keys: Sequence[str], values: Sequence[Any]) -> str:
    return ", ".join(f"{k}={toml_literal(v)}" for k, v in zip(keys, values, strict=True))


def _apply(spec: SweepSpec, raw: dict[str, Any], key: str, value: Any, where: str) -> None:
    try:
        apply_set(raw, f"{key}={toml_literal(value)}")
    except ScenarioError as e:
        msg = str(e).removeprefix("--set ")
        raise SweepError(f"{spec.source}: {where}: {msg}") from None


def plan(spec: SweepSpec) -> Plan:
    """Expand and validate every point (each scenario is checked before anything runs)."""
    try:
        base_raw = tomllib.loads(spec.base_text)
    except tomllib.TOMLDecodeError as e:
        raise SweepError(f"{spec.base_source}: not valid TOML: {e}") from None
    for k, v in spec.sets:
        _apply(spec, base_raw, k, v, f'sweep.set."{k}"')
    seeds = spec.seeds()
    out = Plan(spec, spec.points(), [])
    keys = spec.factor_keys
    for i, values in enumerate(out.points):
        raw = copy.deepcopy(base_raw)
        for f, v in zip(spec.factors, values, strict=True):
            _apply(spec, raw, f.key, v, f'sweep.factors."{f.key}"')
        row = []
        desc = _point_desc(keys, values)
        for r, seed in enumerate(seeds):
            raw["run"] = {**raw.get("run", {}), "seed": seed}
            try:
                s = from_dict(raw, f"{spec.source}: point {desc} of {spec.base_source}")
            except ScenarioError as e:
                raise SweepError(str(e)) from None
            text = resolved_toml(s)
            key = run_key(text, seed, spec.engine)
            row.append(key)
            if key not in out.tasks:
                out.tasks[key] = RunTask(
                    key, i, r, seed, spec.engine, text, tuple(zip(keys, values, strict=True))
                )
        out.keys.append(row)
    return out


# --- the worker -----------------------------------------------------------------------------------
def run_task(task: RunTask) -> dict[str, Any]:
    """Run one sweep simulation and return its compact row (runs in a worker process)."""
    s = loads(task.scenario_toml, f"sweep run {task.key}")
    t0 = time.perf_counter()
    res = simulate(s, task.engine)
    row = run_metrics(res.summary, s)
    row.update(
        key=task.key,
        point=task.point,
        replication=task.replication,
        seed=task.seed,
        engine=task.engine,
        version=__version__,
        factors=dict(task.factors),
        wall_s=round(time.perf_counter() - t0, 3),
    )
    return row


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


# --- execution backends ---------------------------------------------------------------------------
Handler = Callable[[RunTask, "dict[str, Any] | BaseException"], None]


def _run_inline(tasks: Sequence[RunTask], handle: Handler) -> None:
    for t in tasks:
        try:
            out: dict[str, Any] | BaseException = run_task(t)
        except Exception as e:
            out = e
        handle(t, out)


def _run_pool(tasks: Sequence[RunTask], workers: int, handle: Handler) -> None:
    ex = ProcessPoolExecutor(max_workers=workers)
    try:
        futs = {ex.submit(run_task, t): t for t in tasks}
        for f in as_completed(futs):
            exc = f.exception()
            handle(futs[f], exc if exc is not None else f.result())
    finally:
        ex.shutdown(wait=True, cancel_futures=True)


def _run_dask(tasks: Sequence[RunTask], address: str, handle: Handler) -> None:
    from distributed import Client
    from distributed import as_completed as dask_completed

    try:
        client = Client(address, set_as_default=False)
    except (OSError, TimeoutError) as e:
        raise SweepRunError(f"cannot reach the Dask scheduler at {address}: {e}") from None
    futs = []
    try:
        by_key = {f"hostsim-run-{t.key}": t for t in tasks}
        futs = [client.submit(run_task, t, key=k, pure=False) for k, t in by_key.items()]
        for f in dask_completed(futs, loop=client.loop):
            t = by_key[f.key]
            if f.status == "finished":
                handle(t, f.result())
            elif f.status == "error":
                handle(t, f.exception())
            else:
                handle(t, RuntimeError(f"run {t.key}: {f.status} on the Dask cluster"))
    finally:
        pending = [f for f in futs if not f.done()]
        if pending:
            client.cancel(pending)
        client.close()


# --- progress -------------------------------------------------------------------------------------
class SweepProgress:
    """``sweep: 12/48 runs (6 resumed), 1.9 runs/s, eta 19 s`` on stderr, redrawn in place."""

    def __init__(
        self, total: int, resumed: int, enabled: bool = True, stream: TextIO | None = None
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = enabled
        self.total, self.resumed = total, resumed
        self.done = resumed
        self.failed = 0
        self._start = time.monotonic()
        self._last = 0.0
        self._len = 0
        self._draw(force=True)

    def advance(self, ok: bool = True) -> None:
        self.done += 1
        self.failed += not ok
        self._draw(force=self.done == self.total)

    def _draw(self, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last < 0.2:
            return
        self._last = now
        new = self.done - self.resumed
        el = now - self._start
        rate = new / el if el > 0 else 0.0
        left = self.total - self.done
        eta = f", eta {left / rate:.0f} s" if rate > 0 and left else ""
        failed = f", {self.failed} failed" if self.failed else ""
        line = (
            f"sweep: {self.done}/{self.total} runs ({self.resumed} resumed{failed}), "
            f"{rate:.2f} runs/s, {el:.0f} s{eta}"
        )
        self.stream.write("\r" + line.ljust(self._len))
        self.stream.flush()
        self._len = len(line)

    def close(self) -> None:
        if self.enabled:
            self._draw(force=True)
            self.stream.write("\n")
            self.stream.flush()
            self.enabled = False


# --- the whole sweep ------------------------------------------------------------------------------
@dataclass
class SweepResult:
    """What a sweep produced: the table (columns), the knees, and what ran."""

    out_dir: Path
    table: dict[str, list[Any]]
    knees: list[dict[str, Any]]
    total: int  # distinct runs in the sweep
    computed: int  # runs simulated by this call
    resumed: int  # runs found finished in the runs directory
    failed: list[tuple[RunTask, str]]


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


def _prepare_out(out: Path) -> None:
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


def run_sweep(
    spec: SweepSpec,
    out_dir: str | Path,
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    progress: bool = False,
    on_result: Callable[[RunTask, dict[str, Any]], None] | None = None,
) -> SweepResult:
    """Run every unfinished run of ``spec``, saving each as it finishes; write the table.

    ``scheduler``: a ``dask.distributed`` scheduler address; otherwise a local process pool of
    ``workers`` processes (default: the CPU count; 1 runs inline). ``on_result`` is called after
    each run is saved. On an interruption (KeyboardInterrupt) the table of what finished is
    written and the interruption re-raised; run the sweep again to resume. Raises
    :class:`SweepError` for an invalid sweep (before anything runs) and :class:`SweepRunError`
    after writing the table if any run failed.
    """
    out = Path(out_dir)
    p = plan(spec)
    _prepare_out(out)
    write_atomic(out / "sweep.toml", spec.text.encode("utf-8"))
    write_atomic(
        out / META_FILE, (json.dumps(meta(spec), indent=2, sort_keys=True) + "\n").encode()
    )
    store = RunStore(out)
    todo = [t for k, t in p.tasks.items() if not store.has(k)]
    resumed = len(p.tasks) - len(todo)
    bar = SweepProgress(len(p.tasks), resumed, enabled=progress)
    failed: list[tuple[RunTask, str]] = []
    computed = 0

    def handle(task: RunTask, res: dict[str, Any] | BaseException) -> None:
        nonlocal computed
        if isinstance(res, BaseException):
            failed.append((task, f"{type(res).__name__}: {res}"))
            bar.advance(ok=False)
            return
        store.save(res, task.scenario_toml)
        computed += 1
        bar.advance()
        if on_result is not None:
            on_result(task, res)

    n = workers if workers is not None else (os.cpu_count() or 1)
    try:
        if not todo:
            pass
        elif scheduler is not None:
            _run_dask(todo, scheduler, handle)
        elif n <= 1 or len(todo) == 1:
            _run_inline(todo, handle)
        else:
            _run_pool(todo, min(n, len(todo)), handle)
    finally:
        bar.close()
        table = build_table(p, store)
        knees = knees_of(spec, table)
        write_outputs(spec, out, table, knees)
    if failed:
        task, why = failed[0]
        raise SweepRunError(
            f"{len(failed)} of {len(p.tasks)} runs failed (the table has the rest); first: "
            f"point {_point_desc(spec.factor_keys, p.points[task.point])}, replication "
            f"{task.replication}: {why}"
        )
    return SweepResult(out, table, knees, len(p.tasks), computed, resumed, failed)


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
    return toml_literal(v) if not isinstance(v, str) else v


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
