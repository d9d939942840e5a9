"""``hostsim calibrate``: fit the costs a capture can see and write them as a ``[costs]`` TOML
fragment (each with its sample count and goodness of fit as comments).

Every measured quantity is a sum of hostsim costs (how the engines add them up:
:mod:`hostsim.request`, :func:`hostsim.timing.hold_ns`, :mod:`hostsim.host_ops`). A fit takes one
*target* cost per quantity and subtracts the others (*known*: the scenario's, or fitted earlier
from the same captures). :data:`QUANTITIES` is the table, in fitting order.

How a distribution is fitted (:func:`fit_target`):

* every known part fixed: the residuals ``x = d - sum(known)`` are exact samples of the target;
  lognormal by maximum likelihood (``mu``, ``sigma`` of ``log x``); the Kolmogorov-Smirnov
  distance ``D`` to the fitted lognormal is compared with Lilliefors' 1 % critical value for
  estimated parameters, ``1.031 / sqrt(n)``; above it, or with fewer than :data:`MIN_FIT`
  samples, the fit is the empirical distribution of ``x`` (at most :data:`MAX_SAMPLES` values:
  quantiles beyond that); all ``x`` equal: fixed;
* some known part random: moments, ``mean = mean(d) - sum(mean(known))`` and
  ``var = var(d) - sum(var(known))`` (independent parts), turned into a lognormal; its ``D`` is
  measured between ``d`` and a Monte Carlo sample of the fitted target plus the known parts, and
  compared with the two-sample 1 % value ``1.628 * sqrt((n + m) / (n m))``; the empirical fallback
  is ``d - sum(mean(known))`` (its spread includes the known parts' spread: said in the note);
* an aggregate (``perf kvm stat``: n, mean, standard deviation, min, max): moments, no test.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hostsim import toml_text
from hostsim.dists import Dist, parse_dist
from hostsim.scenario_types import Scenario
from workloads.trace_format import IN_KERNEL, PROGRAM_CHECK, USERSPACE_EXIT

MIN_FIT = 20  # fewer samples: empirical, no test
MAX_SAMPLES = 2000  # an empirical fit keeps at most this many values (quantiles beyond)
MC_DRAWS = 20_000  # Monte Carlo draws of a deconvolved fit's goodness-of-fit check
LILLIEFORS_1PCT = 1.031
TWO_SAMPLE_1PCT = 1.628

#: The in-kernel intercept of an enable answered NORMAL, uncontended: sie_exit -> sie_enter.
IN_KERNEL_CHAIN = (
    "kvm_decode",
    "rwsem_read",
    "hook_entry",
    "mutex_acquire",
    "lookup",
    "pin",
    "gisc_register",
    "host_aqic",
    "sie_entry",
)
#: vfio_ap's handle_pqap, entry to return (the kprobe capture), for the same enable.
HOOK_CHAIN = ("hook_entry", "mutex_acquire", "lookup", "pin", "gisc_register", "host_aqic")


@dataclass(frozen=True)
class Quantity:
    """A measured quantity: its key, the costs it sums, the default target, what it is."""

    key: str
    chain: tuple[str, ...]
    target: str
    what: str
    in_kernel: bool = False  # the target follows --in-kernel-cost


QUANTITIES: tuple[Quantity, ...] = (
    Quantity("sie.decide", ("kvm_decode",), "kvm_decode", "sie_exit -> inject / userspace exit"),
    Quantity(
        "sie.pgm",
        ("pgm_inject", "sie_entry"),
        "pgm_inject",
        "program-interrupt inject -> sie_enter (program checks)",
    ),
    Quantity(
        "sie.user",
        ("userspace_exit", "sie_entry"),
        "userspace_exit",
        "kvm_userspace_exit -> sie_enter (exits to userspace)",
    ),
    Quantity(
        "fgraph.irq_enable",
        ("pin", "gisc_register", "host_aqic"),
        "host_aqic",
        "function_graph vfio_ap_irq_enable",
        True,
    ),
    Quantity(
        "kprobe.hook",
        HOOK_CHAIN,
        "host_aqic",
        "handle_pqap.bt hook duration (enable, RC 0, uncontended)",
        True,
    ),
    Quantity(
        "sie.in_kernel",
        IN_KERNEL_CHAIN,
        "host_aqic",
        "sie_exit -> sie_enter answered in the kernel with CC 0, uncontended",
        True,
    ),
    Quantity(
        "lock.hook_hold",
        ("mutex_acquire", "lookup", "pin", "gisc_register", "host_aqic"),
        "host_aqic",
        "mdevs_lock holds of vfio_ap's handle_pqap seen through queued waiters (length-biased)",
        True,
    ),
    Quantity(
        "kvm_stat.unknown",
        IN_KERNEL_CHAIN,
        "host_aqic",
        "perf kvm stat UNKNOWN row (every PQAP taken as an uncontended in-kernel enable)",
        True,
    ),
    Quantity(
        "fgraph.reset_check",
        ("reset_interval", "host_tapq"),
        "reset_interval",
        "function_graph apq_reset_check (one sleep and one TAPQ: the reset done in time)",
    ),
    Quantity(
        "fgraph.set_kvm",
        ("rwsem_write", "mutex_acquire", "mdev_kvm_update", "apcb_update"),
        "mdev_kvm_update",
        "function_graph vfio_ap_mdev_set_kvm (uncontended)",
    ),
)


@dataclass
class Fit:
    """One fitted cost: its distribution (TOML table), how, from what, and how well."""

    cost: str
    dist: dict[str, Any]
    n: int
    method: str  # lognormal-mle | lognormal-moments | empirical | fixed | lognormal-aggregate
    quantity: str
    known: tuple[str, ...]
    ks: float | None = None
    ks_crit: float | None = None
    note: str = ""
    sources: tuple[str, ...] = ()

    @property
    def lognormal_rejected(self) -> bool:
        return self.ks is not None and self.ks_crit is not None and self.ks > self.ks_crit


@dataclass
class Calibration:
    """Fitted costs (the first fit of each cost), other fits of them, observations, notes."""

    fits: dict[str, Fit] = field(default_factory=dict)
    alternatives: list[Fit] = field(default_factory=list)
    observed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def dist_var(d: Dist) -> float:
    """Variance of a distribution before rounding (ns^2)."""
    k = d.kind
    if k == "fixed":
        return 0.0
    if k == "exponential":
        return float(d.p("mean_ns")) ** 2
    if k == "uniform":
        return (d.p("high_ns") - d.p("low_ns")) ** 2 / 12
    if k == "lognormal":
        s2 = d.p("sigma") ** 2
        return (math.exp(s2) - 1) * d.p("median_ns") ** 2 * math.exp(s2)
    return float(np.var(np.asarray(d.p("samples_ns"), float)))


_ERF = np.frompyfunc(math.erf, 1, 1)


def lognormal_cdf(x: np.ndarray, mu: float, sigma: float) -> np.ndarray:
    """CDF of a lognormal with log-mean ``mu`` and log-sd ``sigma`` at ``x`` (> 0)."""
    z = (np.log(np.maximum(x, 1e-300)) - mu) / (sigma * math.sqrt(2))
    return 0.5 * (1 + _ERF(z).astype(float))


def ks_one(x: np.ndarray, cdf: np.ndarray) -> float:
    """KS distance of sorted samples ``x`` whose model CDF values are ``cdf``."""
    n = len(x)
    i = np.arange(1, n + 1)
    return float(max(np.max(i / n - cdf), np.max(cdf - (i - 1) / n)))


def ks_two(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample KS distance."""
    a, b = np.sort(a), np.sort(b)
    grid = np.concatenate([a, b])
    fa = np.searchsorted(a, grid, side="right") / len(a)
    fb = np.searchsorted(b, grid, side="right") / len(b)
    return float(np.max(np.abs(fa - fb)))


def _empirical(x: np.ndarray) -> dict[str, Any]:
    x = np.sort(np.maximum(np.rint(x), 1)).astype(np.int64)
    if len(x) > MAX_SAMPLES:
        q = (np.arange(MAX_SAMPLES) + 0.5) / MAX_SAMPLES
        x = np.quantile(x, q, method="inverted_cdf").astype(np.int64)
    return {"dist": "empirical", "samples_ns": [int(v) for v in x]}


def _lognormal(median: float, sigma: float) -> dict[str, Any]:
    return {"dist": "lognormal", "median_ns": round(median, 3), "sigma": round(sigma, 6)}


def fit_target(
    d: np.ndarray, target: str, known: dict[str, Dist], quantity: str, seed: int = 0
) -> Fit:
    """Fit ``target`` from samples ``d`` of ``target + sum(known)`` (see the module docstring)."""
    d = np.asarray(d, np.float64)
    n = len(d)
    names = tuple(known)
    fixed = float(sum(k.fixed_ns for k in known.values() if k.kind == "fixed"))  # as drawn
    random = {k: v for k, v in known.items() if v.kind != "fixed" and dist_var(v) > 0}
    fixed += sum(v.mean_ns for v in known.values() if v.kind != "fixed" and dist_var(v) == 0)
    if not random:
        x = d - fixed
        clipped = int(np.sum(x < 1))
        note = f"{clipped} residuals below 1 ns set to 1 ns" if clipped else ""
        x = np.maximum(x, 1)
        if np.all(x == x[0]):
            return Fit(target, {"dist": "fixed", "ns": float(x[0])}, n, "fixed", quantity, names)
        if n < MIN_FIT:
            return Fit(target, _empirical(x), n, "empirical", quantity, names, note=note)
        lx = np.log(x)
        mu, sigma = float(lx.mean()), float(lx.std())
        xs = np.sort(x)
        ks = ks_one(xs, lognormal_cdf(xs, mu, sigma))
        crit = LILLIEFORS_1PCT / math.sqrt(n)
        if ks > crit:
            return Fit(target, _empirical(x), n, "empirical", quantity, names, ks, crit, note)
        return Fit(
            target,
            _lognormal(math.exp(mu), sigma),
            n,
            "lognormal-mle",
            quantity,
            names,
            ks,
            crit,
            note,
        )
    mean = float(d.mean()) - fixed - sum(v.mean_ns for v in random.values())
    var = float(d.var(ddof=1)) - sum(dist_var(v) for v in random.values()) if n > 1 else 0.0
    shift = fixed + sum(v.mean_ns for v in random.values())
    note = "empirical: d minus the known parts' means (includes their spread)"
    if n < MIN_FIT or mean <= 0 or var <= 0:
        why = (
            f"{note}; fewer than {MIN_FIT} samples"
            if n < MIN_FIT
            else f"{note}; moments unusable (mean {mean:.0f} ns, variance {var:.3g} ns^2)"
        )
        return Fit(target, _empirical(d - shift), n, "empirical", quantity, names, note=why)
    s2 = math.log1p(var / mean**2)
    median, sigma = mean / math.sqrt(1 + var / mean**2), math.sqrt(s2)
    gen = np.random.default_rng(seed)
    sim = gen.lognormal(math.log(median), sigma, MC_DRAWS) + fixed
    for v in random.values():
        sim = sim + v.sample(gen, MC_DRAWS)
    ks = ks_two(d, sim)
    crit = TWO_SAMPLE_1PCT * math.sqrt((n + MC_DRAWS) / (n * MC_DRAWS))
    if ks > crit:
        return Fit(target, _empirical(d - shift), n, "empirical", quantity, names, ks, crit, note)
    return Fit(target, _lognormal(median, sigma), n, "lognormal-moments", quantity, names, ks, crit)


def fit_aggregate(
    n: int, mean: float, sd: float, target: str, known: dict[str, Dist], quantity: str
) -> Fit:
    """Fit ``target`` by moments from an aggregate (n, mean, standard deviation)."""
    m = mean - sum(v.fixed_ns if v.kind == "fixed" else v.mean_ns for v in known.values())
    var = sd**2 - sum(dist_var(v) for v in known.values())
    names = tuple(known)
    if m <= 0:
        return Fit(
            target,
            {"dist": "fixed", "ns": 1},
            n,
            "fixed",
            quantity,
            names,
            note=f"mean after the known parts is {m:.0f} ns: nothing left to fit",
        )
    if var <= 0:
        return Fit(
            target,
            {"dist": "fixed", "ns": round(m, 3)},
            n,
            "fixed",
            quantity,
            names,
            note="no variance left after the known parts",
        )
    s2 = math.log1p(var / m**2)
    return Fit(
        target,
        _lognormal(m / math.sqrt(1 + var / m**2), math.sqrt(s2)),
        n,
        "lognormal-aggregate",
        quantity,
        names,
        note="moments of an aggregate (no per-sample test possible)",
    )


def uncontended(start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Intervals that overlap no other interval of the set (none could have waited)."""
    n = len(start)
    if n == 0:
        return np.zeros(0, bool)
    order = np.argsort(start, kind="stable")
    s, e = start[order], end[order]
    prev_end = np.concatenate([[-(2**62)], np.maximum.accumulate(e)[:-1]])
    next_start = np.concatenate([s[1:], [2**62]])
    ok = (s >= prev_end) & (e <= next_start)
    out = np.empty(n, bool)
    out[order] = ok
    return out


def _stats(x: Iterable[int]) -> str:
    a = np.asarray(list(x), np.float64)
    if len(a) == 0:
        return "n=0"
    p50, p99 = np.percentile(a, [50, 99])
    return (
        f"n={len(a)} mean={a.mean() / 1e3:.3f}us p50={p50 / 1e3:.3f}us "
        f"p99={p99 / 1e3:.3f}us max={a.max() / 1e3:.3f}us"
    )


class _Collector:
    """Samples (or aggregates) per quantity, gathered across captures."""

    def __init__(self) -> None:
        self.samples: dict[str, list[np.ndarray]] = {}
        self.aggregates: dict[str, list[tuple[int, float, float]]] = {}
        self.sources: dict[str, list[str]] = {}
        self.observed: list[str] = []
        self.notes: list[str] = []

    def add(self, key: str, d: np.ndarray, source: str) -> None:
        if len(d):
            self.samples.setdefault(key, []).append(np.asarray(d, np.int64))
            self.sources.setdefault(key, []).append(source)

    def sie(self, cap: Any) -> None:
        x = cap.intercepts
        cls, mid = x["cls"], x["t_mid"]
        pc, us = cls == PROGRAM_CHECK, cls == USERSPACE_EXIT
        decided = (pc | us) & (mid >= 0)
        self.add("sie.decide", (mid - x["t_exit"])[decided], cap.path)
        self.add("sie.pgm", (x["t_enter"] - mid)[pc & (mid >= 0)], cap.path)
        self.add("sie.user", (x["t_enter"] - mid)[us & (mid >= 0)], cap.path)
        ik = cls == IN_KERNEL
        free = np.zeros(len(x), bool)
        free[ik] = uncontended(x["t_exit"][ik], x["t_enter"][ik])
        sel = free & (x["cc"] <= 0)
        self.add("sie.in_kernel", (x["t_enter"] - x["t_exit"])[sel], cap.path)
        self.notes.append(
            f"{cap.path}: {len(x)} PQAP intercepts ({int(us.sum())} userspace exits, "
            f"{int(pc.sum())} program checks, {int(ik.sum())} in the kernel, of which "
            f"{int(sel.sum())} uncontended with CC 0 used); timestamps with {cap.ts_digits} "
            "decimals"
        )
        if cap.ts_digits < 9:
            self.notes.append(
                f"{cap.path}: timestamps are {10 ** (9 - cap.ts_digits)} ns apart at best: "
                "fits of short costs are that coarse"
            )

    def kvm_stat(self, cap: Any) -> None:
        row = cap.row("UNKNOWN")
        for r in cap.rows:
            self.observed.append(
                f"perf kvm stat {r.name}: n={r.samples} mean={r.mean_ns / 1e3:.3f}us "
                f"sd={r.stddev_ns / 1e3:.3f}us min={(r.min_ns or 0) / 1e3:.3f}us "
                f"max={(r.max_ns or 0) / 1e3:.3f}us"
            )
        if row is None:
            self.notes.append(f"{cap.path}: no UNKNOWN row (PQAP): nothing fitted from it")
            return
        self.aggregates.setdefault("kvm_stat.unknown", []).append(
            (row.samples, row.mean_ns, row.stddev_ns)
        )
        self.sources.setdefault("kvm_stat.unknown", []).append(cap.path)
        self.notes.append(
            f"{cap.path}: the UNKNOWN row taken as PQAP only, every one answered in the kernel "
            "without waiting (also other unlisted instructions land there)"
        )

    def kprobe(self, cap: Any) -> None:
        c = cap.calls
        free = uncontended(c["t"], c["t"] + c["dur"])
        sel = free & cap.enable & (cap.rc == 0) & (c["ret"] == 0)
        self.add("kprobe.hook", c["dur"][sel], cap.path)
        rcs = {int(r): int(k) for r, k in zip(*np.unique(cap.rc, return_counts=True), strict=True)}
        self.observed.append(
            f"handle_pqap hook calls: {len(c)} ({int(cap.enable.sum())} enables, "
            f"{int(cap.to_userspace.sum())} to userspace); response codes {rcs}; "
            f"duration {_stats(c['dur'])}"
        )

    def fgraph(self, cap: Any) -> None:
        from workloads.capture_fgraph import HOLDERS

        for f in HOLDERS:
            d = cap.durations(f)
            if d:
                self.observed.append(f"function_graph {f}: {_stats(d)}")
        self.add("fgraph.irq_enable", np.array(cap.durations("vfio_ap_irq_enable")), cap.path)
        self.add("fgraph.reset_check", np.array(cap.durations("apq_reset_check")), cap.path)
        self.add("fgraph.set_kvm", np.array(cap.durations("vfio_ap_mdev_set_kvm")), cap.path)

    def lock_contention(self, cap: Any) -> None:
        for lock, rows in sorted(cap.by_lock().items()):
            n = sum(r.contended for r in rows)
            tot = sum(r.total_ns for r in rows)
            mx = max(r.max_ns for r in rows)
            self.observed.append(
                f"perf lock contention {lock or '(unnamed)'}: {n} waits, total "
                f"{tot / 1e6:.3f}ms, mean {tot / max(n, 1) / 1e3:.3f}us, max {mx / 1e3:.3f}us "
                f"({len(rows)} rows)"
            )

    def lock_events(self, cap: Any) -> None:
        for lock, waits in sorted(cap.by_lock().items()):
            self.observed.append(f"lock waits {lock}: {_stats(w.wait_ns for w in waits)}")
        holds = cap.holds()
        for lock in sorted({h.lock for h in holds}):
            hs = [h.hold_ns for h in holds if h.lock == lock]
            self.observed.append(f"lock holds {lock} (seen through queued waiters): {_stats(hs)}")
        hook = [
            h.hold_ns
            for h in holds
            if h.lock == "mdevs_lock" and h.caller.split("+")[0] == "handle_pqap"
        ]
        self.add("lock.hook_hold", np.array(hook, np.int64), cap.path)
        if cap.unpaired:
            self.notes.append(f"{cap.path}: {cap.unpaired} contention events without a pair")

    def s390dbf(self, cap: Any) -> None:
        ops = cap.host_operations()
        kinds: dict[str, int] = {}
        for o in ops:
            kinds[str(o["kind"])] = kinds.get(str(o["kind"]), 0) + 1
        vms = sorted({u.vm for u in cap.updates})
        self.observed.append(
            f"APCB updates (s390dbf SET/CLR CRYCB): {len(ops)} on {len(vms)} VMs {kinds}"
        )


def calibrate(
    paths: list[str],
    scenario: Scenario,
    formats: list[str | None] | None = None,
    in_kernel_cost: str = "host_aqic",
) -> Calibration:
    """Read the captures and fit every cost they can see (module docstring)."""
    from workloads.capture import read_capture

    col = _Collector()
    handlers = {
        "sie-trace": col.sie,
        "perf-kvm-stat": col.kvm_stat,
        "kprobe-pqap": col.kprobe,
        "function-graph": col.fgraph,
        "perf-lock-contention": col.lock_contention,
        "lock-events": col.lock_events,
        "s390dbf": col.s390dbf,
    }
    from workloads.capture import detect_capture_format

    for i, p in enumerate(paths):
        fmt = (formats[i] if formats and i < len(formats) else None) or detect_capture_format(p)
        cap = read_capture(p, fmt)  # an unknown format is a CaptureError
        handlers[fmt](cap)
    known: dict[str, Dist] = dict(scenario.costs)
    cal = Calibration(observed=col.observed, notes=col.notes)
    for q in QUANTITIES:
        if q.key not in col.samples and q.key not in col.aggregates:
            continue
        target = in_kernel_cost if q.in_kernel else q.target
        if target not in q.chain:
            raise ValueError(
                f"--in-kernel-cost {target!r}: {q.what} sums {list(q.chain)}; expected one of them"
            )
        parts = {c: known[c] for c in q.chain if c != target}
        srcs = tuple(col.sources.get(q.key, ()))
        if q.key in col.samples:
            fit = fit_target(np.concatenate(col.samples[q.key]), target, parts, q.key)
        else:
            aggs = col.aggregates[q.key]
            n = sum(a[0] for a in aggs)
            mean = sum(a[0] * a[1] for a in aggs) / n
            ex2 = sum(a[0] * (a[2] ** 2 + a[1] ** 2) for a in aggs) / n
            fit = fit_aggregate(n, mean, math.sqrt(max(ex2 - mean**2, 0.0)), target, parts, q.key)
        fit.sources = srcs
        if target in cal.fits:
            cal.alternatives.append(fit)
        else:
            cal.fits[target] = fit
            known[target] = parse_dist(fit.dist)
    return cal


def _comment(f: Fit) -> str:
    gof = (
        "no per-sample test"
        if f.ks is None
        else f"KS D={f.ks:.4f} vs 1% critical {f.ks_crit:.4f}"
        + (" (lognormal rejected)" if f.lognormal_rejected else "")
    )
    known = ", ".join(f.known) or "nothing"
    q = next(x for x in QUANTITIES if x.key == f.quantity)
    lines = [f"{f.cost}: {f.method}, n={f.n}, {gof}", f"  from {q.what}; subtracted: {known}"]
    if f.sources:
        lines.append(f"  captures: {', '.join(f.sources)}")
    if f.note:
        lines.append(f"  note: {f.note}")
    return toml_text.comment(lines)


def to_toml(cal: Calibration, header: list[str] | None = None) -> str:
    """The ``[costs]`` fragment: fitted costs with comments, then what else was seen."""
    out = toml_text.comment(header or []) + "[costs]\n"
    for f in cal.fits.values():
        out += _comment(f) + toml_text.assignment(f.cost, f.dist) + "\n"
    for f in cal.alternatives:
        out += toml_text.comment("also fitted (not used: an earlier quantity fitted this cost):")
        out += _comment(f) + toml_text.comment(toml_text.assignment(f.cost, f.dist))
    if cal.observed:
        out += toml_text.comment(
            ["", "observed (not costs: waits and holder durations to compare with a run):"]
        )
        out += toml_text.comment([f"  {o}" for o in cal.observed])
    if cal.notes:
        out += toml_text.comment(["", "notes:", *(f"  {n}" for n in cal.notes)])
    return out


def set_args(cal: Calibration) -> list[str]:
    """The fits as ``hostsim run --set`` arguments."""
    return [f"costs.{f.cost}={toml_text.value(f.dist)}" for f in cal.fits.values()]
