"""The methods each part of the fleet calls on the others, declared once for the type checker.

:class:`hostsim.fleet.Fleet` is put together from mixins (:mod:`hostsim.fleet_pool`,
:mod:`hostsim.fleet_fifo`, :mod:`hostsim.fleet_window`, :mod:`hostsim.fleet_scalar`,
:mod:`hostsim.fleet_records`); the windows and the scalar path call methods that the others
define. :class:`FleetParts` declares those signatures once, only while type checking: at run
time it is an empty class, so no lookup on the hot path changes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from hostsim.fleet_pool import INF


class FleetParts:
    """The cross-part methods of the fleet (see module docstring)."""

    if TYPE_CHECKING:

        def plan_epoch(self, until: int) -> None: ...

        def _after(
            self, v: np.ndarray, prev: np.ndarray, before: int = INF, lazy: bool = False
        ) -> np.ndarray: ...

        def _materialize(self, v: np.ndarray) -> None: ...

        def _at_think(self, v: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...

        def _pending_below(self, limit: int) -> np.ndarray: ...

        def _resume_lb(
            self, v: np.ndarray, row: np.ndarray, issue: np.ndarray, free: Any
        ) -> np.ndarray: ...

        def _order(self, v: np.ndarray, key: np.ndarray) -> np.ndarray: ...

        def _serve(
            self,
            v: np.ndarray,
            row: np.ndarray,
            issue: np.ndarray,
            key: np.ndarray,
            order: np.ndarray,
        ) -> tuple[np.ndarray, ...]: ...

        def _set_free(self, v: np.ndarray, rel: np.ndarray) -> None: ...

        def _commit(self, v: np.ndarray, *cols: np.ndarray) -> None: ...

        def _next(
            self,
            v: np.ndarray,
            k: np.ndarray,
            resume: np.ndarray,
            prev: np.ndarray,
        ) -> None: ...

        def _pending(
            self,
            v: np.ndarray,
            k: np.ndarray,
            resume: np.ndarray,
            idx: np.ndarray,
            at: np.ndarray,
            think: np.ndarray,
        ) -> None: ...
