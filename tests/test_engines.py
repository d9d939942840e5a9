"""The reference (SimPy) and fast engines write identical records, and the test set covers the
model: every outcome path, contention on the mutex, the disable path's sleeps, attach and detach
with hook calls in flight, and the tie rule of :mod:`hostsim.engine_ref` checked on the records.

Each scenario runs under every kernel variant and both lock models; the pairs of runs are cached
for the session so that the coverage checks at the end see the whole set without re-running it.
"""

from __future__ import annotations

import importlib
import itertools
from functools import cache
from pathlib import Path as FsPath

import numpy as np
import pytest

from hostsim import arch
from hostsim.records import Path
from hostsim.rules import Kind, rule_code
from hostsim.run import RunResult, simulate
from hostsim.scenario import load
from hostsim.scenario_types import HostEventKind, Scenario
from hostsim.sink import RecordSink
from hostsim.variants import VARIANTS

SCENARIOS = FsPath(__file__).parent / "scenarios"
#: name -> (file, --set overrides); None is the built-in default.
FILES: dict[str, tuple[FsPath | None, tuple[str, ...]]] = {
    "default": (None, ()),
    "ties": (SCENARIOS / "ties.toml", ()),
    "paths": (SCENARIOS / "paths.toml", ()),
    "rwsem": (SCENARIOS / "rwsem.toml", ()),
    "fifo": (SCENARIOS / "fifo.toml", ()),
    "workloads": (SCENARIOS / "workloads.toml", ()),
    "retries": (SCENARIOS / "retries.toml", ()),
}
#: ties.toml under per-mdev locks makes 38,000 requests; half its length keeps every feature.
SHORTER: dict[tuple[str, str], tuple[str, ...]] = {
    ("ties", "per-mdev"): ("run.duration_ms=160",),
}
VARIANT_NAMES = tuple(VARIANTS)
LOCK_MODELS = ("global", "per-mdev")
MODULE_VARIANTS = tuple(n for n, v in VARIANTS.items() if v.hook_guard == "module")
RWSEM_VARIANTS = tuple(n for n, v in VARIANTS.items() if v.hook_guard == "rwsem")
CASES = [(f, v, lm) for f in FILES for v in VARIANT_NAMES for lm in LOCK_MODELS]
CLEARED = rule_code("hook.cleared_in_flight")

# hostsim.run is the API function; the module is reached through sys.modules.
run_module = importlib.import_module("hostsim.run")


def scenario(name: str, variant: str = "upstream", lock_model: str = "global") -> Scenario:
    path, sets = FILES[name]
    return load(
        path,
        [
            *sets,
            *SHORTER.get((name, lock_model), ()),
            f"host.variant={variant}",
            f"host.lock_model={lock_model}",
        ],
    )


@cache
def pair(name: str, variant: str, lock_model: str) -> tuple[RunResult, RunResult]:
    """(reference, fast) runs of one case, kept for the session."""
    s = scenario(name, variant, lock_model)
    ref = simulate(s, "reference", keep_records=True)
    fast = simulate(s, "fast", keep_records=True)
    return ref, fast


def first_difference(a: np.ndarray, b: np.ndarray) -> str:
    """A readable account of where two record arrays part."""
    head = f"{len(a)} records vs {len(b)}; " if len(a) != len(b) else ""
    n = min(len(a), len(b))
    diff = np.nonzero(a[:n] != b[:n])[0]
    if not len(diff):
        return head + "equal up to the shorter length"
    i = int(diff[0])
    fields = [f for f in a.dtype.names or () if a[i][f] != b[i][f]]
    return f"{head}first difference at row {i} in {fields}:\n  ref  {a[i]}\n  fast {b[i]}"


# --- Equivalence ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("name", "variant", "lock_model"), CASES)
def test_engines_write_identical_records(name: str, variant: str, lock_model: str) -> None:
    ref, fast = pair(name, variant, lock_model)
    assert ref.records is not None and fast.records is not None
    assert len(ref.records) > 100
    assert np.array_equal(ref.records, fast.records), first_difference(ref.records, fast.records)
    assert np.array_equal(ref.host_events, fast.host_events), (
        f"host events differ:\n  ref  {ref.host_events}\n  fast {fast.host_events}"
    )
    assert len(ref.host_events) == len(scenario(name, variant, lock_model).events)
    # The summaries agree too, apart from the engine's name.
    assert {k: v for k, v in ref.summary.items() if k != "hostsim"} == {
        k: v for k, v in fast.summary.items() if k != "hostsim"
    }
    assert ref.n_records == fast.n_records == len(ref.records)
    # Canonical order: (t_issue, vcpu).
    rec = ref.records
    assert np.all(np.lexsort((rec["vcpu"], rec["t_issue"])) == np.arange(len(rec)))


def test_fleet_plans_on_idle_retries() -> None:
    """``on_idle`` guests are the fleet's (planned ahead, not one at a time in the heap), and
    their retries are what the streams say: the failed enable's registers, issued one poll
    after it resumed, arriving when issued."""
    from hostsim.engine_fast import FastEngine
    from hostsim.model import Model

    s = scenario("retries")
    m = Model(s)
    eng = FastEngine(m, RecordSink(lambda rows: None))
    retrying = [g.workload.retry == "on_idle" for g in s.guests]
    in_fleet = np.zeros(m.n_vcpus, bool)
    in_fleet[eng.fleet.vcpus] = True
    assert in_fleet[np.array(retrying)[m.topo.vcpu_group]].all()
    _, fast = pair("retries", "upstream", "global")
    rec = fast.records
    assert rec is not None
    retried = 0
    for v in np.flatnonzero(np.array(retrying)[m.topo.vcpu_group]).tolist():
        r = rec[rec["vcpu"] == v]
        r = r[np.argsort(r["seq"])]
        enable = (arch.fc(r["gpr0"]) == arch.FunctionCode.AQIC) & (arch.ir(r["gpr1"]) != 0)
        busy = enable & np.isin(r["guest_visible_rc"], (2, 5)) & (r["kind"] == Kind.HOOK_HANDLED)
        for i in np.flatnonzero(busy[:-1]).tolist():
            assert r["gpr0"][i + 1] == r["gpr0"][i] and r["gpr1"][i + 1] == r["gpr1"][i]
            assert r["t_arrival"][i + 1] == r["t_issue"][i + 1] > r["t_resume"][i]
            retried += 1
    assert retried > 100


class SmallChunks(RecordSink):
    """A sink that hands on chunks of 256 records, so that the engines' watermarks matter."""

    def __init__(self, emit, chunk: int = 256) -> None:  # type: ignore[no-untyped-def]
        super().__init__(emit, 256)


@pytest.mark.parametrize(
    ("name", "variant"), [("ties", "upstream"), ("rwsem", "merged-2019"), ("workloads", "upstream")]
)
def test_small_chunks_give_the_same_records(
    monkeypatch: pytest.MonkeyPatch, name: str, variant: str
) -> None:
    """Records leave the sink in chunks once the engine's watermark passes them: with small
    chunks, a watermark that runs ahead of a request still in flight would put records out of
    order. Both engines must still write exactly what they write in one chunk."""
    ref, _ = pair(name, variant, "global")
    s = scenario(name, variant, "global")
    monkeypatch.setattr(run_module, "RecordSink", SmallChunks)
    for engine in ("reference", "fast"):
        res = simulate(s, engine, keep_records=True)
        assert res.records is not None and ref.records is not None
        assert np.array_equal(res.records, ref.records), f"{engine}: " + first_difference(
            ref.records, res.records
        )


def test_records_are_in_canonical_order_and_complete() -> None:
    ref, _ = pair("paths", "upstream", "global")
    rec = ref.records
    assert rec is not None
    order = np.lexsort((rec["vcpu"], rec["t_issue"]))
    assert np.array_equal(order, np.arange(len(rec)))
    # Each vCPU's requests are numbered 0, 1, 2 ... without gaps and never overlap in time.
    for v in np.unique(rec["vcpu"]):
        mine = rec[rec["vcpu"] == v]
        assert np.array_equal(mine["seq"], np.arange(len(mine)))
        assert np.all(mine["t_issue"][1:] >= mine["t_resume"][:-1])
    stages = ["t_issue", "t_exit", "t_decode", "t_resume"]
    for early, late in itertools.pairwise(stages):
        assert np.all(rec[late] > rec[early])


# --- Coverage of the test set ---------------------------------------------------------------------
def all_pairs() -> list[tuple[tuple[str, str, str], RunResult]]:
    return [(case, pair(*case)[0]) for case in CASES]


def test_coverage_every_path_occurs() -> None:
    seen: set[int] = set()
    for _, res in all_pairs():
        assert res.records is not None
        seen.update(np.unique(res.records["path"]).tolist())
    assert seen == {int(p) for p in Path}
    # paths.toml alone is meant to reach every path under today's kernel.
    rec = pair("paths", "upstream", "global")[0].records
    assert rec is not None
    assert set(np.unique(rec["path"]).tolist()) == {int(p) for p in Path}


def test_coverage_mutex_contention_and_sleeps() -> None:
    waited = slept = host_waited = 0
    for _, res in all_pairs():
        rec = res.records
        assert rec is not None
        waited += int(np.count_nonzero(rec["t_mutex_grant"] > rec["t_mutex_req"]))
        slept += int(np.count_nonzero(rec["sleeps"] > 0))
        h = res.host_events
        host_waited += int(np.count_nonzero(h["t_mutex_grant"] > h["t_mutex_req"]))
    assert waited > 1000
    assert slept > 100
    assert host_waited > 0
    # Sleeps under the mutex make others wait at least a sleep: ties.toml sleeps 2 ms.
    rec = pair("ties", "upstream", "global")[0].records
    assert rec is not None
    assert (rec["t_mutex_grant"] - rec["t_mutex_req"]).max() >= 2_000_000


def test_coverage_detach_with_readers_in_flight() -> None:
    writer_waited = reader_blocked = 0
    for (_, variant, _), res in all_pairs():
        h = res.host_events
        rec = res.records
        assert rec is not None
        if variant in MODULE_VARIANTS:
            # No rwsem: neither side ever takes it.
            assert np.all(h["t_rwsem_req"] == -1)
            assert np.all(rec["t_rwsem"] == -1)
            continue
        detach = h[h["kind"] == HostEventKind.DETACH]
        writer_waited += int(np.count_nonzero(detach["t_rwsem_grant"] > detach["t_rwsem_req"]))
        reader_blocked += int(np.count_nonzero(rec["t_rwsem"] > rec["t_decode"]))
    assert writer_waited > 0
    assert reader_blocked > 0


def test_coverage_hook_cleared_in_flight() -> None:
    hits = {v: 0 for v in VARIANT_NAMES}
    for (_, variant, _), res in all_pairs():
        rec = res.records
        assert rec is not None
        hits[variant] += int(np.count_nonzero(rec["rule"] == CLEARED))
    assert hits["merged-2019"] > 0
    for v in RWSEM_VARIANTS:  # the rwsem makes the race impossible
        assert hits[v] == 0


# --- The rwsem scenario: writers and readers meet -------------------------------------------------
@pytest.mark.parametrize("lock_model", LOCK_MODELS)
def test_rwsem_upstream_writer_waits_for_readers_and_blocks_new_ones(lock_model: str) -> None:
    ref, _ = pair("rwsem", "upstream", lock_model)
    rec, h = ref.records, ref.host_events
    assert rec is not None
    writers = h[np.isin(h["kind"], [HostEventKind.ATTACH, HostEventKind.DETACH])]
    assert np.all(writers["t_rwsem_req"] == writers["t_at"])
    assert np.all(writers["t_rwsem_grant"] >= writers["t_rwsem_req"])
    assert np.all(writers["t_rwsem_rel"] > writers["t_rwsem_grant"])
    # The mutex part of attach/detach comes after the write side.
    # then guests_lock -> kvm->lock -> mdevs_lock (vfio_ap_mdev_set_kvm / unset_kvm)
    assert np.all(writers["t_mutex_req"] >= writers["t_rwsem_rel"])
    waited = writers[writers["t_rwsem_grant"] > writers["t_rwsem_req"]]
    assert len(waited) >= 2
    for w in waited:
        # The writer waited for a reader of its guest that held the read side and was still in
        # the hook (under or queued for the mutex) when the writer asked.
        g = rec[rec["guest"] == w["guest"]]
        holders = g[
            (g["t_rwsem"] >= 0) & (g["t_rwsem"] < w["t_rwsem_req"]) & (g["t_mutex_req"] >= 0)
        ]
        in_flight = holders[holders["t_mutex_rel"] > w["t_rwsem_req"]]
        assert len(in_flight) > 0
        # ... and it got the rwsem only when the last of them had left the hook.
        assert w["t_rwsem_grant"] >= in_flight["t_mutex_rel"].max()
    blocked = rec[rec["t_rwsem"] > rec["t_decode"]]
    assert len(blocked) >= 2
    for r in blocked:
        # A blocked reader gets in exactly when a writer of its guest lets go of the rwsem.
        mine = writers[writers["guest"] == r["guest"]]
        assert r["t_rwsem"] in set(mine["t_rwsem_rel"].tolist())
        w = mine[mine["t_rwsem_rel"] == r["t_rwsem"]][0]
        assert r["t_decode"] >= w["t_rwsem_req"]
        # It sees the hook as the writer left it: none after a detach.
        if w["kind"] == HostEventKind.DETACH:
            assert r["path"] == Path.NO_HOOK_RC01
        else:
            assert r["path"] != Path.NO_HOOK_RC01


@pytest.mark.parametrize("lock_model", LOCK_MODELS)
def test_rwsem_module_variant_detach_clears_hook_in_flight(lock_model: str) -> None:
    ref, _ = pair("rwsem", "merged-2019", lock_model)
    rec, h = ref.records, ref.host_events
    assert rec is not None
    cleared = rec[rec["rule"] == CLEARED]
    assert len(cleared) > 0
    # RC 01 from the hook, under the mutex: KVM called the hook, which found it gone.
    assert np.all(cleared["response_code"] == 0x01)
    assert np.all(cleared["path"] == Path.HOOK_SOFTWARE)
    assert np.all(cleared["t_mutex_grant"] >= 0)
    assert np.all(cleared["hw_aqic_calls"] == 0)
    detaches = h[h["kind"] == HostEventKind.DETACH]
    for r in cleared:
        # Each one passed KVM's guards before a detach of its guest and was granted after it.
        mine = detaches[detaches["guest"] == r["guest"]]
        assert np.any((mine["t_at"] > r["t_decode"]) & (mine["t_at"] <= r["t_mutex_grant"]))


# --- The tie rule, on records: fifo.toml ---------------------------------------------------------
def mutex_queue(res: RunResult, mutex_of_guest: np.ndarray) -> list[np.ndarray]:
    """Per mutex: every hold (vCPU and host) as rows (request, class, id, grant, release), in the
    FIFO order of the tie rule: (request time, phase, host before vCPU, event or vCPU index),
    the class column holding ``2 * phase + (0 host, 1 vCPU)``."""
    rec, h = res.records, res.host_events
    assert rec is not None
    r = rec[rec["t_mutex_req"] >= 0]
    # A host program that asks for the mutex right after an outer lock was granted to it, in
    # the same nanosecond, asks in the late phase (ties.py): after that nanosecond's vCPUs.
    outer = res.locks[res.locks["lock"] >= len(np.unique(mutex_of_guest))]
    late = np.array(
        [
            bool(((outer["owner"] == e) & (outer["t_grant"] == t)).any())
            for e, t in zip(h["event"], h["t_mutex_req"], strict=True)
        ],
        np.int64,
    )
    rows = np.concatenate(
        [
            np.stack(
                [
                    h["t_mutex_req"],
                    2 * late,
                    h["event"],
                    h["t_mutex_grant"],
                    h["t_mutex_rel"],
                    mutex_of_guest[h["guest"]],
                ],
                axis=1,
            ),
            np.stack(
                [
                    r["t_mutex_req"],
                    np.ones(len(r), np.int64),
                    r["vcpu"],
                    r["t_mutex_grant"],
                    r["t_mutex_rel"],
                    mutex_of_guest[r["guest"]],
                ],
                axis=1,
            ),
        ]
    ).astype(np.int64)
    out = []
    for mx in np.unique(rows[:, 5]):
        q = rows[rows[:, 5] == mx]
        out.append(q[np.lexsort((q[:, 2], q[:, 1], q[:, 0]))])
    return out


@pytest.mark.parametrize("variant", VARIANT_NAMES)
@pytest.mark.parametrize("lock_model", LOCK_MODELS)
def test_fifo_tie_rule_on_records(variant: str, lock_model: str) -> None:
    ref, _ = pair("fifo", variant, lock_model)
    s = scenario("fifo", variant, lock_model)
    n_guests = s.n_guests
    mutex_of_guest = np.zeros(n_guests, np.int64) if lock_model == "global" else np.arange(n_guests)
    queues = mutex_queue(ref, mutex_of_guest)
    assert len(queues) == (1 if lock_model == "global" else n_guests)
    ties = 0
    for q in queues:
        req, grant, rel = q[:, 0], q[:, 3], q[:, 4]
        # Grants in FIFO order, one holder at a time: Lindley's recursion, exactly.
        expected = np.empty_like(grant)
        expected[0] = req[0]
        for i in range(1, len(q)):
            expected[i] = max(req[i], rel[i - 1])
        bad = np.nonzero(grant != expected)[0]
        assert not len(bad), f"grant out of FIFO order at {q[bad[0]]} (expected {expected[bad[0]]})"
        assert np.all(np.diff(grant) > 0)
        assert np.all(rel > grant)
        _, counts = np.unique(req, return_counts=True)
        ties += int(counts[counts > 1].sum())
    # The scenario is built to make them: many requests share a nanosecond (fewer per mutex
    # when each guest has its own).
    assert ties > (100 if lock_model == "global" else 10)


def test_fifo_host_before_vcpu_at_the_same_nanosecond() -> None:
    ref, _ = pair("fifo", "upstream", "global")
    rec, h = ref.records, ref.host_events
    assert rec is not None
    # The reset of a[0] and the irq_disable of b[0] ask at 24 us, with the first request of
    # every vCPU of group a: both host events are served first, in event order.
    at = 24_000
    reset, irq_off = h[h["t_mutex_req"] == at]
    assert (reset["kind"], irq_off["kind"]) == (HostEventKind.RESET, HostEventKind.IRQ_DISABLE)
    vcpus = rec[rec["t_mutex_req"] == at]
    assert len(vcpus) >= 8
    assert irq_off["t_mutex_grant"] == reset["t_mutex_rel"]
    assert vcpus["t_mutex_grant"].min() == irq_off["t_mutex_rel"]
    # The vCPUs that asked in the same nanosecond go in vCPU order.
    assert np.array_equal(np.argsort(vcpus["t_mutex_grant"]), np.argsort(vcpus["vcpu"]))
    # The detach of a[1] writes at 22 us, when a[1]'s first requests pass KVM's guards: the
    # writer asked first, so the readers wait for it and then find no hook.
    (detach,) = h[h["kind"] == HostEventKind.DETACH]
    readers = rec[(rec["guest"] == detach["guest"]) & (rec["t_decode"] == detach["t_at"])]
    assert len(readers) == 4
    assert detach["t_rwsem_grant"] == detach["t_at"]
    assert np.all(readers["t_rwsem"] == detach["t_rwsem_rel"])
    assert np.all(readers["path"] == Path.NO_HOOK_RC01)


def test_fifo_module_variant_detach_flips_hook_before_vcpus() -> None:
    # Without the rwsem the detach clears the hook pointer at 22 us, before the vCPUs of that
    # nanosecond act (host state changes first): KVM already finds no hook.
    ref, _ = pair("fifo", "merged-2019", "global")
    rec, h = ref.records, ref.host_events
    assert rec is not None
    (detach,) = h[h["kind"] == HostEventKind.DETACH]
    readers = rec[(rec["guest"] == detach["guest"]) & (rec["t_decode"] == detach["t_at"])]
    assert len(readers) == 4
    assert np.all(readers["path"] == Path.NO_HOOK_RC01)
    assert np.all(readers["t_rwsem"] == -1)
