"""Shared pieces of the capture readers (:mod:`workloads.capture`): the error type, streamed
numbered lines, duration and timestamp parsing, and the format registry.

Every reader raises :class:`CaptureError` as ``file:line: expected ...`` (the same shape as
:class:`workloads.trace_format.TraceError`, of which it is a subclass).
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from workloads.trace_format import TraceError


class CaptureError(TraceError):
    """A capture that cannot be read; the message starts with ``file:line:``."""


#: Nanoseconds per unit as perf and ftrace print them.
UNIT_NS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000}
_DUR_RE = re.compile(r"^(\d+(?:\.\d+)?)\s*(ns|us|µs|ms|s)$")


def duration_ns(text: str) -> int | None:
    """``"6.03 s"``, ``"557 ns"``, ``"12.45us"`` as integer nanoseconds (None if not one)."""
    m = _DUR_RE.match(text.strip())
    if m is None:
        return None
    return round(float(m.group(1)) * UNIT_NS[m.group(2)])


def ts_ns(sec: str, frac: str) -> int:
    """A ``sec.frac`` timestamp (1 to 9 decimals) as integer nanoseconds."""
    return int(sec) * 1_000_000_000 + int(frac.ljust(9, "0")[:9])


def _open(path: Path) -> TextIO:
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", errors="replace")
    return open(path, encoding="utf-8", errors="replace")


def numbered(path: str | Path) -> Iterator[tuple[int, str]]:
    """The file's lines, numbered from 1, without their newline (``.gz`` too), streamed."""
    p = Path(path)
    try:
        fh = _open(p)
    except OSError as e:
        raise CaptureError(str(path), 0, f"cannot read: {e.strerror}") from None
    with fh:
        for no, line in enumerate(fh, 1):
            yield no, line.rstrip("\n")


def head(path: str | Path, n: int = 200) -> list[str]:
    """The first ``n`` lines (for format detection)."""
    out = []
    for no, line in numbered(path):
        if no > n:
            break
        out.append(line)
    return out


@dataclass(frozen=True)
class CaptureFormat:
    """One capture format: its name, a content test on the first lines, and its reader."""

    name: str
    what: str
    detect: Callable[[list[str]], bool]
    read: Callable[[str], Any]


#: Registered formats, in detection order (the first whose ``detect`` accepts the head wins).
REGISTRY: dict[str, CaptureFormat] = {}


def register(fmt: CaptureFormat) -> CaptureFormat:
    """Add ``fmt`` to :data:`REGISTRY` (a second registration of a name is an error)."""
    if fmt.name in REGISTRY:
        raise ValueError(f"capture format {fmt.name!r} registered twice")
    REGISTRY[fmt.name] = fmt
    return fmt
