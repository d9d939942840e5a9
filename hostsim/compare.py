"""One scenario and seed under several kernel variants and lock models, side by side.

Every (variant, lock model) pair runs the same scenario with the same seed, so request ``k`` of
every vCPU has the same register state and hardware answers everywhere (common random numbers):
differences in outcome counts are differences of kernel semantics (what a guest sees when no hook
is registered, which condition code it gets ...), differences in latency are differences of the
lock design. (How many requests fit in the run still depends on the timing, so totals can differ
a little where one design blocks vCPUs longer.) Outcome counts are taken from each run's records
(measured requests: issued after the warm-up and finished), latency and mutex figures from its
summary.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hostsim.moments import percentile_key
from hostsim.records import PATH_NAMES
from hostsim.results import RECORDS_FILE, read_columns
from hostsim.rules import Kind
from hostsim.run import simulate
from hostsim.scenario import load
from hostsim.scenario_types import LOCK_MODELS
from hostsim.table import format_text, to_csv_text, write_atomic
from hostsim.variants import VARIANTS

#: Outcome sections, in display order: (section, record column).
SECTIONS: tuple[tuple[str, str], ...] = (
    ("path", "path"),
    ("kind", "kind"),
    ("rc", "guest_visible_rc"),
    ("cc", "cc"),
    ("pgm", "pgm_code"),
)
SECTION_TITLES = {
    "path": "outcome path",
    "kind": "decode kind",
    "rc": "guest-visible RC",
    "cc": "condition code",
    "pgm": "program check",
}


class CompareError(ValueError):
    """Unknown variant or lock model names."""


@dataclass
class CompareRun:
    """One (variant, lock model) run: its summary and outcome counts."""

    variant: str
    lock_model: str
    summary: dict[str, Any]
    outcomes: dict[str, dict[str, int]]  # section -> category -> count
    out_dir: Path | None


@dataclass
class Comparison:
    """All runs of a comparison, in variant-major order."""

    scenario: str
    seed: int
    engine: str
    variants: list[str]
    lock_models: list[str]
    runs: list[CompareRun]

    def run(self, variant: str, lock_model: str) -> CompareRun:
        return next(r for r in self.runs if r.variant == variant and r.lock_model == lock_model)


def _category(section: str, code: int) -> str:
    if section == "path":
        return PATH_NAMES[code]
    if section == "kind":
        return Kind(code).name.lower()
    if section == "rc":
        return "none" if code < 0 else f"0x{code:02x}"
    if section == "cc":
        return "unchanged" if code < 0 else str(code)
    return "none" if code < 0 else f"0x{code:02x}"


def outcome_counts(folder: str | Path, warmup_ns: int) -> dict[str, dict[str, int]]:
    """Outcome counts of the measured requests of a result folder, per section."""
    cols = ["t_issue", "t_resume", *(c for _, c in SECTIONS)]
    t = read_columns(Path(folder) / RECORDS_FILE, "records", cols)
    ok = (t["t_issue"] >= warmup_ns) & (t["t_resume"] >= 0)
    out: dict[str, dict[str, int]] = {}
    for section, col in SECTIONS:
        v = t[col][ok].astype(np.int64)
        if section == "pgm":
            v = v[v >= 0]  # only requests that got a program check
        uniq, cnt = np.unique(v, return_counts=True)
        out[section] = {_category(section, int(u)): int(c) for u, c in zip(uniq, cnt, strict=True)}
    return out


def _check(names: Sequence[str], known: Sequence[str], what: str) -> list[str]:
    if not names:
        raise CompareError(f"no {what} given; expected some of {list(known)}")
    for n in names:
        if n not in known:
            raise CompareError(f"unknown {what} {n!r}; expected one of {list(known)}")
    if len(set(names)) != len(names):
        raise CompareError(f"a {what} is named twice in {list(names)}")
    return list(names)


def compare(
    scenario: str | Path | None,
    variants: Sequence[str],
    lock_models: Sequence[str] = ("global",),
    *,
    sets: Sequence[str] = (),
    engine: str = "fast",
    out_dir: str | Path | None = None,
) -> Comparison:
    """Run ``scenario`` (None: the built-in default) under each variant x lock model.

    Result folders go to ``<out_dir>/runs/<variant>__<lock model>`` (replaced if present); without
    ``out_dir`` they are written to a temporary folder and removed.
    """
    variants = _check(variants, list(VARIANTS), "variant")
    lock_models = _check(lock_models, list(LOCK_MODELS), "lock model")
    base = load(scenario, list(sets))  # validate once, with the caller's overrides
    tmp = None
    root = Path(out_dir) / "runs" if out_dir is not None else None
    if root is None:
        tmp = Path(tempfile.mkdtemp(prefix="hostsim-compare-"))
        root = tmp
    runs = []
    try:
        for v in variants:
            for m in lock_models:
                s = load(scenario, [*sets, f"host.variant={v}", f"host.lock_model={m}"])
                folder = root / f"{v}__{m}"
                res = simulate(s, engine, folder, overwrite=True)
                assert res.out_dir is not None
                outcomes = outcome_counts(res.out_dir, s.warmup_ns)
                runs.append(CompareRun(v, m, res.summary, outcomes, None if tmp else res.out_dir))
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return Comparison(base.source, base.seed, engine, variants, lock_models, runs)


# --- tables ---------------------------------------------------------------------------------------
def _pct_us(lat: Mapping[str, Any], p: float) -> float:
    return lat["percentile"][percentile_key(p)] / 1000 if lat["N"] else float("nan")


def _categories(cmp: Comparison, section: str) -> list[str]:
    seen: dict[str, None] = {}
    for r in cmp.runs:
        for k in r.outcomes.get(section, {}):
            seen[k] = None
    if section == "path":
        return [p for p in PATH_NAMES if p in seen]
    return sorted(seen)


def rows(cmp: Comparison) -> dict[str, list[Any]]:
    """compare.csv as columns: one row per (variant, lock model)."""
    cols: dict[str, list[Any]] = {
        "variant": [],
        "lock_model": [],
        "seed": [],
        "measured": [],
        "throughput_per_s": [],
        "mutex_utilisation": [],
        "mutex_wait_mean_us": [],
        "mutex_wait_p99_us": [],
    }
    paths = ["all", *_categories(cmp, "path")]
    for p in paths:
        for stat in ("p50_us", "p99_us", "p999_us", "max_us"):
            cols[f"{p}_{stat}"] = []
    cats = [(s, c) for s, _ in SECTIONS for c in _categories(cmp, s)]
    for s, c in cats:
        cols[f"{s}_{c}"] = []
    for r in cmp.runs:
        sm = r.summary
        mutex = sm["mutex"]
        cols["variant"].append(r.variant)
        cols["lock_model"].append(r.lock_model)
        cols["seed"].append(cmp.seed)
        cols["measured"].append(sm["counts"]["measured"])
        cols["throughput_per_s"].append(sm["throughput_per_s"])
        cols["mutex_utilisation"].append(mutex["utilisation"])
        w = mutex["wait_ns"]
        cols["mutex_wait_mean_us"].append(w["mean"] / 1000 if w["N"] else float("nan"))
        cols["mutex_wait_p99_us"].append(_pct_us(w, 99.0))
        for p in paths:
            lat = sm["all"]["lat_ns"] if p == "all" else sm["paths"][p]["lat_ns"]
            cols[f"{p}_p50_us"].append(_pct_us(lat, 50.0))
            cols[f"{p}_p99_us"].append(_pct_us(lat, 99.0))
            cols[f"{p}_p999_us"].append(_pct_us(lat, 99.9))
            cols[f"{p}_max_us"].append(lat["max"] / 1000 if lat["N"] else float("nan"))
        for s, c in cats:
            cols[f"{s}_{c}"].append(r.outcomes.get(s, {}).get(c, 0))
    return cols


def differing_outcomes(cmp: Comparison, lock_model: str | None = None) -> list[tuple[str, str]]:
    """(section, category) whose count differs between variants (under one lock model)."""
    lm = lock_model or cmp.lock_models[0]
    out = []
    for s, _ in SECTIONS:
        for c in _categories(cmp, s):
            vals = {cmp.run(v, lm).outcomes.get(s, {}).get(c, 0) for v in cmp.variants}
            if len(vals) > 1:
                out.append((s, c))
    return out


def _f(x: float, fmt: str = ".2f") -> str:
    return "-" if x != x else format(x, fmt)


def format_compare(cmp: Comparison) -> str:
    """The comparison for a terminal: outcomes per variant, then latency per variant x lock."""
    lm = cmp.lock_models[0]
    diff = set(differing_outcomes(cmp, lm))
    out = [
        f"Scenario {cmp.scenario}, seed {cmp.seed}, engine {cmp.engine}: measured requests"
        " (issued after the warm-up, finished)",
        "",
        f"What the guests see (lock model {lm}); * marks counts that differ between variants:",
    ]
    head = ["", "", *cmp.variants]
    body = []
    for s, _ in SECTIONS:
        for c in _categories(cmp, s):
            mark = " *" if (s, c) in diff else ""
            counts = [str(cmp.run(v, lm).outcomes.get(s, {}).get(c, 0)) for v in cmp.variants]
            body.append([SECTION_TITLES[s], c + mark, *counts])
    out.append(format_text(head, body))
    if not diff:
        out.append("(outcome counts are the same under every variant for this scenario)\n")

    paths = _categories(cmp, "path")
    head = [
        "variant",
        "lock",
        "throughput/s",
        "all p50(us)",
        "all p99(us)",
        "all p99.9(us)",
        *(f"{p} p99(us)" for p in paths),
        "mutex util%",
        "wait p99(us)",
    ]
    body = []
    for r in cmp.runs:
        sm = r.summary
        body.append(
            [
                r.variant,
                r.lock_model,
                f"{sm['throughput_per_s']:.0f}",
                _f(_pct_us(sm["all"]["lat_ns"], 50.0)),
                _f(_pct_us(sm["all"]["lat_ns"], 99.0)),
                _f(_pct_us(sm["all"]["lat_ns"], 99.9)),
                *(_f(_pct_us(sm["paths"][p]["lat_ns"], 99.0)) for p in paths),
                f"{100 * sm['mutex']['utilisation']:.2f}",
                _f(_pct_us(sm["mutex"]["wait_ns"], 99.0)),
            ]
        )
    out += ["Latency and the vfio_ap mutex (per-mdev: summed over the guests' mutexes):"]
    out.append(format_text(head, body))
    return "\n".join(out)


def plot_compare(cmp: Comparison, path: Path) -> Path:
    """compare.png: latency per variant x lock model, and the outcome counts that differ."""
    from hostsim.plot_compare import plot_comparison

    return plot_comparison(cmp, path)


def write_compare(cmp: Comparison, out_dir: str | Path, *, plot: bool = True) -> list[Path]:
    """Write ``compare.csv`` (and ``compare.png``) into ``out_dir``; returns the files."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = [out / "compare.csv"]
    write_atomic(files[0], to_csv_text(rows(cmp)).encode("utf-8"))
    if plot:
        files.append(plot_compare(cmp, out / "compare.png"))
    return files
