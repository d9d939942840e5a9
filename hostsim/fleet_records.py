"""The fleet's committed requests as record columns, made on demand."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from hostsim.chain import CAT_EARLY
from hostsim.plan import TAIL_DTYPE


class LazyColumns(Mapping[str, np.ndarray]):
    """Record columns, each an array or a function that makes it on first use (statistics
    read a few columns; writing records reads them all)."""

    def __init__(self, cols: dict[str, Any]) -> None:
        self._cols = cols

    def __getitem__(self, name: str) -> np.ndarray:
        c = self._cols[name]
        if callable(c):
            c = self._cols[name] = c()
        return c

    def __iter__(self) -> Iterator[str]:
        return iter(self._cols)

    def __len__(self) -> int:
        return len(self._cols)


def _field(tail: np.ndarray, name: str, row: np.ndarray) -> Any:
    return lambda: tail[name][row]


class FleetRecords:
    """A mixin of :class:`hostsim.fleet.Fleet`: its committed requests' record columns."""

    # The state it shares with :class:`hostsim.fleet.Fleet` (set in its ``__init__``).
    done: list[tuple[np.ndarray, ...]]
    n_done: int
    pool: dict[str, np.ndarray]
    rwsem: bool
    guest: np.ndarray

    # --- records --------------------------------------------------------------------------------
    def records(self) -> LazyColumns | None:
        """The records of every request committed since the last call, as columns of
        :data:`~hostsim.records.RECORD_DTYPE` field names, in the order they were committed
        (within a window not FIFO order: the sink sorts records; statistics are order-free)."""
        if not self.done:
            return None
        parts = list(zip(*self.done, strict=True))
        self.done.clear()
        self.n_done = 0
        v, k, arr, issue, row, mreq, grant, rel, resume = (
            np.concatenate(x) if len(x) > 1 else x[0] for x in parts
        )
        p = self.pool  # the columns are made on demand: before the next :meth:`compact`
        tail, pre, sie, cat = p["tail"], p["pre"], p["sie"], p["cat"]
        rwsem = self.rwsem

        def t_rwsem() -> np.ndarray:
            return np.where(cat[row] == CAT_EARLY, -1, col["t_decode"] if rwsem else -1)

        col = LazyColumns(
            {
                "vcpu": v,
                "guest": lambda: self.guest[v],
                "seq": k,
                "t_arrival": arr,
                "t_issue": issue,
                "t_exit": lambda: issue + sie[row],
                "t_decode": lambda: issue + pre[row],
                "t_rwsem": t_rwsem,
                "t_mutex_req": mreq,
                "t_mutex_grant": grant,
                "t_mutex_rel": rel,
                "t_resume": resume,
                **{name: _field(tail, name, row) for name in TAIL_DTYPE.names or ()},
            }
        )
        return col
