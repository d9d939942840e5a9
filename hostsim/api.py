"""The library API: load a scenario, run it, look at the result as DataFrames and plots.

Everything here is re-exported by :mod:`hostsim` (see ``docs/api.md``)::

    import hostsim

    s = hostsim.load("examples/stress-host.toml", overrides={"host.variant": "v4-2019"})
    res = hostsim.run(s, engine="fast", seed=7)
    res.records.groupby("path", observed=True)["latency_ns"].describe()
    res.plot_latency_cdf(ax)  # draws on a matplotlib Axes the caller owns

Nothing here changes the matplotlib backend, writes files unless an ``out`` folder is given, or
prints unless ``progress`` is asked for.
"""

from __future__ import annotations

import copy
import os
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from hostsim import units
from hostsim.compare import Comparison, format_compare, rows, write_compare
from hostsim.compare import compare as _compare
from hostsim.report import format_report
from hostsim.run import RunResult, simulate
from hostsim.scenario import apply_set, default_text, from_dict
from hostsim.scenario_types import Scenario, ScenarioError
from hostsim.sim_process import AnyProcess
from hostsim.sweep import run_sweep
from hostsim.sweep_spec import loads_sweep

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes

#: Scenario overrides: ``{"run.seed": 3, "guests.0.count": 12}`` or ``["run.seed=3", ...]``
#: (``key.path=value`` in TOML syntax, as ``hostsim run --set``).
Overrides = Mapping[str, object] | Sequence[str]
#: The two engines (``docs/architecture.md``): the same records, byte for byte.
Engine = Literal["fast", "reference"]
#: Where a scenario comes from: a TOML file, a raw scenario tree (the TOML as a dict), an
#: already loaded :class:`Scenario`, or ``None`` for the built-in default.
ScenarioSource = Scenario | str | os.PathLike[str] | Mapping[str, Any] | None
#: The report styles of :func:`hostsim.report.format_report`.
ReportStyle = Literal["perf", "perf-unknown", "hostsim"]


def _assign(raw: dict[str, Any], key: str, value: object) -> None:
    """Set ``key.path`` (list elements by index) in a raw scenario tree to ``value``."""
    keys = key.strip().split(".")
    node: Any = raw
    for depth, k in enumerate(keys):
        where = ".".join(keys[: depth + 1])
        last = depth == len(keys) - 1
        if isinstance(node, list):
            if not k.isdigit() or int(k) >= len(node):
                raise ScenarioError(f"override {key}: {where}: expected an index below {len(node)}")
            if last:
                node[int(k)] = value
            else:
                node = node[int(k)]
        elif isinstance(node, dict):
            if last:
                units.replace(node, k, value)
            else:
                node = node.setdefault(k, {})
        else:
            raise ScenarioError(f"override {key}: {where}: the parent is not a table")


def _apply(raw: dict[str, Any], overrides: Overrides | None) -> None:
    if overrides is None:
        return
    if isinstance(overrides, str):
        raise TypeError("overrides: expected a mapping or a list of 'key=value' strings")
    if isinstance(overrides, Mapping):
        for k, v in overrides.items():
            _assign(raw, str(k), copy.deepcopy(v))
    else:
        for a in overrides:
            apply_set(raw, a)


def load(source: ScenarioSource = None, overrides: Overrides | None = None) -> Scenario:
    """A validated scenario from a TOML file, a raw tree (dict), a :class:`Scenario` (loaded
    again with the overrides) or the built-in default (``None``), with ``overrides`` applied
    before validation. Raises :class:`ScenarioError` naming the source and the key."""
    if isinstance(source, Scenario):
        raw, name = copy.deepcopy(source.raw), source.source
    elif isinstance(source, Mapping):
        raw, name = copy.deepcopy(dict(source)), "<dict>"
    else:
        if source is None:
            text, name = default_text(), "<built-in default>"
        else:
            name = os.fspath(source)
            try:
                text = Path(source).read_text(encoding="utf-8")
            except OSError as e:
                raise ScenarioError(f"{name}: cannot read: {e.strerror}") from None
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as e:
            raise ScenarioError(f"{name}: not valid TOML: {e}") from None
    _apply(raw, overrides)
    return from_dict(raw, name)


@dataclass(eq=False)
class Result:
    """One run: its summary (the ``summary.json`` dict), its tables as DataFrames, its report
    and plots. Built by :func:`run`."""

    scenario: Scenario
    engine: str
    #: the run's summary (``docs/outputs.md``), the content of ``summary.json``
    summary: dict[str, Any]
    #: the result folder, when :func:`run` was given ``out``
    out_dir: Path | None
    raw: RunResult = field(repr=False)

    @property
    def start_ns(self) -> int:
        """Start of the measurement window (the warm-up's end), ns."""
        return int(self.summary.get("window", {}).get("start_ns", self.scenario.warmup_ns))

    @cached_property
    def records(self) -> pd.DataFrame:
        """One row per request (:func:`hostsim.frames.records_frame`): ``path``, ``kind``,
        ``rule``, ``variant``, ``group`` categorical, times in ns, ``latency_ns``,
        ``measured``. Raises ``ValueError`` for a run made with ``records=False``."""
        from hostsim.frames import records_frame

        if self.raw.records is None:
            raise ValueError("this run kept no records: run it with records=True")
        groups = [g.name for g in self.scenario.guests for _ in range(g.count)]
        return records_frame(
            self.raw.records,
            variant=self.scenario.host.variant,
            groups=groups,
            start_ns=self.start_ns,
        )

    @cached_property
    def host_events(self) -> pd.DataFrame:
        """One row per host event: ``kind`` categorical (attach, reset ...), times in ns."""
        from hostsim.frames import host_events_frame

        return host_events_frame(self.raw.host_events, [e.label for e in self.scenario.events])

    @cached_property
    def locks(self) -> pd.DataFrame:
        """Every lock section of every host program: ``lock`` and ``mode`` categorical,
        ``wait_ns`` and ``hold_ns`` added."""
        from hostsim.frames import LOCK_DTYPE_EMPTY, locks_frame

        s = self.scenario
        owners = [f"event {i} ({ev.kind.name.lower()} {ev.label})" for i, ev in enumerate(s.events)]
        locks = self.raw.locks if self.raw.locks is not None else LOCK_DTYPE_EMPTY
        n_owner = int(locks["owner"].max()) + 1 if len(locks) else 0
        owners += [f"process {u}" for u in range(max(0, n_owner - len(owners)))]
        return locks_frame(locks, self.raw.lock_labels, owners)

    def latencies(self, measured: bool = True) -> dict[str, np.ndarray]:
        """Sorted latencies (ns) of ``"all"`` requests and of each path with samples."""
        from hostsim.plot_axes import latencies_by_path

        df = self.records
        if measured:
            df = df[df["measured"]]
        codes = df["path"].cat.codes.to_numpy()
        return latencies_by_path(codes, df["latency_ns"].to_numpy())

    def report(self, style: ReportStyle = "perf") -> str:
        """The end-of-run report of ``hostsim run`` (``docs/outputs.md``)."""
        return format_report(self.summary, style)

    def plot_latency_cdf(self, ax: Axes, *, tail: bool = False) -> Axes:
        """Draw the latency CDF per path on ``ax`` (log µs); ``tail``: 1 - CDF, log-log."""
        from hostsim.plot_axes import draw_latency_cdf

        draw_latency_cdf(ax, self.latencies(), tail=tail)
        ax.legend(loc="upper right" if tail else "lower right", fontsize=8)
        return ax

    def plot_latency_timeline(self, ax: Axes) -> Axes:
        """Draw every finished request's latency against its issue time on ``ax``."""
        from hostsim.plot_axes import draw_latency_timeline

        df = self.records
        df = df[df["latency_ns"] >= 0]
        return draw_latency_timeline(
            ax,
            df["path"].cat.codes.to_numpy(),
            df["t_issue"].to_numpy(),
            df["latency_ns"].to_numpy(),
        )


def run(
    scenario: ScenarioSource = None,
    *,
    engine: Engine = "fast",
    seed: int | None = None,
    overrides: Overrides | None = None,
    records: bool = True,
    out: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    progress: bool = False,
    processes: Sequence[AnyProcess] = (),
) -> Result:
    """Simulate ``scenario`` (anything :func:`load` takes) with ``engine``.

    ``seed`` overrides ``run.seed``; ``overrides`` as for :func:`load`; ``records``: keep
    every request record in memory (``Result.records``; False for long runs: the summary,
    host events and locks are still there); ``out``: also write a result folder, as
    ``hostsim run --out`` (``overwrite`` replaces an existing one); ``progress``: a progress
    line on stderr; ``processes``: user host processes beside the workload, generators of
    steps (:mod:`hostsim.process`) or SimPy code (:func:`hostsim.sim_process.simpy_process`),
    whose lock sections are in ``Result.locks``.
    """
    sets: dict[str, object] = {"run.seed": seed} if seed is not None else {}
    if isinstance(scenario, Scenario) and overrides is None and not sets:
        s = scenario
    else:
        s = load(scenario, overrides)
        if sets:
            s = load(s, sets)
    folder = Path(out) if out is not None else None
    res = simulate(
        s,
        engine,
        folder,
        overwrite=overwrite,
        progress=progress,
        keep_records=records,
        processes=list(processes),
    )
    return Result(s, engine, res.summary, res.out_dir, res)


def _sweep_text(spec: Mapping[str, Any]) -> str:
    from hostsim import toml_text

    table = dict(spec) if "sweep" in spec else {"sweep": dict(spec)}
    return toml_text.dumps(table)


@dataclass(eq=False)
class SweepResult:
    """A finished sweep: ``table`` (one row per point, ``sweep.csv``) and ``knees`` as
    DataFrames, and where its folder is. Built by :func:`sweep`."""

    out_dir: Path
    #: one row per point: the factors, then the statistics over the replications
    table: pd.DataFrame
    #: the knee per combination of the other factors (empty without a load factor)
    knees: pd.DataFrame
    total: int
    computed: int
    resumed: int

    def plot_percentile(
        self, ax: Axes, x: str, *, path: str = "all", stat: str = "p99", by: str | None = None
    ) -> Axes:
        """Draw ``<path>_<stat>_us`` (the mean over the replications) against factor ``x``
        on ``ax``, one line per value of factor ``by``."""
        col = f"{path}_{stat}_us"
        if col not in self.table:
            have = [str(c) for c in self.table.columns if str(c).endswith("_us")]
            raise KeyError(f"no column {col!r}; the table has {have}")
        groups = [(None, self.table)] if by is None else self.table.groupby(by, observed=True)
        for key, g in groups:
            g = g.sort_values(x)
            ax.plot(g[x], g[col], marker="o", label=f"{by} = {key!s}" if by else f"{path} {stat}")
        ax.set_xlabel(x)
        ax.set_ylabel(f"{path} {stat} (µs)")
        ax.set_yscale("log")
        ax.legend(fontsize=8)
        return ax


def sweep(
    spec: str | os.PathLike[str] | Mapping[str, Any],
    out: str | os.PathLike[str],
    *,
    workers: int | None = None,
    scheduler: str | None = None,
    progress: bool = False,
    base_dir: str | os.PathLike[str] | None = None,
) -> SweepResult:
    """Run a sweep (``hostsim sweep``) from a sweep file or a dict of its ``[sweep]`` table
    (with or without the ``sweep`` key) into the folder ``out``; resumes a sweep already
    there. ``base_dir`` resolves a relative ``base`` of a dict spec (default: the current
    folder). ``workers``/``scheduler`` as ``hostsim sweep --workers``/``--scheduler``."""
    from hostsim.frames import table_frame

    if isinstance(spec, Mapping):
        spec_obj = loads_sweep(_sweep_text(spec), "<dict>", Path(base_dir or "."))
    else:
        path = Path(spec)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as e:
            raise ScenarioError(f"{path}: cannot read: {e.strerror}") from None
        spec_obj = loads_sweep(text, str(path), Path(base_dir) if base_dir else path.parent)
    res = run_sweep(spec_obj, Path(out), workers=workers, scheduler=scheduler, progress=progress)
    knees = table_frame({k: [r[k] for r in res.knees] for k in res.knees[0]} if res.knees else {})
    return SweepResult(
        res.out_dir, table_frame(res.table), knees, res.total, res.computed, res.resumed
    )


@dataclass(eq=False)
class CompareResult:
    """The same scenario and seed under several kernel variants x lock models
    (``hostsim compare``). Built by :func:`compare`."""

    comparison: Comparison = field(repr=False)

    @cached_property
    def table(self) -> pd.DataFrame:
        """One row per (variant, lock model): throughput, latency percentiles (µs), mutex
        figures and outcome counts (``compare.csv``); ``variant``, ``lock_model`` categorical."""
        from hostsim.frames import table_frame

        return table_frame(rows(self.comparison), ("variant", "lock_model"))

    @cached_property
    def outcomes(self) -> pd.DataFrame:
        """Outcome counts in long form: variant, lock_model, section, category, count."""
        from hostsim.frames import table_frame

        cols: dict[str, list[object]] = {
            k: [] for k in ("variant", "lock_model", "section", "category", "count")
        }
        for r in self.comparison.runs:
            for section, cats in r.outcomes.items():
                for cat, n in cats.items():
                    for k, v in zip(cols, (r.variant, r.lock_model, section, cat, n), strict=True):
                        cols[k].append(v)
        df = table_frame(cols, ("variant", "lock_model", "section", "category"))
        df["count"] = df["count"].astype("int64")
        return df

    def summary(self, variant: str, lock_model: str = "global") -> dict[str, Any]:
        """The summary of one run."""
        return self.comparison.run(variant, lock_model).summary

    def report(self) -> str:
        """The text ``hostsim compare`` prints."""
        return format_compare(self.comparison)

    def write(self, out: str | os.PathLike[str], *, plot: bool = True) -> list[Path]:
        """Write ``compare.csv`` (and ``compare.png``) into ``out``; returns the files."""
        return write_compare(self.comparison, Path(out), plot=plot)


def compare(
    scenario: str | os.PathLike[str] | None = None,
    variants: Sequence[str] | None = None,
    lock_models: Sequence[str] = ("global",),
    *,
    overrides: Overrides | None = None,
    engine: Engine = "fast",
    out: str | os.PathLike[str] | None = None,
) -> CompareResult:
    """Run a scenario file (``None``: the built-in default) under each kernel variant
    (default: all) x lock model with one seed; ``out`` keeps each run's result folder under
    ``<out>/runs``. Overrides as for :func:`load`."""
    from hostsim.variants import VARIANTS

    sets = _as_sets(overrides)
    cmp = _compare(
        Path(scenario) if scenario is not None else None,
        list(variants) if variants is not None else list(VARIANTS),
        list(lock_models),
        sets=sets,
        engine=engine,
        out_dir=Path(out) if out is not None else None,
    )
    return CompareResult(cmp)


def _as_sets(overrides: Overrides | None) -> list[str]:
    """Overrides as ``key=value`` strings (values written as TOML)."""
    if overrides is None:
        return []
    if isinstance(overrides, str):
        raise TypeError("overrides: expected a mapping or a list of 'key=value' strings")
    if not isinstance(overrides, Mapping):
        return list(overrides)
    from hostsim import toml_text

    return [f"{k}={toml_text.value(v)}" for k, v in overrides.items()]


__all__ = [
    "CompareResult",
    "Result",
    "SweepResult",
    "compare",
    "load",
    "run",
    "sweep",
]
