"""A sweep expanded into runs: every point x replication resolved, checked and keyed.

:func:`plan` applies the fixed overrides and each point's factor values to the base scenario,
validates every resolved scenario before anything runs, and names each run by a hash of what
determines its result (:func:`run_key`: the resolved scenario text, the seed, the engine and the
hostsim version), so identical runs are simulated once and a finished run is found again when a
sweep is resumed. A :class:`RunTask` carries the resolved scenario as TOML text, so a worker needs
hostsim installed but no files.
"""

from __future__ import annotations

import copy
import hashlib
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from hostsim import __version__, toml_text
from hostsim.scenario import apply_set, from_dict
from hostsim.scenario_toml import resolved_toml
from hostsim.scenario_types import ScenarioError
from hostsim.sweep_spec import SweepError, SweepSpec


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


def point_desc(keys: Sequence[str], values: Sequence[Any]) -> str:
    """A point for messages: ``host.lock_model="global", guests.0.count=8``."""
    return ", ".join(f"{k}={toml_text.value(v)}" for k, v in zip(keys, values, strict=True))


def _apply(spec: SweepSpec, raw: dict[str, Any], key: str, value: Any, where: str) -> None:
    try:
        apply_set(raw, f"{key}={toml_text.value(value)}")
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
        desc = point_desc(keys, values)
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
