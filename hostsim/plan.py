"""Planning: the requests of plain steady vCPUs decoded ahead, with their own durations.

A planned request carries everything about it that does not depend on other requests: its gap,
the decode (record fields), and its program (:mod:`hostsim.chain`) walked with every wait
zero, folded into offsets from its issue time: ``t_exit = issue + sie``, ``t_decode = issue +
pre``, the mutex request at ``issue + koff`` (mutex requests only), and its resume at ``issue +
fin`` when it takes no lock or ``release + entry`` when it does (the hold is fixed before the
request is granted). Fleet guests have no rwsem writer, so their read side never waits.
"""

from __future__ import annotations

import numpy as np

from hostsim import arch
from hostsim.chain import CAT_MUTEX, categories, paths, walk_batch
from hostsim.decode_batch import DecisionBatch, decode_batch
from hostsim.hw_profiles import answers
from hostsim.intercept import FLAG_NAMES, REGISTER_NAMES, InterceptBatch
from hostsim.model import Model
from hostsim.records import RECORD_DTYPE
from hostsim.scenario_types import Scenario

#: The record fields a plan fixes (everything after the times).
TAIL_DTYPE = np.dtype([(name, RECORD_DTYPE[name]) for name in (RECORD_DTYPE.names or ())[12:]])


def as_rows(a: np.ndarray) -> np.ndarray:
    """``a`` itself, or for a structured array its rows as opaque bytes (the same memory):
    gathering or scattering whole rows is then one copy per row, about 10x faster than numpy's
    field-by-field copy of a structured row."""
    return a.view(np.dtype((np.void, a.dtype.itemsize))) if a.dtype.names else a


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


#: from this many rows a plan draws each request's first hardware answers only, and the later
#: ones for the few requests that read them (a BUSY enable's disable loop, a TAPQ loop): the
#: uniforms of every call slot were most of the cost of a plan's draws. Below it, the second
#: draw's fixed cost (a millisecond) is more than it saves.
LAZY_HW_ROWS = 4096


def _later_answers(
    m: Model,
    group: int,
    lv: np.ndarray,
    k: np.ndarray,
    batch: InterceptBatch,
    pu: np.ndarray | None,
    d: DecisionBatch,
) -> None:
    """Decode again, in place in ``d``, the requests of ``batch`` (drawn with their first
    hardware answers only) whose decision made a second AQIC or TAPQ call: it read an answer
    that was not drawn. The decode reads call ``j``'s answer only when it makes call ``j``, so
    every other decision stands."""
    redo = np.flatnonzero((d.hw_aqic_calls > 1) | (d.hw_tapq_calls > 1))
    if not len(redo):
        return
    assert pu is not None  # drawn with the other uniforms
    au, tu, iu = m.hw_uniforms(group, lv[redo], k[redo])
    apqn = (batch.gpr0[redo] & np.uint64(arch.GR0_APQN_MASK)).astype(np.uint16)
    aqic, trc, tirq, _ = answers(m.profiles, m.profile_index(apqn), au, tu, iu, pu[redo])
    sub = InterceptBatch(
        len(redo),
        **{name: getattr(batch, name)[redo] for name in (*REGISTER_NAMES, *FLAG_NAMES)},
        hw_aqic=aqic,
        hw_tapq_rc=trc,
        hw_tapq_irq=tirq,
    )
    again = decode_batch(sub, m.variant)
    for name in DecisionBatch.__slots__:
        getattr(d, name)[redo] = getattr(again, name)


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
    n = len(lv)
    lazy = n >= LAZY_HW_ROWS and not m.deterministic_hw
    blk = m.draws(group, lv, k, gap, hw_slots=1 if lazy else None)
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
    if lazy:  # the requests that read a later hardware answer: drawn, and decoded again
        _later_answers(m, group, lv, k, batch, blk.pu, d)
    costs = blk.costs

    cat = categories(d)
    marks = walk_batch(d, cat, costs, m.s.costs)
    zero = np.zeros(n, np.int64)
    resume = marks["resume"]
    rel, grant = marks.get("rel", zero), marks.get("grant", zero)
    plan = {
        "gap": np.asarray(blk.gap, np.int64),
        "sie": marks["t_exit"],
        "pre": marks["t_decode"],
        "koff": marks.get("t_mreq", zero),  # the mutex request (mutex rows; else 0)
        "fin": resume,  # the resume, every wait zero (a request that takes no lock: its own)
        "hold": rel - grant,  # mutex rows; else 0
        "entry": np.where(cat == CAT_MUTEX, resume - rel, 0),
        "cat": cat,
    }
    if blk.poll is not None:
        plan["poll"] = np.asarray(blk.poll, np.int64)
    if tail is None:
        tail = np.empty(n, TAIL_DTYPE)
    tail["gpr0"] = regs["gpr0"]
    tail["gpr1"] = regs["gpr1"]
    tail["gpr2"] = regs["gpr2"]
    tail["psw_mask"] = regs["psw_mask"]
    tail["gpr1_out"] = d.gr1
    tail["apqn"] = regs["gpr0"] & np.uint64(arch.GR0_APQN_MASK)
    tail["kind"] = d.kind
    tail["path"] = paths(d)
    tail["rule"] = d.rule
    tail["response_code"] = d.response_code
    tail["guest_visible_rc"] = d.guest_visible_rc
    tail["cc"] = d.cc
    tail["pgm_code"] = d.pgm_code
    tail["hw_aqic_calls"] = d.hw_aqic_calls
    tail["hw_tapq_calls"] = d.hw_tapq_calls
    tail["sleeps"] = d.sleeps
    return plan, tail


#: A plan of rows: (its :data:`PLAN_COLUMNS`, its record fields as :data:`TAIL_DTYPE`, each
#: row's ``retry_poll``, 0 where its guest draws none).
Planned = tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]


def make_plans(
    m: Model,
    groups: np.ndarray,
    lv: np.ndarray,
    k: np.ndarray,
    gap: np.ndarray | None,
    regs: dict[str, np.ndarray] | None,
    tail: np.ndarray | None = None,
) -> Planned:
    """:func:`make_plan` of requests ``k`` of local vCPUs ``lv`` of any guest groups
    (``groups``, one per row): one call per group. ``tail``: where to write the record
    fields."""
    n = len(lv)
    polls = np.zeros(n, np.int64)
    if len(m.s.guests) == 1 or not (groups != groups[0]).any():
        plan, tail = make_plan(m, int(groups[0]), lv, k, gap, tail, regs)
        return plan, tail, plan.get("poll", polls)
    cols = {name: np.empty(n, np.int8 if name == "cat" else np.int64) for name in PLAN_COLUMNS}
    if tail is None:
        tail = np.empty(n, TAIL_DTYPE)
    for grp in np.unique(groups).tolist():
        sel = np.flatnonzero(groups == grp)
        own = None if gap is None else gap[sel]
        sub = None if regs is None else {name: a[sel] for name, a in regs.items()}
        plan, part = make_plan(m, grp, lv[sel], k[sel], own, None, sub)
        for name in PLAN_COLUMNS:
            cols[name][sel] = plan[name]
        as_rows(tail)[sel] = as_rows(part)  # (whole rows: see as_rows)
        if "poll" in plan:
            polls[sel] = plan["poll"]
    return cols, tail, polls
