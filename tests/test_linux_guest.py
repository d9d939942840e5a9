"""The Linux guest workload (``kind = "linux"``, ``shared/spec/host-operations.md`` section 5):
a guest start as QEMU does it, then the guest's AP bus (``ap_bus.c`` / ``ap_queue.c``), and
what users read of it (``hostsim.starts``). Both engines run every case (byte-identical)."""

from __future__ import annotations

import numpy as np
import pytest

from hostsim import arch
from hostsim.rules import Kind
from hostsim.run import RunResult, simulate
from hostsim.scenario import ScenarioError, loads
from hostsim.scenario_types import HostEventKind

MS = 1_000_000


def text(
    events: str,
    workload: str = "",
    guests: int = 3,
    domains: int = 2,
    hardware: str = "",
    extra: str = "",
    duration_ms: int = 3000,
) -> str:
    return f"""
[run]
duration_ms = {duration_ms}
seed = 3
[host]
adapters = 4
domains = 16
[host.hardware]
{hardware}
[[guests]]
name = "vm"
count = {guests}
vcpus = 4
domains_per_guest = {domains}
[guests.workload]
kind = "linux"
{workload}
{extra}
{events}
"""


def start(guest: str = "vm[*]", at_ms: int = 10, extra: str = "delay_ms = 500") -> str:
    return f'[[events]]\nat_ms = {at_ms}\nkind = "start"\nguest = "{guest}"\n{extra}\n'


def both(src: str) -> RunResult:
    s = loads(src)
    ref = simulate(s, "reference", keep_records=True)
    fast = simulate(s, "fast", keep_records=True)
    for name in ("records", "host_events", "locks", "queues", "blocks"):
        assert getattr(ref, name).tobytes() == getattr(fast, name).tobytes(), name
    assert ref.summary["starts"] == fast.summary["starts"]
    return ref


def test_a_started_guest_enables_each_queue_once_in_one_pass_on_one_vcpu() -> None:
    # ap_bus scan -> RAPQ per queue -> 40 ms -> one tasklet pass: TAPQ and on NORMAL
    # ap_queue_enable_irq, one AQIC per APQN, back to back, AP_ISC = 6, one NIB; never IR=0.
    res = both(text(start()))
    rec = res.records
    assert len(rec) == 3 * 4 * 2  # 3 guests x 4 adapters x 2 domains, one AQIC each
    assert all(arch.fc(int(x)) == arch.FunctionCode.AQIC for x in rec["gpr0"])
    for g in range(3):
        mine = rec[rec["guest"] == g]
        assert len(np.unique(mine["vcpu"])) == 1  # the vCPU the poll timer fired on
        assert len(np.unique(mine["apqn"])) == len(mine)  # one per queue
        assert all(arch.ir(int(x)) for x in mine["gpr1"])  # IR = 1
        assert all(arch.isc(int(x)) == 6 for x in mine["gpr1"])
        assert len(np.unique(mine["gpr2"])) == 1  # one NIB for all queues
        order = np.argsort(mine["t_issue"])
        gaps = mine["t_issue"][order][1:] - mine["t_resume"][order][:-1]
        assert (gaps >= 2_000).all() and (gaps <= 10_000).all()  # the tasklet's own time
    assert (rec["kind"] == Kind.HOOK_HANDLED).all() and (rec["guest_visible_rc"] == 0).all()


def test_nothing_issues_before_qemus_open_and_reset_and_the_guests_probe() -> None:
    # QEMU opens the mdev (vfio_ap_mdev_set_kvm), then resets the machine (VFIO_DEVICE_RESET)
    # before the vCPUs run; the guest then boots (delay_ms) and probes (probe_ms).
    res = both(text(start(extra="delay_ms = 500"), workload="probe_ms = 40"))
    ev = res.host_events
    for row in ev:
        mine = res.records[res.records["guest"] == row["guest"]]
        assert mine["t_issue"].min() >= row["t_mutex_rel"] + (500 + 40) * MS
    stops = res.blocks[res.blocks["stopped"]]
    assert len(stops) == 3
    for b, row in zip(np.sort(stops, order="owner"), np.sort(ev, order="event"), strict=True):
        assert b["t_block"] == row["t_at"]
        assert b["t_unblock"] == row["t_mutex_rel"] + 540 * MS
    # the open's APCB update needs no block of its own: the vCPUs are stopped already
    assert len(res.blocks) == 3
    assert res.summary["blocked"]["n_guests"] == 0
    # the issue delay does not count the time the guest was not running
    assert (res.records["t_arrival"] == res.records["t_issue"]).all()


def test_time_to_ready_is_made_of_lock_waits_host_work_boot_and_the_burst() -> None:
    res = both(text(start(at_ms=10), guests=6))
    st = res.summary["starts"]
    assert st["n"] == 6 and st["ready"] == 6 and not st["not_ready"]
    for e in st["events"]:
        parts = e["lock_wait"] + e["host_work"] + e["boot"] + e["enable_burst"]
        assert parts == e["ready_ns"]
        assert e["boot"] == 540 * MS
        # a reset holds mdevs_lock for at least one reset interval (20-30 ms at 6.15, HZ=100)
        assert e["host_work"] >= 20 * MS
    # six starts at once: the opens and resets queue on guests_lock and mdevs_lock
    waits = sorted(e["lock_wait"] for e in st["events"])
    assert waits[0] < 1 * MS and waits[-1] >= 5 * 20 * MS
    last = max(e["at_ns"] + e["ready_ns"] for e in st["events"])
    assert st["storm_ns"] == last - 10 * MS


def test_a_reboot_stops_the_vcpus_resets_and_the_guest_enables_again() -> None:
    ev = start(at_ms=10) + '[[events]]\nat_ms = 1500\nkind = "reboot"\nguest = "vm[1]"\n'
    res = both(text(ev + "delay_ms = 300\n"))
    mine = res.records[res.records["guest"] == 1]
    assert len(mine) == 2 * 8  # the boot's burst and the reboot's
    st = res.summary["starts"]
    reboot = [e for e in st["events"] if e["kind"] == "reboot"]
    assert len(reboot) == 1 and reboot[0]["ready_ns"] is not None
    assert reboot[0]["lock_wait"] + reboot[0]["host_work"] >= 20 * MS  # the machine reset
    row = res.host_events[res.host_events["kind"] == HostEventKind.REBOOT][0]
    later = mine[mine["t_issue"] > row["t_at"]]
    assert later["t_issue"].min() >= row["t_mutex_rel"] + 340 * MS


@pytest.mark.parametrize("retry", ["on_reply", "none"])
def test_a_failed_enable_polls_and_a_newer_guest_retries_when_a_reply_empties_the_queue(
    retry: str,
) -> None:
    # 02/05 -> the queue runs without interrupts (polling). Linux 6.7+ (ap_sm_read) retries
    # the enable whenever a reply empties the queue and interrupts are still off; older
    # guests never retry. A fault of the hardware profile makes some enables answer BUSY.
    workload = f'retry = "{retry}"' + ("\nreply_rate_hz = 50" if retry == "on_reply" else "")
    res = both(
        text(
            start(),
            workload=workload,
            guests=4,
            hardware='aqic_rc = { "0x00" = 0.7, "0x05" = 0.3 }',
        )
    )
    rec = res.records
    failed = rec[rec["guest_visible_rc"] == arch.RC.BUSY]
    assert len(failed)
    st = res.summary["starts"]
    if retry == "none":
        assert len(rec) == 4 * 8  # one AQIC per queue, no retry
        assert len(st["not_ready"]) == len(np.unique(failed["guest"]))
    else:
        assert len(rec) > 4 * 8
        for f in failed:  # each failed enable is issued again on the same queue, later
            again = rec[(rec["apqn"] == f["apqn"]) & (rec["guest"] == f["guest"])]
            assert (again["t_issue"] > f["t_resume"]).any()
        assert st["ready"] == 4  # the retries got every queue its interrupts


def test_a_guest_whose_enables_keep_failing_retries_at_its_reply_rate() -> None:
    # The pathological steady stream of section 5: a newer guest whose enables keep failing
    # (here RC 06: vfio_pin_pages of the NIB fails every time) re-enables at the rate its
    # queues go idle, 100 Hz per queue.
    src = text(
        start(extra="delay_ms = 0"),
        guests=1,
        domains=1,
        workload="reply_rate_hz = 100",
        hardware="pin_fail = 1.0",
    )
    res = both(src)
    rec = res.records
    assert (rec["guest_visible_rc"] == arch.RC.INVALID_ADDRESS).all()
    # 4 queues, each retried at about 100 Hz for about 2.9 s
    assert 4 * 100 * 2.5 < len(rec) < 4 * 100 * 3.5
    assert res.summary["starts"]["ready"] == 0


def test_without_the_hook_the_guest_sees_rc_0_and_does_not_retry() -> None:
    # handle_pqap's no-hook answer: CC 3 and RC 01 copied to GR1's high word (the guest's
    # status word reads RC 00), so ap_queue_enable_irq takes it as NORMAL: no retry.
    src = text(start(extra="delay_ms = 0"), guests=1, domains=1, workload="reply_rate_hz = 100")
    res = both(src.replace("domains_per_guest = 1", "domains_per_guest = 1\nmdev = false"))
    rec = res.records
    assert len(rec) == 4 and (rec["kind"] == Kind.NO_HOOK_RC01).all()
    assert (rec["guest_visible_rc"] == 0).all()


def test_linux_workload_keys_are_checked() -> None:
    with pytest.raises(ScenarioError, match=r"reply_rate_hz.*not both"):
        loads(text("", workload='reply_rate_hz = 5\nretry_poll = { dist = "fixed", ns = 5 }'))
    with pytest.raises(ScenarioError, match='only retry = "on_reply" waits'):
        loads(text("", workload='retry = "none"\nreply_rate_hz = 5'))
    with pytest.raises(ScenarioError, match="rate_hz"):
        loads(text("", workload="rate_hz = 5"))
    s = loads(text(""))
    w = s.guests[0].workload
    assert (w.isc, w.retry, w.probe_ms) == (6, "on_reply", 40.0)


def test_the_mutex_counts_a_starts_two_sections_not_the_span_between_them() -> None:
    # A start takes mdevs_lock for the open (vfio_ap_mdev_set_kvm) and again for the reset
    # (vfio_ap_mdev_reset_queues); other starts hold it in between. The mutex's busy time is
    # the sum of the sections (the host-event row spans both).
    res = both(text(start(at_ms=10, extra="delay_ms = 100\nspread_ms = 5"), guests=8))
    mdevs = [i for i, lab in enumerate(res.lock_labels) if lab.startswith("mdevs_lock")]
    sec = res.locks[np.isin(res.locks["lock"], mdevs)]
    assert len(sec) == 2 * 8
    rec = res.records
    vcpu = rec[rec["t_mutex_grant"] >= 0]
    busy = int(
        (sec["t_rel"] - sec["t_grant"]).sum() + (vcpu["t_mutex_rel"] - vcpu["t_mutex_grant"]).sum()
    )
    assert res.summary["mutex"]["busy_ns"] == busy
    spans = res.host_events["t_mutex_rel"] - res.host_events["t_mutex_grant"]
    assert spans.sum() > (sec["t_rel"] - sec["t_grant"]).sum()  # the spans overlap


@pytest.mark.parametrize("rescan", ["immediate", "periodic"])
def test_a_hot_plugged_queue_is_enabled_after_the_notice_and_the_probe(rescan: str) -> None:
    # assign_domain_store: the guest learns of the new APQNs at once (QEMU's configuration
    # notification) or at its next 30 s AP bus scan, probes them (RAPQ, 40 ms) and enables
    # each in one pass.
    ev = start(at_ms=10, extra="delay_ms = 100") + (
        f'[[events]]\nat_ms = 1000\nkind = "assign"\nguest = "vm[0]"\ndomains = [9]\n'
        f'rescan = "{rescan}"\n'
    )
    res = both(text(ev, duration_ms=35_000 if rescan == "periodic" else 2000))
    rec = res.records[res.records["guest"] == 0]
    new = rec[(rec["apqn"] & 0xFF) == 9]
    assert len(new) == 4 and (new["guest_visible_rc"] == 0).all()
    row = res.host_events[res.host_events["kind"] == HostEventKind.ASSIGN][0]
    assert new["t_issue"].min() >= row["t_at"] + 40 * MS
    if rescan == "immediate":
        assert new["t_issue"].min() < row["t_mutex_rel"] + 41 * MS
