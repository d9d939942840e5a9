"""Durations whose unit cannot be misread: the unit grammar of scenario files.

A duration is written with its unit, in one of two ways:

* a **duration string**: a non-negative number and a unit, ``"450ns"``, ``"2.5 us"``,
  ``"10ms"``, ``"4s"`` (units ``ns``, ``us`` or ``µs``, ``ms``, ``s``);
* a **number under a key that names the unit**: ``median_ns = 450``, ``p99_us = 3``,
  ``duration_ms = 4000``, ``mean_s = 0.01`` (suffixes ``_ns``, ``_us``, ``_ms``, ``_s``).

A parameter is given once: ``median_ns`` and ``median_us`` together are an error, as are
``duration_ms`` and ``duration``. A bare number under a key that does not say its unit
(``think = 10``) is refused, with a message saying what to write instead: hostsim cannot tell
whether 10 meant nanoseconds or milliseconds.

Conversions are exact (decimal arithmetic): ``"0.45us"`` is 450 ns, not 450.00000000000006.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from hostsim import toml_text

#: nanoseconds per unit of a duration string
UNITS: dict[str, int] = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,  # U+00B5 MICRO SIGN
    "μs": 1_000,  # U+03BC GREEK SMALL LETTER MU
    "ms": 1_000_000,
    "s": 1_000_000_000,
}
#: nanoseconds per unit of a key suffix
SUFFIXES: dict[str, int] = {"_ns": 1, "_us": 1_000, "_ms": 1_000_000, "_s": 1_000_000_000}

#: the value keys of a fixed distribution (a unit and nothing else)
SUFFIXES_BARE = frozenset(s[1:] for s in SUFFIXES)

_DURATION = re.compile(
    r"\s*(?P<num>[0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?|\.[0-9]+(?:[eE][+-]?[0-9]+)?)"
    r"\s*(?P<unit>[a-zµμ]+)\s*"
)
_UNITS_TEXT = "ns, us, ms or s"


class UnitError(ValueError):
    """A duration written without a unit, with an unknown unit, or twice; says what to write."""


def _show(v: float) -> str:
    """A number as a person writes it: ``10``, ``2.5``."""
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e15:
        return str(int(v))
    return repr(v)


def _exact(d: Decimal) -> int | float:
    """``d`` ns as an int when whole, a float otherwise."""
    if d == d.to_integral_value():
        return int(d)
    return float(d)


def bare_number(v: Any, name: str = "") -> str:
    """The message for a bare number where a duration is needed: what to write instead.

    ``name``: the duration's unitless key, for a time that may also be given as ``name_ms``."""
    n = _show(v)
    need = f"a bare number is not a duration, it needs a unit ({_UNITS_TEXT})"
    if name:
        return f'{need}: write {name} = "{n}ms" (or "{n}s", "{n}us", "{n}ns"), or {name}_ms = {n}'
    return (
        f'{need}: write "{n}ms" (or "{n}ns", "{n}us"), or a table such as '
        f'{{ dist = "fixed", ns = {n} }}; hostsim used to read a bare number as ns: "{n}ns"'
    )


def _parse(text: str) -> Decimal:
    m = _DURATION.fullmatch(text)
    if m is None and text.strip().startswith("-"):
        raise UnitError(f"{text!r} is not a duration: a duration is not negative")
    if m is None or m.group("unit") not in UNITS:
        unit = m.group("unit") if m is not None else None
        why = f"unknown unit {unit!r}" if unit is not None else "expected a number and a unit"
        raise UnitError(
            f"{text!r} is not a duration: {why}; write a number and one of {_UNITS_TEXT}, "
            f'such as "10ms", "450ns" or "2.5us"'
        )
    try:
        d = Decimal(m.group("num")) * UNITS[m.group("unit")]
    except InvalidOperation:  # pragma: no cover - the pattern only admits decimal numbers
        raise UnitError(f"{text!r} is not a duration") from None
    if not d.is_finite():
        raise UnitError(f"{text!r} is not a finite duration")
    return d


def parse_duration(text: Any) -> int | float:
    """A duration string (``"10ms"``, ``"2.5 us"``) as nanoseconds: an int when whole.

    Raises :class:`UnitError` for a bare number (saying what to write) or a string that is not
    a number and a unit (listing the units)."""
    if isinstance(text, bool):
        raise UnitError(f'expected a duration such as "10ms", got {text!r}')
    if isinstance(text, int | float):
        raise UnitError(bare_number(text))
    if not isinstance(text, str):
        raise UnitError(f'expected a duration such as "10ms", got {type(text).__name__}')
    return _exact(_parse(text))


def scale(v: Any, ns_per_unit: int, key: str) -> int | float:
    """A number ``v`` given in a unit of ``ns_per_unit`` ns (under ``key``) as nanoseconds."""
    if isinstance(v, str):
        plain = strip_suffix(key)
        how = (
            f"give the string itself instead of the table: {toml_text.value(v)}"
            if plain in SUFFIXES_BARE
            else f"write it under the key without its unit: {toml_text.assignment(plain, v)}"
        )
        raise UnitError(
            f"{key}: the key already says its unit; expected a number, got {v!r} ({how})"
        )
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise UnitError(f"{key}: expected a number, got {v!r}")
    if not math.isfinite(v) or v < 0:
        raise UnitError(f"{key}: expected a finite non-negative number, got {v!r}")
    if ns_per_unit == 1:
        return v
    return _exact(Decimal(repr(v)) * ns_per_unit)


def strip_suffix(key: str) -> str:
    """``median_us`` -> ``median``; a key without a unit suffix is returned unchanged."""
    for suf in SUFFIXES:
        if key.endswith(suf):
            return key[: -len(suf)]
    return key


def spellings(name: str) -> dict[str, int | None]:
    """Every key that may give the duration parameter ``name``, with its ns per unit:
    ``name_ns``, ``name_us``, ``name_ms``, ``name_s`` (numbers) and ``name`` (None: a duration
    string). For ``""`` (the value of a fixed distribution): ``ns``, ``us``, ``ms``, ``s``."""
    if not name:
        return {suf[1:]: f for suf, f in SUFFIXES.items()}
    return {**{name + suf: f for suf, f in SUFFIXES.items()}, name: None}


def _one(table: Mapping[str, Any], name: str) -> tuple[str, int | None] | None:
    keys = spellings(name)
    found = [k for k in keys if k in table]
    if len(found) > 1:
        raise UnitError(f"{found[0]} and {found[1]} both give {name or 'the value'}: keep one")
    return (found[0], keys[found[0]]) if found else None


def take(table: Mapping[str, Any], name: str) -> tuple[str, int | float] | None:
    """The duration parameter ``name`` of ``table`` in ns, with the key it was given under;
    None when absent. Raises :class:`UnitError` when it is given twice or without a unit."""
    one = _one(table, name)
    if one is None:
        return None
    key, factor = one
    v = table[key]
    if factor is not None:
        return key, scale(v, factor, key)
    if isinstance(v, int | float) and not isinstance(v, bool):
        raise UnitError(f"{key}: {bare_number(v, name)}")
    try:
        return key, parse_duration(v)
    except UnitError as e:
        raise UnitError(f"{key}: {e}") from None


def take_list(table: Mapping[str, Any], name: str) -> tuple[str, list[int | float]] | None:
    """A list parameter (``samples_ns = [...]``, ``samples = ["1us", ...]``) in ns, as
    :func:`take` does for one value."""
    one = _one(table, name)
    if one is None:
        return None
    key, factor = one
    v = table[key]
    if not isinstance(v, list) or not v:
        what = "durations" if factor is None else f"numbers in {key.rsplit('_', 1)[-1]}"
        raise UnitError(f"{key}: expected a non-empty list of {what}")
    out: list[int | float] = []
    for i, x in enumerate(v):
        if factor is not None:
            out.append(scale(x, factor, f"{key}[{i}]"))
            continue
        if isinstance(x, int | float) and not isinstance(x, bool):
            raise UnitError(f"{key}[{i}]: {bare_number(x)}")
        try:
            out.append(parse_duration(x))
        except UnitError as e:
            raise UnitError(f"{key}[{i}]: {e}") from None
    return key, out


def format_ns(ns: float) -> str:
    """Nanoseconds as a duration string in the largest unit that shows it in at most three
    decimals (``"10ms"``, ``"450ns"``, ``"2.5us"``); :func:`parse_duration` reads it back."""
    d = Decimal(repr(ns)) if isinstance(ns, float) else Decimal(ns)
    for unit in ("s", "ms", "us"):
        q = d / UNITS[unit]
        if abs(q) >= 1 and q == q.quantize(Decimal("0.001")):
            return f"{q.normalize():f}{unit}"
    return f"{d.normalize():f}ns" if d != d.to_integral_value() else f"{int(d)}ns"


def ns_to_ms(ns: float) -> float:
    """Nanoseconds as (float) milliseconds, exactly rounded."""
    return float(Decimal(ns if isinstance(ns, int) else repr(ns)) / 1_000_000)


def replace(table: dict[str, Any], key: str, value: Any) -> None:
    """``table[key] = value``, first removing the other spellings of the same duration (an
    override ``run.duration = "4s"`` replaces the file's ``duration_ms``, ``costs.x.median_us``
    its ``median_ns``), so that an override never makes a parameter given twice."""
    base = strip_suffix(key)
    if base == key and key in SUFFIXES_BARE:  # a fixed distribution's ns, us, ms, s
        base = ""
    for k in spellings(base):
        if k != key:
            table.pop(k, None)
    table[key] = value
