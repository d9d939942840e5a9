"""How ``hostsim calibrate`` fits one target cost: the statistics, pure functions of arrays.

A measured quantity is ``target + sum(known)`` (the quantity table and the driver are in
:mod:`hostsim.calibrate`); :func:`fit_target` fits the target from samples of the sum,
:func:`fit_aggregate` from an aggregate's moments, and each returns a :class:`Fit` (the
distribution as a TOML table, the method, the goodness of fit). Kept apart from the captures and
the driver so that the statistics can be read and tested on their own: nothing here reads a file.

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
from dataclasses import dataclass
from typing import Any

import numpy as np

from hostsim.dists import Dist

MIN_FIT = 20  # fewer samples: empirical, no test
MAX_SAMPLES = 2000  # an empirical fit keeps at most this many values (quantiles beyond)
MC_DRAWS = 20_000  # Monte Carlo draws of a deconvolved fit's goodness-of-fit check
LILLIEFORS_1PCT = 1.031
TWO_SAMPLE_1PCT = 1.628


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
