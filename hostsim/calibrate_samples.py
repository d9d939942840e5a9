"""What ``hostsim calibrate`` takes from each capture: samples and aggregates per quantity.

:class:`Collector` has one method per capture format (SIE trace, ``perf kvm stat``, the
``handle_pqap`` kprobe, function_graph, ``perf lock contention``, lock events, s390dbf). Each picks
the intervals that measure a quantity of :data:`hostsim.calibrate.QUANTITIES` (by its key; for
the in-kernel quantities only the uncontended ones, :func:`uncontended`) and records what else the
capture shows (waits, holder durations, response codes) as observations and notes for the
fragment's comments. It reads the parsed captures of :mod:`workloads.capture` and fits nothing:
the fits are in :mod:`hostsim.calibrate_fit`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from workloads.trace_format import IN_KERNEL, PROGRAM_CHECK, USERSPACE_EXIT


def uncontended(start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Intervals that overlap no other interval of the set (none could have waited)."""
    n = len(start)
    if n == 0:
        return np.zeros(0, bool)
    order = np.argsort(start, kind="stable")
    s, e = start[order], end[order]
    prev_end = np.concatenate([[-(2**62)], np.maximum.accumulate(e)[:-1]])
    next_start = np.concatenate([s[1:], [2**62]])
    ok = (s >= prev_end) & (e <= next_start)
    out = np.empty(n, bool)
    out[order] = ok
    return out


def _stats(x: Iterable[int]) -> str:
    a = np.asarray(list(x), np.float64)
    if len(a) == 0:
        return "n=0"
    p50, p99 = np.percentile(a, [50, 99])
    return (
        f"n={len(a)} mean={a.mean() / 1e3:.3f}us p50={p50 / 1e3:.3f}us "
        f"p99={p99 / 1e3:.3f}us max={a.max() / 1e3:.3f}us"
    )


class Collector:
    """Samples (or aggregates) per quantity, gathered across captures."""

    def __init__(self) -> None:
        self.samples: dict[str, list[np.ndarray]] = {}
        self.aggregates: dict[str, list[tuple[int, float, float]]] = {}
        self.sources: dict[str, list[str]] = {}
        self.observed: list[str] = []
        self.notes: list[str] = []

    def add(self, key: str, d: np.ndarray, source: str) -> None:
        if len(d):
            self.samples.setdefault(key, []).append(np.asarray(d, np.int64))
            self.sources.setdefault(key, []).append(source)

    def sie(self, cap: Any) -> None:
        x = cap.intercepts
        cls, mid = x["cls"], x["t_mid"]
        pc, us = cls == PROGRAM_CHECK, cls == USERSPACE_EXIT
        decided = (pc | us) & (mid >= 0)
        self.add("sie.decide", (mid - x["t_exit"])[decided], cap.path)
        self.add("sie.pgm", (x["t_enter"] - mid)[pc & (mid >= 0)], cap.path)
        self.add("sie.user", (x["t_enter"] - mid)[us & (mid >= 0)], cap.path)
        ik = cls == IN_KERNEL
        free = np.zeros(len(x), bool)
        free[ik] = uncontended(x["t_exit"][ik], x["t_enter"][ik])
        sel = free & (x["cc"] <= 0)
        self.add("sie.in_kernel", (x["t_enter"] - x["t_exit"])[sel], cap.path)
        self.notes.append(
            f"{cap.path}: {len(x)} PQAP intercepts ({int(us.sum())} userspace exits, "
            f"{int(pc.sum())} program checks, {int(ik.sum())} in the kernel, of which "
            f"{int(sel.sum())} uncontended with CC 0 used); timestamps with {cap.ts_digits} "
            "decimals"
        )
        if cap.ts_digits < 9:
            self.notes.append(
                f"{cap.path}: timestamps are {10 ** (9 - cap.ts_digits)} ns apart at best: "
                "fits of short costs are that coarse"
            )

    def kvm_stat(self, cap: Any) -> None:
        row = cap.row("UNKNOWN")
        for r in cap.rows:
            self.observed.append(
                f"perf kvm stat {r.name}: n={r.samples} mean={r.mean_ns / 1e3:.3f}us "
                f"sd={r.stddev_ns / 1e3:.3f}us min={(r.min_ns or 0) / 1e3:.3f}us "
                f"max={(r.max_ns or 0) / 1e3:.3f}us"
            )
        if row is None:
            self.notes.append(f"{cap.path}: no UNKNOWN row (PQAP): nothing fitted from it")
            return
        self.aggregates.setdefault("kvm_stat.unknown", []).append(
            (row.samples, row.mean_ns, row.stddev_ns)
        )
        self.sources.setdefault("kvm_stat.unknown", []).append(cap.path)
        self.notes.append(
            f"{cap.path}: the UNKNOWN row taken as PQAP only, every one answered in the kernel "
            "without waiting (also other unlisted instructions land there)"
        )

    def kprobe(self, cap: Any) -> None:
        c = cap.calls
        free = uncontended(c["t"], c["t"] + c["dur"])
        sel = free & cap.enable & (cap.rc == 0) & (c["ret"] == 0)
        self.add("kprobe.hook", c["dur"][sel], cap.path)
        rcs = {int(r): int(k) for r, k in zip(*np.unique(cap.rc, return_counts=True), strict=True)}
        self.observed.append(
            f"handle_pqap hook calls: {len(c)} ({int(cap.enable.sum())} enables, "
            f"{int(cap.to_userspace.sum())} to userspace); response codes {rcs}; "
            f"duration {_stats(c['dur'])}"
        )

    def fgraph(self, cap: Any) -> None:
        from workloads.capture_fgraph import HOLDERS

        for f in HOLDERS:
            d = cap.durations(f)
            if d:
                self.observed.append(f"function_graph {f}: {_stats(d)}")
        self.add("fgraph.irq_enable", np.array(cap.durations("vfio_ap_irq_enable")), cap.path)
        self.add("fgraph.reset_check", np.array(cap.durations("apq_reset_check")), cap.path)
        self.add("fgraph.set_kvm", np.array(cap.durations("vfio_ap_mdev_set_kvm")), cap.path)

    def lock_contention(self, cap: Any) -> None:
        for lock, rows in sorted(cap.by_lock().items()):
            n = sum(r.contended for r in rows)
            tot = sum(r.total_ns for r in rows)
            mx = max(r.max_ns for r in rows)
            self.observed.append(
                f"perf lock contention {lock or '(unnamed)'}: {n} waits, total "
                f"{tot / 1e6:.3f}ms, mean {tot / max(n, 1) / 1e3:.3f}us, max {mx / 1e3:.3f}us "
                f"({len(rows)} rows)"
            )

    def lock_events(self, cap: Any) -> None:
        for lock, waits in sorted(cap.by_lock().items()):
            self.observed.append(f"lock waits {lock}: {_stats(w.wait_ns for w in waits)}")
        holds = cap.holds()
        for lock in sorted({h.lock for h in holds}):
            hs = [h.hold_ns for h in holds if h.lock == lock]
            self.observed.append(f"lock holds {lock} (seen through queued waiters): {_stats(hs)}")
        hook = [
            h.hold_ns
            for h in holds
            if h.lock == "mdevs_lock" and h.caller.split("+")[0] == "handle_pqap"
        ]
        self.add("lock.hook_hold", np.array(hook, np.int64), cap.path)
        if cap.unpaired:
            self.notes.append(f"{cap.path}: {cap.unpaired} contention events without a pair")

    def s390dbf(self, cap: Any) -> None:
        ops = cap.host_operations()
        kinds: dict[str, int] = {}
        for o in ops:
            kinds[str(o["kind"])] = kinds.get(str(o["kind"]), 0) + 1
        vms = sorted({u.vm for u in cap.updates})
        self.observed.append(
            f"APCB updates (s390dbf SET/CLR CRYCB): {len(ops)} on {len(vms)} VMs {kinds}"
        )
