"""The typed field checks the scenario loader is built from.

:class:`Ctx` carries the file name so that every check raises a :class:`ScenarioError` naming
the file, the key path (``guests[1].workload.rate_hz``), what was found and what was expected.
The host, guest and event sections (:mod:`hostsim.scenario`, :mod:`hostsim.scenario_guests`)
all validate through these, which keeps the messages uniform.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, TypeVar

from hostsim import toml_text, units
from hostsim.dists import Dist, DistError, parse_dist
from hostsim.scenario_types import NS_PER_MS, ScenarioError

T = TypeVar("T")


class Ctx:
    """Checks on one scenario source: each returns the value or raises a path-naming error."""

    def __init__(self, source: str) -> None:
        self.source = source

    def err(self, path: str, msg: str) -> ScenarioError:
        return ScenarioError(f"{self.source}: {path}: {msg}")

    def table(self, v: Any, path: str, allowed: set[str]) -> dict[str, Any]:
        if not isinstance(v, dict):
            raise self.err(path, f"expected a table, got {show(v)}")
        for k in v:
            if k not in allowed:
                raise self.err(
                    f"{path}.{k}" if path else k, f"unknown key; expected one of {sorted(allowed)}"
                )
        return v

    def boolean(self, v: Any, path: str) -> bool:
        if not isinstance(v, bool):
            raise self.err(path, f"expected true or false, got {show(v)}")
        return v

    def integer(self, v: Any, path: str, lo: int | None = None, hi: int | None = None) -> int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise self.err(path, f"expected an integer, got {show(v)}")
        if lo is not None and v < lo:
            raise self.err(path, f"expected an integer >= {lo}, got {v}")
        if hi is not None and v > hi:
            raise self.err(path, f"expected an integer <= {hi}, got {v}")
        return v

    def number(
        self, v: Any, path: str, lo: float = 0.0, hi: float | None = None, strict: bool = False
    ) -> float:
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise self.err(path, f"expected a number, got {show(v)}")
        if v < lo or (strict and v == lo):
            raise self.err(path, f"expected a number {'>' if strict else '>='} {lo}, got {v}")
        if hi is not None and v > hi:
            raise self.err(path, f"expected a number <= {hi}, got {v}")
        return float(v)

    def choice(self, v: Any, path: str, options: Sequence[T]) -> T:
        # Equal is not enough: 250.0 == 250 and True == 1, but only an option's own type is one.
        if v not in options or type(v) not in {type(o) for o in options}:
            raise self.err(path, f"expected one of {list(options)}, got {show(v)}")
        return v

    def ints(self, v: Any, path: str, hi: int) -> tuple[int, ...]:
        if isinstance(v, int) and not isinstance(v, bool):
            if not 1 <= v <= hi + 1:
                raise self.err(path, f"expected a count 1..{hi + 1} or a list of ids, got {v}")
            return tuple(range(v))
        if not isinstance(v, list) or not v:
            raise self.err(path, f"expected a count or a non-empty list of ids, got {show(v)}")
        out = tuple(self.integer(x, f"{path}[{i}]", 0, 255) for i, x in enumerate(v))
        if len(set(out)) != len(out):
            raise self.err(path, "ids must not repeat")
        return out

    def ms(
        self, t: dict[str, Any], name: str, path: str, default: float, strict: bool = False
    ) -> float:
        """A time in ms from ``t``: ``name_ms`` (a number of ms) or ``name`` (a duration string
        such as ``"4s"``), not both; ``default`` when neither is given."""
        key_ms = f"{name}_ms"
        if key_ms in t and name in t:
            raise self.err(f"{path}.{name}", f"{key_ms} and {name} both give {name}: keep one")
        if name not in t:
            v = t.get(key_ms, default)
            if isinstance(v, str):
                raise self.err(
                    f"{path}.{key_ms}",
                    f"expected a number of milliseconds (the key says its unit), got {show(v)}; "
                    f"for a duration string write {toml_text.assignment(name, v)}",
                )
            return self.number(v, f"{path}.{key_ms}", strict=strict)
        v = t[name]
        if isinstance(v, int | float) and not isinstance(v, bool):
            raise self.err(f"{path}.{name}", units.bare_number(v, name))
        try:
            ns = units.parse_duration(v)
        except units.UnitError as e:
            raise self.err(f"{path}.{name}", str(e)) from None
        return self.number(units.ns_to_ms(ns), f"{path}.{name}", strict=strict)

    def dist(self, v: Any, path: str, floor: int = 1) -> Dist:
        try:
            return parse_dist(v, floor)
        except DistError as e:
            raise self.err(path, str(e)) from None


def show(v: Any) -> str:
    """How a found value is shown in a message: its type, and the value for scalars."""
    return f"{type(v).__name__} {v!r}" if not isinstance(v, dict | list) else type(v).__name__


def ms_to_ns(ctx: Ctx, t: dict[str, Any], name: str, path: str, default: float) -> int:
    """The time ``name`` of ``t`` (:meth:`Ctx.ms`; or ``default`` ms) as whole ns."""
    return round(ctx.ms(t, name, path, default) * NS_PER_MS)


def ms_keys(*names: str) -> set[str]:
    """The keys that may give the times ``names``: ``name_ms`` and ``name`` for each."""
    return {k for n in names for k in (f"{n}_ms", n)}


def ms_key(t: dict[str, Any], name: str) -> str:
    """The key ``t`` gives the time ``name`` under (``name_ms`` when neither is there)."""
    return name if name in t else f"{name}_ms"


def rc_probs(ctx: Ctx, v: Any, path: str) -> tuple[tuple[int, float], ...]:
    """A table of code -> probability (``{ "0x00" = 0.99, ... }``) summing to 1, sorted by code."""
    if not isinstance(v, dict) or not v:
        raise ctx.err(
            path,
            "expected a table of response code -> probability, "
            'e.g. { "0x00" = 0.99, "0x05" = 0.01 }',
        )
    out = []
    for k, p in v.items():
        try:
            rc = int(k, 0)
        except ValueError:
            raise ctx.err(f"{path}.{k}", 'expected a response code key like "0x05"') from None
        if not 0 <= rc <= 0xFF:
            raise ctx.err(f"{path}.{k}", "response code must be 0x00-0xff")
        out.append((rc, ctx.number(p, f"{path}.{k}", 0.0, 1.0)))
    total = sum(p for _, p in out)
    if abs(total - 1.0) > 1e-9:
        raise ctx.err(path, f"probabilities must sum to 1, they sum to {total:g}")
    return tuple(sorted(out))
