"""Run statistics as pure functions over records: a streaming, bounded-memory aggregator.

:class:`RunStats` is fed chunks of request records (:data:`hostsim.records.RECORD_DTYPE`) and
host-event rows (:data:`hostsim.records.HOST_EVENT_DTYPE`) in any chunking and returns a
summary in fio's JSON layout (``lat_ns`` objects with ``min``, ``max``, ``mean``, ``stddev``,
``N`` and fio's percentile list; a fio ``jobs[]`` entry per path, :mod:`hostsim.fio_json`)
beside hostsim's own keys. Its state is a fixed set of HdrHistograms plus exact running sums kept
as Python ints, so the result does not depend on how the records were chunked and the same input
always gives the same JSON, byte for byte.

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
import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
from hdrh.histogram import HdrHistogram

from hostsim.fio_json import N_LAT_BUCKETS, bucket_counts, canonical, fio_document, fio_job
from hostsim.records import HOST_EVENT_DTYPE, PATH_NAMES, RECORD_DTYPE
from hostsim.rules import Kind

#: fio's default percentile list (``--percentile_list``).
FIO_PERCENTILES: tuple[float, ...] = (
    1.0, 5.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0,
    90.0, 95.0, 99.0, 99.5, 99.9, 99.95, 99.99,
)  # fmt: skip

#: Largest value the histograms resolve: one hour in ns. Larger values are clamped into the top.
HIGHEST_NS = 3_600_000_000_000
SIGNIFICANT_FIGURES = 3

KIND_NAMES: dict[int, str] = {int(k): k.name.lower() for k in Kind}


def percentile_key(p: float) -> str:
    """fio's key for a percentile: ``99.9`` -> ``"99.900000"``."""
    return f"{p:.6f}"


def new_histogram(highest_ns: int = HIGHEST_NS) -> HdrHistogram:
    """An empty latency histogram: 1 ns to ``highest_ns``, 3 significant digits."""
    if not 2 <= highest_ns < 2**52:
        raise ValueError(f"highest_ns must be in [2, 2**52), got {highest_ns}")
    return HdrHistogram(1, highest_ns, SIGNIFICANT_FIGURES)


def counts_view(hist: HdrHistogram) -> np.ndarray:
    """The histogram's counts array as a writable numpy view (no copy)."""
    return np.ctypeslib.as_array(hist.counts)


def counts_indexes(hist: HdrHistogram, values: np.ndarray) -> np.ndarray:
    """Counts-array index of each value: a vectorised ``HdrHistogram._counts_index_for``.

    ``values`` must be non-negative and below 2**52 (exact in float64, used for the bit length).
    """
    v = np.asarray(values, dtype=np.int64)
    m = v | np.int64(hist.sub_bucket_mask)
    _, bit_length = np.frexp(m.astype(np.float64))  # m = f * 2**e, 0.5 <= f < 1: e = bit length
    bucket = (
        bit_length.astype(np.int64)
        - hist.unit_magnitude
        - (hist.sub_bucket_half_count_magnitude + 1)
    )
    sub_bucket = v >> (bucket + hist.unit_magnitude)
    return (
        ((bucket + 1) << hist.sub_bucket_half_count_magnitude)
        + sub_bucket
        - (hist.sub_bucket_half_count)
    )


def record_values(hist: HdrHistogram, values: np.ndarray) -> int:
    """Record many values at once (a bincount over counts indexes); returns how many were clamped.

    Values above the histogram's highest trackable value are recorded as that value.
    """
    v = np.asarray(values, dtype=np.int64)
    if v.size == 0:
        return 0
    vmin = int(v.min())
    if vmin < 0:
        raise ValueError(f"cannot record a negative value ({vmin}) in a histogram")
    top = int(hist.highest_trackable_value)
    clamped = int(np.count_nonzero(v > top))
    if clamped:
        v = np.minimum(v, top)
    view = counts_view(hist)
    view += np.bincount(counts_indexes(hist, v), minlength=view.size).astype(view.dtype)
    hist.total_count += int(v.size)
    hist.min_value = min(hist.min_value, int(v.min()))
    hist.max_value = max(hist.max_value, int(v.max()))
    return clamped


def histogram_percentiles(hist: HdrHistogram, percentiles: Iterable[float]) -> dict[float, int]:
    """HdrHistogram's value at each percentile: the package's one-pass
    ``get_percentile_to_value_dict`` (the same values as ``get_value_at_percentile``)."""
    wanted = list(percentiles)
    if int(hist.total_count) == 0:
        return {p: 0 for p in wanted}
    found = hist.get_percentile_to_value_dict(wanted)
    return {p: int(found[p]) for p in wanted}


def exact_sums(values: np.ndarray) -> tuple[int, int]:
    """Exact ``(sum, sum of squares)`` of non-negative int64 values as Python ints.

    The values are split into 16-bit limbs so that every partial sum fits a uint64 (for fewer
    than 2**32 values), then recombined with Python's unbounded ints.
    """
    v = np.asarray(values, dtype=np.int64)
    if v.size == 0:
        return 0, 0
    if v.size >= 2**32:
        raise ValueError("exact_sums takes fewer than 2**32 values per call")
    hi = int(v.max())
    if hi < 2**40 and hi * v.size < 2**62:
        # The sum fits an int64; the sum of squares is exact modulo 2**64 (wrapping uint64
        # arithmetic), and a float64 sum (relative error < 1e-9 here) picks the multiple.
        u = v.astype(np.uint64)
        wrapped = int(np.dot(u, u))
        f = v.astype(np.float64)
        approx = float(np.dot(f, f))
        if approx < 2.0**88:
            k = round((approx - wrapped) / 2.0**64)
            return int(v.sum()), wrapped + k * 2**64
    u = v.astype(np.uint64)
    limbs = [(u >> np.uint64(16 * i)) & np.uint64(0xFFFF) for i in range(4)]
    total = sum(int(limb.sum(dtype=np.uint64)) << (16 * i) for i, limb in enumerate(limbs))
    squares = 0
    for i in range(4):
        if not limbs[i].any():
            continue
        for j in range(i, 4):
            s = int((limbs[i] * limbs[j]).sum(dtype=np.uint64))
            squares += (s << (16 * (i + j))) * (1 if i == j else 2)
    return total, squares


class Moments:
    """Exact running count, min, max, sum and sum of squares (Python ints), plus a histogram;
    with ``fio_buckets``, also exact counts in fio's latency buckets (:mod:`hostsim.fio_json`)."""

    __slots__ = ("buckets", "clamped", "count", "hist", "max", "min", "sum", "sumsq")

    def __init__(self, highest_ns: int = HIGHEST_NS, *, fio_buckets: bool = False) -> None:
        self.buckets: np.ndarray | None = np.zeros(N_LAT_BUCKETS, np.int64) if fio_buckets else None
        self.count = 0
        self.min: int | None = None
        self.max: int | None = None
        self.sum = 0
        self.sumsq = 0
        self.clamped = 0
        self.hist = new_histogram(highest_ns)

    def add(self, values: np.ndarray) -> None:
        """Add a batch of non-negative integer values."""
        v = np.asarray(values, dtype=np.int64)
        if v.size == 0:
            return
        lo, hi = int(v.min()), int(v.max())
        if lo < 0:
            raise ValueError(f"negative duration {lo} ns: a record's timestamps are out of order")
        self.count += int(v.size)
        self.min = lo if self.min is None else min(self.min, lo)
        self.max = hi if self.max is None else max(self.max, hi)
        s, sq = exact_sums(v)
        self.sum += s
        self.sumsq += sq
        self.clamped += record_values(self.hist, v)
        if self.buckets is not None:
            self.buckets += bucket_counts(v)

    def lat_ns(self) -> dict[str, Any]:
        """fio's ``lat_ns`` object: min, max, mean, stddev (sample), N and the percentiles."""
        n = self.count
        if n == 0:
            pct = {percentile_key(p): 0 for p in FIO_PERCENTILES}
            return {"N": 0, "min": 0, "max": 0, "mean": 0.0, "stddev": 0.0, "percentile": pct}
        assert self.min is not None and self.max is not None
        var_num = n * self.sumsq - self.sum * self.sum  # exact: n^2 * population variance
        stddev = math.sqrt(var_num / (n * (n - 1))) if n > 1 else 0.0
        values = histogram_percentiles(self.hist, FIO_PERCENTILES)
        pct = {percentile_key(p): min(max(values[p], self.min), self.max) for p in FIO_PERCENTILES}
        return {
            "N": n,
            "min": self.min,
            "max": self.max,
            "mean": round(self.sum / n, 3),
            "stddev": round(stddev, 3),
            "percentile": pct,
        }


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
        lo = int(values.min())
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
        self.wait = Moments(highest_ns)
        self.hold = Moments(highest_ns)
        #: arrival to issue: how long an open-loop arrival waited for its own vCPU (a backlog
        #: that issue-to-resume latency cannot show once the host saturates)
        self.issue_delay = Moments(highest_ns)
        self.host_wait = Moments(highest_ns)
        self.host_hold = Moments(highest_ns)
        self.n_records = 0
        self.n_warmup = 0
        self.n_incomplete = 0
        self.n_completed_in_window = 0
        self.n_host_events = 0
        self.busy_ns = 0  # mutex held, clipped to the window (known-end part)
        self._open_grants: list[int] = []  # holds without release when end_ns is unknown
        self._last_ns = 0  # latest timestamp seen
        self.first_issue_ns = -1  # earliest issue of any request (warm-up included)
        self.last_resume_ns = -1  # latest resume of any request: when the workload was done
        self._longest: tuple[int, int, int, dict[str, Any]] | None = None  # (hold, -grant, -type)
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
        self._add_busy(grant, rel)

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
        self.latency_all.add(lat)
        present = np.flatnonzero(np.bincount(m_paths, minlength=len(PATH_NAMES)))
        if len(present) == 1:
            self.latency[PATH_NAMES[int(present[0])]].add(lat)
        else:
            for p in present.tolist():
                self.latency[PATH_NAMES[p]].add(lat[m_paths == p])
        _add_counts(self.kind_counts, pick("kind"))
        _add_counts(self.rc_counts, pick("response_code"))
        _add_counts(self.cc_counts, pick("cc"))

        m_grant = pick("t_mutex_grant")
        taken = np.flatnonzero(m_grant >= 0)
        if len(taken):
            t_grant = m_grant[taken]
            self.wait.add(t_grant - pick("t_mutex_req")[taken])
            t_rel = pick("t_mutex_rel")[taken]
            closed = np.flatnonzero(t_rel >= 0)
            holds = t_rel[closed] - t_grant[closed]
            self.hold.add(holds)
            if holds.size:
                i = self._argmax_earliest(holds, t_grant[closed])
                row = int(taken[closed[i]]) if sel is None else int(sel[taken[closed[i]]])
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
        self._add_busy(ev["t_mutex_grant"], ev["t_mutex_rel"])

        m = ev[(ev["t_at"] >= self.warmup_ns) & (ev["t_mutex_grant"] >= 0)]
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
                    "kind": _host_kind_names().get(int(e["kind"]), str(int(e["kind"]))),
                    "guest": int(e["guest"]),
                    "t_grant_ns": int(e["t_mutex_grant"]),
                },
            )

    # --- helpers ------------------------------------------------------------------------------
    def _count_in_window(self, t: np.ndarray) -> int:
        inside = t >= self.warmup_ns
        if self.end_ns is not None:
            inside &= t <= self.end_ns
        return int(np.count_nonzero(inside))

    def _add_busy(self, grant: np.ndarray, rel: np.ndarray) -> None:
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
        start = np.maximum(g, self.warmup_ns)
        stop = r if self.end_ns is None else np.minimum(r, self.end_ns)
        self.busy_ns += int(np.maximum(stop - start, 0).sum(dtype=np.int64))

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
        busy = self.busy_ns + sum(max(0, end - max(g, start)) for g in self._open_grants)
        longest_ns, longest_by = 0, None
        if self._longest is not None:
            longest_ns, longest_by = self._longest[0], self._longest[3]
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
            "mutex": {
                "utilisation": round(busy / duration, 6) if duration > 0 else 0.0,
                "busy_ns": busy,
                "wait_ns": self.wait.lat_ns(),
                "hold_ns": self.hold.lat_ns(),
                "host_wait_ns": self.host_wait.lat_ns(),
                "host_hold_ns": self.host_hold.lat_ns(),
                "longest_hold_ns": longest_ns,
                "longest_hold_by": longest_by,
            },
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
                    m.clamped
                    for m in (
                        *self.latency.values(),
                        self.wait,
                        self.hold,
                        self.host_wait,
                        self.host_hold,
                    )
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
