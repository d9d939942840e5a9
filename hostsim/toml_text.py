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
    """``data`` as a TOML document, after ``header`` as comment lines.

    Laid out as a person writes a scenario: each table's values one per line (arrays on one
    line; below the top level a short table of plain values inline, as a cost's distribution),
    then its sub-tables, lists of tables as ``[[name]]`` blocks in order. Every key and value
    is formatted by ``tomli_w`` (:func:`key`, :func:`value`); only the layout is ours
    (``tomli_w.dumps`` puts each array element on its own line and a list of short tables
    inline at the top of the file)."""
    return comment(header) + "\n".join(_chunks(data, ()))


#: A table of plain values below the top level fits one line up to this width: written inline.
INLINE_WIDTH = 100


def _is_aot(v: Any) -> bool:
    return isinstance(v, list | tuple) and bool(v) and all(isinstance(x, Mapping) for x in v)


def _chunks(table: Mapping[str, Any], path: tuple[str, ...], aot: bool = False) -> list[str]:
    """The blocks of ``table`` at ``path``: its header and values, then its sub-tables."""

    def inline(k: str, v: Any) -> bool:
        if isinstance(v, Mapping):
            short = len(assignment(k, v)) <= INLINE_WIDTH
            return bool(path) and short and not any(isinstance(x, Mapping) for x in v.values())
        return not _is_aot(v)

    flat = [(k, v) for k, v in table.items() if inline(k, v)]
    nested = [(k, v) for k, v in table.items() if not inline(k, v)]
    lines = []
    if path and (aot or flat or not nested):
        name = ".".join(key(p) for p in path)
        lines.append(f"[[{name}]]" if aot else f"[{name}]")
    lines += [assignment(k, v) for k, v in flat]
    out = ["".join(x + "\n" for x in lines)] if lines else []
    for k, v in nested:
        if isinstance(v, Mapping):
            out += _chunks(v, (*path, k))
        else:
            for item in v:
                out += _chunks(item, (*path, k), aot=True)
    return out


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
