"""One row per simulated request: the structured numpy dtype both engines write.

Times are integer nanoseconds since the start of the run; -1 marks a stage the request did not
pass through (no rwsem, no mutex). Nullable codes are -1 when absent. Rows are written in the
canonical order ``(t_issue, vcpu)``, which is what makes the two engines' outputs comparable
byte for byte.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np


class Path(IntEnum):
    """Outcome path of a request, finer than the decode ``kind`` where latency differs."""

    USERSPACE_EXIT = 0  # -EOPNOTSUPP from KVM or the hook: VMM round trip, operation exception
    PROGRAM_CHECK = 1  # KVM (or the hook) injects PGM 0x02 / 0x06
    NO_HOOK_RC01 = 2  # no hook registered: RC 0x01 in GR1's high word, CC 3
    HOOK_SOFTWARE = 3  # the hook answered without the adapter (RC 01 or 06/08 before the AQIC)
    HOOK_ENABLE = 4  # the hook issued the host AQIC to enable interruptions
    HOOK_DISABLE = 5  # the hook ran vfio_ap_irq_disable (retries and sleeps possible)


PATH_NAMES: tuple[str, ...] = tuple(p.name.lower() for p in Path)

RECORD_DTYPE = np.dtype(
    [
        ("vcpu", np.int32),  # global vCPU index (guests in scenario order, vCPUs within)
        ("guest", np.int32),  # global guest index
        ("seq", np.int64),  # the vCPU's request number, from 0
        ("t_arrival", np.int64),  # when the workload wanted to issue (open loop), else t_issue
        ("t_issue", np.int64),  # the vCPU executes PQAP
        ("t_exit", np.int64),  # SIE exit done: KVM's handle_pqap starts
        ("t_decode", np.int64),  # KVM's guards done
        ("t_rwsem", np.int64),  # pqap_hook_rwsem read granted (-1: not taken)
        ("t_mutex_req", np.int64),  # global vfio_ap mutex requested (-1: not taken)
        ("t_mutex_grant", np.int64),
        ("t_mutex_rel", np.int64),
        ("t_resume", np.int64),  # SIE re-entered: the vCPU runs again
        ("gpr0", np.uint64),
        ("gpr1", np.uint64),
        ("gpr2", np.uint64),
        ("psw_mask", np.uint64),
        ("gpr1_out", np.uint64),  # GR1 the guest sees afterwards
        ("apqn", np.uint16),
        ("kind", np.uint8),  # hostsim.rules.Kind
        ("path", np.uint8),  # Path
        ("rule", np.int16),  # hostsim.rules.rule_code of the deciding rule
        ("response_code", np.int16),
        ("guest_visible_rc", np.int16),
        ("cc", np.int8),
        ("pgm_code", np.int16),
        ("hw_aqic_calls", np.uint8),
        ("hw_tapq_calls", np.uint8),
        ("sleeps", np.uint8),
    ]
)

#: Host-side holders of the global mutex (teardown, reset, attach ...), one row per event.
HOST_EVENT_DTYPE = np.dtype(
    [
        ("event", np.int32),  # index in the scenario's event list
        ("kind", np.uint8),  # hostsim.scenario.HostEventKind
        ("guest", np.int32),
        ("t_at", np.int64),  # when the host work started
        ("t_rwsem_req", np.int64),  # write side of the guest's pqap_hook_rwsem (-1: none)
        ("t_rwsem_grant", np.int64),
        ("t_rwsem_rel", np.int64),
        ("t_mutex_req", np.int64),
        ("t_mutex_grant", np.int64),
        ("t_mutex_rel", np.int64),
        ("hw_aqic_calls", np.uint16),
        ("hw_tapq_calls", np.uint16),
        ("sleeps", np.uint16),
    ]
)


def empty(n: int = 0) -> np.ndarray:
    """An array of ``n`` request records, every time and code set to -1."""
    a = np.zeros(n, RECORD_DTYPE)
    for name in RECORD_DTYPE.names or ():
        if name.startswith("t_") or name in ("response_code", "guest_visible_rc", "cc", "pgm_code"):
            a[name] = -1
    return a


def latency_ns(rec: np.ndarray) -> np.ndarray:
    """End-to-end intercept latency of each record: issue to resume."""
    return rec["t_resume"] - rec["t_issue"]


def canonical_order(rec: np.ndarray) -> np.ndarray:
    """Records sorted by ``(t_issue, vcpu)``: the order both engines write."""
    t, v = rec["t_issue"], rec["vcpu"]
    if len(rec) > 1 and int(t.min()) >= 0 and int(v.min()) >= 0:
        bits = max(1, int(v.max()).bit_length())
        if int(t.max()) < 1 << (63 - bits):
            # (t_issue, vcpu) packed into one int64: a stable sort of nearly sorted keys.
            packed = (t << bits) | v.astype(np.int64)
            if (packed[1:] > packed[:-1]).all():
                return rec
            return rec[np.argsort(packed, kind="stable")]
    return rec[np.lexsort((v, t))]
