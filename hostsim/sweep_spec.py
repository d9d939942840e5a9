"""The sweep file: its format, parsing and validation, and the seed of each replication.

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

This module also holds the sweep's errors and the two small value helpers every other sweep
module uses (:func:`label` for people, :func:`hostsim.toml_text.value` for ``--set`` values).
"""

from __future__ import annotations

import itertools
import math
import os
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hostsim import toml_text
from hostsim.knee import DEFAULT_GROWTH, DEFAULT_MULTIPLE
from hostsim.records import PATH_NAMES
from hostsim.run import ENGINES
from hostsim.scenario import default_text

SWEEP_KEYS = {"base", "replications", "seed", "engine", "load_factor", "set", "factors", "knee"}
KNEE_KEYS = {"path", "percentile", "multiple", "growth"}
KNEE_PERCENTILES = ("p50", "p90", "p99", "p999")


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
    shown = [toml_text.value(x) for x in values]
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
