"""PNG plots of a run's result folder or of a sweep folder (matplotlib, Agg backend).

Result folder (``hostsim run``):

* ``latency_cdf.png``: latency CDF per path (log µs) and the tail (1 - CDF) on log-log axes;
* ``latency_timeline.png``: every request's latency against its issue time, host events marked.

Sweep folder (``hostsim sweep``):

* ``latency_vs_load.png``: p50 and p99 per path against the load factor, one line per combination
  of the other factors, 95 % CI bands, the knee marked;
* ``throughput_mutex_vs_load.png``: throughput (and the offered load), mutex utilisation and
  mutex wait p99 against the load factor;
* ``cdf_by_load.png``: the latency CDF of the knee path at each load (replication 0);
* ``p99_vs_guests.png``: p99 and p99.9 against a guest-count factor (``guests.N.count``);
* ``boot_storm_vs_guests.png``: boot-storm completion time against the guest count, for sweeps
  of boot storms (every guest group ``kind = "boot"``); skipped with a note otherwise.

Variant comparisons (``hostsim compare``) are drawn by :mod:`hostsim.plot_compare`.
"""

from __future__ import annotations

from pathlib import Path

from hostsim.plot_run import plot_result
from hostsim.plot_style import PlotError
from hostsim.plot_sweep import plot_sweep
from hostsim.results import SUMMARY_FILE
from hostsim.sweep_table import META_FILE

__all__ = ["PlotError", "plot_path"]


def plot_path(path: str | Path, out_dir: str | Path | None = None) -> tuple[list[Path], list[str]]:
    """Plot a result folder or a sweep folder into ``out_dir`` (default: ``<path>/plots``)."""
    p = Path(path)
    out = Path(out_dir) if out_dir is not None else p / "plots"
    if (p / META_FILE).exists():
        return plot_sweep(p, out)
    if (p / SUMMARY_FILE).exists():
        return plot_result(p, out)
    raise PlotError(f"{p}: neither a result folder (summary.json) nor a sweep folder ({META_FILE})")
