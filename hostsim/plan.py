"""Planning: the requests of plain steady vCPUs decoded ahead, with their own durations.

A planned request carries everything about it that does not depend on other requests: its gap,
the decode (record fields), and the durations of its segments, folded into offsets from its
issue time: ``t_exit = issue + sie``, ``t_decode = issue + pre``, the mutex request at ``issue
+ koff`` (mutex requests only), and its resume at ``issue + fin`` when it takes no lock or
``release + entry`` when it does (the hold is fixed before the request is granted).
"""

from __future__ import annotations

import numpy as np

from hostsim import arch
from hostsim.decode import decode_batch
from hostsim.hw_profiles import answers
from hostsim.intercept import InterceptBatch
from hostsim.model import Model
from hostsim.records import RECORD_DTYPE, Path
from hostsim.rules import Kind, rule_code
from hostsim.scenario_types import Scenario

#: The record fields a plan fixes (everything after the times).
TAIL_DTYPE = np.dtype([(name, RECORD_DTYPE[name]) for name in (RECORD_DTYPE.names or ())[12:]])
CAT_EARLY, CAT_NOHOOK, CAT_HOOK_NOMUTEX, CAT_MUTEX = range(4)
#: Duration columns of a plan (int64, but ``cat``: int8).
PLAN_COLUMNS = ("gap", "sie", "pre", "koff", "fin", "hold", "entry", "cat")


def guest_flags(s: Scenario, group: int) -> dict[str, bool]:
    """The decode's configuration flags of guest group ``group``, as the model sets them."""
    g = s.guests[group]
    return {
        "ap_instructions_available": s.host.ap_instructions_available,
        "eca_apie": g.eca_apie,
        "eca_aiv": g.eca_aiv,
        "facility15": g.facility15,
        "facility65": g.facility65,
        "apxa": g.apxa,
        "hook_registered": g.mdev,
        "mdev_has_kvm": g.mdev,
        "pv_guest": g.pv,
    }


def make_plan(
    m: Model,
    group: int,
    lv: np.ndarray,
    k: np.ndarray,
    gap: np.ndarray | None = None,
    tail: np.ndarray | None = None,
    regs: dict[str, np.ndarray] | None = None,
) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Decode requests ``k`` of local vCPUs ``lv`` of ``group`` (1-D) with the vectorised
    evaluator and precompute every duration that does not depend on other requests: (the
    :data:`PLAN_COLUMNS`, the decoded record fields as :data:`TAIL_DTYPE`). ``gap``: the
    requests' own gaps, when known;
    ``tail``: where to write the record fields (else a new array); ``regs``: registers that
    are not the draws' own (a retry re-issues its failed request's): the queue's hardware
    answers are then those of its APQN, from the same uniforms (as
    :func:`hostsim.streams.intercept` makes them), and the plan gets the ``poll`` column."""
    blk = m.draws(group, lv, k, gap)
    n = len(lv)
    if regs is None:
        regs = blk.regs
    else:
        apqn = (regs["gpr0"] & np.uint64(arch.GR0_APQN_MASK)).astype(np.uint16)
        blk.aqic, blk.tapq_rc, blk.tapq_irq, blk.pin_ok = answers(
            m.profiles, m.profile_index(apqn), blk.au, blk.tu, blk.iu, blk.pu
        )
        guests = int(m.topo.group_first_guest[group]) + lv // m.s.guests[group].vcpus
        blk.assigned = np.isin((guests << 16) | apqn, m.matrix_keys())
    flags = guest_flags(m.s, group)
    batch = InterceptBatch(
        n,
        gpr0=regs["gpr0"],
        gpr1=regs["gpr1"],
        gpr2=regs["gpr2"],
        psw_mask=regs["psw_mask"],
        queue_assigned=blk.assigned,
        pin_ok=blk.pin_ok,
        hw_aqic=blk.aqic,
        hw_tapq_rc=blk.tapq_rc,
        hw_tapq_irq=blk.tapq_irq,
        **{name: np.broadcast_to(np.bool_(v), (n,)) for name, v in flags.items()},
    )
    d = decode_batch(batch, m.variant)
    costs = blk.costs

    def add(out: np.ndarray, name: str, sel: np.ndarray, j: int | None = None) -> None:
        """out[sel] += cost ``name`` of the rows ``sel`` (drawn for those rows alone)."""
        dist = m.s.costs[name]
        count = int(np.count_nonzero(sel))
        if count == 0:
            return
        if dist.kind == "fixed":
            if count == n:
                out += dist.fixed_ns
            else:
                out[sel] += dist.fixed_ns
        elif count == n:
            out += costs.subset(name, slice(None), j)
        else:
            idx = np.flatnonzero(sel)
            out[idx] += costs.subset(name, idx, j)

    kind = d.kind
    cat = np.full(n, CAT_EARLY, np.int8)
    cat[kind == Kind.NO_HOOK_RC01] = CAT_NOHOOK
    cat[d.hook_called & ~d.mutex] = CAT_HOOK_NOMUTEX
    cat[d.mutex] = CAT_MUTEX
    sie = np.broadcast_to(costs["sie_exit"], (n,))
    rw = np.broadcast_to(costs["rwsem_read"], (n,))
    rwhe = rw + np.broadcast_to(costs["hook_entry"], (n,))
    entry = np.broadcast_to(costs["sie_entry"], (n,))
    pre = sie + np.broadcast_to(costs["kvm_decode"], (n,))
    exitc = np.zeros(n, np.int64)
    add(exitc, "userspace_exit", kind == Kind.USERSPACE_EXIT)
    add(exitc, "pgm_inject", kind == Kind.PROGRAM_INTERRUPT)
    mutex = d.mutex
    hold = np.zeros(n, np.int64)
    add(hold, "mutex_acquire", mutex)
    add(hold, "lookup", mutex)
    add(hold, "pin", mutex & d.pin)
    add(hold, "gisc_register", mutex & d.gisc)
    for name, calls, width in (
        ("host_aqic", d.hw_aqic_calls, 7),
        ("host_tapq", d.hw_tapq_calls, 5),
        ("msleep20", d.sleeps, 11),
    ):
        for j in range(min(width, int(calls.max()) if n else 0)):
            add(hold, name, mutex & (calls > j), j)
    # A request that takes no lock resumes at a fixed offset from its issue (pure arithmetic).
    fin = (
        pre
        + entry
        + np.where(cat == CAT_EARLY, exitc, np.where(cat == CAT_NOHOOK, rw, rwhe + exitc))
    )
    plan = {
        "gap": np.asarray(blk.gap, np.int64),
        "sie": sie,
        "pre": pre,
        "koff": np.where(mutex, pre + rwhe, 0),
        "fin": fin,
        "hold": hold,
        "entry": entry,
        "cat": cat,
    }
    if blk.poll is not None:
        plan["poll"] = np.asarray(blk.poll, np.int64)
    path = np.full(n, Path.HOOK_SOFTWARE, np.uint8)
    path[kind == Kind.USERSPACE_EXIT] = Path.USERSPACE_EXIT
    path[kind == Kind.PROGRAM_INTERRUPT] = Path.PROGRAM_CHECK
    path[kind == Kind.NO_HOOK_RC01] = Path.NO_HOOK_RC01
    served = kind == Kind.HOOK_HANDLED
    path[served & (d.hw_aqic_calls > 0)] = Path.HOOK_ENABLE
    path[served & (d.rule == rule_code("disable.done"))] = Path.HOOK_DISABLE
    if tail is None:
        tail = np.empty(n, TAIL_DTYPE)
    tail["gpr0"] = regs["gpr0"]
    tail["gpr1"] = regs["gpr1"]
    tail["gpr2"] = regs["gpr2"]
    tail["psw_mask"] = regs["psw_mask"]
    tail["gpr1_out"] = d.gr1
    tail["apqn"] = regs["gpr0"] & np.uint64(arch.GR0_APQN_MASK)
    tail["kind"] = kind
    tail["path"] = path
    tail["rule"] = d.rule
    tail["response_code"] = d.response_code
    tail["guest_visible_rc"] = d.guest_visible_rc
    tail["cc"] = d.cc
    tail["pgm_code"] = d.pgm_code
    tail["hw_aqic_calls"] = d.hw_aqic_calls
    tail["hw_tapq_calls"] = d.hw_tapq_calls
    tail["sleeps"] = d.sleeps
    return plan, tail
