"""The host topology as arrays: a scenario's guests and vCPUs flattened to global indices.

The engines and the model index guests, vCPUs and APQNs by position; :func:`topology` computes
those index arrays once from the guest groups of a :class:`~hostsim.scenario_types.Scenario`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hostsim.scenario_types import Scenario


@dataclass(frozen=True)
class Topology:
    """Guests and vCPUs flattened into arrays (global indices in scenario order)."""

    guest_group: np.ndarray  # per guest: group index
    guest_local: np.ndarray  # per guest: index within its group
    guest_first_vcpu: np.ndarray
    guest_apqns: tuple[np.ndarray, ...]  # per guest: uint16 APQNs (adapter-major)
    vcpu_guest: np.ndarray  # per vCPU: global guest index
    vcpu_group: np.ndarray
    vcpu_local: np.ndarray  # per vCPU: index within its group
    group_first_guest: np.ndarray
    group_first_vcpu: np.ndarray


def topology(s: Scenario) -> Topology:
    """Flatten the guest groups of ``s`` into index arrays."""
    gg: list[int]
    gg, gl, gfv, apqns = [], [], [], []
    gfg, gfvc = [], []
    per_guest_vcpus = []
    vcpu = 0
    for gi, g in enumerate(s.guests):
        gfg.append(len(gg))
        gfvc.append(vcpu)
        for j in range(g.count):
            gg.append(gi)
            gl.append(j)
            gfv.append(vcpu)
            apqns.append(
                np.array([(a << 8) | d for a in g.adapters for d in g.domains[j]], np.uint16)
            )
            per_guest_vcpus.append(g.vcpus)
            vcpu += g.vcpus
    per = np.array(per_guest_vcpus, np.int64)
    vg = np.repeat(np.arange(len(gg), dtype=np.int32), per)
    vgr = np.repeat(np.array(gg, np.int32), per)
    first = np.repeat(np.array(gfvc, np.int64), [g.count * g.vcpus for g in s.guests])
    vl = np.arange(vcpu, dtype=np.int64) - first
    return Topology(
        np.array(gg, np.int32),
        np.array(gl, np.int32),
        np.array(gfv, np.int64),
        tuple(apqns),
        vg,
        vgr,
        vl,
        np.array(gfg, np.int64),
        np.array(gfvc, np.int64),
    )
