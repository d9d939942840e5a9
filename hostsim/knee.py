"""Knee finding: the offered load at which a host stops keeping up.

Given a load curve (load, p99 latency, throughput) the knee is the first load at which either

* **p99**: the p99 latency exceeds ``multiple`` times its unloaded value (the p99 at the lowest
  load of the curve), or
* **throughput**: throughput stops growing with the load: on the step from the previous load,
  the extra throughput is less than ``growth`` times the extra offered load (both in requests per
  second). This is an absolute, not a relative, comparison so that a fixed background load
  (closed-loop guests, other groups) does not hide or fake a knee.

:func:`find_knee` says which criterion fired (``"p99"``, ``"throughput"`` or both). The knee lies
between ``last_ok_load`` and ``load``; the sweep's resolution decides how closely.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

DEFAULT_MULTIPLE = 3.0
DEFAULT_GROWTH = 0.5


@dataclass(frozen=True)
class Knee:
    """Where a load curve turns: ``load`` is None when no criterion fired within the curve."""

    load: float | None
    index: int | None  # index of the knee in the load-sorted curve
    criterion: str | None  # "p99", "throughput" or "p99+throughput"
    last_ok_load: float | None  # the highest load before the knee
    baseline_p99: float  # p99 at the lowest load
    threshold_p99: float  # multiple x baseline
    p99_at_knee: float | None
    efficiency_at_knee: float | None  # extra throughput / extra offered load into the knee


def find_knee(
    load: Sequence[float] | np.ndarray,
    p99: Sequence[float] | np.ndarray,
    throughput: Sequence[float] | np.ndarray,
    *,
    offered: Sequence[float] | np.ndarray | None = None,
    multiple: float = DEFAULT_MULTIPLE,
    growth: float = DEFAULT_GROWTH,
) -> Knee:
    """The knee of one load curve (see the module docstring).

    ``offered`` is the offered load in requests per second at each point, the unit of
    ``throughput``; without it ``load`` itself is taken to be in requests per second. Points are
    sorted by ``load``; points with a non-finite p99 or throughput are ignored.
    """
    if multiple <= 1:
        raise ValueError(f"multiple must be > 1, got {multiple}")
    if not 0 < growth <= 1:
        raise ValueError(f"growth must be in (0, 1], got {growth}")
    x = np.asarray(load, dtype=float)
    lat = np.asarray(p99, dtype=float)
    thr = np.asarray(throughput, dtype=float)
    off = x if offered is None else np.asarray(offered, dtype=float)
    if not x.shape == lat.shape == thr.shape == off.shape or x.ndim != 1:
        raise ValueError("load, p99, throughput and offered must be 1-d and of one length")
    ok = np.isfinite(x) & np.isfinite(lat) & np.isfinite(thr) & np.isfinite(off)
    order = np.argsort(x[ok], kind="stable")
    x, lat, thr, off = (a[ok][order] for a in (x, lat, thr, off))
    if x.size == 0:
        return Knee(None, None, None, None, math.nan, math.nan, None, None)
    base = float(lat[0])
    threshold = multiple * base
    for i in range(1, x.size):
        fired = []
        if lat[i] > threshold:
            fired.append("p99")
        d_off = off[i] - off[i - 1]
        eff = float((thr[i] - thr[i - 1]) / d_off) if d_off > 0 else None
        if eff is not None and eff < growth:
            fired.append("throughput")
        if fired:
            return Knee(
                float(x[i]),
                i,
                "+".join(fired),
                float(x[i - 1]),
                base,
                threshold,
                float(lat[i]),
                eff,
            )
    return Knee(None, None, None, float(x[-1]), base, threshold, None, None)


def knee_table(
    cols: Mapping[str, Sequence[Any]],
    load_key: str,
    other_keys: Sequence[str],
    *,
    path: str = "all",
    percentile: str = "p99",
    multiple: float = DEFAULT_MULTIPLE,
    growth: float = DEFAULT_GROWTH,
) -> list[dict[str, Any]]:
    """The knee of every combination of the other factors in a sweep table (see hostsim.table).

    Uses the mean ``<path>_<percentile>_us`` (p99 unless told), ``throughput_per_s`` and
    ``offered_per_s`` of each point. Returns one dict per combination, in order of first
    appearance: the knee, the criterion that fired, the load before it, and the latency
    percentile's baseline, threshold and value at the knee (us).
    """
    n = len(cols[load_key])
    groups: dict[tuple[Any, ...], list[int]] = {}
    for i in range(n):
        groups.setdefault(tuple(cols[k][i] for k in other_keys), []).append(i)
    p99_col = f"{path}_{percentile}_us"
    out = []
    for combo, idx in groups.items():
        k = find_knee(
            [float(cols[load_key][i]) for i in idx],
            [float(cols[p99_col][i]) if p99_col in cols else math.nan for i in idx],
            [float(cols["throughput_per_s"][i]) for i in idx],
            offered=[float(cols["offered_per_s"][i]) for i in idx],
            multiple=multiple,
            growth=growth,
        )
        row: dict[str, Any] = dict(zip(other_keys, combo, strict=True))
        row.update(
            knee_load=k.load,
            criterion=(k.criterion or "none").replace("p99", percentile),
            last_ok_load=k.last_ok_load,
            percentile=percentile,
            baseline_us=k.baseline_p99,
            threshold_us=k.threshold_p99,
            at_knee_us=k.p99_at_knee,
            throughput_efficiency=k.efficiency_at_knee,
        )
        out.append(row)
    return out
