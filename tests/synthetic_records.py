"""Synthetic request records and host events for the results-layer tests (no engine needed)."""

from __future__ import annotations

import numpy as np

from hostsim import records
from hostsim.records import HOST_EVENT_DTYPE, Path

HOOK_PATHS = (Path.HOOK_SOFTWARE, Path.HOOK_ENABLE, Path.HOOK_DISABLE)


def make_records(n: int, seed: int = 0, t0: int = 0, span_ns: int = 10_000_000) -> np.ndarray:
    """``n`` plausible records issued in ``[t0, t0 + span_ns)``, canonical order.

    Requests on hook paths take the global mutex FIFO in issue order, so holds never overlap.
    """
    rng = np.random.default_rng(seed)
    rec = records.empty(n)
    rec["vcpu"] = rng.integers(0, 16, n)
    rec["guest"] = rec["vcpu"] // 4
    rec["t_issue"] = np.sort(rng.integers(t0, t0 + span_ns, n))
    rec["t_arrival"] = rec["t_issue"]
    rec["seq"] = np.arange(n)
    rec["path"] = rng.choice(np.array([int(p) for p in Path], np.uint8), n)
    rec["kind"] = rng.integers(0, 4, n)
    rec["response_code"] = rng.choice(np.array([-1, 0, 1, 6], np.int16), n)
    rec["cc"] = rng.choice(np.array([-1, 0, 3], np.int8), n)
    rec["t_exit"] = rec["t_issue"] + 500
    rec["t_decode"] = rec["t_exit"] + 200
    base = rng.lognormal(np.log(2000), 0.6, n).astype(np.int64) + 1

    hook = np.isin(rec["path"], [int(p) for p in HOOK_PATHS])
    req = rec["t_decode"][hook] + 100
    hold = rng.lognormal(np.log(3000), 1.0, int(hook.sum())).astype(np.int64) + 1
    # FIFO mutex: release_i = S_i + max_{j<=i}(req_j - S_{j-1}), S = cumulative hold.
    s = np.cumsum(hold)
    rel = s + np.maximum.accumulate(req - (s - hold))
    grant = rel - hold
    rec["t_mutex_req"][hook] = req
    rec["t_mutex_grant"][hook] = grant
    rec["t_mutex_rel"][hook] = rel
    rec["t_resume"] = rec["t_decode"] + base
    rec["t_resume"][hook] = rel + 300
    return rec


def make_host_events(
    grants: list[int], holds: list[int], t_at: list[int] | None = None
) -> np.ndarray:
    """Host events holding the mutex ``[grant, grant + hold)`` (hold -1: never released)."""
    n = len(grants)
    ev = np.zeros(n, HOST_EVENT_DTYPE)
    ev["event"] = np.arange(n)
    for name in HOST_EVENT_DTYPE.names or ():
        if name.startswith("t_"):
            ev[name] = -1
    g = np.asarray(grants, np.int64)
    h = np.asarray(holds, np.int64)
    ev["t_at"] = g if t_at is None else np.asarray(t_at, np.int64)
    ev["t_mutex_req"] = ev["t_at"]
    ev["t_mutex_grant"] = g
    ev["t_mutex_rel"] = np.where(h >= 0, g + h, -1)
    return ev
