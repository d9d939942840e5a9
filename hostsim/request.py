"""One request's stage chain, one step at a time: what both engines' one-at-a-time paths follow.

The chain itself is data, :mod:`hostsim.chain` (a program of spans and waits per decision);
each function here walks it from one wait to the next, with the decision as the guest's state
makes it at that point:

1. :func:`start`: the SIE exit and KVM's decode times (:data:`~hostsim.chain.PREFIX`);
2. :func:`decode_at_handler`: the decode when the handler runs, which picks the program; KVM's
   own guards (program check, userspace exit) finish here, without a lock;
3. :func:`after_read`: past the guest's ``pqap_hook_rwsem`` read side (granted at ``t_rw``),
   decided again with the hook's registration then: RC 01 without a hook, a hook that answers
   without the mutex, or a mutex request at ``t_mreq``;
4. :func:`at_grant`: the decode under the mutex, with the configuration as it is at the grant;
   the hold, the release and the resume.

A decode is repeated only when its input changed since the last one (it is a pure function of
the intercept and the variant). :func:`steps` runs 2-4 in order, one step at a time, as a
generator that both engines run: the engines supply the waits (SimPy events in the reference,
heap events in the fast engine) and the releases, nothing else. The fleet evaluates the same
programs over arrays (:func:`hostsim.chain.walk_batch`, from :func:`hostsim.plan.make_plan`).
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

from hostsim import arch
from hostsim.chain import (
    AFTER,
    CAT_EARLY,
    CAT_MUTEX,
    MUTEX,
    PREFIX,
    PROGRAMS,
    READ,
    UNLOCK,
    UNREAD,
    Release,
    Wait,
    category_of,
    path_of,
    walk,
)
from hostsim.decode import Decision, decode_one
from hostsim.intercept import Intercept
from hostsim.model import Model
from hostsim.queues import QueueState
from hostsim.sink import record_tuple
from hostsim.streams import Req, intercept
from hostsim.variants import Variant


@dataclass(slots=True)
class InFlight:
    """A request between its issue and its resume, with every stage time it has reached."""

    req: Req
    t_exit: int = -1
    t_decode: int = -1
    x: Intercept | None = None
    d: Decision | None = None
    t_rw: int = -1  # the rwsem read side granted
    t_back: int = -1  # the read side released (a request that takes no mutex)
    t_mreq: int = -1
    grant: int = -1
    rel: int = -1
    resume: int = -1
    #: the scalar decode (``decode_one``, or the fast engine's memo of it)
    dec: Callable[[Intercept, Variant], Decision] = decode_one


def start(req: Req, dec: Callable[[Intercept, Variant], Decision] = decode_one) -> InFlight:
    """The request's SIE exit and decode times (:data:`hostsim.chain.PREFIX`); ``dec``: how
    its decodes are made (:class:`hostsim.decode_memo.DecodeMemo` in the fast engine)."""
    f = InFlight(req, dec=dec)
    walk(PREFIX, 0, req.issue, None, req.blk.costs, req.r, req.c, f)
    return f


def decode_at_handler(m: Model, v: int, f: InFlight, hook: bool, gs: Any) -> bool:
    """Decode at the handler with the guest's state now; True if the request's program goes
    on to the rwsem read side (the hook path, or RC 01), else it is finished (``f.resume``)."""
    req = f.req
    f.x = x = intercept(m, v, req, hook, gs.mdev_kvm, False, gs.matrix)
    f.d = d = f.dec(x, m.variant)
    program = PROGRAMS[category_of(d)]
    return walk(program, 0, f.t_decode, d, req.blk.costs, req.r, req.c, f)[1] is not None


def after_read(m: Model, f: InFlight, t_rw: int, hook: bool) -> bool:
    """Past the read side (granted at ``t_rw``; -1 without an rwsem), with the decision as the
    hook's registration is now: True if the request now asks for the mutex at ``f.t_mreq``,
    else it releases the read side at ``f.t_back`` and is finished (``f.resume``)."""
    req, x = f.req, f.x
    assert x is not None and f.d is not None
    if m.rwsem and x.hook_registered != hook:
        x.hook_registered = hook
        f.d = f.dec(x, m.variant)
    f.t_rw = t_rw
    cat = category_of(f.d)
    assert cat != CAT_EARLY, "a decision past KVM's guards stays past them"
    program = PROGRAMS[cat]
    t = t_rw if m.rwsem else f.t_decode
    return walk(program, AFTER[READ], t, f.d, req.blk.costs, req.r, req.c, f)[1] is not None


def at_grant(
    m: Model,
    f: InFlight,
    grant: int,
    mdev_kvm: bool,
    cleared: bool,
    matrix: Any,
    queues: QueueState | None = None,
    guest: int = -1,
) -> int:
    """The mutex granted at ``grant`` with the configuration then (the mdev's KVM pointer, the
    hook cleared in flight, the matrix): the release time (``f.rel``; ``f.resume`` too).

    With ``queues`` (a guest whose queues host operations touch, :attr:`Model.stateful`), the
    hook's hardware answers come from the queue's state and update it
    (:func:`hostsim.queues.hook_answers`). The request holds the mutex, so its program goes on
    from the grant whatever the decision now is."""
    req, x = f.req, f.x
    assert x is not None and f.d is not None
    now = (mdev_kvm, cleared, (x.gpr0 & 0xFFFF) in matrix)
    if now != (x.mdev_has_kvm, x.hook_cleared_in_flight, x.queue_assigned):
        x.mdev_has_kvm, x.hook_cleared_in_flight, x.queue_assigned = now
        f.d = f.dec(x, m.variant)
    if queues is not None and f.d.hw_aqic_calls:
        f.d = hook_answers(m, f, grant, queues, guest)
    f.grant = grant
    walk(PROGRAMS[CAT_MUTEX], AFTER[MUTEX], grant, f.d, req.blk.costs, req.r, req.c, f)
    return f.rel


#: What a request's program asks of the engine next: ``(step, t)``. ``step`` is a wait
#: (:data:`~hostsim.chain.READ`, :data:`~hostsim.chain.MUTEX`: the engine sends back the grant
#: time), a release (:data:`~hostsim.chain.UNLOCK`, :data:`~hostsim.chain.UNREAD`), or None: a
#: free delay that ends at ``t``.
Ask = tuple[Wait | Release | None, int]


def steps(
    m: Model,
    v: int,
    f: InFlight,
    gs: Any,
    hook_at: Callable[[int], bool],
    queues: QueueState | None = None,
    guest: int = -1,
) -> Generator[Ask, int | None, None]:
    """Request ``f`` of vCPU ``v`` from its decode at the handler (``f.t_decode``) to its last
    release, one step at a time: the one request interpreter both engines run. The engine
    supplies the waits (a SimPy event in the reference; a heap event, or a grant at once where
    nothing can wait, in the fast engine) and the releases; the request's resume is
    ``f.resume`` when the generator ends.

    ``gs``: the guest's state as the engine sees it when the generator is resumed (its hook,
    its mdev's KVM pointer, its matrix); ``hook_at(t)``: the hook pointer at ``t`` (the
    engine's schedule of module-reference flips, or the state now)."""
    if not decode_at_handler(m, v, f, hook_at(f.t_decode), gs):
        return  # KVM's own guards: no lock
    t_rw: int | None = -1
    if m.rwsem:
        t_rw = yield READ, f.t_decode
    assert t_rw is not None
    if after_read(m, f, t_rw, gs.hook):
        yield None, f.t_mreq
        grant = yield MUTEX, f.t_mreq
        assert grant is not None
        cleared = not m.rwsem and not hook_at(grant)
        at_grant(m, f, grant, gs.mdev_kvm, cleared, gs.matrix, queues, guest)
        yield None, f.rel
        yield UNLOCK, f.rel
        back = f.rel
    else:
        yield None, f.t_back
        back = f.t_back
    if m.rwsem:
        yield UNREAD, back


def record(f: InFlight, v: int, guest: int, k: int) -> tuple[Any, ...]:
    """The request's record (:data:`hostsim.records.RECORD_DTYPE` field order)."""
    assert f.d is not None and f.x is not None
    req = f.req
    return record_tuple(
        v,
        guest,
        k,
        req.arrival,
        req.issue,
        f.t_exit,
        f.t_decode,
        f.t_rw,
        f.t_mreq,
        f.grant,
        f.rel,
        f.resume,
        f.x,
        f.d,
        path_of(f.d),
    )


def hook_answers(m: Model, f: InFlight, grant: int, queues: QueueState, guest: int) -> Decision:
    """The hook's host AQIC and TAPQ answers from the queue's state, and the state after them.

    The enable's one AQIC (after the lookup, the pin and the GISC registration) answers 02
    during a reset, 07 with interrupts already on, else 00 and turns them on with the NIB and
    ISC; the disable's AQIC(IR=0) answers 02 while a reset is in progress at each retry (one
    ``msleep20`` apart), then 00, and the TAPQs after it show the I bit off. A fault of the
    scenario's hardware profile (an answer other than NORMAL in the request's own draws)
    overrides the state's answer."""
    req, x = f.req, f.x
    assert x is not None
    cost, r, c = req.blk.costs, req.r, req.c
    apqn = x.gpr0 & 0xFFFF
    shift = arch.STATUS_RC_SHIFT
    t = grant + cost["mutex_acquire"].item(r, c) + cost["lookup"].item(r, c)
    n = arch.DISABLE_MAX_AQIC + 1  # (an enable's later calls: its disable loop)
    faults = [arch.status_rc(a) for a in x.hw_aqic[:n]]  # the profile's answers
    faults += faults[-1:] * (n - len(faults))  # (the last one repeats)
    enable = bool(arch.ir(x.gpr1))
    if enable:
        t += cost["pin"].item(r, c) + cost["gisc_register"].item(r, c)
    peek = queues.call(guest, apqn, "peek", t, 0, 0, 0)
    until = peek.reset_until
    times = [t]  # the time of each call, as far as it is needed

    def at(j: int) -> int:  # the time of call j: one host AQIC and one msleep20 per call
        while len(times) <= j:
            i = len(times) - 1
            times.append(
                times[i]
                + cost.slot("host_aqic", i).item(r, c)
                + cost.slot("msleep20", i).item(r, c)
            )
        return times[j]

    # A fault stands; else NORMAL (0), but for a reset in progress at the call, and for the
    # enable's own AQIC, which sees the queue's interrupt state too.
    if t >= until:  # no reset in progress at the first call: none later
        answers = [rc << shift for rc in faults]
    else:
        answers = [
            (fault or (arch.RC.RESET_IN_PROGRESS if at(j) < until else arch.RC.NORMAL)) << shift
            for j, fault in enumerate(faults)
        ]
    if enable:
        first = faults[0] or (
            arch.RC.RESET_IN_PROGRESS
            if peek.reset_pending
            else arch.RC.OTHERWISE_CHANGED
            if peek.irq
            else arch.RC.NORMAL
        )
        answers[0] = int(first) << shift
    x.hw_aqic = answers  # (the TAPQs keep the profile's answers: the I bit may linger)
    d = f.dec(x, m.variant)
    last = min(d.hw_aqic_calls, len(answers)) - 1
    final = arch.status_rc(answers[last])
    if enable and last == 0 and final == arch.RC.NORMAL:
        queues.call(guest, apqn, "aqic_enable", t, 0, x.gpr2, arch.isc(x.gpr1))
    elif (not enable or last > 0) and final in (0, arch.RC.OTHERWISE_CHANGED):
        queues.call(guest, apqn, "aqic_disable", at(last), 0, 0, 0)
    return d
