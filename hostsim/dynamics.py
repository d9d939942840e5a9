"""What changes during a run, prepared before it starts: the guests' scripts (boot, reset and
hot-plug bursts), their matrices over the host events, the guests' own views of them, and the
bursty groups' on/off clocks.

All of it is drawn from seeded generators keyed by group and host event (:mod:`hostsim.draws`),
so it is the same for both engines. Split from :mod:`hostsim.model`, whose :class:`Model` keeps
these as attributes (``scripts``, ``views``, ``changes`` ...) for the engines to read.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hostsim import draws
from hostsim.scenario_types import PLUG, UNPLUG, HostEvent, HostEventKind, Scenario
from hostsim.topology import Topology
from workloads.bursts import boot_time, enable_burst, rescan_delay
from workloads.steady import BurstyClock


@dataclass
class Dynamics:
    """The scripts, matrices, views and clocks of one scenario (see :func:`build_dynamics`)."""

    #: per guest: the APQNs of its matrix at the start
    initial_matrix: list[frozenset[int]]
    #: per guest: [(time, frozenset of APQNs the guest uses from then on)]
    views: dict[int, list[tuple[int, frozenset[int]]]]
    #: per host event: the guest's matrix when it runs (for its per-queue work)
    event_queues: list[np.ndarray]
    #: per (un)plugging host event: the APQNs it adds to or takes from the guest
    changes: dict[int, frozenset[int]]
    #: per vCPU with a script: its rows, sorted by time
    scripts: dict[int, np.ndarray]
    #: per bursty group: its on/off clock
    clocks: dict[int, BurstyClock]
    #: per group: its vCPUs have a steady stream (boot and idle groups have none)
    steady_group: list[bool]


def event_apqns(s: Scenario, topo: Topology, ev: HostEvent) -> set[int]:
    """The APQNs an assign, unassign or queue probe names: its domains on the guest's
    adapters (what an event really changes, by index: :attr:`Dynamics.changes`)."""
    g = s.guests[int(topo.guest_group[ev.guest])]
    return {(a << 8) | d for a in g.adapters for d in ev.domains}


def build_dynamics(
    s: Scenario, topo: Topology, group_keys: list[int], event_keys: list[int]
) -> Dynamics:
    """Scripts (boot, reset and hot-plug bursts), the guests' matrices over the events, the
    guests' own views of them, and the bursty groups' on/off clocks."""
    rows: dict[int, list[np.ndarray]] = {}
    matrix = [set(a.tolist()) for a in topo.guest_apqns]
    initial_matrix = [frozenset(m) for m in matrix]
    views: dict[int, list[tuple[int, frozenset[int]]]] = {}
    event_queues: list[np.ndarray] = []
    changes: dict[int, frozenset[int]] = {}

    def burst(guest: int, apqns: list[int], t: int, key: tuple[int, ...]) -> None:
        g = s.guests[int(topo.guest_group[guest])]
        w = g.workload
        assert w.gap is not None
        gaps = w.gap.sample(draws.seeded(s.seed, draws.SCRIPT_GAP, *key), max(len(apqns), 1))
        v0 = int(topo.guest_first_vcpu[guest])
        if w.kind == "linux":  # the AP poll timer fires on whichever vCPU
            v0 += int(draws.seeded(s.seed, draws.SCRIPT_VCPU, *key).integers(0, g.vcpus))
        arr = np.array(sorted(apqns), np.uint16)
        rows.setdefault(v0, []).append(enable_burst(arr, t, gaps[: len(arr)], w.isc, w.nib))

    for gi, g in enumerate(s.guests):
        if g.workload.kind != "boot":
            continue
        w = g.workload
        for j in range(g.count):
            guest = int(topo.group_first_guest[gi]) + j
            t = boot_time(
                draws.seeded(s.seed, draws.BOOT, group_keys[gi], j),
                round(w.boot_at_ms * 1e6),
                round(w.spread_ms * 1e6),
            )
            burst(guest, sorted(matrix[guest]), t, (0, group_keys[gi], j))
    for i, ev in enumerate(s.events):
        gm = matrix[ev.guest]
        event_queues.append(np.array(sorted(gm), np.uint16))
        if ev.kind == HostEventKind.GUEST_RESET:
            burst(
                ev.guest,
                sorted(gm),
                ev.at_ns + round(ev.delay_ms * 1e6),
                (1, event_keys[i]),
            )
        elif ev.kind in (HostEventKind.REBOOT, HostEventKind.START):
            # the program keeps the vCPUs stopped until the guest's AP bus probes (host_ops)
            burst(ev.guest, sorted(gm), ev.at_ns, (1, event_keys[i]))
        elif ev.kind in PLUG + UNPLUG:
            changed = event_apqns(s, topo, ev)
            if ev.kind == HostEventKind.QUEUE_REMOVE:  # the whole adapter leaves the guest
                changed = {q for q in gm if (q >> 8) in ev.adapters}
            elif ev.kind == HostEventKind.MDEV_REMOVE:
                changed = set(gm)
            changes[i] = frozenset(changed)
            if ev.kind in PLUG:
                new = changed - gm
                gm |= changed
            else:
                new = set()
                gm -= changed
            seen = ev.at_ns + rescan_delay(
                draws.seeded(s.seed, draws.RESCAN, event_keys[i]), ev.rescan
            )
            views.setdefault(ev.guest, [(0, initial_matrix[ev.guest])]).append(
                (seen, frozenset(gm))
            )
            if new:  # a Linux guest probes the new queues first: RAPQ, then the low poll
                w = s.guests[int(topo.guest_group[ev.guest])].workload
                probe = round(w.probe_ms * 1e6) if w.kind == "linux" else 0
                burst(ev.guest, sorted(new), seen + probe, (1, event_keys[i]))
    for sched in views.values():
        sched.sort(key=lambda tv: tv[0])
    scripts: dict[int, np.ndarray] = {}
    for v, parts in rows.items():
        allrows = np.concatenate(parts)
        scripts[v] = allrows[np.argsort(allrows["t"], kind="stable")]
    clocks: dict[int, BurstyClock] = {}
    for gi, g in enumerate(s.guests):
        w = g.workload
        if w.kind == "bursty":
            clocks[gi] = BurstyClock(
                draws.seeded(s.seed, draws.BURSTY, group_keys[gi]),
                s.duration_ns,
                w.on_ms * 1e6,
                w.off_ms * 1e6,
                w.rate_on_hz,
                w.rate_off_hz,
            )
    steady_group = [g.workload.kind in ("poisson", "closed", "bursty") for g in s.guests]
    return Dynamics(initial_matrix, views, event_queues, changes, scripts, clocks, steady_group)
