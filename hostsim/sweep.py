"""Capacity sweeps: a base scenario times factors times replications, run in parallel, resumable.

The sweep file and its validation are in :mod:`hostsim.sweep_spec` (with the seeds: replication
``r`` of every point shares one seed, common random numbers); its expansion into runs in
:mod:`hostsim.sweep_plan`; the worker and the backends in :mod:`hostsim.sweep_backends`; the runs
directory, the table and the knees in :mod:`hostsim.sweep_table`. This module runs a whole sweep
(:func:`run_sweep`) and draws its progress line.

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

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from hostsim.sweep_backends import run_tasks
from hostsim.sweep_plan import RunTask, plan, point_desc
from hostsim.sweep_spec import SweepRunError, SweepSpec
from hostsim.sweep_table import (
    META_FILE,
    RunStore,
    build_table,
    knees_of,
    load_runs,
    meta,
    prepare_out,
    write_outputs,
)
from hostsim.table import write_atomic


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
    prepare_out(out)
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

    try:
        run_tasks(todo, handle, workers=workers, scheduler=scheduler)
    finally:
        bar.close()
        runs = load_runs(p, store)
        table = build_table(p, store, runs)
        knees = knees_of(spec, table, p, runs)
        write_outputs(spec, out, table, knees)
    if failed:
        task, why = failed[0]
        raise SweepRunError(
            f"{len(failed)} of {len(p.tasks)} runs failed (the table has the rest); first: "
            f"point {point_desc(spec.factor_keys, p.points[task.point])}, replication "
            f"{task.replication}: {why}"
        )
    return SweepResult(out, table, knees, len(p.tasks), computed, resumed, failed)
