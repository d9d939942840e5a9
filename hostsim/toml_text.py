"""The one TOML writer: every TOML text hostsim writes comes from here, built on ``tomli_w``.

``tomllib`` only reads. Documents (the resolved scenario, a sweep spec) are written whole by
:func:`dumps`, with an optional comment header; single values (a ``--set`` right-hand side, a
sweep point, a line of the calibrated ``[costs]`` fragment) by :func:`value` and
:func:`assignment`, on one line, their scalars and keys formatted (and escaped) by ``tomli_w``.
Whatever :func:`dumps` or :func:`value` writes, ``tomllib`` reads back to the same data.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import tomli_w

__all__ = ["assignment", "comment", "dumps", "key", "value"]


def comment(lines: str | Iterable[str]) -> str:
    """``lines`` as TOML comment lines (``# ...``), each ending in a newline; a line break inside
    a line starts another comment line, so the text cannot escape the comment."""
    if isinstance(lines, str):
        lines = [lines]
    out = []
    for line in lines:
        out += [f"# {x}".rstrip() for x in line.splitlines() or [""]]
    return "".join(x + "\n" for x in out)


def dumps(data: Mapping[str, Any], header: str | Iterable[str] = ()) -> str:
    """``data`` as a TOML document, after ``header`` as comment lines."""
    return comment(header) + tomli_w.dumps(data)


def key(k: str) -> str:
    """``k`` as a TOML key: bare when it can be, quoted and escaped otherwise."""
    return tomli_w.dumps({k: 0})[: -len(" = 0\n")]


def value(v: Any) -> str:
    """``v`` as one TOML value on one line (arrays and inline tables included)."""
    if isinstance(v, Mapping):
        if not v:
            return "{}"
        return "{ " + ", ".join(f"{key(k)} = {value(x)}" for k, x in v.items()) + " }"
    if isinstance(v, list | tuple):
        return "[" + ", ".join(value(x) for x in v) + "]"
    return tomli_w.dumps({"v": v})[len("v = ") : -1]


def assignment(k: str, v: Any) -> str:
    """``k = v`` on one line (no newline)."""
    return f"{key(k)} = {value(v)}"
