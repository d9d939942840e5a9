"""Host operations as upstream does them (``shared/spec/host-operations.md`` sections 1-3): each
test names the kernel function it follows, and runs both engines (records byte-identical)."""

from __future__ import annotations

import numpy as np
import pytest

from hostsim.model import Model
from hostsim.records import Path
from hostsim.run import RunResult, simulate
from hostsim.scenario import ScenarioError, loads
from hostsim.scenario_types import HostEventKind
from hostsim.steps import Acquire, Block, HwCall, Sleep, Unblock
from tests.helpers import drive

MS = 1_000_000


def text(
    events: str,
    domains: int = 1,
    variant: str = "upstream",
    host: str = "",
    costs: str = "",
    workload: str = 'kind = "poisson"\nrate_hz = 200',
    duration_ms: int = 300,
) -> str:
    return f"""
[run]
duration_ms = {duration_ms}
seed = 7
[host]
variant = "{variant}"
adapters = 4
domains = 16
{host}
[costs]
{costs}
[[guests]]
name = "a"
count = 2
vcpus = 2
domains_per_guest = {domains}
[guests.workload]
{workload}
[[guests]]
name = "b"
count = 2
vcpus = 2
[guests.workload]
kind = "poisson"
rate_hz = 200
{events}
"""


def both(src: str) -> RunResult:
    s = loads(src)
    ref = simulate(s, "reference", keep_records=True)
    fast = simulate(s, "fast", keep_records=True)
    for name in ("records", "host_events", "locks", "queues", "blocks"):
        assert getattr(ref, name).tobytes() == getattr(fast, name).tobytes(), name
    return ref


def event(kind: str, at_ms: int = 50, guest: str = "a[0]", extra: str = "") -> str:
    return f'[[events]]\nat_ms = {at_ms}\nkind = "{kind}"\nguest = "{guest}"\n{extra}\n'


@pytest.mark.parametrize("domains", [1, 4])
def test_vfio_ap_mdev_reset_queues_holds_one_reset_interval_whatever_the_queue_count(
    domains: int,
) -> None:
    # 4 adapters x 1 or 4 domains = 4 or 16 queues, reset in parallel (apq_reset_check work
    # items, flushed under mdevs_lock): the hold is one msleep(AP_RESET_INTERVAL) of 20-30 ms
    # (6.15, HZ=100) and the ZAPQ/TAPQ instructions, not a per-queue sum.
    res = both(text(event("reset"), domains=domains))
    row = res.host_events[0]
    assert row["kind"] == HostEventKind.RESET
    hold = row["t_mutex_rel"] - row["t_mutex_grant"]
    assert 20 * MS <= hold < 31 * MS
    q = res.queues[res.queues["guest"] == 0]
    assert len(q) == 4 * domains and (q["reset_until"] > 0).all()
    # every queue: one ZAPQ, then one TAPQ after the interval (the adapter's reset was shorter)
    assert (q["calls"] >= 2).all()
    # the reset turned interrupts off: each queue's first enable after it answers NORMAL,
    # the ones before (interrupts already on) 07
    rec = res.records
    en = rec[(rec["guest"] == 0) & (rec["path"] == Path.HOOK_ENABLE)]
    after = en[en["t_mutex_grant"] > row["t_mutex_rel"]]
    after = after[np.argsort(after["t_mutex_grant"], kind="stable")]
    _, first = np.unique(after["apqn"], return_index=True)
    assert len(first) and (after["response_code"][first] == 0).all()
    before = en[en["t_mutex_grant"] < row["t_mutex_grant"]]
    assert (np.sort(before["response_code"])[len(np.unique(before["apqn"])) :] == 7).all()


def test_apq_reset_check_sleeps_again_while_the_adapter_still_resets() -> None:
    # The adapter takes 50 ms; the check sleeps 20-30 ms, TAPQ answers 02, it sleeps again.
    costs = 'queue_reset = "50ms"'  # (reset_interval: 6.15 at HZ=100, 20-30 ms)
    res = both(text(event("reset"), costs=costs))
    row = res.host_events[0]
    hold = row["t_mutex_rel"] - row["t_mutex_grant"]
    assert 50 * MS <= hold < 91 * MS
    assert row["sleeps"] >= 2 * 4  # two or three intervals per queue


def test_vfio_ap_mdev_unset_kvm_upstream_issues_no_host_aqic() -> None:
    # Upstream close only resets: "Resetting a queue disables interrupts as a side effect" (2020).
    res = both(text(event("detach")))
    row = res.host_events[0]
    assert row["kind"] == HostEventKind.DETACH and row["hw_aqic_calls"] == 0
    assert 20 * MS <= row["t_mutex_rel"] - row["t_mutex_grant"] < 32 * MS


@pytest.mark.parametrize("variant", ["merged-2019", "v4-2019"])
def test_2019_close_resets_each_queue_then_disables_its_interrupts(variant: str) -> None:
    # The 2019 vfio_ap_mdev_reset_queue: ZAPQ, msleep(20) (30-40 ms on 5.x at HZ=100) + TAPQ
    # until the queue is empty, then vfio_ap_irq_disable; one queue after the other.
    res = both(text(event("detach"), variant=variant))
    row = res.host_events[0]
    assert row["hw_aqic_calls"] == 4  # one AQIC(IR=0) per queue
    assert row["t_mutex_rel"] - row["t_mutex_grant"] >= 4 * 30 * MS
    assert res.blocks.size == 0  # no APCB update in 2019's set_kvm/unset_kvm (no block_all here)


def test_kvm_arch_crypto_set_masks_blocks_every_vcpu_of_that_guest_and_no_other() -> None:
    costs = 'apcb_update = "5ms"'  # a long update, so that requests meet it
    res = both(text(event("detach") + event("attach", at_ms=150), costs=costs))
    b = res.blocks
    assert len(b) == 2 and set(b["guest"].tolist()) == {0}
    assert ((b["t_unblock"] - b["t_block"]) == 5 * MS).all()
    rec = res.records
    for t0, t1 in zip(b["t_block"], b["t_unblock"], strict=True):
        mine = rec[rec["guest"] == 0]
        # no instruction issued and no SIE entry inside the block
        assert not ((mine["t_issue"] > t0) & (mine["t_issue"] < t1)).any()
        assert not ((mine["t_resume"] > t0) & (mine["t_resume"] < t1)).any()
        others = rec[rec["guest"] != 0]
        assert ((others["t_issue"] > t0) & (others["t_issue"] < t1)).any()


def test_block_checks_are_events_only_while_a_program_may_block(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The fast engine checks a blockable guest's issue and resume in time order (heap
    events) only while a program that may block it has started and not ended; elsewhere the
    check passes at once. A busy guest with APCB updates close together: both engines write
    the same records and blocks, and most of its requests make no check event."""
    from hostsim.engine_fast import FastEngine

    checks = {"issue": 0}
    real = FastEngine._issue

    def issue(self: FastEngine, v: int, t: int) -> None:
        checks["issue"] += 1
        real(self, v, t)

    monkeypatch.setattr(FastEngine, "_issue", issue)
    costs = 'apcb_update = "2ms"'
    evs = "".join(event(k, at_ms=t) for k, t in [("detach", 40), ("attach", 60), ("detach", 61)])
    busy = 'kind = "poisson"\nrate_hz = 3000'
    res = both(text(evs + event("attach", at_ms=90), costs=costs, workload=busy))
    mine = res.records[res.records["guest"] == 0]
    assert len(res.blocks) == 4
    assert 0 < checks["issue"] < len(mine) // 4, (checks, len(mine))


def test_set_kvm_takes_guests_lock_kvm_lock_then_mdevs_lock() -> None:
    # get_update_locks_for_kvm: guests_lock -> kvm->lock -> mdevs_lock; assign_*_store takes
    # ap_perms_mutex first.
    s = loads(text(event("attach") + event("assign", at_ms=100, extra="domains = [9]")))
    res = both(text(event("attach") + event("assign", at_ms=100, extra="domains = [9]")))
    labels = res.lock_labels
    for owner, first in ((0, "guests_lock"), (1, "ap_perms_mutex")):
        mine = res.locks[res.locks["owner"] == owner]
        names = [labels[i].split("[")[0] for i in mine[np.argsort(mine["section"])]["lock"]]
        names = [n for n in names if not n.startswith("pqap_hook_rwsem")]
        assert names[0].startswith(first), names
        assert names[-1].startswith("mdevs_lock"), names
        grants = mine[np.argsort(mine["section"])]["t_grant"]
        assert (np.diff(grants[-3:]) >= 0).all()
    steps, _ = drive(Model(s), 0)
    acq = [st.lock for st in steps if isinstance(st, Acquire)]
    assert acq == ["pqap_hook_rwsem", "guests_lock", "kvm_lock", "mdevs_lock"]
    kinds = [type(st) for st in steps]
    assert kinds.index(Block) < kinds.index(Unblock)


def test_start_is_the_open_then_the_machine_reset() -> None:
    # QEMU: the device open (vfio_ap_mdev_set_kvm), then s390_machine_reset's VFIO_DEVICE_RESET.
    res = both(text(event("start")))
    row = res.host_events[0]
    assert row["kind"] == HostEventKind.START
    mine = res.locks[(res.locks["owner"] == 0) & (res.locks["lock"] == 0)]
    assert len(mine) == 2  # two mdevs_lock sections: the open's, the reset's
    assert mine["t_rel"][1] - mine["t_grant"][1] >= 20 * MS
    assert len(res.blocks) == 1  # the open's APCB update


def test_dma_unmap_disables_only_queues_with_interrupts_on() -> None:
    # vfio_ap_mdev_dma_unmap -> vfio_ap_irq_disable of the queues whose NIB is saved: the guest
    # enabled them (NORMAL), the unmap turns them off with one AQIC(IR=0) each and one TAPQ.
    res = both(text(event("irq_disable", at_ms=200), domains=4))
    row = res.host_events[0]
    q = res.queues[res.queues["guest"] == 0]
    enabled_before = int(row["hw_aqic_calls"])
    assert 0 < enabled_before <= 16 and row["hw_tapq_calls"] == enabled_before
    assert row["sleeps"] == 0
    assert len(q) > 0


def test_a_second_enable_answers_otherwise_changed_and_tapq_shows_i_only_after_success() -> None:
    # a guest with host operations: its enables read the queue state (spec 6)
    res = both(text(event("irq_disable", at_ms=250), domains=1))
    rec = res.records
    mine = rec[(rec["guest"] == 0) & (rec["path"] == Path.HOOK_ENABLE)]
    mine = mine[mine["t_mutex_grant"] < res.host_events[0]["t_mutex_grant"]]  # before the unmap
    assert len(mine) > 8
    first = {}
    for r in mine[np.argsort(mine["t_mutex_grant"])]:
        first.setdefault(int(r["gpr0"]) & 0xFFFF, int(r["response_code"]))
    assert set(first.values()) == {0x00}  # the first enable of each queue
    later = mine[mine["response_code"] != 0]
    assert len(later) == len(mine) - len(first)
    assert (later["response_code"] == 0x07).all()


def test_a_guest_aqic_during_a_reset_answers_02_and_the_disable_loop_sleeps() -> None:
    # What-if: reset verification without flush_work under the lock. The adapter resets for
    # 200 ms after the ZAPQs; the guest's disables (IR=0) meanwhile answer 02 and sleep
    # msleep(20) between retries, its enables answer 02.
    workload = 'kind = "poisson"\nrate_hz = 400\nenable_fraction = 0.5'
    res = both(
        text(
            event("reset"),
            host='reset_verify = "async"',
            costs='queue_reset = "200ms"',
            workload=workload,
        )
    )
    row = res.host_events[0]
    assert row["t_mutex_rel"] - row["t_mutex_grant"] < 1 * MS  # no check under the lock
    rec = res.records
    t0 = row["t_mutex_rel"]
    during = rec[
        (rec["guest"] == 0) & (rec["t_mutex_grant"] > t0) & (rec["t_mutex_grant"] < t0 + 150 * MS)
    ]
    dis = during[during["path"] == Path.HOOK_DISABLE]
    en = during[during["path"] == Path.HOOK_ENABLE]
    assert len(dis) and len(en)
    assert (dis["sleeps"] >= 1).all()
    assert (en["response_code"] == 0x02).all()
    # and upstream (flush under the lock) never lets a guest AQIC see the reset
    res2 = both(text(event("reset"), costs='queue_reset = "200ms"', workload=workload))
    rec2 = res2.records
    assert not (rec2[rec2["path"] == Path.HOOK_ENABLE]["response_code"] == 0x02).any()


def test_reset_programs_are_hardware_calls_under_the_guests_mdevs_lock() -> None:
    s = loads(text(event("reset"), domains=2))
    steps, hp = drive(Model(s), 0)
    zaps = [st for st in steps if isinstance(st, HwCall) and st.op == "zapq"]
    taps = [st for st in steps if isinstance(st, HwCall) and st.op == "tapq"]
    assert len(zaps) == 8 and len(taps) == 8 and hp.zapq == 8
    assert sum(isinstance(st, Sleep) for st in steps) >= 1


@pytest.mark.parametrize("wait", ["locked", "unlocked"])
def test_vfio_ap_irq_disable_sleeps_under_mdevs_lock_unless_the_what_if_drops_it(
    wait: str,
) -> None:
    # vfio_ap_wait_for_irqclear: TAPQ until the I bit clears, msleep(20) between, all under
    # mdevs_lock (upstream). A fault keeps the I bit showing, so every queue sleeps 4 times.
    # The what-if (host.disable_wait = "unlocked") drops the lock across each sleep: the same
    # sleeps, in short sections, and the other guests' AQICs no longer wait behind them.
    src = text(
        event("irq_disable"),
        host=f'disable_wait = "{wait}"\n[host.hardware]\ntapq_irq_enabled = 1.0',
    )
    res = both(src)
    row = res.host_events[0]
    assert row["sleeps"] == 4 * 4
    m = Model(loads(src))
    sec = res.locks[(res.locks["owner"] == 0) & (res.locks["lock"] < m.n_mutexes)]
    others = res.records[(res.records["guest"] != 0) & (res.records["t_mutex_grant"] >= 0)]
    during = others[
        (others["t_mutex_req"] > row["t_mutex_grant"])
        & (others["t_mutex_req"] < row["t_mutex_rel"])
    ]
    waits = during["t_mutex_grant"] - during["t_mutex_req"]
    assert len(during)
    if wait == "locked":
        assert len(sec) == 1 and sec["t_rel"][0] - sec["t_grant"][0] >= 16 * 20 * MS
        assert waits.max() >= 20 * MS
    else:
        assert len(sec) == 1 + 16
        assert (sec["t_rel"] - sec["t_grant"] < 1 * MS).all()
        assert waits.max() < 1 * MS


def _sections(res: RunResult, owner: int = 0) -> list[str]:
    """The lock names host event ``owner`` took, in acquire order."""
    mine = np.sort(res.locks[res.locks["owner"] == owner], order="section")
    return [res.lock_labels[int(x)].split("[")[0] for x in mine["lock"]]


def test_sysfs_show_and_mdev_probe_take_mdevs_lock_alone_for_microseconds() -> None:
    # matrix_show & co. and vfio_ap_mdev_probe: mdevs_lock around formatting / a list add.
    for kind, cost in (("sysfs_read", 4000), ("mdev_create", 1000)):
        res = both(text(event(kind)))
        assert _sections(res) == ["mdevs_lock"]
        row = res.host_events[0]
        assert row["t_mutex_rel"] - row["t_mutex_grant"] == 100 + cost  # mutex_acquire + work


def test_vfio_ap_mdev_remove_takes_guests_lock_then_resets_every_queue() -> None:
    res = both(text(event("stop") + event("mdev_remove", at_ms=100), domains=2))
    assert _sections(res, 1) == ["guests_lock", "mdevs_lock"]
    row = res.host_events[1]
    assert row["t_mutex_rel"] - row["t_mutex_grant"] >= 20 * MS  # one reset interval
    later = res.records[(res.records["guest"] == 0) & (res.records["t_issue"] > row["t_mutex_rel"])]
    # the guest has no queue left: what it still issues is refused (not in its matrix)
    assert len(later) and (later["response_code"] != 0).all()


def test_vfio_ap_mdev_probe_queue_hot_plugs_without_ap_perms_mutex() -> None:
    res = both(text(event("queue_probe", extra="domains = [9]")))
    assert _sections(res) == ["guests_lock", "kvm_lock", "mdevs_lock"]
    assert len(res.blocks) == 1 and res.blocks["guest"][0] == 0  # the APCB update
    assign = both(text(event("assign", extra="domains = [9]")))
    assert _sections(assign) == ["ap_perms_mutex", "guests_lock", "kvm_lock", "mdevs_lock"]


def test_vfio_ap_mdev_remove_queue_unplugs_the_whole_adapter_and_resets_its_queues() -> None:
    # A guest with 2 domains on 4 adapters: removing one queue of adapter 1 unplugs adapter 1
    # (both its domains) from the guest and resets those 2 queues, one interval.
    res = both(text(event("queue_remove", extra="adapters = [1]"), domains=2))
    assert _sections(res) == ["guests_lock", "kvm_lock", "mdevs_lock"]
    row = res.host_events[0]
    assert row["t_mutex_rel"] - row["t_mutex_grant"] >= 20 * MS
    q = res.queues[(res.queues["guest"] == 0) & (res.queues["reset_until"] > row["t_at"])]
    assert sorted((q["apqn"] >> 8).tolist()) == [1, 1]
    assert not q["in_config"].any()
    later = res.records[
        (res.records["guest"] == 0) & (res.records["t_issue"] > row["t_mutex_rel"] + MS)
    ]
    assert len(later) and not ((later["apqn"] >> 8) == 1).any()  # the guest no longer uses it


def test_vfio_ap_on_cfg_changed_walks_every_mdev_under_guests_lock() -> None:
    # guests_lock once, then kvm->lock -> mdevs_lock for each of the 4 guests' mdevs; the
    # event's guest gets an APCB update (its vCPUs blocked), no other.
    res = both(text(event("config_changed")))
    assert _sections(res) == ["guests_lock"] + ["kvm_lock", "mdevs_lock"] * 4
    assert set(res.blocks["guest"].tolist()) == {0}
    merged = both(text(event("config_changed"), variant="merged-2019"))
    assert _sections(merged) == ["mdevs_lock"] * 4


def test_new_host_operations_keys_are_checked() -> None:
    with pytest.raises(ScenarioError, match="missing: the adapters"):
        loads(text(event("queue_remove")))
    with pytest.raises(ScenarioError, match="adapter 9 is not one of a's"):
        loads(text(event("queue_remove", extra="adapters = [9]")))
    with pytest.raises(ScenarioError, match="only queue_remove takes adapters"):
        loads(text(event("reset", extra="adapters = [1]")))


def test_a_guests_own_reset_turns_its_queues_interrupts_off() -> None:
    # The guest's ZAPQ/RAPQ (interpreted, no host lock) disables its queues' interrupts: its
    # next enable of each queue answers 00 again, not 07 (already on).
    res = both(text(event("guest_reset", at_ms=100, extra="delay_ms = 40")))
    rec = res.records
    en = rec[(rec["guest"] == 0) & (rec["path"] == Path.HOOK_ENABLE)]
    en = en[np.argsort(en["t_mutex_grant"], kind="stable")]
    after = en[en["t_mutex_grant"] > 100 * MS]
    _, first = np.unique(after["apqn"], return_index=True)
    assert len(first) == 4 and (after["response_code"][first] == 0).all()
    rest = np.delete(after["response_code"], first)
    assert len(rest) and (rest == 7).all()
