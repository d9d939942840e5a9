"""What a vCPU issues next: the one place both engines ask, so both issue the same requests.

A vCPU's requests come from its steady stream (Poisson, closed loop or bursty, one keyed draw
per request), from its script (boot, reset and hot-plug bursts, or a replayed recording), and
from its retries: ``retry = "on_reply"`` (a Linux 6.7+ guest, host-operations.md section 5: an
enable that failed with any code is re-issued when a crypto reply empties the queue, one
``retry_poll`` draw, the time to the queue's next reply, after the failed request resumed) or
``retry = "on_idle"`` (a synthetic retry: a BUSY or RESET IN PROGRESS enable re-issued
``retry_poll`` later, before anything else). Rules, in order:

1. a pending ``on_idle`` retry goes first, ``retry_poll`` after the previous request resumed;
2. else the earliest of: the first pending ``on_reply`` retry (due times in order; a tie goes
   to the retry), the next script row, the steady candidate (open loop ``max(arrival,
   resume)``, closed loop ``resume + think``); a script row goes before a steady candidate at
   the same time.

Request ``k`` of a vCPU always uses the keyed draws of index ``k`` (costs, hardware answers),
whichever of these it is.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from typing import Any

from hostsim import arch, steps
from hostsim.decode import Decision
from hostsim.hw_profiles import answers_one
from hostsim.intercept import Intercept
from hostsim.model import Model
from hostsim.request_draws import Block
from hostsim.rules import Kind
from hostsim.scenario_types import PLUG, UNPLUG, HostEventKind

_RETRY_RC = (arch.RC.BUSY, arch.RC.RESET_IN_PROGRESS)
_ANSWERED = (Kind.HOOK_HANDLED, Kind.NO_HOOK_RC01)  # a CC 3 answer with a response code


@dataclass(slots=True)
class VState:
    """Where a vCPU's stream stands."""

    resume: int = 0  # when its last request resumed (or its start)
    arrival: int = 0  # its steady stream's last arrival (open loop)
    k: int = 0  # next request index
    pos: int = 0  # next script row
    retry: tuple[int, int, int, int] | None = None  # registers to re-issue (on_idle)
    #: on_reply retries pending: (due, sequence, registers), in due order
    replies: list[tuple[int, int, tuple[int, int, int, int]]] = field(default_factory=list)


@dataclass(slots=True)
class Req:
    """One request as issued: its times, registers and draws."""

    arrival: int
    issue: int
    gpr0: int
    gpr1: int
    gpr2: int
    psw_mask: int
    blk: Block
    r: int
    c: int
    from_block: bool  # registers are the block's own (not a script, retry or view change)


def start_of(m: Model, v: int) -> int:
    """When vCPU ``v``'s stream starts."""
    w = m.s.guests[int(m.topo.vcpu_group[v])].workload
    return round(w.start_ms * 1_000_000)


def next_request(m: Model, v: int, st: VState) -> Req | None:
    """The next request of vCPU ``v`` (None: it issues nothing more in this run)."""
    blk, r, c = m.locate(v, st.k)
    group = int(m.topo.vcpu_group[v])
    w = m.s.guests[group].workload
    if st.retry is not None:
        assert blk.poll is not None  # drawn for every retrying guest
        issue = st.resume + blk.poll.item(r, c)
        if issue >= m.s.duration_ns:
            return None
        g0, g1, g2, psw = st.retry
        return Req(issue, issue, g0, g1, g2, psw, blk, r, c, False)
    s_issue = s_arr = None
    if m.steady_group[group]:
        gap = blk.gap.item(r, c)
        if w.kind == "poisson":
            s_arr = st.arrival + gap
            s_issue = max(s_arr, st.resume)
        elif w.kind == "bursty":
            s_arr = m.clocks[group].next_arrival(st.arrival, gap, _unit_mean())
            s_issue = max(s_arr, st.resume)
        else:
            s_issue = s_arr = st.resume + gap
    row = m.script_row(v, st.pos)
    r_issue = None if row is None else max(int(row["t"]), st.resume + int(row["think"]))
    if st.replies:
        due = max(st.replies[0][0], st.resume)
        if (r_issue is None or due <= r_issue) and (s_issue is None or due <= s_issue):
            if due >= m.s.duration_ns:
                return None
            g0, g1, g2, psw = st.replies.pop(0)[2]
            return Req(due, due, g0, g1, g2, psw, blk, r, c, False)
    if row is not None:
        assert r_issue is not None
        if s_issue is None or r_issue <= s_issue:
            if r_issue >= m.s.duration_ns:
                return None
            st.pos += 1
            arrival = int(row["t"]) if m.replay else r_issue
            return Req(
                arrival,
                r_issue,
                int(row["gpr0"]),
                int(row["gpr1"]),
                int(row["gpr2"]),
                int(row["psw_mask"]),
                blk,
                r,
                c,
                False,
            )
    if s_issue is None or s_issue >= m.s.duration_ns:
        return None
    assert s_arr is not None  # set with s_issue
    st.arrival = s_arr
    regs = blk.regs
    g0 = regs["gpr0"].item(r, c)
    from_block = True
    guest = int(m.topo.vcpu_guest[v])
    view = m.view_at(guest, s_issue) if guest in m.views else None
    if view is not None and blk.assigned[r, c]:
        # The guest uses the queues it knows of now (hot-plug): pick among them.
        apqns = sorted(view)
        if apqns:
            apqn = apqns[min(int(blk.qu.item(r, c) * len(apqns)), len(apqns) - 1)]
            g0 = (g0 & ~0xFFFF) | apqn
            from_block = False
    return Req(
        s_arr,
        s_issue,
        g0,
        regs["gpr1"].item(r, c),
        regs["gpr2"].item(r, c),
        regs["psw_mask"].item(r, c),
        blk,
        r,
        c,
        from_block,
    )


def _unit_mean() -> float:
    from workloads.steady import BURSTY_UNIT_MEAN_NS

    return BURSTY_UNIT_MEAN_NS


def intercept(
    m: Model,
    v: int,
    req: Req,
    hook: bool,
    mdev_kvm: bool,
    cleared: bool,
    matrix: frozenset[int] | set[int],
) -> Intercept:
    """The decode input of ``req`` with the guest's configuration as it is now."""
    guest = int(m.topo.vcpu_guest[v])
    g = m.s.guests[int(m.topo.guest_group[guest])]
    blk, r, c = req.blk, req.r, req.c
    apqn = req.gpr0 & 0xFFFF
    if req.from_block:
        aq, trc, tirq, pin = blk.aqic[r, c], blk.tapq_rc[r, c], blk.tapq_irq[r, c], blk.pin_ok[r, c]
        hw_aqic = aq.tolist()  # (Python ints and bools: tolist's own)
        hw_tapq = list(zip(trc.tolist(), tirq.tolist(), strict=True))
    else:  # registers not the block's own: the answers of the queue they address
        prof = m.profile_of(apqn)
        if blk.au is None:
            hw_aqic, trcs, irqs, pin = answers_one(prof, None, None, None, None)
        else:
            assert blk.tu is not None and blk.iu is not None and blk.pu is not None  # with au
            hw_aqic, trcs, irqs, pin = answers_one(
                prof,
                blk.au[r, c].tolist(),
                blk.tu[r, c].tolist(),
                blk.iu[r, c].tolist(),
                float(blk.pu[r, c]),
            )
        hw_tapq = list(zip(trcs, irqs, strict=True))
    return Intercept(
        gpr0=req.gpr0,
        gpr1=req.gpr1,
        gpr2=req.gpr2,
        psw_mask=req.psw_mask,
        ap_instructions_available=m.s.host.ap_instructions_available,
        eca_apie=g.eca_apie,
        eca_aiv=g.eca_aiv,
        facility15=g.facility15,
        facility65=g.facility65,
        apxa=g.apxa,
        hook_registered=hook,
        hook_module_alive=True,
        hook_cleared_in_flight=cleared,
        mdev_has_kvm=mdev_kvm,
        queue_assigned=apqn in matrix,
        nib_in_memslot=True,
        pin_ok=bool(pin),
        pv_guest=g.pv,
        nib_shared=True,
        gisc_register_ok=True,
        hw_aqic=hw_aqic,
        hw_tapq=hw_tapq,
    )


def after(m: Model, v: int, st: VState, req: Req, d: Decision, resume: int) -> None:
    """Advance the stream past a finished request (and arm a retry if the guest would)."""
    st.k += 1
    st.resume = resume
    w = m.s.guests[int(m.topo.vcpu_group[v])].workload
    enable = (
        not m.replay and arch.fc(req.gpr0) == arch.FunctionCode.AQIC and bool(arch.ir(req.gpr1))
    )
    regs = (req.gpr0, req.gpr1, req.gpr2, req.psw_mask)
    st.retry = None
    if w.retry == "on_idle":
        if enable and d.kind == Kind.HOOK_HANDLED and d.guest_visible_rc in _RETRY_RC:
            st.retry = regs
    elif w.retry == "on_reply" and enable and d.kind in _ANSWERED and d.guest_visible_rc:
        # interrupts stay off: the queue polls, and the next reply that empties it retries
        assert req.blk.poll is not None  # drawn for every retrying guest
        due = resume + req.blk.poll.item(req.r, req.c)
        bisect.insort(st.replies, (due, req.issue, regs))


class GuestState:
    """A guest's configuration as the host sees it now (changed by host events)."""

    __slots__ = ("blocked", "hook", "matrix", "mdev_kvm", "stopped")

    def __init__(self, mdev: bool, matrix: frozenset[int]) -> None:
        self.hook = mdev  # the hook pointer (rwsem variants; module variants use a schedule)
        self.mdev_kvm = mdev
        self.matrix = set(matrix)
        self.blocked = False  # a program stopped its vCPUs (steps.Block)
        self.stopped = False  # the last block was a start's or reboot's (Block.stopped)

    def hook_at(self, t: int) -> bool:
        """The hook pointer at ``t``, for an engine that asks at ``t``: the state now."""
        return self.hook

    def apply(self, step: Any) -> bool:
        """A program's hook flip, block or unblock (:mod:`hostsim.steps`); True on an unblock
        (the engine then lets the waiting vCPUs go)."""
        if isinstance(step, steps.SetHook):
            self.hook = step.value
            return False
        self.blocked = isinstance(step, steps.Block)
        if self.blocked:
            self.stopped = step.stopped
        return isinstance(step, steps.Unblock)

    def issued_after_block(self, req: Req, t: int) -> None:
        """``req`` issues at ``t`` after waiting for an unblock. After a start or reboot its
        arrival is the unblock too: the guest was not running, so nothing waited before."""
        if t != req.issue and self.stopped:
            req.arrival = max(req.arrival, t)
        req.issue = t


def reconfigure(m: Model, effects: Any, guests: Any) -> None:
    """The configuration changes of a released ``mdevs_lock`` section (both engines)."""
    for e in effects:
        ev = m.s.events[e.event]
        apply_host_effect(m, e.event, ev, guests[ev.guest])


def apply_host_effect(m: Model, i: int, ev: Any, gs: Any) -> None:
    """What host event ``i`` changes, at the release of its mutex section (both engines)."""
    if ev.kind in (HostEventKind.ATTACH, HostEventKind.START):
        gs.mdev_kvm = True
    elif ev.kind == HostEventKind.DETACH:
        gs.mdev_kvm = False
    elif ev.kind in PLUG + UNPLUG:
        changed = m.changes[i]
        if ev.kind in PLUG:
            gs.matrix |= changed
        else:
            gs.matrix -= changed
        if ev.kind == HostEventKind.MDEV_REMOVE:
            gs.mdev_kvm = False
