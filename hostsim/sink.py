"""Where finished requests go: buffered, put in canonical order, and handed on in fixed chunks.

An engine adds records as requests finish (out of issue order) and tells the sink its
*watermark*: no request it has not finished yet was issued before that time. Records issued
before the watermark are final, so they are sorted by ``(t_issue, vcpu)`` and passed on in
chunks of exactly :data:`CHUNK` rows. Chunk boundaries therefore do not depend on when an engine
flushes, and the two engines hand on identical chunks. Memory stays bounded by the records in
flight plus one chunk.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from hostsim.decode import Decision
from hostsim.intercept import Intercept
from hostsim.records import RECORD_DTYPE, canonical_order
from hostsim.rules import rule_code

CHUNK = 65536


def record_tuple(
    vcpu: int,
    guest: int,
    seq: int,
    t_arrival: int,
    t_issue: int,
    t_exit: int,
    t_decode: int,
    t_rwsem: int,
    t_mreq: int,
    t_grant: int,
    t_rel: int,
    t_resume: int,
    x: Intercept,
    d: Decision,
    path: int,
) -> tuple[Any, ...]:
    """One request record as a tuple in :data:`RECORD_DTYPE` field order."""
    return (
        vcpu,
        guest,
        seq,
        t_arrival,
        t_issue,
        t_exit,
        t_decode,
        t_rwsem,
        t_mreq,
        t_grant,
        t_rel,
        t_resume,
        x.gpr0,
        x.gpr1,
        x.gpr2,
        x.psw_mask,
        d.gr1,
        x.gpr0 & 0xFFFF,
        int(d.kind),
        path,
        rule_code(d.rule),
        -1 if d.response_code is None else d.response_code,
        -1 if d.guest_visible_rc is None else d.guest_visible_rc,
        -1 if d.cc is None else d.cc,
        -1 if d.pgm_code is None else d.pgm_code,
        d.hw_aqic_calls,
        d.hw_tapq_calls,
        d.sleeps,
    )


def to_records(col: Mapping[str, np.ndarray]) -> np.ndarray:
    """Records (:data:`RECORD_DTYPE`) from columns of its field names."""
    n = len(col["t_issue"])
    rec = np.empty(n, RECORD_DTYPE)
    for name in RECORD_DTYPE.names or ():
        rec[name] = col[name]
    return rec


def columns(rec: np.ndarray) -> dict[str, np.ndarray]:
    """The columns of records (views, no copy)."""
    return {name: rec[name] for name in RECORD_DTYPE.names or ()}


class RecordSink:
    """Collects finished requests; emits canonical-order chunks of :data:`CHUNK` rows.

    ``ordered=False`` (nothing needs the records themselves, only order-free statistics):
    every finished request is handed on at once as columns, without sorting or chunking.
    """

    def __init__(
        self,
        emit: Callable[[Any], None],  # a RECORD_DTYPE chunk; columns with ``ordered=False``
        chunk: int = CHUNK,
        *,
        ordered: bool = True,
    ) -> None:
        self._emit = emit
        self._chunk = chunk
        self.ordered = ordered
        self.rows: list[tuple[Any, ...]] = []
        self._arrays: list[np.ndarray] = []
        self._array_rows = 0
        self._ready: list[np.ndarray] = []
        self._ready_n = 0
        self.count = 0

    def add(self, row: tuple[Any, ...]) -> None:
        """One finished request (a :func:`record_tuple`)."""
        self.rows.append(row)

    def add_array(self, rows: np.ndarray) -> None:
        """Many finished requests at once (a :data:`RECORD_DTYPE` array)."""
        if not self.ordered:
            self._emit(columns(rows))
            self.count += len(rows)
            return
        self._arrays.append(rows)
        self._array_rows += len(rows)

    def add_columns(self, col: Mapping[str, np.ndarray]) -> None:
        """Many finished requests at once, as columns of :data:`RECORD_DTYPE` field names."""
        if not self.ordered:
            self._emit(col)
            self.count += len(col["t_issue"])
            return
        self.add_array(to_records(col))

    def pending(self) -> int:
        """Records held back, waiting for the watermark."""
        return len(self.rows) + self._array_rows

    def flush(self, watermark: int | None) -> None:
        """Pass on every record issued before ``watermark`` (None: everything, at the end)."""
        if not self.ordered:
            if self.rows:
                rows = np.array(self.rows, dtype=RECORD_DTYPE)
                self.rows.clear()  # engines hold this list: empty it in place
                self.add_array(rows)
            return
        parts = list(self._arrays)
        if self.rows:
            parts.append(np.array(self.rows, dtype=RECORD_DTYPE))
        if not parts:
            self._drain(final=watermark is None)
            return
        allrec = canonical_order(np.concatenate(parts))
        if watermark is None:
            done, keep = allrec, allrec[:0]
        else:
            cut = int(np.searchsorted(allrec["t_issue"], watermark, side="left"))
            done, keep = allrec[:cut], allrec[cut:]
        self.rows.clear()  # engines hold this list: empty it in place
        self._arrays = [keep] if len(keep) else []
        self._array_rows = len(keep)
        if len(done):
            self._ready.append(done)
            self._ready_n += len(done)
        self._drain(final=watermark is None)

    def _drain(self, final: bool) -> None:
        if not self._ready:
            return
        while self._ready_n >= self._chunk or (final and self._ready_n):
            allready = np.concatenate(self._ready) if len(self._ready) > 1 else self._ready[0]
            n = min(self._chunk, len(allready))
            self._emit(allready[:n])
            self.count += n
            rest = allready[n:]
            self._ready = [rest] if len(rest) else []
            self._ready_n = len(rest)
