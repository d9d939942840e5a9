"""Programs, named locks and per-queue state (hostsim.program, hostsim.locks, hostsim.queues)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from hostsim.locks import LockOrderError, LockTable
from hostsim.model import Model
from hostsim.process import (
    Acquire,
    Block,
    Delay,
    HwCall,
    ProcessError,
    Release,
    Sleep,
    Step,
    Unblock,
    blocking,
)
from hostsim.queues import QueueState
from hostsim.run import RunResult, simulate
from hostsim.scenario import load
from hostsim.scenario_types import HostEventKind, Scenario
from hostsim.steps import Reconfigure, SetHook
from tests.helpers import drive

ROOT = Path(__file__).parents[1]
STEADY = ROOT / "bench" / "scenarios" / "steady.toml"
Q = 0x0102


def both(s: Scenario, *procs) -> tuple[RunResult, RunResult]:
    ref = simulate(s, "reference", keep_records=True, processes=list(procs))
    fast = simulate(s, "fast", keep_records=True, processes=list(procs))
    for name in ("records", "host_events", "processes", "locks", "queues", "blocks"):
        assert getattr(ref, name).tobytes() == getattr(fast, name).tobytes(), name
    return ref, fast


def resetter() -> Iterator[Step]:
    """Resets queue Q of guest 0 at 1 ms: the reset lasts 20 ms."""
    yield Delay(1_000_000)
    yield Acquire(0)
    yield HwCall("zapq", Q, 0, 2_000, reset_ns=20_000_000)
    yield Release()


def poller(answers: list) -> Iterator[Step]:
    """From 5 ms, every 5 ms: TAPQ queue Q until its reset is over, then enable interrupts."""
    yield Delay(5_000_000)
    while True:
        yield Acquire(0)
        ans = yield HwCall("tapq", Q, 0, 1_000)
        answers.append(ans)
        if not ans.reset_pending:
            yield HwCall("aqic_enable", Q, 0, 1_000, nib=0xABC0, isc=6)
            yield Release()
            return
        yield Release()
        yield Sleep(5_000_000)


def test_an_answer_depends_on_what_happened_to_the_queue_before() -> None:
    s = load(STEADY, ["guests.0.count=4", "run.duration_ms=100"])
    seen: list = []
    ref, _ = both(s, resetter, lambda: poller(seen))
    # Polls at 5, 10, 15, 20 ms see the reset that lasts until about 21 ms; the one at 25 does not.
    assert [a.reset_pending for a in seen] == ([True] * 4 + [False]) * 2  # both engines' answers
    assert [a.rc for a in seen[:4]] == [0x02] * 4 and seen[-1].rc == 0x00
    polls = ref.processes[ref.processes["process"] == 1]
    assert len(polls) == 5
    (q,) = ref.queues
    assert (q["guest"], q["apqn"], q["irq"], q["nib"], q["isc"]) == (0, Q, True, 0xABC0, 6)
    assert q["calls"] == 1 + 5 + 1
    reset = ref.processes[ref.processes["process"] == 0][0]
    assert q["reset_until"] == reset["t_grant"] + 20_000_000
    assert reset["t_rel"] - reset["t_grant"] == 2_000  # the ZAPQ, not the reset, holds the lock


def operator(guest: int, start: int, sleep: int) -> Iterator[Step]:
    """Takes the update locks in the kernel's order, drops mdevs_lock across a sleep."""
    yield Delay(start)
    yield Acquire(0, "guests_lock")
    yield Acquire(guest, "kvm_lock")
    yield Acquire(guest)
    yield Delay(50_000)
    yield Release()
    yield Sleep(sleep)
    yield Acquire(guest)
    yield Delay(10_000)
    yield Release()
    yield Release("kvm_lock", guest)
    yield Release("guests_lock")


@pytest.mark.parametrize("lock_model", ["global", "per-mdev"])
def test_several_locks_in_order_and_a_lock_dropped_across_a_sleep(lock_model: str) -> None:
    s = load(None, [f'host.lock_model="{lock_model}"'])
    a, b = (lambda: operator(0, 300_000_000, 20_000_000)), (lambda: operator(1, 300_000_001, 0))
    ref, _ = both(s, a, b)
    labels = ref.lock_labels
    rows = ref.locks
    e = len(s.events)
    first, second = rows[rows["owner"] == e], rows[rows["owner"] == e + 1]
    name = [labels[i] for i in first["lock"]]
    assert name[:2] == ["guests_lock", "kvm_lock[0]"] and name[2].startswith("mdevs_lock")
    # The second operator waits for guests_lock, which the first holds across its sleep.
    g2 = second[second["section"] == 0][0]
    g1 = first[first["section"] == 0][0]
    assert g2["t_grant"] == g1["t_rel"] and g1["t_rel"] - g1["t_grant"] > 20_000_000
    # While the first sleeps, mdevs_lock is free: vCPUs get it during the sleep.
    m1 = first[first["section"] == 2][0]
    got = (ref.records["t_mutex_grant"] > m1["t_rel"]) & (
        ref.records["t_mutex_grant"] < m1["t_rel"] + 20_000_000
    )
    assert got.any()


@pytest.mark.parametrize(
    ("steps", "message"),
    [
        ([Acquire(0), Acquire(0, "guests_lock")], "order is ap_perms_mutex -> guests_lock"),
        ([Acquire(0, "kvm_lock"), Acquire(0, "guests_lock")], "taken while holding kvm_lock"),
        ([Acquire(0, "guests_lock"), Acquire(0, "guests_lock")], "already held"),
        ([Acquire(0, "pqap_hook_rwsem", "w")], "the host operations' own"),
        ([Acquire(0, "kvm_lock", "w")], "taken with mode x"),
        ([Acquire(0, "no_such_lock")], "unknown lock"),
        ([HwCall("tapq", Q, 0)], "outside a mdevs_lock section"),
        ([Acquire(0), HwCall("frob", Q, 0), Release()], "expected op one of"),
        ([Acquire(0, "guests_lock")], "ended holding guests_lock"),
        ([Acquire(0), Release("guests_lock")], "inside a mdevs_lock section"),
        ([SetHook(0, True)], "is not a step"),
        ([Acquire(0), Reconfigure(0), Release()], "only Delay, Sleep, HwCall, Block and Unblock"),
        ([Sleep(-1)], "Sleep\\(ns=-1\\)"),
    ],
)
@pytest.mark.parametrize("engine", ["reference", "fast"])
def test_bad_programs_are_named(steps: list, message: str, engine: str) -> None:
    s = load(STEADY, ["guests.0.count=10"])
    with pytest.raises(ProcessError, match=message):
        simulate(s, engine, processes=[lambda: iter(steps)])


def test_a_queue_of_another_mdev_needs_its_own_lock() -> None:
    s = load(STEADY, ["guests.0.count=10", 'host.lock_model="per-mdev"'])
    steps = [Acquire(0), HwCall("tapq", Q, 1), Release()]
    with pytest.raises(ProcessError, match=r"served by mdevs_lock\[1\]"):
        simulate(s, "fast", processes=[lambda: iter(steps)])


def test_the_per_mdev_what_if_is_a_partition_of_mdevs_lock() -> None:
    glob, per = LockTable(3, "global"), LockTable(3, "per-mdev")
    assert glob.labels[:1] == ["mdevs_lock"] and per.labels[:3] == [
        f"mdevs_lock[{g}]" for g in range(3)
    ]
    assert [glob.instance("mdevs_lock", g) for g in range(3)] == [0, 0, 0]
    assert [per.instance("mdevs_lock", g) for g in range(3)] == [0, 1, 2]
    assert glob.instance("kvm_lock", 2) != glob.instance("kvm_lock", 1)
    assert glob.instance("guests_lock", 2) == glob.instance("guests_lock", 0)
    with pytest.raises(LockOrderError):
        per.check_order([per.instance("mdevs_lock", 0)], per.instance("mdevs_lock", 1), "x")


def test_queue_state_calls() -> None:
    qs = QueueState([frozenset({Q}), frozenset(), frozenset(), frozenset()])
    assert qs.call(0, Q, "aqic_enable", 10, 0, 0x10, 3).irq
    a = qs.call(0, Q, "zapq", 20, 100, 0, 0)
    assert not a.irq and a.reset_pending
    assert qs.call(0, Q, "aqic_enable", 50, 0, 0x10, 3).rc == 0x02  # reset in progress
    assert qs.call(0, Q, "tapq", 120, 0, 0, 0).rc == 0x00
    qs.call(0, Q, "config_remove", 130, 0, 0, 0)
    (row,) = qs.table()
    assert (row["reset_until"], row["in_config"], row["calls"]) == (120, False, 5)
    for a in range(100):  # the arrays grow as queues are first touched
        qs.call(1 + a % 3, a, "zapq", a, 10, 0, 0)
    t = qs.table()
    assert len(t) == 101 and list(t["guest"][:2]) == [0, 1]
    assert sorted(t["reset_until"][1:].tolist()) == [a + 10 for a in range(100)]


def test_host_events_are_programs_that_write_queue_state() -> None:
    s = load(None)
    ref, _ = both(s)
    m = Model(s)
    kinds = {HostEventKind(int(k)) for k in ref.host_events["kind"]}
    assert HostEventKind.RESET in kinds or HostEventKind.DETACH in kinds
    reset = [
        i
        for i, ev in enumerate(s.events)
        if ev.kind in (HostEventKind.RESET, HostEventKind.REBOOT, HostEventKind.DETACH)
    ]
    for i in reset:
        steps, _ = drive(m, i)
        zaps = [st for st in steps if isinstance(st, HwCall) and st.op == "zapq"]
        assert zaps and all(st.guest == s.events[i].guest for st in zaps)
    touched = ref.queues[ref.queues["reset_until"] >= 0]
    # every started guest's queues were reset by its machine reset and enabled by its AP bus
    # (ISC 6); app[3]'s were reset again at its stop and db[0]'s disabled by the DMA unmap
    off = {
        ev.guest for ev in s.events if ev.kind in (HostEventKind.DETACH, HostEventKind.IRQ_DISABLE)
    }
    assert len(touched) > 0 and (touched["isc"] == 6).all()
    assert np.array_equal(touched["irq"], ~np.isin(touched["guest"], list(off)))
    # each event's mdevs_lock hold is its logged section's
    sections = ref.locks[ref.locks["lock"] < m.n_mutexes]
    for row in ref.host_events:
        if row["t_mutex_grant"] < 0:
            continue
        mine = sections[sections["owner"] == row["event"]]
        assert row["t_mutex_grant"] == mine["t_grant"].min()
        assert row["t_mutex_rel"] == mine["t_rel"].max()
    assert np.all(ref.locks["t_rel"] >= ref.locks["t_grant"])


def apcb_update(guest: int, at: int, every: int) -> Iterator[Step]:
    """Every ``every`` ns from ``at``: an APCB update as vfio_ap does one, its guest's vCPUs
    stopped under kvm_lock and mdevs_lock, then a 2 ms pause with the vCPUs stopped and no lock."""
    yield Delay(at)
    while True:
        yield Acquire(guest, "kvm_lock")
        yield Acquire(guest)
        yield Delay(1_000)
        yield Block(guest)
        yield Delay(40_000)
        yield Unblock(guest)
        yield Release()
        yield Release("kvm_lock", guest)
        yield Block(guest)
        yield Sleep(2_000_000)
        yield Unblock(guest)
        yield Delay(every)


@pytest.mark.parametrize("workload", ["poisson", "closed"])
def test_blocked_vcpus_neither_issue_nor_resume(workload: str) -> None:
    sets = ["guests.0.count=3", "guests.0.vcpus=4", "run.duration_ms=200"]
    if workload == "closed":
        sets.append('guests.0.workload={kind="closed",think={dist="exponential",mean_ns=100000}}')
    else:
        sets.append("guests.0.workload.rate_hz=5000")
    s = load(STEADY, sets)
    proc = blocking([1], lambda: apcb_update(1, 10_000_000, 20_000_000))
    ref, _ = both(s, proc)
    blocks = ref.blocks
    assert len(blocks) == 2 * 9 and set(blocks["guest"]) == {1}
    rec = ref.records
    mine = rec[rec["guest"] == 1]
    for b in blocks:
        for t in (mine["t_issue"], mine["t_resume"]):
            assert not ((t >= b["t_block"]) & (t < b["t_unblock"])).any()
    # Requests waited for the unblocks: to issue, and (in flight) to re-enter SIE.
    assert np.isin(mine["t_issue"], blocks["t_unblock"]).sum() > 9
    assert np.isin(mine["t_resume"], blocks["t_unblock"]).any()
    others = rec[rec["guest"] != 1]
    during = (others["t_issue"] >= blocks[1]["t_block"]) & (
        others["t_issue"] < blocks[1]["t_unblock"]
    )
    assert during.any()  # other guests run meanwhile


@pytest.mark.parametrize(
    ("proc", "message"),
    [
        (lambda: iter([Block(0)]), "declare the guests a process may block"),
        (blocking([0], lambda: iter([Block(0)])), "ended with guest 0 blocked"),
        (blocking([0], lambda: iter([Unblock(0)])), "without a Block of guest 0"),
        (blocking([0], lambda: iter([Block(0), Block(0)])), "already blocked"),
        (blocking([99], lambda: iter([])), "no guest 99"),
    ],
)
def test_bad_blocks_are_named(proc, message: str) -> None:
    s = load(STEADY, ["guests.0.count=2"])
    for engine in ("reference", "fast"):
        with pytest.raises(ProcessError, match=message):
            simulate(s, engine, processes=[proc])
