"""Running a sweep's tasks: the worker function and the inline, process-pool and Dask backends.

:func:`run_task` is what a worker runs: one simulation of a resolved scenario, reduced to its
compact row. :func:`run_tasks` runs a list of tasks inline, on a local process pool or on a
``dask.distributed`` cluster and hands each result (or exception) to a callback as it finishes,
in completion order; the caller saves the runs and rebuilds the table in the sweep's own order,
so every backend gives identical files.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any

from hostsim import __version__
from hostsim.run import simulate
from hostsim.scenario import loads
from hostsim.sweep_plan import RunTask
from hostsim.sweep_spec import SweepRunError
from hostsim.table import run_metrics


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


def run_tasks(
    tasks: Sequence[RunTask], handle: Handler, *, workers: int | None, scheduler: str | None
) -> None:
    """Run ``tasks``, calling ``handle(task, row or exception)`` as each finishes.

    ``scheduler``: a ``dask.distributed`` scheduler address; otherwise a local process pool of
    ``workers`` processes (default: the CPU count; 1, or a single task, runs inline).
    """
    n = workers if workers is not None else (os.cpu_count() or 1)
    if not tasks:
        pass
    elif scheduler is not None:
        _run_dask(tasks, scheduler, handle)
    elif n <= 1 or len(tasks) == 1:
        _run_inline(tasks, handle)
    else:
        _run_pool(tasks, min(n, len(tasks)), handle)
