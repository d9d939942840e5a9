"""``hostsim replay``: what to replay on (:func:`plan_replay`), the run, what it learned
(:func:`run_replay`).

A native recording (``hostsim run --record``) replays by default with the seed and the scenario
its header names (:func:`workloads.replay.recording_meta`: the resolved scenario is embedded);
``--scenario`` and ``--seed`` override them, and say so. A kernel trace replays on ``--scenario``
(the built-in default without it): a capture is rebased so that its earliest event is time 0
(:func:`workloads.trace_read.read_trace`), and unless the user sets ``run.duration_ms`` the run
lasts until its last intercept plus :data:`DRAIN_NS` (a capture: also no warm-up unless set; a
hostsim trace keeps its scenario's duration when its arrivals all fall inside it).

After the run the result folder also holds ``replay.json`` (where the seed, scenario and time
base came from, counts read and simulated, warnings, and a trace's inference notes) and, for a
trace, ``trace_vs_sim.json`` (per outcome class: count, mean, p50, p99 of the intercept
duration ``sie_exit -> sie_enter``, trace and simulation). A replay that simulates fewer
requests than it read says so on stderr with the likely cause; one that simulates nothing exits
with :data:`EXIT_NOTHING`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hostsim.scenario import load, loads
from hostsim.scenario_types import Scenario
from hostsim.topology import topology
from workloads.replay import ReplayError, ReplayFeed, read_header
from workloads.trace_durations import measured_by_class, record_class
from workloads.trace_format import CLASSES
from workloads.trace_read import ImportedTrace, read_trace

#: How long a trace replay runs past its last intercept (ns): the run's end stops issues, not
#: intercepts in flight, so this only absorbs simulated intercepts slower than traced ones (one
#: msleep(20) at HZ=100 lasts up to 40 ms).
DRAIN_NS = 50_000_000
#: The exit status of a replay that simulated nothing.
EXIT_NOTHING = 3
REPLAY_FILE = "replay.json"
TABLE_FILE = "trace_vs_sim.json"
NATIVE_SUFFIXES = (".jsonl", ".json", ".ndjson", ".csv")
BUILT_IN = "<built-in default>"


@dataclass
class ReplayPlan:
    """What a replay runs: the scenario, the feed, and where each choice came from."""

    file: str
    kind: str  # "recording" or "trace"
    scenario: Scenario
    feed: Any  # a ReplayFeed, or per-vCPU script arrays
    read: int  # arrivals (requests) read
    imported: ImportedTrace | None = None
    #: stderr lines: overrides and choices the user should know of
    messages: list[str] = field(default_factory=list)
    #: for replay.json
    info: dict[str, Any] = field(default_factory=dict)
    #: the latest arrival read (ns, after any rebase): to tell why requests were not issued
    last_t: int = -1


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _sets_key(sets: list[str], prefix: str) -> bool:
    return any(x.split("=", 1)[0].strip().startswith(prefix) for x in sets)


def _recording_scenario(
    file: str, header: dict[str, Any], scenario: str | None, seed: int | None, sets: list[str]
) -> tuple[Scenario, list[str], dict[str, Any]]:
    """The scenario a recording replays on, the stderr messages and replay.json's choices."""
    sets = list(sets)
    msgs: list[str] = []
    rec_seed, rec_name = header.get("seed"), header.get("scenario")
    text = header.get("scenario_toml")
    info: dict[str, Any] = {"recorded_seed": rec_seed, "recorded_scenario": rec_name}
    if seed is not None:
        if isinstance(rec_seed, int) and rec_seed != seed:
            msgs.append(f"--seed {seed} overrides the seed {rec_seed} that {file} names")
        sets.append(f"run.seed={seed}")
        info["seed_from"] = "--seed"
    elif isinstance(rec_seed, int):
        sets.append(f"run.seed={rec_seed}")
        info["seed_from"] = "recording"
    else:
        info["seed_from"] = "scenario"
    if scenario is not None:
        if rec_name is not None or text is not None:
            sha = header.get("scenario_sha256")
            sha = f", sha256 {sha[:12]}" if isinstance(sha, str) else ""
            msgs.append(
                f"--scenario {scenario} overrides the scenario that {file} names ({rec_name}{sha})"
            )
        info["scenario_from"] = "--scenario"
        return load(scenario, sets), msgs, info
    if isinstance(text, str):
        want = header.get("scenario_sha256")
        if want is not None and want != _sha(text):
            raise ReplayError(
                f"{file}:1: the embedded scenario_toml does not match its scenario_sha256 "
                "(was the header edited?); pass --scenario"
            )
        info["scenario_from"] = "recording (embedded)"
        return loads(text, str(rec_name or f"{file} (embedded)"), sets), msgs, info
    if rec_name in (None, BUILT_IN):
        if rec_name is None:
            msgs.append(f"{file} names no scenario: replaying on the built-in default")
        info["scenario_from"] = "built-in default"
        return load(None, sets), msgs, info
    if Path(rec_name).is_file():
        msgs.append(f"{file} does not embed its scenario (an older recording): loaded {rec_name}")
        info["scenario_from"] = "recording (file name)"
        return load(rec_name, sets), msgs, info
    raise ReplayError(
        f"{file}:1: the recording names scenario {rec_name!r}, which it does not embed and "
        "which is not found; pass --scenario"
    )


def _trace_duration(s: Scenario, imp: ImportedTrace, sets: list[str]) -> tuple[list[str], str]:
    """Extra ``--set`` lines giving a trace replay its length (and warm-up), and why."""
    if _sets_key(sets, "run.duration"):
        return [], "--set"
    if imp.intercepts == 0:
        return [], "scenario (the trace has no intercept)"
    if imp.shift == 0 and s.duration_ns > imp.last_arrival:
        return [], "scenario (it covers the trace)"  # a hostsim trace of this scenario
    end = imp.last_arrival + DRAIN_NS
    why = f"the trace: its last intercept + {DRAIN_NS / 1e6:g} ms"
    if s.events:
        last_event = max(ev.at_ns for ev in s.events) + 1
        if last_event > end:
            end, why = last_event, "the scenario's last host event (later than the trace)"
    extra = [f"run.duration_ms={end / 1e6!r}"]
    if imp.shift and not _sets_key(sets, "run.warmup"):
        extra.append("run.warmup_ms=0")
    return extra, why


def _import(file: str, s: Scenario, skip_bad: bool) -> ImportedTrace:
    """A kernel trace, or the kprobe register capture (replayed with its registers)."""
    from workloads.capture_base import head
    from workloads.capture_kprobe import FORMAT as KPROBE

    if KPROBE.detect(head(file)):
        from workloads.replay_kprobe import read_kprobe_trace

        return read_kprobe_trace(file, s)
    return read_trace(file, s, skip_bad=skip_bad)


def plan_replay(
    file: str,
    scenario: str | None = None,
    seed: int | None = None,
    sets: list[str] | tuple[str, ...] = (),
    skip_bad: bool = False,
) -> ReplayPlan:
    """Read ``file`` (a recording or a kernel trace) and choose what it replays on.

    Raises :class:`~workloads.replay.ReplayError`,
    :class:`~workloads.trace_format.TraceError`, :class:`~hostsim.scenario_types.ScenarioError`.
    """
    sets = list(sets)
    if Path(file).suffix.lower() in NATIVE_SUFFIXES:
        header = read_header(file)
        s, msgs, info = _recording_scenario(file, header, scenario, seed, sets)
        feed = ReplayFeed(file, topology(s).vcpu_guest, skip_bad=skip_bad)
        info.update(kind="recording", skipped=feed.n_skipped)
        return ReplayPlan(file, "recording", s, feed, feed.rows, None, msgs, info, feed.last_t)
    if seed is not None:
        sets.append(f"run.seed={seed}")
    s = load(scenario, sets)
    imp = _import(file, s, skip_bad)
    extra, why = _trace_duration(s, imp, sets)
    if extra:
        s = load(scenario, sets + extra)
    msgs = [] if why == "--set" else [f"run length {s.duration_ns / 1e6:g} ms from {why}"]
    if imp.shift:
        msgs.append(
            f"trace rebased: its earliest event ({imp.t0 / 1e9:.6f} s) is time 0"
            + ("; no warm-up" if "run.warmup_ms=0" in extra else "")
        )
    info = {
        "kind": "trace",
        "format": imp.fmt,
        "scenario_from": "--scenario" if scenario else "built-in default",
        "seed_from": "--seed" if seed is not None else "scenario",
        "t0_ns": imp.t0,
        "shift_ns": imp.shift,
        "duration_from": why,
        "skipped": imp.skipped,
        "incomplete": imp.incomplete,
    }
    scripts = {v: a for v, a in imp.arrivals.items() if len(a)}
    return ReplayPlan(file, "trace", s, scripts, imp.intercepts, imp, msgs, info, imp.last_arrival)


class _Fold:
    """Per-class intercept durations of the replayed run, folded chunk by chunk."""

    def __init__(self) -> None:
        self.cls: list[np.ndarray] = []
        self.dur: list[np.ndarray] = []
        self.n = 0

    def __call__(self, chunk: np.ndarray) -> None:
        self.cls.append(record_class(chunk))
        self.dur.append(chunk["t_resume"] - chunk["t_exit"])
        self.n += len(chunk)

    def measured(self) -> dict[str, dict[str, Any]]:
        cls = np.concatenate(self.cls) if self.cls else np.zeros(0, np.int8)
        dur = np.concatenate(self.dur) if self.dur else np.zeros(0, np.int64)
        return measured_by_class(cls, dur)


def shortfall_warnings(plan: ReplayPlan, simulated: int) -> list[str]:
    """What to say loudly when the run simulated fewer requests than the file held."""
    read, end = plan.read, plan.scenario.duration_ns
    if read == 0:
        return [f"{plan.file} holds no arrivals that can be replayed: nothing was simulated"]
    if simulated >= read:
        return []
    head = (
        f"nothing was simulated: {read} requests were read from {plan.file}"
        if simulated == 0
        else f"only {simulated} of the {read} requests read from {plan.file} were simulated"
    )
    if plan.last_t >= end:
        cause = (
            f"the file's arrivals run to {plan.last_t / 1e6:g} ms but the run ends at "
            f"{end / 1e6:g} ms (run.duration_ms); set a longer duration"
            + (
                ", or is this a capture whose times were not rebased?"
                if plan.kind == "trace"
                else ""
            )
        )
    else:
        cause = (
            "simulated intercepts slower than the recorded ones pushed the vCPUs' later issues "
            f"past the end of the run ({end / 1e6:g} ms); set a longer run.duration_ms"
            + (
                " (or replay with the seed and scenario the recording names)"
                if plan.kind == "recording"
                else ""
            )
        )
    return [f"{head}: likely cause: {cause}"]


def class_warnings(plan: ReplayPlan, sim: dict[str, dict[str, Any]]) -> list[str]:
    """A trace's classes that the replayed run did not reproduce."""
    imp = plan.imported
    if imp is None:
        return []
    out = []
    if imp.not_reproduced:
        out.append(
            f"{imp.not_reproduced} traced intercepts take another path than traced on this "
            "scenario whatever their registers (see 'classes NOT reproduced' in replay.json)"
        )
    diff = [
        f"{c} {imp.measured[c]['n']} traced, {sim[c]['n']} simulated"
        for c in CLASSES
        if imp.measured[c]["n"] != sim[c]["n"]
    ]
    if diff:
        out.append("outcome classes differ: " + "; ".join(diff))
    return out


def table_json(trace: dict[str, dict[str, Any]], sim: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The trace-versus-simulation table as saved in ``trace_vs_sim.json``."""
    return {
        "what": "intercept duration sie_exit -> sie_enter per outcome class, trace vs simulation",
        "unit": "ns",
        "classes": {c: {"trace": trace[c], "sim": sim[c]} for c in CLASSES},
    }


@dataclass
class ReplayOutcome:
    """What a replay found, beside the run's result."""

    simulated: int
    warnings: list[str]
    sim_measured: dict[str, dict[str, Any]]
    files: list[str]


def run_replay(
    plan: ReplayPlan,
    engine: str = "fast",
    out: str | Path | None = None,
    *,
    overwrite: bool = False,
    progress: bool = False,
) -> tuple[Any, ReplayOutcome]:
    """Simulate ``plan`` (see :func:`hostsim.run.simulate`); the result folder gets
    ``replay.json`` and, for a trace, ``trace_vs_sim.json``."""
    from hostsim.run import simulate

    fold = _Fold()
    got: dict[str, Any] = {}

    def files() -> dict[str, str]:
        sim = fold.measured()
        warnings = shortfall_warnings(plan, fold.n) + class_warnings(plan, sim)
        got.update(sim=sim, warnings=warnings)
        doc = {
            "file": plan.file,
            **plan.info,
            "seed": plan.scenario.seed,
            "scenario": plan.scenario.source,
            "duration_ns": plan.scenario.duration_ns,
            "read": plan.read,
            "simulated": fold.n,
            "messages": plan.messages,
            "warnings": warnings,
        }
        out_files = {}
        if plan.imported is not None:
            doc["notes"] = plan.imported.notes
            doc["skip_messages"] = plan.imported.skip_messages
            table = table_json(plan.imported.measured, sim)
            out_files[TABLE_FILE] = json.dumps(table, sort_keys=True, indent=2) + "\n"
        out_files[REPLAY_FILE] = json.dumps(doc, sort_keys=True, indent=2) + "\n"
        got["files"] = sorted(out_files)
        return out_files

    res = simulate(
        plan.scenario,
        engine,
        out,
        overwrite=overwrite,
        progress=progress,
        replay=plan.feed,
        on_records=fold,
        extra_files=files if out is not None else None,
    )
    if "sim" not in got:  # no result folder: files() was not called
        files()
        got["files"] = []
    return res, ReplayOutcome(fold.n, got["warnings"], got["sim"], got["files"])
