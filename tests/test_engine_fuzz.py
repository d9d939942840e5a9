"""Random scenarios: the fast engine writes the reference engine's records, byte for byte.

Each case draws a scenario from its seed: one to three guest groups (Poisson, closed loop,
bursty, idle), rates from light to saturating, fixed or random costs, probabilistic hardware
answers, either lock model, any variant, sometimes host events, and in a quarter of the cases a
user host process taking the mutex at random (``hostsim.process``), or two operators with
several locks, as steps or as SimPy code (``hostsim.sim_process``). CI runs a few dozen cases;
``--run-slow`` runs hundreds. The fast engine's planning constants are also shrunk in some
cases (tiny epochs, an eager pool compaction, small windows), so that paths which only large
runs reach are compared on small ones.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from typing import Any

import numpy as np
import pytest
import simpy

import hostsim.fleet as fleet
import hostsim.fleet_window as fleet_window
from hostsim.process import (
    Acquire,
    Block,
    Delay,
    HwCall,
    Release,
    Sleep,
    Step,
    Unblock,
    blocking,
)
from hostsim.run import simulate
from hostsim.scenario import loads
from hostsim.sim_process import Host, SimProcess, simpy_process

VARIANTS = ["upstream", "merged-2019", "v4-2019", "hook-owns-fc"]


def scenario_text(seed: int) -> str:
    """A random scenario (TOML text) for case ``seed``."""
    rng = np.random.default_rng(seed)
    lines = [
        "[run]",
        f"duration_ms = {int(rng.integers(20, 120))}",
        f"seed = {int(rng.integers(0, 1000))}",
        "[host]",
        "adapters = 4",
        "domains = 60",
        f'variant = "{VARIANTS[int(rng.integers(0, 4))]}"',
        f'lock_model = "{"global" if rng.random() < 0.6 else "per-mdev"}"',
    ]
    if rng.random() < 0.25:
        lines.append('reset_verify = "async"')  # guest AQICs meet resets in progress
    if rng.random() < 0.2:
        lines.append('disable_wait = "unlocked"')  # the host's disable loops drop the lock
    if rng.random() < 0.5:
        lines += [
            "[host.hardware]",
            'aqic_rc = { "0x00" = 0.93, "0x05" = 0.05, "0x02" = 0.02 }',
            'tapq_rc = { "0x00" = 0.9, "0x05" = 0.1 }',
            f"tapq_irq_enabled = {rng.choice([0.0, 0.05, 0.5])}",
            f"pin_fail = {rng.choice([0.0, 0.02])}",
        ]
    lines.append("[costs]")
    if rng.random() < 0.4:  # everything fixed: ties to the nanosecond
        lines += ['sie_exit = "500ns"', 'sie_entry = "500ns"', 'pin = "2us"', 'host_aqic = "2us"']
    lines.append(f'msleep20 = "{int(rng.choice([200_000, 2_000_000]))}ns"')
    lines.append(f'reset_interval = "{int(rng.choice([100_000, 1_000_000]))}ns"')
    lines.append(f'queue_reset = "{int(rng.choice([50_000, 1_500_000]))}ns"')
    groups = int(rng.integers(1, 4))
    kinds = []
    for gi in range(groups):
        kind = str(rng.choice(["poisson", "poisson", "closed", "bursty", "idle", "linux"]))
        if gi == 0 and kind == "idle":
            kind = "poisson"
        kinds.append(kind)
        lines += [
            "[[guests]]",
            f'name = "g{gi}"',
            f"count = {int(rng.integers(1, 8))}",
            f"vcpus = {int(rng.integers(1, 6))}",
            f"domains_per_guest = {int(rng.integers(1, 3))}",
        ]
        if rng.random() < 0.15:
            lines.append("mdev = false")
        lines.append("[guests.workload]")
        lines.append(f'kind = "{kind}"')
        rate = float(rng.choice([50, 500, 3000, 8000]))
        if kind == "poisson":
            lines.append(f"rate_hz = {rate}")
            if rng.random() < 0.3:
                lines.append(f"start_ms = {int(rng.integers(0, 10))}")
        elif kind == "closed":
            lines.append(f'think = {{ dist = "exponential", mean_ns = {int(1e9 / rate)} }}')
        elif kind == "bursty":
            lines += [f"rate_on_hz = {rate}", "rate_off_hz = 20", "on_ms = 5", "off_ms = 20"]
        if kind == "linux":
            lines.append(f"probe_ms = {rng.choice([0.0, 1.0, 4.0])}")
            if rng.random() < 0.3:
                lines.append('retry = "none"')
            else:
                lines.append(f"reply_rate_hz = {rng.choice([200.0, 5000.0])}")
        elif kind != "idle":
            lines.append(f"enable_fraction = {rng.choice([1.0, 0.7, 0.3])}")
            if rng.random() < 0.25:
                lines.append('retry = "on_idle"')
            if rng.random() < 0.2:
                lines.append("adversarial = { problem_state = 0.05, unassigned = 0.1 }")
    for gi, kind in enumerate(kinds):  # Linux guests start (or reboot) as QEMU does it
        if kind == "linux" and rng.random() < 0.7:
            lines += [
                "[[events]]",
                f"at_ms = {int(rng.integers(0, 6))}",
                f'kind = "{rng.choice(["start", "start", "reboot"])}"',
                f'guest = "g{gi}[*]"',
                f"spread_ms = {int(rng.choice([0, 3]))}",
                f"delay_ms = {rng.choice([0.0, 0.5, 2.0])}",
            ]
    if rng.random() < 0.3:
        kind = str(
            rng.choice(
                [
                    "irq_disable",
                    "reset",
                    "detach",
                    "guest_reset",
                    "start",
                    "attach",
                    "reboot",
                    "sysfs_read",
                    "mdev_create",
                    "mdev_remove",
                    "queue_probe",
                    "queue_remove",
                    "config_changed",
                ]
            )
        )
        lines += [
            "[[events]]",
            f"at_ms = {int(rng.integers(1, 15))}",
            f'kind = "{kind}"',
            'guest = "g0[0]"',
        ]
        if kind == "queue_probe":
            lines.append("domains = [59]")
        elif kind == "queue_remove":
            lines.append("adapters = [1]")
    return "\n".join(lines) + "\n"


def _agent(seed: int, guests: int) -> Iterator[Step]:
    """A user host process: lock sections of random length at random intervals."""
    rng = np.random.default_rng(seed)
    while True:
        yield Delay(int(rng.integers(0, 3_000_000)))
        yield Acquire(int(rng.integers(0, guests)))
        yield Delay(int(rng.choice([1, 5_000, 2_000_000])))
        yield Release()


def _operator(seed: int, guests: int, blocks: bool = False) -> Iterator[Step]:
    """A host program with several locks in the kernel's order, a queue whose state decides
    what it does next, the mdevs lock dropped across a sleep with the outer locks held, and
    (``blocks``) guest 0's vCPUs stopped for a while, under the lock or not."""
    rng = np.random.default_rng(seed)
    while True:
        yield Delay(int(rng.choice([0, 1, int(rng.integers(0, 4_000_000))])))
        g = int(rng.integers(0, guests))
        outer = [
            (name, guest)
            for name, guest, p in (
                ("ap_perms_mutex", 0, 0.3),
                ("guests_lock", 0, 0.6),
                ("kvm_lock", g, 0.8),
            )
            if rng.random() < p
        ]
        for name, guest in outer:
            yield Acquire(guest, name)
        q = int(rng.integers(0, 3)) << 8 | int(rng.integers(0, 3))
        yield Acquire(g)
        stop = blocks and g == 0 and rng.random() < 0.5
        if stop:  # an APCB update: the vCPUs stopped under the lock
            yield Block(0)
        ans = yield HwCall("tapq", q, g, int(rng.choice([0, 300])))
        if ans.reset_pending:
            yield Delay(int(rng.choice([0, 1_000])))
        else:
            op = str(rng.choice(["zapq", "aqic_enable", "aqic_disable"]))
            yield HwCall(op, q, g, int(rng.choice([0, 500, 30_000_000])), nib=0x1000, isc=6)
        if stop:
            yield Unblock(0)
        yield Release()
        if blocks and rng.random() < 0.3:  # stopped with no lock held
            yield Block(0)
            yield Sleep(int(rng.choice([0, 1, 50_000, 3_000_000])))
            yield Unblock(0)
        if outer and rng.random() < 0.5:
            yield Sleep(int(rng.choice([0, 20_000_000])))
            yield Acquire(g)
            yield Delay(int(rng.choice([0, 2_000])))
            yield Release()
        for name, guest in reversed(outer):
            yield Release(name, guest)


def _simpy_operator(seed: int, guests: int, blocks: bool = False) -> SimProcess:
    """:func:`_operator`'s kind of work as SimPy code: outer locks held across SimPy waits,
    whole mdevs sections whose answers decide what follows, child processes that read a
    queue meanwhile, and (``blocks``) guest 0 stopped across a wait."""
    rng = np.random.default_rng(seed)
    Proc = Generator[simpy.Event, Any, None]

    def child(env: simpy.Environment, host: Host, g: int, q: int) -> Proc:
        yield env.timeout(int(rng.choice([0, 1, 40_000])))
        yield host.run(Acquire(g), HwCall("tapq", q, g, 200), Release())

    def run(env: simpy.Environment, host: Host) -> Proc:
        while True:
            yield env.timeout(int(rng.choice([0, 1, int(rng.integers(0, 4_000_000))])))
            g = int(rng.integers(0, guests))
            outer = [
                (name, guest)
                for name, guest, p in (("guests_lock", 0, 0.6), ("kvm_lock", g, 0.8))
                if rng.random() < p
            ]
            if outer:
                yield host.run(*(Acquire(guest, name) for name, guest in outer))
            q = int(rng.integers(0, 3)) << 8 | int(rng.integers(0, 3))
            if rng.random() < 0.3:
                env.process(child(env, host, g, q))
            stop = blocks and g == 0 and rng.random() < 0.5
            op = str(rng.choice(["zapq", "aqic_enable", "aqic_disable"]))
            sec: list[Step] = [Acquire(g)] + [Block(0)] * stop
            sec += [HwCall("tapq", q, g, 300), HwCall(op, q, g, int(rng.choice([0, 500])))]
            sec += [Unblock(0)] * stop + [Release()]
            tapq, _ = yield host.run(*sec)
            if tapq.reset_pending:
                yield env.timeout(int(rng.choice([0, 1_000, 2_000_000])))
            if blocks and rng.random() < 0.3:
                yield host.run(Block(0))
                yield env.timeout(int(rng.choice([0, 1, 50_000, 3_000_000])))
                yield host.run(Unblock(0))
            if outer and rng.random() < 0.5:
                yield env.timeout(int(rng.choice([0, 20_000_000])))
                yield host.run(Acquire(g), Delay(int(rng.choice([0, 2_000]))), Release())
            if outer:
                yield host.run(*(Release(name, guest) for name, guest in reversed(outer)))

    return simpy_process(run, blocks=[0] if blocks else [])


def check(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    if seed % 3 == 0:  # small planning constants: many epochs, eager compaction
        monkeypatch.setattr(fleet, "EPOCH_ROWS", 64)
        monkeypatch.setattr(fleet, "COMPACT_MIN", 256)
    if seed % 5 == 0:
        monkeypatch.setattr(fleet_window, "WINDOW_PASSES", 1)
    s = loads(scenario_text(seed), f"fuzz-{seed}")
    procs = [lambda: _agent(seed, s.n_guests)] if seed % 4 == 1 else []
    if seed % 8 == 3:  # two operators contend for the outer locks and the queues
        procs = [
            lambda: _operator(seed, s.n_guests),
            blocking([0], lambda: _operator(seed + 1, s.n_guests, blocks=True)),
        ]
    if seed % 8 == 7:  # the same kind of operators as SimPy code (each run makes its own)
        ops = [(seed, False), (seed + 1, True)]
        ref = simulate(
            s,
            "reference",
            keep_records=True,
            processes=[_simpy_operator(k, s.n_guests, b) for k, b in ops],
        )
        fast = simulate(
            s,
            "fast",
            keep_records=True,
            processes=[_simpy_operator(k, s.n_guests, b) for k, b in ops],
        )
    else:
        ref = simulate(s, "reference", keep_records=True, processes=procs)
        fast = simulate(s, "fast", keep_records=True, processes=procs)
    assert ref.records.tobytes() == fast.records.tobytes(), scenario_text(seed)
    assert ref.processes.tobytes() == fast.processes.tobytes()
    assert ref.host_events.tobytes() == fast.host_events.tobytes()
    assert ref.locks.tobytes() == fast.locks.tobytes()
    assert ref.queues.tobytes() == fast.queues.tobytes()
    assert ref.blocks.tobytes() == fast.blocks.tobytes()
    assert ref.summary["starts"] == fast.summary["starts"]
    assert ref.summary["counts"] == fast.summary["counts"]
    if seed % 7 == 4:  # replay what ran (the fast engine's fleet plans scripts), think times added
        scripts = _scripts(ref.records, seed)
        again = [
            simulate(s, e, keep_records=True, processes=procs, replay=scripts)
            for e in ("reference", "fast")
        ]
        assert again[0].records.tobytes() == again[1].records.tobytes(), scenario_text(seed)
        assert again[0].host_events.tobytes() == again[1].host_events.tobytes()


def _scripts(rec: np.ndarray, seed: int) -> dict[int, np.ndarray]:
    """Per-vCPU script rows of ``rec`` (its arrivals and registers), some with think times."""
    from workloads.bursts import SCRIPT_DTYPE

    rng = np.random.default_rng(seed)
    out = {}
    for v in np.unique(rec["vcpu"]).tolist():
        r = rec[rec["vcpu"] == v]
        r = r[np.argsort(r["seq"], kind="stable")]
        rows = np.zeros(len(r), SCRIPT_DTYPE)
        rows["t"] = r["t_arrival"]
        rows["think"] = rng.integers(0, 3, len(r)) * rng.integers(0, 200_000)
        for name in ("gpr0", "gpr1", "gpr2", "psw_mask"):
            rows[name] = r[name]
        out[v] = rows
    return out


@pytest.mark.parametrize("seed", range(24))
def test_random_scenarios_agree(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    check(seed, monkeypatch)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(24, 424))
def test_many_random_scenarios_agree(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    check(seed, monkeypatch)
