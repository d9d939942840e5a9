"""What users read of the host's locks and blocked vCPUs: the summary's ``locks`` and
``blocked`` sections, from the runners' lock sections (:data:`hostsim.program.LOCK_DTYPE`) and
block intervals (:data:`hostsim.run_programs.BLOCK_DTYPE`).

``locks`` has one entry per lock name (``ap_perms_mutex``, ``guests_lock``, ``kvm_lock``,
``pqap_hook_rwsem`` for its write side, ``mdevs_lock`` for the host programs' sections; the
vCPUs' ``mdevs_lock`` holds are the summary's ``mutex`` section): sections, busy time in the
measurement window summed over the lock's instances, utilisation of the busiest instance,
waits and holds (ns: mean, p50, p99, max) and the longest holder. ``blocked`` has, per guest
whose vCPUs a program stopped (an APCB update), how often and how long, in the window.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def distribution(v: np.ndarray) -> dict[str, Any]:
    """N, mean, p50, p99 and max of ``v`` (ns; inverted-CDF percentiles)."""
    if not len(v):
        return {"N": 0}
    return {
        "N": len(v),
        "mean": round(float(v.mean()), 1),
        "p50": int(np.percentile(v, 50, method="inverted_cdf")),
        "p99": int(np.percentile(v, 99, method="inverted_cdf")),
        "max": int(v.max()),
    }


def _busy(grant: np.ndarray, rel: np.ndarray, start: int, end: int) -> np.ndarray:
    return np.clip(rel, start, end) - np.clip(grant, start, end)


def lock_summary(
    locks: np.ndarray, labels: tuple[str, ...], owners: list[str], start: int, end: int
) -> dict[str, Any]:
    """The ``locks`` section (module docstring); ``owners[i]`` names lock-row owner ``i``."""
    out: dict[str, Any] = {}
    if not len(locks):
        return out
    names = np.array([lab.split("[")[0] for lab in labels])
    duration = max(end - start, 1)
    done = locks[locks["t_grant"] >= 0]
    for name in dict.fromkeys(names[done["lock"]].tolist()):
        sec = done[names[done["lock"]] == name]
        busy = _busy(sec["t_grant"], sec["t_rel"], start, end)
        per_inst = np.bincount(sec["lock"], weights=busy, minlength=len(labels))
        hold = sec["t_rel"] - sec["t_grant"]
        i = int(np.argmax(hold))
        out[name] = {
            "sections": len(sec),
            "instances": int(np.count_nonzero(np.bincount(sec["lock"]))),
            "busy_ns": int(busy.sum()),
            "utilisation_max": round(float(per_inst.max()) / duration, 6),
            "wait_ns": distribution(sec["t_grant"] - sec["t_req"]),
            "hold_ns": distribution(hold),
            "longest_hold_by": {
                "owner": owners[int(sec["owner"][i])],
                "lock": labels[int(sec["lock"][i])],
                "t_grant_ns": int(sec["t_grant"][i]),
                "hold_ns": int(hold[i]),
            },
        }
    return out


def block_summary(
    blocks: np.ndarray, guest_labels: list[str], start: int, end: int
) -> dict[str, Any]:
    """The ``blocked`` section (module docstring): per guest label, and in all."""
    per: dict[str, Any] = {}
    blocks = blocks[~blocks["stopped"]]  # a start's or reboot's stop is in the starts section
    if len(blocks):
        span = _busy(blocks["t_block"], blocks["t_unblock"], start, end)
        for g in np.unique(blocks["guest"]).tolist():
            mine = span[blocks["guest"] == g]
            per[guest_labels[g]] = {
                "times": len(mine),
                "total_ns": int(mine.sum()),
                "longest_ns": int(mine.max()),
            }
    total = sum(v["total_ns"] for v in per.values())
    return {"guests": per, "total_ns": int(total), "n_guests": len(per)}
