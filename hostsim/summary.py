"""Run statistics as pure functions over records: a streaming, bounded-memory aggregator.

:class:`RunStats` is fed chunks of request records (:data:`hostsim.records.RECORD_DTYPE`) and
host-event rows (:data:`hostsim.records.HOST_EVENT_DTYPE`) in any chunking and returns a
summary in fio's JSON layout (``lat_ns`` objects with ``min``, ``max``, ``mean``, ``stddev``,
``N`` and fio's percentile list; a fio ``jobs[]`` entry per path, :mod:`hostsim.fio_json`)
beside hostsim's own keys. Its state is a fixed set of HdrHistograms plus exact running sums kept
as Python ints, so the result does not depend on how the records were chunked and the same input
always gives the same JSON, byte for byte. Its pieces live beside it: the vectorised HdrHistogram
helpers in :mod:`hostsim.histograms`, one statistic's exact moments in :mod:`hostsim.moments`
and the ``mutex`` section in :mod:`hostsim.mutex_stats`.

Definitions (all times integer ns):

* a request is *measured* when ``t_issue >= warmup_ns`` and it completed (``t_resume >= 0``);
  requests issued earlier count as ``warmup``, unfinished ones as ``incomplete``;
* latency is ``t_resume - t_issue``; mutex wait ``t_mutex_grant - t_mutex_req`` and hold
  ``t_mutex_rel - t_mutex_grant`` where the request took the mutex (host events likewise, measured
  when ``t_at >= warmup_ns``);
* mutex utilisation is the time the mutex was held by anyone (requests and host events, whether
  measured or not), clipped to the window ``[warmup_ns, end_ns]``, over the window's length; a
  hold still open at the end (release -1) lasts to ``end_ns``;
* throughput is the number of requests that resumed inside the window per simulated second;
* percentiles follow HdrHistogram (3 significant digits: within 0.1 %), clamped to the exact
  ``[min, max]`` so that no percentile exceeds the reported maximum.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np
from hdrh.histogram import HdrHistogram

from hostsim.fio_json import canonical, fio_document, fio_job
from hostsim.histograms import (
    HIGHEST_NS,
    counts_indexes,
    counts_view,
    histogram_percentiles,
    new_histogram,
    record_values,
)
from hostsim.moments import FIO_PERCENTILES, Moments, exact_sums, percentile_key
from hostsim.mutex_stats import MutexStats
from hostsim.records import HOST_EVENT_DTYPE, PATH_NAMES, RECORD_DTYPE
from hostsim.rules import Kind

# Defined here: RunStats, dumps_summary, KIND_NAMES. The histogram and moments helpers are
# re-exported for the tests that import them from this module; the library imports them from
# hostsim.histograms and hostsim.moments, where they live.
__all__ = [
    "FIO_PERCENTILES",
    "KIND_NAMES",
    "RunStats",
    "counts_indexes",
    "counts_view",
    "dumps_summary",
    "exact_sums",
    "histogram_percentiles",
    "new_histogram",
    "percentile_key",
    "record_values",
]

KIND_NAMES: dict[int, str] = {int(k): k.name.lower() for k in Kind}


#: the record fields the statistics read
_STATS_FIELDS = (
    "vcpu",
    "guest",
    "seq",
    "t_arrival",
    "t_issue",
    "t_mutex_req",
    "t_mutex_grant",
    "t_mutex_rel",
    "t_resume",
    "kind",
    "path",
    "response_code",
    "cc",
)


def _add_counts(into: dict[int, int], values: np.ndarray) -> None:
    if values.dtype.itemsize <= 2 and len(values):
        lo, hi = int(values.min()), int(values.max())
        if lo == hi:  # one outcome (the usual case): no count pass
            into[lo] = into.get(lo, 0) + len(values)
            return
        cnt = np.bincount((values.astype(np.int64) - lo) if lo else values)
        for i in np.flatnonzero(cnt).tolist():
            into[i + lo] = into.get(i + lo, 0) + int(cnt[i])
        return
    uniq, cnt = np.unique(values, return_counts=True)
    for u, c in zip(uniq.tolist(), cnt.tolist(), strict=True):
        into[u] = into.get(u, 0) + c


def _host_kind_names() -> dict[int, str]:
    """Lower-case ``HostEventKind`` names (numbers as text if the scenario module is absent)."""
    try:
        from hostsim.scenario_types import HostEventKind
    except ImportError:
        return {}
    return {int(k): k.name.lower() for k in HostEventKind}


def _code_key(code: int) -> str:
    return "none" if code == -1 else str(code)


def _check_dtype(chunk: np.ndarray, dtype: np.dtype, what: str) -> np.ndarray:
    a = np.asarray(chunk)
    if a.dtype != dtype:
        raise TypeError(f"{what} chunk has dtype {a.dtype}, expected {dtype}")
    return a.ravel()


class RunStats:
    """Streaming statistics of one run, with memory bounded by a fixed set of histograms.

    ``warmup_ns``: requests issued before it are excluded from the latency, wait and hold
    statistics (counted as ``warmup``); the window for utilisation and throughput starts there.
    ``end_ns``: end of the measurement window (the simulated run length); when ``None`` it is the
    latest timestamp seen.
    """

    def __init__(
        self, warmup_ns: int = 0, end_ns: int | None = None, *, highest_ns: int = HIGHEST_NS
    ) -> None:
        if warmup_ns < 0:
            raise ValueError(f"warmup_ns must be >= 0, got {warmup_ns}")
        if end_ns is not None and end_ns < warmup_ns:
            raise ValueError(f"end_ns ({end_ns}) is before warmup_ns ({warmup_ns})")
        self.warmup_ns = int(warmup_ns)
        self.end_ns = None if end_ns is None else int(end_ns)
        self.latency: dict[str, Moments] = {
            name: Moments(highest_ns, fio_buckets=True) for name in PATH_NAMES
        }
        self.latency_all = Moments(highest_ns)
        #: arrival to issue: how long an open-loop arrival waited for its own vCPU (a backlog
        #: that issue-to-resume latency cannot show once the host saturates)
        self.issue_delay = Moments(highest_ns)
        self.n_records = 0
        self.n_warmup = 0
        self.n_incomplete = 0
        self.n_completed_in_window = 0
        self.n_host_events = 0
        self.mutex = MutexStats(self.warmup_ns, self.end_ns, highest_ns)
        self._last_ns = 0  # latest timestamp seen
        self.first_issue_ns = -1  # earliest issue of any request (warm-up included)
        self.last_resume_ns = -1  # latest resume of any request: when the workload was done
        self.kind_counts: dict[int, int] = {}
        self.rc_counts: dict[int, int] = {}
        self.cc_counts: dict[int, int] = {}
        self.host_kind_counts: dict[int, int] = {}

    # --- feeding ------------------------------------------------------------------------------
    def add_records(self, chunk: np.ndarray) -> None:
        """Fold a chunk of request records (``RECORD_DTYPE``) into the statistics."""
        rec = _check_dtype(chunk, RECORD_DTYPE, "record")
        self.add_columns({name: rec[name] for name in _STATS_FIELDS})

    def add_columns(self, col: Mapping[str, np.ndarray]) -> None:
        """Fold request records given as columns (``RECORD_DTYPE`` field names; the fields in
        :data:`_STATS_FIELDS` at least) into the statistics. Order does not matter: every
        statistic is a sum, a count, a histogram or an extreme with an order-free tie rule."""
        issue = col["t_issue"]
        n = len(issue)
        if n == 0:
            return
        paths = col["path"]
        if int(paths.max()) >= len(PATH_NAMES):
            raise ValueError(f"record path {int(paths.max())} is not a Path")
        resume, grant, rel = col["t_resume"], col["t_mutex_grant"], col["t_mutex_rel"]
        self.n_records += n
        self._last_ns = max(self._last_ns, int(issue.max()), int(resume.max()), int(rel.max()))
        done = resume >= 0
        first = int(issue.min())
        self.first_issue_ns = first if self.first_issue_ns < 0 else min(self.first_issue_ns, first)
        all_done = bool(done.all())
        rd = resume if all_done else resume[done]
        if len(rd):
            self.last_resume_ns = max(self.last_resume_ns, int(rd.max()))
        self.n_completed_in_window += self._count_in_window(rd)
        self.mutex.add_held(grant, rel)

        early = issue < self.warmup_ns
        n_early = int(np.count_nonzero(early)) if self.warmup_ns > 0 else 0
        self.n_warmup += n_early
        if n_early == 0 and all_done:
            sel = None
        else:
            keep = ~early & done
            self.n_incomplete += int(np.count_nonzero(~early & ~done))
            if not keep.any():
                return
            sel = np.flatnonzero(keep)

        def pick(name: str) -> np.ndarray:
            return col[name] if sel is None else col[name][sel]

        m_issue, m_paths = pick("t_issue"), pick("path")
        lat = pick("t_resume") - m_issue
        self.issue_delay.add(m_issue - pick("t_arrival"))
        present = np.flatnonzero(np.bincount(m_paths, minlength=len(PATH_NAMES)))
        if len(present) == 1:  # one path: its latencies are the total's, added once
            self.latency[PATH_NAMES[int(present[0])]].add(lat, self.latency_all)
        else:
            self.latency_all.add(lat)
            for p in present.tolist():
                self.latency[PATH_NAMES[p]].add(lat[m_paths == p])
        _add_counts(self.kind_counts, pick("kind"))
        _add_counts(self.rc_counts, pick("response_code"))
        _add_counts(self.cc_counts, pick("cc"))

        self.mutex.add_requests(col, sel)

    def add_host_events(self, chunk: np.ndarray, sections: np.ndarray | None = None) -> None:
        """Fold a chunk of host-event rows (``HOST_EVENT_DTYPE``) into the statistics.

        ``sections``: the events' mutex sections one per row (same dtype; a host event that
        takes the mutex twice has a row spanning both): the mutex statistics count those."""
        ev = _check_dtype(chunk, HOST_EVENT_DTYPE, "host event")
        if ev.size == 0:
            return
        self.n_host_events += int(ev.size)
        for col in ("t_at", "t_mutex_rel", "t_rwsem_rel"):
            self._last_ns = max(self._last_ns, int(ev[col].max()))
        _add_counts(self.host_kind_counts, ev["kind"])
        if sections is not None:
            ev = _check_dtype(sections, HOST_EVENT_DTYPE, "host event section")
            if ev.size == 0:
                return
        self.mutex.add_host_events(ev, _host_kind_names)

    # --- helpers ------------------------------------------------------------------------------
    def _count_in_window(self, t: np.ndarray) -> int:
        inside = t >= self.warmup_ns
        if self.end_ns is not None:
            inside &= t <= self.end_ns
        return int(np.count_nonzero(inside))

    # --- results ------------------------------------------------------------------------------
    @property
    def window(self) -> tuple[int, int]:
        """The measurement window ``(start_ns, end_ns)``."""
        end = self.end_ns if self.end_ns is not None else max(self._last_ns, self.warmup_ns)
        return self.warmup_ns, end

    def histogram(self, name: str) -> HdrHistogram:
        """Latency histogram of a path (lower-case ``Path`` name) or of ``"all"``."""
        if name == "all":
            return self.latency_all.hist
        return self.latency[name].hist

    def paths_with_samples(self) -> list[str]:
        """Path names (in ``Path`` order) with at least one measured request."""
        return [name for name in PATH_NAMES if self.latency[name].count]

    def summary(self, meta: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The fio-shaped summary; ``meta`` (seed, scenario, versions ...) goes under "hostsim"."""
        start, end = self.window
        duration = end - start
        measured = self.latency_all.count
        host_kinds = _host_kind_names()
        paths = {
            name: {"N": mom.count, "lat_ns": mom.lat_ns(), "total_ns": mom.sum}
            for name, mom in self.latency.items()
        }
        return {
            "hostsim": dict(meta or {}),
            "window": {"start_ns": start, "end_ns": end, "duration_ns": duration},
            "span": {"first_issue_ns": self.first_issue_ns, "last_resume_ns": self.last_resume_ns},
            "paths": paths,
            "all": {
                "N": measured,
                "lat_ns": self.latency_all.lat_ns(),
                "total_ns": self.latency_all.sum,
            },
            "issue_delay": {"N": self.issue_delay.count, "lat_ns": self.issue_delay.lat_ns()},
            "mutex": self.mutex.section(start, end),
            "counts": {
                "records": self.n_records,
                "measured": measured,
                "warmup": self.n_warmup,
                "incomplete": self.n_incomplete,
                "completed_in_window": self.n_completed_in_window,
                "path": {name: mom.count for name, mom in self.latency.items()},
                "kind": {KIND_NAMES.get(k, str(k)): n for k, n in self.kind_counts.items()},
                "response_code": {_code_key(k): n for k, n in self.rc_counts.items()},
                "cc": {_code_key(k): n for k, n in self.cc_counts.items()},
                "host_events": self.n_host_events,
                "host_event_kind": {
                    host_kinds.get(k, str(k)): n for k, n in self.host_kind_counts.items()
                },
                "histogram_clamped": sum(
                    m.clamped for m in (*self.latency.values(), *self.mutex.moments())
                ),
            },
            "throughput_per_s": (
                round(self.n_completed_in_window * 1e9 / duration, 3) if duration > 0 else 0.0
            ),
            **fio_document(self._fio_jobs(paths, duration), duration, start),
        }

    def _fio_jobs(self, paths: Mapping[str, Any], duration_ns: int) -> list[dict[str, Any]]:
        """fio ``jobs[]`` entries: one per path with measured requests, in ``Path`` order."""
        out = []
        for name in self.paths_with_samples():
            buckets = self.latency[name].buckets
            assert buckets is not None
            out.append(fio_job(name, paths[name]["lat_ns"], buckets, duration_ns))
        return out


def dumps_summary(summary: Mapping[str, Any]) -> str:
    """The summary as canonical JSON text: keys sorted (numerically in percentile and bucket
    dicts, as fio writes them, :func:`hostsim.fio_json.canonical`), indent 2, trailing newline."""
    return json.dumps(canonical(summary), indent=2, allow_nan=False) + "\n"
