"""Duration distributions of the cost model, in integer nanoseconds.

A scenario gives each cost as a table such as ``{ dist = "lognormal", median_ns = 900, p99_ns =
3000 }``, or a bare number (fixed). Draws are rounded to whole nanoseconds once, then clamped to
the distribution's floor (1 ns for a service stage, so that no stage is instantaneous and the
engines' tie rule holds; 0 for think times and inter-arrival gaps).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from hostsim.keyed import KeyedGen

#: The longest duration hostsim takes (about 104 days): far beyond any run, and exact in float64.
MAX_NS = 2**53

#: z of the 99th percentile of a standard normal (for lognormal ``p99_ns``).
Z99 = 2.3263478740408408


class DistError(ValueError):
    """A distribution table that does not describe a distribution; says what was expected."""


@dataclass(frozen=True)
class Dist:
    """A duration distribution; ``params`` are in nanoseconds (``sigma`` is unitless)."""

    kind: str
    params: tuple[tuple[str, Any], ...]
    floor_ns: int = 1

    def p(self, name: str) -> Any:
        return dict(self.params)[name]

    @property
    def mean_ns(self) -> float:
        """Mean of the distribution before rounding (for docs, checks and theory)."""
        k = self.kind
        if k == "fixed":
            return float(self.p("ns"))
        if k == "exponential":
            return float(self.p("mean_ns"))
        if k == "uniform":
            return (self.p("low_ns") + self.p("high_ns")) / 2
        if k == "lognormal":
            return self.p("median_ns") * math.exp(self.p("sigma") ** 2 / 2)
        return float(np.mean(self.p("samples_ns")))

    @property
    def fixed_ns(self) -> int:
        """The one value of a fixed distribution, as :meth:`sample` gives it (no draw)."""
        return max(round(min(float(self.p("ns")), MAX_NS)), self.floor_ns)

    def sample(
        self, gen: np.random.Generator | KeyedGen, shape: int | tuple[int, ...]
    ) -> np.ndarray:
        """``shape`` draws as int64 nanoseconds, rounded once and clamped to the floor."""
        k = self.kind
        if k == "fixed":
            x = np.full(shape, float(self.p("ns")))
        elif k == "exponential":
            x = gen.exponential(self.p("mean_ns"), shape)
        elif k == "uniform":
            x = gen.uniform(self.p("low_ns"), self.p("high_ns"), shape)
        elif k == "lognormal":
            x = gen.lognormal(math.log(self.p("median_ns")), self.p("sigma"), shape)
        else:  # empirical
            samples = np.asarray(self.p("samples_ns"), dtype=np.float64)
            x = samples[gen.integers(0, len(samples), shape)]
        out = np.rint(np.minimum(x, MAX_NS)).astype(np.int64)  # a far tail is clipped, not wrapped
        np.maximum(out, self.floor_ns, out=out)
        return out

    def to_toml(self) -> dict[str, Any]:
        """The fully resolved table form (what a saved scenario holds)."""
        return {"dist": self.kind, **dict(self.params)}


_KEYS = {
    "fixed": {"ns"},
    "exponential": {"mean_ns"},
    "uniform": {"low_ns", "high_ns"},
    "lognormal": {"median_ns", "sigma", "p99_ns"},
    "empirical": {"samples_ns"},
}


def _num(v: Any, key: str) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise DistError(f"{key}: expected a number of nanoseconds, got {v!r}")
    if not math.isfinite(v) or v < 0:
        raise DistError(f"{key}: expected a finite non-negative number, got {v!r}")
    if v > MAX_NS:
        raise DistError(
            f"{key}: {v:g} ns is beyond the longest duration hostsim takes "
            f"(2**53 ns, about 104 days)"
        )
    return v


def parse_dist(value: Any, floor_ns: int = 1) -> Dist:
    """A :class:`Dist` from a scenario value; raises :class:`DistError` saying what is wrong."""
    if isinstance(value, bool):
        raise DistError(f"expected a number of nanoseconds or a distribution table, got {value!r}")
    if isinstance(value, int | float):
        return Dist("fixed", (("ns", _num(value, "value")),), floor_ns)
    if not isinstance(value, dict):
        raise DistError(f"expected a number of nanoseconds or a distribution table, got {value!r}")
    kind = value.get("dist")
    if kind not in _KEYS:
        raise DistError(f"dist: expected one of {sorted(_KEYS)}, got {kind!r}")
    extra = set(value) - _KEYS[kind] - {"dist"}
    if extra:
        raise DistError(
            f"unknown key {sorted(extra)[0]!r} for dist {kind!r}; expected {sorted(_KEYS[kind])}"
        )
    if kind == "fixed":
        params: dict[str, Any] = {"ns": _num(value.get("ns"), "ns")}
    elif kind == "exponential":
        mean = _num(value.get("mean_ns"), "mean_ns")
        if mean <= 0:
            raise DistError("mean_ns: expected a positive number")
        params = {"mean_ns": mean}
    elif kind == "uniform":
        lo, hi = _num(value.get("low_ns"), "low_ns"), _num(value.get("high_ns"), "high_ns")
        if hi < lo:
            raise DistError(f"high_ns ({hi}) is below low_ns ({lo})")
        params = {"low_ns": lo, "high_ns": hi}
    elif kind == "lognormal":
        median = _num(value.get("median_ns"), "median_ns")
        if median <= 0:
            raise DistError("median_ns: expected a positive number")
        if ("sigma" in value) == ("p99_ns" in value):
            raise DistError("lognormal: give exactly one of sigma or p99_ns")
        if "sigma" in value:
            sigma = _num(value["sigma"], "sigma")
        else:
            p99 = _num(value["p99_ns"], "p99_ns")
            if p99 <= median:
                raise DistError(f"p99_ns ({p99}) must exceed median_ns ({median})")
            sigma = math.log(p99 / median) / Z99
        params = {"median_ns": median, "sigma": round(sigma, 12)}
    else:
        samples = value.get("samples_ns")
        if not isinstance(samples, list) or not samples:
            raise DistError("samples_ns: expected a non-empty list of nanoseconds")
        params = {"samples_ns": [_num(s, "samples_ns") for s in samples]}
    return Dist(kind, tuple(params.items()), floor_ns)
