"""fio's JSON output layout for ``summary.json``: a ``jobs[]`` entry per PQAP path.

fio (``--output-format=json``) writes ``{"fio version", "global options", "jobs": [...]}``, each
job with ``read``/``write``/``trim``/``sync`` direction objects (``clat_ns`` and ``lat_ns`` with a
``percentile`` dict keyed ``"1.000000"`` ...), ``iodepth_level`` and the ``latency_ns`` /
``latency_us`` / ``latency_ms`` distribution (per cent of the job's I/Os per bucket). hostsim
writes one job per path that has measured requests, with the path's PQAP(AQIC) latencies as the
``read`` direction (fio tools need one of read, write or trim; a PQAP moves no data, so the byte
and bandwidth fields are 0) and empty ``write`` and ``trim`` directions, as a read-only fio job
shows them. ``clat_ns`` and ``lat_ns`` are the same object: an intercept has no separate
submission phase (``slat_ns`` is empty), as with fio's ``lat_percentiles=1``.

:func:`canonical` orders a document for output: keys sorted as text, except dicts whose keys
are all numbers (percentiles, latency buckets, iodepth levels), which are sorted numerically as
fio writes them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hostsim import __version__

#: fio's latency bucket labels within one unit (``io_u_mark_lat_nsec`` / ``_usec`` / ``_msec``):
#: each label is the bucket's exclusive upper bound; ``latency_ms`` adds ``2000`` and ``>=2000``.
_LABELS: tuple[str, ...] = ("2", "4", "10", "20", "50", "100", "250", "500", "750", "1000")
_MS_LABELS: tuple[str, ...] = (*_LABELS, "2000", ">=2000")

#: Bucket edges in ns: a value ``v`` falls in bucket ``searchsorted(EDGES, v, "right")``; 10
#: buckets in ns, 10 in us, 12 in ms (fio truncates to whole us and ms before bucketing, which
#: these ns edges reproduce exactly).
LAT_EDGES_NS: tuple[int, ...] = (
    *(int(x) for x in _LABELS),
    *(int(x) * 1_000 for x in _LABELS),
    *(int(x) * 1_000_000 for x in _MS_LABELS[:-1]),
)
N_LAT_BUCKETS = len(LAT_EDGES_NS) + 1

#: fio's ``iodepth_level`` keys; a vCPU has one PQAP outstanding at a time (depth 1).
_IODEPTH_LEVELS: tuple[str, ...] = ("1", "2", "4", "8", "16", "32", ">=64")

_NUMERIC_KEY = re.compile(r"^(>=)?\d+(\.\d+)?$")


def bucket_counts(values: np.ndarray) -> np.ndarray:
    """How many of ``values`` (ns) fall in each of fio's latency buckets (int64, N_LAT_BUCKETS)."""
    v = np.asarray(values, dtype=np.int64)
    idx = np.searchsorted(np.asarray(LAT_EDGES_NS, dtype=np.int64), v, side="right")
    return np.bincount(idx, minlength=N_LAT_BUCKETS).astype(np.int64)


def latency_distribution(counts: Sequence[int] | np.ndarray) -> dict[str, dict[str, float]]:
    """fio's ``latency_ns``, ``latency_us`` and ``latency_ms`` objects: per cent per bucket."""
    c = [int(x) for x in counts]
    if len(c) != N_LAT_BUCKETS:
        raise ValueError(f"expected {N_LAT_BUCKETS} bucket counts, got {len(c)}")
    total = sum(c)

    def pct(n: int) -> float:
        return round(100.0 * n / total, 6) if total else 0.0

    return {
        "latency_ns": {k: pct(n) for k, n in zip(_LABELS, c[0:10], strict=True)},
        "latency_us": {k: pct(n) for k, n in zip(_LABELS, c[10:20], strict=True)},
        "latency_ms": {k: pct(n) for k, n in zip(_MS_LABELS, c[20:32], strict=True)},
    }


def _empty_lat() -> dict[str, Any]:
    return {"N": 0, "min": 0, "max": 0, "mean": 0.0, "stddev": 0.0}


def _copy_lat(lat: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a ``lat_ns`` object that shares no dict with it."""
    out = dict(lat)
    if "percentile" in out:
        out["percentile"] = dict(out["percentile"])
    return out


def _direction(lat: Mapping[str, Any] | None, runtime_ms: int, duration_ns: int) -> dict[str, Any]:
    """One fio direction object (``read`` here); ``lat`` None gives an empty direction."""
    n = int(lat["N"]) if lat is not None else 0
    iops = round(n * 1e9 / duration_ns, 6) if duration_ns > 0 and n else 0.0
    full = _copy_lat(lat) if lat is not None and n else _empty_lat()
    return {
        "io_bytes": 0,
        "io_kbytes": 0,
        "bw_bytes": 0,
        "bw": 0,
        "iops": iops,
        "runtime": runtime_ms if n else 0,
        "total_ios": n,
        "short_ios": 0,
        "drop_ios": 0,
        "slat_ns": _empty_lat(),
        "clat_ns": full,
        "lat_ns": _copy_lat(full),
        "bw_min": 0,
        "bw_max": 0,
        "bw_agg": 0.0,
        "bw_mean": 0.0,
        "bw_dev": 0.0,
        "bw_samples": 0,
        "iops_min": 0,
        "iops_max": 0,
        "iops_mean": iops,
        "iops_stddev": 0.0,
        "iops_samples": 0,
    }


def fio_job(
    name: str, lat: Mapping[str, Any], buckets: Sequence[int] | np.ndarray, duration_ns: int
) -> dict[str, Any]:
    """A fio ``jobs[]`` entry for one path: its ``lat_ns`` object and fio-bucket counts."""
    runtime_ms = max(int(duration_ns) // 1_000_000, 0)
    return {
        "jobname": name,
        "groupid": 0,
        "error": 0,
        "eta": 0,
        "elapsed": int(duration_ns) // 1_000_000_000,
        "job options": {
            "name": name,
            "description": f"PQAP(AQIC) requests that took the {name} path",
            "ioengine": "hostsim",
            "rw": "read",
            "bs": "0",
            "iodepth": "1",
            "numjobs": "1",
        },
        "read": _direction(lat, runtime_ms, duration_ns),
        "write": _direction(None, runtime_ms, duration_ns),
        "trim": _direction(None, runtime_ms, duration_ns),
        "sync": {"total_ios": 0, "lat_ns": _empty_lat()},
        "job_runtime": runtime_ms,
        "usr_cpu": 0.0,
        "sys_cpu": 0.0,
        "ctx": 0,
        "majf": 0,
        "minf": 0,
        "iodepth_level": {k: (100.0 if k == "1" and lat["N"] else 0.0) for k in _IODEPTH_LEVELS},
        **latency_distribution(buckets),
        "latency_depth": 1,
        "latency_target": 0,
        "latency_percentile": 100.0,
        "latency_window": 0,
    }


def fio_document(jobs: list[dict[str, Any]], duration_ns: int, warmup_ns: int) -> dict[str, Any]:
    """fio's top-level keys: ``fio version``, ``global options`` and ``jobs``."""
    return {
        "fio version": f"hostsim-{__version__}",
        "global options": {
            "ioengine": "hostsim",
            "runtime": f"{duration_ns // 1000}us",
            "ramp_time": f"{warmup_ns // 1000}us",
            "lat_percentiles": "1",
        },
        "jobs": jobs,
    }


def _numeric(key: str) -> tuple[float, int]:
    return (float(key.removeprefix(">=")), 1 if key.startswith(">=") else 0)


def canonical(obj: Any) -> Any:
    """``obj`` with every dict's keys in output order (see the module docstring)."""
    if isinstance(obj, Mapping):
        keys = list(obj)
        if keys and all(isinstance(k, str) and _NUMERIC_KEY.match(k) for k in keys):
            order = sorted(keys, key=_numeric)
        else:
            order = sorted(keys, key=str)
        return {k: canonical(obj[k]) for k in order}
    if isinstance(obj, list | tuple):
        return [canonical(x) for x in obj]
    return obj
