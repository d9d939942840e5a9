"""Scripted bursts: what a guest's AP bus issues at boot, after a reset, and on hot-plug.

A Linux guest's AP bus enables interruptions for every queue it owns when the queue comes up:
at boot, after every queue reset, and when an APQN is hot-plugged (timing-calibration.md section
3 and host-operations.md section 5). It does so in one tasklet pass on one vCPU, queue after
queue, with an interpreted TAPQ (no intercept) between them. hostsim issues these bursts from
vCPU 0 of the guest (a ``linux`` guest: the vCPU its poll timer fired on, drawn per burst), as
*script rows*:
``(t_arrival, think, gpr0, gpr1, gpr2, psw)``: a row is issued at ``max(t_arrival, previous
resume + think)``, so a burst runs back to back with the guest's polling gap between AQICs.
"""

from __future__ import annotations

import numpy as np

from hostsim import arch

SCRIPT_DTYPE = np.dtype(
    [
        ("t", np.int64),  # earliest issue time
        ("think", np.int64),  # guest time after the previous request resumed
        ("gpr0", np.uint64),
        ("gpr1", np.uint64),
        ("gpr2", np.uint64),
        ("psw_mask", np.uint64),
    ]
)


def enable_burst(apqns: np.ndarray, t: int, gaps: np.ndarray, isc: int, nib: int) -> np.ndarray:
    """Script rows that enable interruptions on each of ``apqns`` in order, from time ``t``.

    ``gaps[i]`` is the guest's polling time before the i-th AQIC (the first one is not waited).
    """
    rows = np.zeros(len(apqns), SCRIPT_DTYPE)
    rows["t"] = t
    rows["think"] = gaps
    if len(rows):
        rows["think"][0] = 0
    rows["gpr0"] = (np.uint64(arch.FunctionCode.AQIC) << np.uint64(arch.GR0_FC_SHIFT)) | (
        apqns.astype(np.uint64)
    )
    rows["gpr1"] = arch.make_gr1_aqic(1, isc)
    rows["gpr2"] = nib
    rows["psw_mask"] = arch.PSW_DEFAULT_SUPERVISOR
    return rows


def boot_time(gen: np.random.Generator, boot_at_ns: int, spread_ns: int) -> int:
    """When one guest's AP bus comes up: uniformly over the boot window."""
    return boot_at_ns + (int(gen.integers(0, spread_ns + 1)) if spread_ns > 0 else 0)


#: AP bus periodic configuration rescan (ap_bus.h AP_CONFIG_TIME).
AP_CONFIG_TIME_NS = 30_000_000_000


def rescan_delay(gen: np.random.Generator, rescan: str) -> int:
    """How long a guest takes to notice a configuration change: at once with the CRW/SEI
    notification of newer QEMU, or at the next 30 s periodic AP bus scan (uniform phase)."""
    return 0 if rescan == "immediate" else int(gen.integers(0, AP_CONFIG_TIME_NS))
