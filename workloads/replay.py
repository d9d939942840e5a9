"""hostsim's native arrival format: what each vCPU issued and when, to replay a run exactly.

One PQAP issue per row: ``t_ns`` (when the vCPU wanted to issue: the open-loop arrival, or the
issue time), ``guest``, ``vcpu`` (global indices, as in the records), ``gpr0``, ``gpr1``,
``gpr2`` and ``psw`` (hex strings), and optionally ``issue_ns`` (when the recorded run issued
it). Rows are in issue order, so each vCPU's rows are in its request order. A vCPU's times must
not go backwards: its ``issue_ns`` (or, without it, its ``t_ns``) never decrease, and ``t_ns``
never exceeds ``issue_ns`` (an open-loop arrival may wait for its vCPU, so without ``issue_ns``
an arrival that waited cannot be told from one out of order: recordings always carry it).
Two encodings, chosen by the file name:

* JSON Lines (``.jsonl``): a header line ``{"format": "hostsim-arrivals", "version": 1, ...}``,
  then one object per row;
* CSV (``.csv``): a header line ``# hostsim-arrivals version 1``, optionally a line
  ``# meta {...}`` (the JSON Lines header's other keys), the column names, the rows.

A recording made by ``hostsim run --record`` names what replays it exactly
(:func:`recording_meta`): ``seed``, ``scenario`` (the source name), ``scenario_toml`` (the
resolved scenario, embedded) and ``scenario_sha256`` (of that text). ``hostsim replay`` uses
them unless ``--scenario`` or ``--seed`` say otherwise (:mod:`workloads.replay_run`).

Replaying drives each vCPU with its rows: a row issues at ``max(t_ns, previous resume)``. A run
recorded with ``hostsim run --record`` and replayed with the same scenario gives identical records.
Reading is streamed: one pass parses and validates every line (and, with ``skip_bad``, notes
the bad lines), spilling the good rows in binary to a temporary file that feeds the engine
lazily, so a trace is never read whole into memory.
"""

from __future__ import annotations

import collections
import csv
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, TextIO

import numpy as np

from hostsim.intercept import REGISTER_NAMES
from workloads.bursts import SCRIPT_DTYPE

FORMAT = "hostsim-arrivals"
VERSION = 1
COLUMNS = ("t_ns", "guest", "vcpu", "gpr0", "gpr1", "gpr2", "psw")
OPTIONAL = ("issue_ns",)
CSV_MAGIC = f"# {FORMAT} version {VERSION}"
CSV_META = "# meta "


def recording_meta(s: Any) -> dict[str, Any]:
    """What a recording of scenario ``s`` stores to be replayed exactly: the seed, the source
    name, the resolved scenario TOML and its SHA-256."""
    from hostsim.scenario_toml import resolved_toml

    text = resolved_toml(s)
    return {
        "seed": s.seed,
        "scenario": s.source,
        "scenario_toml": text,
        "scenario_sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(),
    }


class ReplayError(ValueError):
    """A recording that cannot be replayed: names the file and line."""


def _encoding(path: str | Path) -> str:
    suffix = Path(path).suffix.lower()
    if suffix in (".jsonl", ".json", ".ndjson"):
        return "jsonl"
    if suffix == ".csv":
        return "csv"
    raise ReplayError(f"{path}: unknown arrival format {suffix!r}; use .jsonl or .csv")


class ArrivalWriter:
    """Writes the arrivals of a run (fed record chunks in canonical order), atomically."""

    def __init__(self, path: str | Path, meta: dict[str, Any] | None = None) -> None:
        self.path = Path(path)
        self.enc = _encoding(path)
        self.tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        self.fh: TextIO = open(self.tmp, "w", encoding="utf-8", newline="")  # noqa: SIM115
        if self.enc == "jsonl":
            head = {
                "format": FORMAT,
                "version": VERSION,
                "columns": list(COLUMNS + OPTIONAL),
                **(meta or {}),
            }
            self.fh.write(json.dumps(head, sort_keys=True) + "\n")
        else:
            meta_line = f"{CSV_META}{json.dumps(meta, sort_keys=True)}\n" if meta else ""
            self.fh.write(CSV_MAGIC + "\n" + meta_line + ",".join(COLUMNS + OPTIONAL) + "\n")
        self.rows = 0

    def add(self, rec: np.ndarray) -> None:
        """Append the arrivals of a chunk of request records."""
        cols = zip(
            rec["t_arrival"].tolist(),
            rec["guest"].tolist(),
            rec["vcpu"].tolist(),
            rec["gpr0"].tolist(),
            rec["gpr1"].tolist(),
            rec["gpr2"].tolist(),
            rec["psw_mask"].tolist(),
            rec["t_issue"].tolist(),
            strict=True,
        )
        if self.enc == "jsonl":
            lines = [
                f'{{"t_ns": {t}, "guest": {g}, "vcpu": {v}, "gpr0": "0x{a:x}", '
                f'"gpr1": "0x{b:x}", "gpr2": "0x{c:x}", "psw": "0x{p:x}", "issue_ns": {i}}}\n'
                for t, g, v, a, b, c, p, i in cols
            ]
        else:
            lines = [
                f"{t},{g},{v},0x{a:x},0x{b:x},0x{c:x},0x{p:x},{i}\n"
                for t, g, v, a, b, c, p, i in cols
            ]
        self.fh.write("".join(lines))
        self.rows += len(rec)

    def close(self) -> Path:
        """Finish the file and move it into place."""
        self.fh.close()
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        """Drop the unfinished file."""
        self.fh.close()
        self.tmp.unlink(missing_ok=True)


def _jsonl_head(path: Path, first: str) -> dict[str, Any]:
    try:
        head = json.loads(first)
    except json.JSONDecodeError:
        head = None
    if not isinstance(head, dict) or head.get("format") != FORMAT:
        raise ReplayError(f"{path}:1: not a {FORMAT} file (no header line)")
    if head.get("version") != VERSION:
        raise ReplayError(
            f"{path}:1: unsupported version {head.get('version')!r}; "
            f"this hostsim reads version {VERSION}"
        )
    return head


def _csv_meta(path: Path, line: str) -> dict[str, Any]:
    try:
        meta = json.loads(line[len(CSV_META) :])
    except json.JSONDecodeError as e:
        raise ReplayError(f"{path}:2: corrupt meta line ({e.msg})") from None
    if not isinstance(meta, dict):
        raise ReplayError(f"{path}:2: expected a JSON object after {CSV_META.strip()!r}")
    return meta


def read_header(path: str | Path) -> dict[str, Any]:
    """The recording's header (JSON Lines) or meta line (CSV; ``{}`` without one)."""
    p = Path(path)
    enc = _encoding(p)
    try:
        with open(p, encoding="utf-8", newline="") as fh:
            first = fh.readline()
            if enc == "jsonl":
                return _jsonl_head(p, first)
            if first.strip() != CSV_MAGIC:
                raise ReplayError(f"{p}:1: not a {FORMAT} CSV file (expected {CSV_MAGIC!r})")
            second = fh.readline()
    except OSError as e:
        raise ReplayError(f"{p}: cannot read: {e.strerror}") from None
    return _csv_meta(p, second) if second.startswith(CSV_META) else {}


def _rows(path: Path) -> Iterator[tuple[int, dict[str, Any] | None, str | None]]:
    """(line number, parsed row or None, error or None) for every data line."""
    enc = _encoding(path)
    with open(path, encoding="utf-8", newline="") as fh:
        first = fh.readline()
        if enc == "jsonl":
            _jsonl_head(path, first)
            for n, line in enumerate(fh, 2):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    yield n, None, f"corrupt or truncated line ({e.msg})"
                    continue
                yield n, obj, None
        else:
            if first.strip() != CSV_MAGIC:
                raise ReplayError(f"{path}:1: not a {FORMAT} CSV file (expected {CSV_MAGIC!r})")
            line, at = fh.readline(), 2
            if line.startswith(CSV_META):
                _csv_meta(path, line)
                line, at = fh.readline(), 3
            names = tuple(line.strip().split(","))
            if names not in (COLUMNS, COLUMNS + OPTIONAL):
                raise ReplayError(
                    f"{path}:{at}: expected columns {','.join(COLUMNS)}[,{','.join(OPTIONAL)}]"
                )
            for n, fields in enumerate(csv.reader(fh), at + 1):
                if not fields:
                    continue
                if len(fields) != len(names):
                    yield n, None, f"expected {len(names)} fields, got {len(fields)}"
                    continue
                yield n, dict(zip(names, fields, strict=True)), None


_NONE = (-1,) * 16  # row.get's default for every column (more than there are)


_NAMES = COLUMNS + OPTIONAL
_EMPTY = np.zeros(0, SCRIPT_DTYPE)
_KEYS = (frozenset(COLUMNS), frozenset(_NAMES))


def _parse(row: dict[str, Any]) -> tuple[int, ...]:
    """(t_ns, guest, vcpu, gpr0, gpr1, gpr2, psw, issue_ns or -1) of one row."""
    if type(row) is dict and (row.keys() == _KEYS[0] or row.keys() == _KEYS[1]):
        try:  # the common row: integers, or strings of them, in range
            out = tuple(v if type(v) is int else int(v, 0) for v in map(row.get, _NAMES, _NONE))
        except (TypeError, ValueError):
            pass
        else:
            if all(0 <= x < 1 << 64 for x in out[: len(row)]):
                return out
    return _parse_checked(row)


def _parse_checked(row: dict[str, Any]) -> tuple[int, ...]:
    """:func:`_parse`, value by value: the error names the column and what was wrong."""
    if not isinstance(row, dict):
        raise ValueError("expected a JSON object")
    missing = [c for c in COLUMNS if c not in row]
    if missing:
        raise ValueError(f"missing key {missing[0]!r}")
    unknown = [c for c in row if c not in COLUMNS + OPTIONAL]
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r}")
    out = []
    for c in COLUMNS + OPTIONAL:
        if c not in row:
            out.append(-1)
            continue
        v = row[c]
        if isinstance(v, bool):
            raise ValueError(f"{c}: expected an integer")
        try:
            x = v if isinstance(v, int) else int(str(v), 0)
        except ValueError:
            raise ValueError(f"{c}: expected an integer, got {v!r}") from None
        if x < 0 or x >= 1 << 64:
            raise ValueError(f"{c}: {x} is out of range")
        out.append(x)
    return tuple(out)


_SPILL = np.dtype([("vcpu", np.int64), ("t", np.int64), *((n, np.uint64) for n in REGISTER_NAMES)])
_CHUNK = 1 << 16  # rows per spill chunk


class ReplayFeed:
    """Per-vCPU script rows of a validated recording, read as the run asks for them (see the
    module docstring).

    The validating pass parses every line once and spills the good rows, as 48-byte binary
    records, to an anonymous temporary file; the run reads that back in chunks of ``_CHUNK``
    rows, so the text is parsed once and neither the recording nor its rows are held whole in
    memory (only the rows read ahead of the vCPUs that have not yet asked for them)."""

    def __init__(self, path: str | Path, vcpu_guest: np.ndarray, skip_bad: bool = False) -> None:
        self.path = Path(path)
        self.vcpu_guest = vcpu_guest
        #: the recording's header (:func:`read_header`)
        self.header = read_header(self.path)
        self.skipped: list[str] = []
        self.n_skipped = 0  # bad lines skipped (skip_bad)
        self.rows = 0
        self.last_t = -1  # the latest t_ns of a good row
        self._spill: BinaryIO | None = tempfile.TemporaryFile()  # noqa: SIM115
        self._validate(skip_bad)
        self._spill.seek(0)
        self._segs: dict[int, collections.deque[np.ndarray]] = collections.defaultdict(
            collections.deque
        )
        self._base: dict[int, int] = collections.defaultdict(int)  # row index of segs[v][0][0]
        self._end: dict[int, int] = collections.defaultdict(int)  # rows of v read so far

    def _check(self, row: Any, last: dict[int, int]) -> tuple[int, ...] | str:
        """The parsed row, or why it cannot be replayed."""
        try:
            out = _parse(row)
        except ValueError as e:
            return str(e)
        t, g, v, *_, issue = out
        if v >= len(self.vcpu_guest):
            return f"unknown vCPU {v}: the scenario has {len(self.vcpu_guest)}"
        if int(self.vcpu_guest[v]) != g:
            return f"vCPU {v} belongs to guest {int(self.vcpu_guest[v])}, not {g}"
        if max(t, issue) >= 1 << 63:
            name = "t_ns" if t >= 1 << 63 else "issue_ns"
            return f"{name} is out of range (the clock is int64 ns)"
        if issue >= 0 and t > issue:
            return f"t_ns {t} is after issue_ns {issue}"
        order = issue if issue >= 0 else t
        if order < last.get(v, 0):
            return f"time goes backwards for vCPU {v} ({order} < {last[v]})"
        last[v] = order
        self.last_t = max(self.last_t, t)
        return out

    def _validate(self, skip_bad: bool) -> None:
        last: dict[int, int] = {}
        good: list[tuple[int, ...]] = []
        for n, row, err in _rows(self.path):
            got = err or self._check(row, last)
            if isinstance(got, str):
                msg = f"{self.path}:{n}: {got}"
                if not skip_bad:
                    raise ReplayError(msg)
                self.n_skipped += 1
                if len(self.skipped) < 5:
                    self.skipped.append(msg)
                continue
            t, _, v, g0, g1, g2, psw, _ = got
            good.append((v, t, g0, g1, g2, psw))
            if len(good) == _CHUNK:
                self._write(good)
        self._write(good)

    def _write(self, good: list[tuple[int, ...]]) -> None:
        assert self._spill is not None
        self._spill.write(np.array(good, _SPILL).tobytes())
        self.rows += len(good)
        good.clear()

    def _read(self) -> bool:
        """Read the next chunk of the spill into the per-vCPU segments (False: none left)."""
        if self._spill is None:
            return False
        data = self._spill.read(_CHUNK * _SPILL.itemsize)
        if not data:
            self._spill.close()
            self._spill = None
            return False
        arr = np.frombuffer(data, _SPILL)
        arr = arr[np.argsort(arr["vcpu"], kind="stable")]
        rows = np.zeros(len(arr), SCRIPT_DTYPE)
        rows["t"] = arr["t"]
        for name in REGISTER_NAMES:
            rows[name] = arr[name]
        vs, first, count = np.unique(arr["vcpu"], return_index=True, return_counts=True)
        for v, a, c in zip(vs.tolist(), first.tolist(), count.tolist(), strict=True):
            self._segs[v].append(rows[a : a + c])
            self._end[v] += c
        return True

    def rows_of(self, v: int, pos: int, n: int) -> np.ndarray:
        """Up to ``n`` of vCPU ``v``'s rows from row ``pos`` on (``SCRIPT_DTYPE``; at least one
        unless it has no more); rows before ``pos`` are forgotten."""
        while self._end[v] <= pos and self._read():
            pass
        segs = self._segs[v]
        base = self._base[v]
        while segs and base + len(segs[0]) <= pos:
            base += len(segs.popleft())
        self._base[v] = base
        if not segs:
            return _EMPTY
        return segs[0][pos - base : pos - base + n]

    def row(self, v: int, pos: int) -> np.void | None:
        """Row ``pos`` of vCPU ``v`` (None after its last); earlier rows are forgotten."""
        got = self.rows_of(v, pos, 1)
        return got[0] if len(got) else None
