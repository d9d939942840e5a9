"""Decode benchmark: the scalar reference and the vectorised evaluator on the same batches.

Group "decode", batch sizes 1, 64, 4,096, 65,536 and 1,048,576, register states of a realistic
host (mostly valid AQIC enables and disables, some of every error). The scalar evaluator times
at most ``SCALAR_ROWS`` rows (a loop of decode_one over a million rows would take minutes);
``extra_info`` gives the rows timed and rows per second, so the two are comparable at every size.

Every benchmark asserts its outcome histograms (counts per kind and per response code) against
the other evaluator, so a fast wrong result fails:

* sizes up to 65,536: the whole batch, decoded once by the other evaluator;
* 1,048,576: a fixed random sample of ``CHECK_SAMPLE`` rows for the vectorised benchmark, and
  the timed 4,096-row slice for the scalar one.

Run: ``python -m pytest bench/test_bench_decode.py --benchmark-only
--benchmark-columns=min,mean,rounds``; ``--benchmark-disable`` runs each body once, as a test.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest

from hostsim.decode import Decision, decode_one
from hostsim.decode_batch import DecisionBatch, decode_batch
from hostsim.intercept import (
    AQIC_SLOTS,
    FLAG_DEFAULTS,
    FLAG_NAMES,
    INTERCEPT_FIELDS,
    REGISTER_NAMES,
    TAPQ_SLOTS,
    Intercept,
    InterceptBatch,
)
from hostsim.rules import Kind
from hostsim.variants import VARIANTS

VARIANT = VARIANTS["upstream"]
SIZES = [1, 64, 4096, 65536, 1_048_576]
MAX_ROWS = max(SIZES)
#: Rows the scalar benchmark times at the large sizes.
SCALAR_ROWS = 4096
#: Rows checked against the scalar reference at the largest size.
CHECK_SAMPLE = 16384
SEED = 0x83303A4C

SUPERVISOR_PSW = 0x0704000180000000
PSTATE = 0x0001000000000000
IR = 1 << 47

#: Probability that a configuration flag is the unhealthy value (the rest are healthy).
FLAG_FAULTS = {
    "ap_instructions_available": 0.002,
    "eca_apie": 0.003,
    "eca_aiv": 0.003,
    "facility15": 0.01,
    "facility65": 0.003,
    "apxa": 0.2,
    "hook_registered": 0.02,
    "hook_module_alive": 0.002,
    "hook_cleared_in_flight": 0.002,
    "mdev_has_kvm": 0.003,
    "queue_assigned": 0.02,
    "nib_in_memslot": 0.005,
    "pin_ok": 0.005,
    "pv_guest": 0.1,
    "nib_shared": 0.05,
    "gisc_register_ok": 0.005,
}


def _population(n: int, seed: int) -> InterceptBatch:
    """``n`` register states of a busy, mostly healthy host, built column-wise with numpy."""
    rng = np.random.default_rng(seed)
    u64 = np.uint64

    def chance(p: float, shape: int | tuple[int, ...] = n) -> np.ndarray:
        return rng.random(shape) < p

    fc = np.where(chance(0.02), rng.choice([0, 1, 2, 4, 5, 7, 8], n), 3).astype(u64)
    reserved = np.where(chance(0.005), rng.integers(1, 128, n) << 16, 0).astype(u64)
    t = chance(0.03).astype(u64)
    apid = np.where(chance(0.02), rng.integers(64, 256, n), rng.integers(0, 64, n)).astype(u64)
    apqi = np.where(chance(0.02), rng.integers(16, 256, n), rng.integers(0, 16, n)).astype(u64)
    gpr0 = fc << u64(24) | t << u64(23) | reserved | apid << u64(8) | apqi
    gpr1 = np.where(chance(0.55), u64(IR), u64(0)) | rng.integers(0, 8, n).astype(u64)
    gpr2 = np.where(chance(0.005), 0, rng.integers(0x1000, 1 << 40, n)).astype(u64)
    psw = np.full(n, SUPERVISOR_PSW, u64) | np.where(chance(0.005), u64(PSTATE), u64(0))
    flags = {
        name: np.where(chance(p), not FLAG_DEFAULTS[name], FLAG_DEFAULTS[name])
        for name, p in FLAG_FAULTS.items()
    }

    # Host AQIC answers (status words): mostly NORMAL at once; some busy/reset runs of 1-6
    # answers before NORMAL; some OTHERWISE_CHANGED; a few hard errors.
    answers = np.zeros((n, AQIC_SLOTS), np.uint32)
    busy_len = np.where(chance(0.06), rng.integers(1, AQIC_SLOTS, n), 0)
    busy_rc = rng.choice(np.array([2, 5], np.uint32), (n, AQIC_SLOTS)) << 16
    answers = np.where(np.arange(AQIC_SLOTS)[None, :] < busy_len[:, None], busy_rc, answers)
    first = np.where(
        chance(0.03),
        rng.choice(np.array([7, 7, 7, 1, 3, 4, 6, 0x42], np.uint32), n) << 16,
        answers[:, 0],
    )
    answers[:, 0] = first
    answers |= np.where(chance(0.1, (n, AQIC_SLOTS)), 0x01000000, 0).astype(np.uint32)
    # TAPQ while the I bit clears: mostly off at once, sometimes 1-5 polls.
    on = np.where(chance(0.1), rng.integers(1, TAPQ_SLOTS + 1, n), 0)
    tapq_irq = np.arange(TAPQ_SLOTS)[None, :] < on[:, None]
    tapq_rc = np.where(chance(0.05, (n, TAPQ_SLOTS)), 5, 0).astype(np.uint8)
    return InterceptBatch(
        n,
        gpr0=gpr0,
        gpr1=gpr1,
        gpr2=gpr2,
        psw_mask=psw,
        **flags,
        hw_aqic=answers,
        hw_tapq_rc=tapq_rc,
        hw_tapq_irq=tapq_irq,
    )


@cache
def population() -> InterceptBatch:
    return _population(MAX_ROWS, SEED)


def head(n: int) -> InterceptBatch:
    """The first ``n`` rows of the population (views, no copies)."""
    p = population()
    cols = {name: getattr(p, name)[:n] for name in (*REGISTER_NAMES, *FLAG_NAMES)}
    return InterceptBatch(
        n, **cols, hw_aqic=p.hw_aqic[:n], hw_tapq_rc=p.hw_tapq_rc[:n], hw_tapq_irq=p.hw_tapq_irq[:n]
    )


def intercepts(rows: np.ndarray) -> list[Intercept]:
    """Scalar Intercepts of the given population rows (column-wise, positional: fast)."""
    assert (*REGISTER_NAMES, *FLAG_NAMES, "hw_aqic", "hw_tapq") == INTERCEPT_FIELDS
    p = population()
    cols = [getattr(p, name)[rows].tolist() for name in (*REGISTER_NAMES, *FLAG_NAMES)]
    aqic = p.hw_aqic[rows].tolist()
    tapq = [
        list(zip(r, q, strict=True))
        for r, q in zip(p.hw_tapq_rc[rows].tolist(), p.hw_tapq_irq[rows].tolist(), strict=True)
    ]
    return [Intercept(*row) for row in zip(*cols, aqic, tapq, strict=True)]


def decode_scalar(items: list[Intercept]) -> list[Decision]:
    return [decode_one(x, VARIANT) for x in items]


# --- Outcome histograms ---------------------------------------------------------------------
def hist_vectorised(out: DecisionBatch, rows: np.ndarray | None = None) -> tuple[dict, dict]:
    kind = out.kind if rows is None else out.kind[rows]
    rc = out.response_code if rows is None else out.response_code[rows]
    k, kc = np.unique(kind, return_counts=True)
    r, rcc = np.unique(rc, return_counts=True)
    kinds = {Kind(int(a)).name: int(c) for a, c in zip(k, kc, strict=True)}
    rcs = {int(a) if a >= 0 else None: int(c) for a, c in zip(r, rcc, strict=True)}
    return kinds, rcs


def hist_scalar(decisions: list[Decision]) -> tuple[dict, dict]:
    kinds: dict = {}
    rcs: dict = {}
    for d in decisions:
        kinds[d.kind.name] = kinds.get(d.kind.name, 0) + 1
        rcs[d.response_code] = rcs.get(d.response_code, 0) + 1
    return kinds, rcs


@cache
def check_rows(size: int) -> np.ndarray:
    """Rows whose scalar result is compared with the vectorised one at ``size``."""
    if size <= 65536:
        return np.arange(size)
    rng = np.random.default_rng(SEED + size)
    return np.sort(rng.choice(size, CHECK_SAMPLE, replace=False))


@cache
def scalar_reference(size: int) -> tuple[dict, dict]:
    """Histogram of the scalar reference over check_rows(size) (computed once, untimed)."""
    return hist_scalar(decode_scalar(intercepts(check_rows(size))))


def record_rate(benchmark, rows: int) -> None:
    """rows, and rows/s from the mean round and from the fastest one (steadier on a loaded
    machine), in the benchmark's extra_info."""
    benchmark.extra_info["rows"] = rows
    stats = getattr(benchmark, "stats", None)
    if stats is not None:
        mean, best = stats.stats.mean, stats.stats.min
        benchmark.extra_info["rows_per_s"] = round(rows / mean) if mean else None
        benchmark.extra_info["rows_per_s_best"] = round(rows / best) if best else None


# --- The benchmarks -------------------------------------------------------------------------
@pytest.mark.benchmark(group="decode")
@pytest.mark.parametrize("size", SIZES)
def test_decode_vectorised(benchmark, size: int) -> None:
    """decode_batch over the whole batch of ``size`` rows."""
    batch = head(size)
    out = benchmark(decode_batch, batch, VARIANT)
    record_rate(benchmark, size)
    assert len(out.kind) == size
    rows = check_rows(size)
    assert hist_vectorised(out, rows) == scalar_reference(size)
    kinds, _ = hist_vectorised(out)
    assert sum(kinds.values()) == size
    if size >= 4096:
        assert set(kinds) == {k.name for k in Kind}


@pytest.mark.benchmark(group="decode")
@pytest.mark.parametrize("size", SIZES)
def test_decode_scalar(benchmark, size: int) -> None:
    """A loop of decode_one over the batch (over its first SCALAR_ROWS rows when larger)."""
    timed = min(size, SCALAR_ROWS)
    items = intercepts(np.arange(timed))
    decisions = benchmark(decode_scalar, items)
    record_rate(benchmark, timed)
    benchmark.extra_info["batch_size"] = size
    assert len(decisions) == timed
    want = hist_vectorised(decode_batch(head(timed), VARIANT))
    assert hist_scalar(decisions) == want
