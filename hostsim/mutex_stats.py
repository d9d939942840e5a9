"""The summary's ``mutex`` section: waits, holds and held time of the vfio_ap mutex.

:class:`MutexStats` is fed the mutex columns (``t_mutex_req``, ``t_mutex_grant``,
``t_mutex_rel``; grant -1: not taken, release -1: still held at the end) of request records and
host-event rows by :class:`hostsim.summary.RunStats`, which decides which requests are measured.
It keeps the waits and holds of requests and of host events apart
(:class:`hostsim.moments.Moments`), the time the mutex was held by anyone clipped to the
measurement window ``[start_ns, end_ns]`` (an open hold lasts to ``end_ns``; while ``end_ns`` is
unknown its grant is kept until the summary knows the window's end), and the longest single hold
with its holder under an order-free tie rule (the earliest grant, then requests before host
events), so that the section does not depend on the order or the chunking of the records. The
other locks' sections are :mod:`hostsim.lock_stats`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from hostsim.moments import Moments
from hostsim.records import PATH_NAMES


def _at(where: np.ndarray | slice, i: int) -> int:
    """Position ``i`` of a selection: an index array, or ``slice(None)`` for every row."""
    return i if isinstance(where, slice) else int(where[i])


class MutexStats:
    """The mutex's statistics in the window ``[start_ns, end_ns]`` (``end_ns`` ``None``: the end
    is not known yet); histograms up to ``highest_ns``."""

    def __init__(self, start_ns: int, end_ns: int | None, highest_ns: int) -> None:
        self.start_ns = start_ns
        self.end_ns = end_ns
        self.wait = Moments(highest_ns)
        self.hold = Moments(highest_ns)
        self.host_wait = Moments(highest_ns)
        self.host_hold = Moments(highest_ns)
        self.busy_ns = 0  # mutex held, clipped to the window (known-end part)
        self._open_grants: list[int] = []  # holds without release when end_ns is unknown
        self._longest: tuple[int, int, int, dict[str, Any]] | None = None  # (hold, -grant, -type)

    # --- feeding ------------------------------------------------------------------------------
    def add_held(self, grant: np.ndarray, rel: np.ndarray) -> None:
        """Add mutex-held time clipped to the window; remember open holds if the end is unknown."""
        taken = grant >= 0
        if not taken.any():
            return
        g, r = grant[taken], rel[taken]
        open_ = r < 0
        if open_.any():
            if self.end_ns is None:
                self._open_grants.extend(g[open_].tolist())
                g, r = g[~open_], r[~open_]
            else:
                r = np.where(open_, self.end_ns, r)
        start = np.maximum(g, self.start_ns)
        stop = r if self.end_ns is None else np.minimum(r, self.end_ns)
        self.busy_ns += int(np.maximum(stop - start, 0).sum(dtype=np.int64))

    def add_requests(self, col: Mapping[str, np.ndarray], sel: np.ndarray | None) -> None:
        """Add the waits and holds of the measured requests: the rows ``sel`` of the columns
        ``col`` (``None``: every row)."""

        def pick(name: str) -> np.ndarray:
            return col[name] if sel is None else col[name][sel]

        def every(mask: np.ndarray) -> np.ndarray | slice:
            """Where ``mask`` holds: an index, or a whole slice when it holds everywhere (the
            usual case, with no gather)."""
            return slice(None) if mask.all() else np.flatnonzero(mask)

        m_grant = pick("t_mutex_grant")
        taken = every(m_grant >= 0)
        if isinstance(taken, slice) or len(taken):
            t_grant = m_grant[taken]
            self.wait.add(t_grant - pick("t_mutex_req")[taken])
            t_rel = pick("t_mutex_rel")[taken]
            closed = every(t_rel >= 0)
            holds = t_rel[closed] - t_grant[closed]
            self.hold.add(holds)
            if holds.size:
                i = self._argmax_earliest(holds, t_grant[closed])
                at = _at(taken, _at(closed, i))
                row = at if sel is None else int(sel[at])
                self._offer_longest(
                    int(holds[i]),
                    int(col["t_mutex_grant"][row]),
                    0,
                    {
                        "type": "vcpu",
                        "vcpu": int(col["vcpu"][row]),
                        "guest": int(col["guest"][row]),
                        "seq": int(col["seq"][row]),
                        "path": PATH_NAMES[int(col["path"][row])],
                        "t_grant_ns": int(col["t_mutex_grant"][row]),
                    },
                )

    def add_host_events(self, ev: np.ndarray, kind_names: Callable[[], Mapping[int, str]]) -> None:
        """Add the held time of host-event rows (``HOST_EVENT_DTYPE``), and the waits and holds
        of those at or after ``start_ns``; ``kind_names`` gives the name of a host event's kind
        for the longest holder."""
        self.add_held(ev["t_mutex_grant"], ev["t_mutex_rel"])

        m = ev[(ev["t_at"] >= self.start_ns) & (ev["t_mutex_grant"] >= 0)]
        if m.size == 0:
            return
        self.host_wait.add(m["t_mutex_grant"] - m["t_mutex_req"])
        closed = m[m["t_mutex_rel"] >= 0]
        holds = closed["t_mutex_rel"] - closed["t_mutex_grant"]
        self.host_hold.add(holds)
        if holds.size:
            i = self._argmax_earliest(holds, closed["t_mutex_grant"])
            e = closed[i]
            self._offer_longest(
                int(holds[i]),
                int(e["t_mutex_grant"]),
                1,
                {
                    "type": "host_event",
                    "event": int(e["event"]),
                    "kind": kind_names().get(int(e["kind"]), str(int(e["kind"]))),
                    "guest": int(e["guest"]),
                    "t_grant_ns": int(e["t_mutex_grant"]),
                },
            )

    # --- helpers ------------------------------------------------------------------------------
    @staticmethod
    def _argmax_earliest(holds: np.ndarray, grants: np.ndarray) -> int:
        """Index of the longest hold, the earliest granted among equals."""
        best = holds == holds.max()
        idx = np.flatnonzero(best)
        return int(idx[np.argmin(grants[idx])])

    def _offer_longest(self, hold: int, grant: int, order: int, who: dict[str, Any]) -> None:
        key = (hold, -grant, -order, who)
        if self._longest is None or key[:3] > self._longest[:3]:
            self._longest = key

    # --- results ------------------------------------------------------------------------------
    def moments(self) -> tuple[Moments, ...]:
        """The waits and holds of requests and of host events."""
        return self.wait, self.hold, self.host_wait, self.host_hold

    def section(self, start: int, end: int) -> dict[str, Any]:
        """The summary's ``mutex`` object for the window ``[start, end]``, the holds still open
        lasting to ``end``."""
        duration = end - start
        busy = self.busy_ns + sum(max(0, end - max(g, start)) for g in self._open_grants)
        longest_ns, longest_by = 0, None
        if self._longest is not None:
            longest_ns, longest_by = self._longest[0], self._longest[3]
        return {
            "utilisation": round(busy / duration, 6) if duration > 0 else 0.0,
            "busy_ns": busy,
            "wait_ns": self.wait.lat_ns(),
            "hold_ns": self.hold.lat_ns(),
            "host_wait_ns": self.host_wait.lat_ns(),
            "host_hold_ns": self.host_hold.lat_ns(),
            "longest_hold_ns": longest_ns,
            "longest_hold_by": longest_by,
        }
