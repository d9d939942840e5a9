"""Duration distributions of the cost model, in integer nanoseconds.

A scenario gives each cost as a table such as ``{ dist = "lognormal", median_ns = 900, p99_ns =
3000 }`` (or ``median = "900ns"``, ``p99_us = 3``: every duration carries its unit, see
:mod:`hostsim.units`), or a duration string such as ``"200ns"`` (fixed); a bare number is
refused. Draws are rounded to whole nanoseconds once, then clamped to the distribution's floor
(1 ns for a service stage, so that no stage is instantaneous and the engines' tie rule holds; 0
for think times and inter-arrival gaps).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from hostsim import units

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
        x = np.asarray(x, dtype=np.float64)  # (a fresh array in every branch: changed in place)
        np.minimum(x, MAX_NS, out=x)  # a far tail is clipped, not wrapped
        out = np.rint(x, out=x).astype(np.int64)
        np.maximum(out, self.floor_ns, out=out)
        return out

    def to_toml(self) -> dict[str, Any]:
        """The fully resolved table form (what a saved scenario holds)."""
        return {"dist": self.kind, **dict(self.params)}


#: each kind's duration parameters (given with a unit, :mod:`hostsim.units`) and plain ones
_PARAMS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "fixed": (("",), ()),
    "exponential": (("mean",), ()),
    "uniform": (("low", "high"), ()),
    "lognormal": (("median", "p99"), ("sigma",)),
    "empirical": (("samples",), ()),
}
_TABLE_HINT = 'a duration such as "10ms" or a distribution table'


def _allowed(kind: str) -> set[str]:
    durations, plain = _PARAMS[kind]
    return {k for n in durations for k in units.spellings(n)} | set(plain)


def _expected(kind: str) -> str:
    durations, plain = _PARAMS[kind]
    shown = [f"{n}_ns" if n else "ns" for n in durations] + list(plain)
    return f'{shown} (a duration in any unit: _ns, _us, _ms, _s, or a string such as "450ns")'


def _num(v: Any, key: str) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise DistError(f"{key}: expected a number, got {v!r}")
    if not math.isfinite(v) or v < 0:
        raise DistError(f"{key}: expected a finite non-negative number, got {v!r}")
    if v > MAX_NS:
        raise DistError(
            f"{key}: {v:g} ns is beyond the longest duration hostsim takes "
            f"(2**53 ns, about 104 days)"
        )
    return v


def _dur(value: dict[str, Any], name: str, kind: str) -> tuple[str, Any]:
    """Parameter ``name`` in ns and the key it was given under (checked non-negative)."""
    try:
        got = units.take(value, name)
    except units.UnitError as e:
        raise DistError(str(e)) from None
    if got is None:
        want = f"{name}_ns" if name else "ns"
        raise DistError(f"{kind}: missing {want} (or {name or 'its value'} in another unit)")
    key, ns = got
    return key, _num(ns, key)


def parse_dist(value: Any, floor_ns: int = 1) -> Dist:
    """A :class:`Dist` from a scenario value; raises :class:`DistError` saying what is wrong.

    ``value`` is a duration string (a fixed value, ``"450ns"``) or a table ``{ dist = ...,
    ... }`` whose duration parameters carry their unit (:mod:`hostsim.units`). A bare number is
    refused: its unit would be a guess."""
    if isinstance(value, bool):
        raise DistError(f"expected {_TABLE_HINT}, got {value!r}")
    if isinstance(value, int | float):
        raise DistError(units.bare_number(value))
    if isinstance(value, str):
        try:
            ns = units.parse_duration(value)
        except units.UnitError as e:
            raise DistError(str(e)) from None
        return Dist("fixed", (("ns", _num(ns, "value")),), floor_ns)
    if not isinstance(value, dict):
        raise DistError(f"expected {_TABLE_HINT}, got {type(value).__name__}")
    kind = value.get("dist")
    if kind not in _PARAMS:
        raise DistError(f"dist: expected one of {sorted(_PARAMS)}, got {kind!r}")
    extra = set(value) - _allowed(kind) - {"dist"}
    if extra:
        raise DistError(
            f"unknown key {sorted(extra)[0]!r} for dist {kind!r}; expected {_expected(kind)}"
        )
    if kind == "fixed":
        params: dict[str, Any] = {"ns": _dur(value, "", kind)[1]}
    elif kind == "exponential":
        key, mean = _dur(value, "mean", kind)
        if mean <= 0:
            raise DistError(f"{key}: expected a positive duration")
        params = {"mean_ns": mean}
    elif kind == "uniform":
        (lk, lo), (hk, hi) = _dur(value, "low", kind), _dur(value, "high", kind)
        if hi < lo:
            raise DistError(f"{hk} ({value[hk]}) is below {lk} ({value[lk]})")
        params = {"low_ns": lo, "high_ns": hi}
    elif kind == "lognormal":
        mk, median = _dur(value, "median", kind)
        if median <= 0:
            raise DistError(f"{mk}: expected a positive duration")
        try:
            p99_given = units.take(value, "p99") is not None
        except units.UnitError as e:
            raise DistError(str(e)) from None
        if ("sigma" in value) == p99_given:
            raise DistError("lognormal: give exactly one of sigma or p99_ns (p99 in any unit)")
        if "sigma" in value:
            sigma = _num(value["sigma"], "sigma")
        else:
            pk, p99 = _dur(value, "p99", kind)
            if p99 <= median:
                raise DistError(f"{pk} ({value[pk]}) must exceed {mk} ({value[mk]})")
            sigma = math.log(p99 / median) / Z99
        params = {"median_ns": median, "sigma": round(sigma, 12)}
    else:
        try:
            got = units.take_list(value, "samples")
        except units.UnitError as e:
            raise DistError(str(e)) from None
        if got is None:
            raise DistError("samples_ns: expected a non-empty list of nanoseconds")
        key, samples = got
        params = {"samples_ns": [_num(x, f"{key}[{i}]") for i, x in enumerate(samples)]}
    return Dist(kind, tuple(params.items()), floor_ns)
