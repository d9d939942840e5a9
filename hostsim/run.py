"""One simulation run, end to end: scenario -> engine -> records -> summary, files, report."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hostsim import __version__
from hostsim.model import Model
from hostsim.records import HOST_EVENT_DTYPE, RECORD_DTYPE
from hostsim.report import Progress
from hostsim.results import ResultWriter
from hostsim.run_programs import block_rows, host_mutex_sections, lock_rows, process_rows
from hostsim.scenario_toml import resolved_toml
from hostsim.scenario_types import Scenario
from hostsim.sim_process import AnyProcess
from hostsim.sink import RecordSink
from hostsim.summary import RunStats

ENGINES = ("fast", "reference")


@dataclass
class RunResult:
    """What a run produced: its summary, host events and where the files went (if anywhere)."""

    summary: dict[str, Any]
    host_events: np.ndarray
    records: np.ndarray | None  # kept only when asked (tests, small runs)
    out_dir: Path | None
    n_records: int
    #: the lock sections of the run's user host processes (:data:`PROCESS_DTYPE`)
    processes: np.ndarray | None = None
    #: every lock section of every host program, events and processes (:data:`LOCK_DTYPE`)
    locks: np.ndarray | None = None
    #: the name of each lock instance (``locks["lock"]`` and ``processes["lock"]`` index it)
    lock_labels: tuple[str, ...] = ()
    #: the state of every queue a hardware call touched, at the end (:data:`QUEUE_DTYPE`)
    queues: np.ndarray | None = None
    #: every interval a program kept a guest's vCPUs blocked (:data:`BLOCK_DTYPE`)
    blocks: np.ndarray | None = None


def make_engine(
    name: str, model: Model, sink: RecordSink, processes: tuple[AnyProcess, ...] = ()
) -> Any:
    """The engine called ``name`` over ``model``, writing into ``sink``, running the user host
    ``processes`` (:mod:`hostsim.process`) beside the workload."""
    if name == "reference":
        from hostsim.engine_ref import ReferenceEngine

        return ReferenceEngine(model, sink, processes)
    if name == "fast":
        from hostsim.engine_fast import FastEngine

        return FastEngine(model, sink, processes)
    raise ValueError(f"unknown engine {name!r}; expected one of {list(ENGINES)}")


def meta(s: Scenario, engine: str) -> dict[str, Any]:
    """The run description stored under ``"hostsim"`` in the summary (no wall-clock values)."""
    return {
        "version": __version__,
        "engine": engine,
        "scenario": s.source,
        "seed": s.seed,
        "variant": s.host.variant,
        "lock_model": s.host.lock_model,
        "guests": s.n_guests,
        "vcpus": s.n_vcpus,
        "duration_ns": s.duration_ns,
        "warmup_ns": s.warmup_ns,
    }


def simulate(
    s: Scenario,
    engine: str = "fast",
    out_dir: str | Path | None = None,
    *,
    overwrite: bool = False,
    progress: bool = False,
    keep_records: bool = False,
    record: str | Path | None = None,
    replay: Any = None,
    trace_out: Any = None,
    on_records: Any = None,
    on_columns: Any = None,
    processes: tuple[AnyProcess, ...] | list[AnyProcess] = (),
    extra_files: Callable[[], dict[str, str]] | None = None,
) -> RunResult:
    """Run scenario ``s`` with ``engine``; write a result folder atomically when ``out_dir``.

    An interrupted run (an exception or Ctrl-C) leaves ``<out_dir>.partial`` with what it had
    finished and a ``status.json`` that says why it stopped. ``record``: write the run's
    arrivals there (native replay format); ``replay``: drive the vCPUs with a recording (a
    :class:`workloads.replay.ReplayFeed` or a dict of per-vCPU script arrays) instead of the
    scenario's workloads; ``trace_out``: an object with ``add(chunk)`` (a trace writer);
    ``on_records``: called with every chunk of records, in canonical order; ``on_columns``:
    called with record columns (a mapping of :data:`RECORD_DTYPE` field names to arrays) as
    requests finish, in no particular order (for order-free folds: much cheaper);
    ``processes``: user host processes run beside the workload, generators of steps
    (:mod:`hostsim.process`) or SimPy code (:func:`hostsim.sim_process.simpy_process`), whose
    lock sections come back in ``RunResult.processes``; ``extra_files``: called once the run
    is done, before the folder is closed: more text files (name -> content) to write into it.
    """
    model = Model(s)
    if replay is not None:
        model.use_replay(replay)
    recorder = None
    if record is not None:
        from workloads.replay import ArrivalWriter, recording_meta

        recorder = ArrivalWriter(record, recording_meta(s))
    stats = RunStats(warmup_ns=s.warmup_ns, end_ns=s.duration_ns)
    kept: list[np.ndarray] = []
    writer = ResultWriter(out_dir, overwrite=overwrite) if out_dir is not None else None

    def emit(chunk: np.ndarray) -> None:
        stats.add_records(chunk)
        if writer is not None:
            writer.add_records(chunk)
        if recorder is not None:
            recorder.add(chunk)
        if trace_out is not None:
            trace_out.add(chunk)
        if on_records is not None:
            on_records(chunk)
        if keep_records:
            kept.append(chunk)

    # Statistics alone do not need records in order: they are handed on as they finish.
    ordered = any(x is not None for x in (writer, recorder, trace_out, on_records)) or keep_records

    def emit_columns(col: Any) -> None:
        stats.add_columns(col)
        if on_columns is not None:
            on_columns(col)

    sink = RecordSink(emit) if ordered else RecordSink(emit_columns, ordered=False)
    bar = Progress(s.duration_ns, enabled=progress, force=progress)
    try:
        if writer is not None:
            writer.write_scenario(resolved_toml(s))
        eng = make_engine(engine, model, sink, tuple(processes))
        host = eng.run(bar if progress else None)
        bar.update(s.duration_ns, sink.count)  # the final line shows the whole run
        bar.close()
        stats.add_host_events(host, host_mutex_sections(model, eng.progs))
        summary = stats.summary(meta(s, engine))
        add_host_sections(summary, model, eng.progs, *stats.window)
        if recorder is not None:
            recorder.close()
        if writer is not None:
            writer.add_host_events(host)
            writer.write_summary(summary)
            writer.write_hgrm(stats)
            for name, text in (extra_files() if extra_files is not None else {}).items():
                writer.write_text(name, text)
            final = writer.close()
        else:
            final = None
    except BaseException as e:
        bar.close()
        if recorder is not None:
            recorder.abort()
        if writer is not None:
            writer.abort(f"{type(e).__name__}: {e}")
        raise
    records = np.concatenate(kept) if kept else None
    if keep_records and records is None:
        records = np.zeros(0, dtype=RECORD_DTYPE)
    return RunResult(
        summary,
        host if len(host) else np.zeros(0, HOST_EVENT_DTYPE),
        records,
        final,
        sink.count,
        process_rows(model, eng.progs),
        lock_rows(eng.progs),
        tuple(model.locks.labels),
        eng.progs.queues.table(),
        block_rows(eng.progs),
    )


def add_host_sections(
    summary: dict[str, Any], model: Model, progs: Any, start: int, end: int
) -> None:
    """The summary's ``locks`` and ``blocked`` sections (:mod:`hostsim.lock_stats`) and its
    ``starts`` (:mod:`hostsim.starts`)."""
    from hostsim.lock_stats import block_summary, lock_summary
    from hostsim.starts import start_rows, start_summary

    s = model.s
    owners = [
        f"host event {i} ({ev.kind.name.lower()} {ev.label})" for i, ev in enumerate(s.events)
    ]
    owners += [f"host process {u}" for u in range(len(progs.runners) - len(s.events))]
    guests = [f"{g.name}[{j}]" for g in s.guests for j in range(g.count)]
    labels = tuple(model.locks.labels)
    summary["locks"] = lock_summary(lock_rows(progs), labels, owners, start, end)
    summary["blocked"] = block_summary(block_rows(progs), guests, start, end)
    summary["starts"] = start_summary(start_rows(model, progs))
