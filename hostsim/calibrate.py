"""``hostsim calibrate``: fit the costs a capture can see and write them as a ``[costs]`` TOML
fragment (each with its sample count and goodness of fit as comments).

Every measured quantity is a sum of hostsim costs (how the engines add them up:
:mod:`hostsim.chain`, :mod:`hostsim.host_ops`). A fit takes one
*target* cost per quantity and subtracts the others (*known*: the scenario's, or fitted earlier
from the same captures). :data:`QUANTITIES` is the table, in fitting order.

Here: the quantity table, the driver (:func:`calibrate`: read the captures, fit each quantity in
order, each fit known to the next) and its output (:func:`to_toml`, :func:`set_args`). What each
capture contributes is in :mod:`hostsim.calibrate_samples`; how a distribution is fitted, and
how well it fits, in :mod:`hostsim.calibrate_fit`. For the tests this module re-exports the
fitting functions they use (:func:`fit_target`, :func:`fit_aggregate`, :func:`dist_var`,
:func:`ks_two`, :data:`MAX_SAMPLES`) and :func:`uncontended`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from hostsim import toml_text
from hostsim.calibrate_fit import (
    MAX_SAMPLES,
    Fit,
    dist_var,
    fit_aggregate,
    fit_target,
    ks_two,
)
from hostsim.calibrate_samples import Collector, uncontended
from hostsim.dists import Dist, parse_dist
from hostsim.scenario_types import Scenario

__all__ = [
    "HOOK_CHAIN",
    "IN_KERNEL_CHAIN",
    "MAX_SAMPLES",
    "QUANTITIES",
    "Calibration",
    "Fit",
    "Quantity",
    "calibrate",
    "dist_var",
    "fit_aggregate",
    "fit_target",
    "ks_two",
    "set_args",
    "to_toml",
    "uncontended",
]

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
class Calibration:
    """Fitted costs (the first fit of each cost), other fits of them, observations, notes."""

    fits: dict[str, Fit] = field(default_factory=dict)
    alternatives: list[Fit] = field(default_factory=list)
    observed: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def calibrate(
    paths: list[str],
    scenario: Scenario,
    formats: list[str | None] | None = None,
    in_kernel_cost: str = "host_aqic",
) -> Calibration:
    """Read the captures and fit every cost they can see (module docstring)."""
    from workloads.capture import read_capture

    col = Collector()
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
