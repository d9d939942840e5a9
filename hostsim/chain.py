"""The request's stage chain as data: what a PQAP intercept does, as a program of steps.

A request's program is chosen by its decode outcome, its *category* (:func:`category_of`):
KVM's own guards (program check, userspace exit), RC 01 without a hook, a hook that answers
without the mutex, or the mutex path. A program is a tuple of three kinds of step:

- :class:`Span`: a free delay, the sum of one segment's cost terms (:data:`SEGMENTS`; a term
  counts when the decision says so: a flag, a kind, or once per hardware call), ending at a
  named time of the request (``mark``: a record field, or ``t_back``);
- :class:`Wait`: a lock the engine waits for (the ``pqap_hook_rwsem`` read side, the
  ``mdevs_lock`` mutex), granted at the named time.
- :class:`Release`: the lock released when the request gets there (it takes no time: the
  mark before it is the release time, ``t_back`` or ``rel``).

A request takes its locks in the kernel's order (:data:`hostsim.locks.LOCKS`) and releases
them, innermost first (``tests/test_chain.py`` checks every program against the lock table).

Every request starts with :data:`PREFIX` (the SIE exit, KVM's decode); the decision at the
handler picks the rest, :data:`PROGRAMS`. After a wait the decision may change (the hook
unregistered while the request waited for the read side): the engine goes on with the new
category's steps after the same wait; every category that waits shares its steps up to there.

The programs are pure data (no SimPy, no randomness, no clock) and exist once, here. Two
evaluators read them:

- scalar, :func:`walk` and :func:`span_ns`: one request, from one wait to the next;
  :mod:`hostsim.request` uses them, so both engines' one-at-a-time paths do (the engine
  supplies the waits: SimPy events in the reference, heap events in the fast engine);
- vectorised, :func:`walk_batch`: many requests at once with every wait zero (fleet guests:
  their read side has no writer; the mutex's wait is added by the fleet's FIFO arithmetic),
  the offsets of every mark from the issue; :func:`hostsim.plan.make_plan` uses it.

The property test in ``tests/test_chain.py`` keeps the two equal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from hostsim.costs import PER_CALL_COSTS
from hostsim.records import Path
from hostsim.rules import Kind, rule_code

CAT_EARLY, CAT_NOHOOK, CAT_HOOK_NOMUTEX, CAT_MUTEX = range(4)


@dataclass(frozen=True, slots=True)
class Term:
    """One cost of a segment: always, or only when the decision's ``flag`` is true, or its
    ``kind`` is this one, or once per call (``count``: the decision's number of calls; call
    slot ``j`` draws the ``j``-th value of a per-call cost)."""

    cost: str
    flag: str | None = None
    kind: Kind | None = None
    count: str | None = None


@dataclass(frozen=True, slots=True)
class Span:
    """A free delay: segment ``seg``'s cost; the request reaches ``mark`` at its end."""

    seg: str
    mark: str | None = None


@dataclass(frozen=True, slots=True)
class Wait:
    """Wait for ``lock`` (``mode`` ``"read"``: the rwsem's read side); granted at ``mark``."""

    lock: str
    mode: str
    mark: str


@dataclass(frozen=True, slots=True)
class Release:
    """Release ``lock`` at the time the request has reached (no time of its own)."""

    lock: str


Step = Span | Wait | Release

#: The segments of the chain: their cost terms, in the order the kernel runs them.
SEGMENTS: dict[str, tuple[Term, ...]] = {
    "exit": (Term("sie_exit"),),
    "decode": (Term("kvm_decode"),),
    "read": (Term("rwsem_read"),),
    "hook": (Term("hook_entry"),),
    # after the handler, for a request that skips the mutex: its exit to userspace or the
    # program interruption it injects
    "after": (
        Term("userspace_exit", kind=Kind.USERSPACE_EXIT),
        Term("pgm_inject", kind=Kind.PROGRAM_INTERRUPT),
    ),
    # the mutex hold: every step the hook takes under the mutex
    "hold": (
        Term("mutex_acquire"),
        Term("lookup"),
        Term("pin", flag="pin"),
        Term("gisc_register", flag="gisc"),
        Term("host_aqic", count="hw_aqic_calls"),
        Term("host_tapq", count="hw_tapq_calls"),
        Term("msleep20", count="sleeps"),
    ),
    "entry": (Term("sie_entry"),),
}

READ = Wait("pqap_hook_rwsem", "read", "t_rw")
MUTEX = Wait("mdevs_lock", "write", "grant")
#: Every request's first steps, before the decision at the handler.
PREFIX: tuple[Step, ...] = (Span("exit", "t_exit"), Span("decode", "t_decode"))
UNREAD, UNLOCK = Release("pqap_hook_rwsem"), Release("mdevs_lock")
#: The steps after the handler's decision, by category (the hook takes ``mdevs_lock`` inside
#: the read side of ``pqap_hook_rwsem`` and drops it first: handle_pqap, vfio_ap_ops.c).
PROGRAMS: dict[int, tuple[Step, ...]] = {
    CAT_EARLY: (Span("after"), Span("entry", "resume")),
    CAT_NOHOOK: (READ, Span("read", "t_back"), UNREAD, Span("entry", "resume")),
    CAT_HOOK_NOMUTEX: (
        READ,
        Span("read"),
        Span("hook", "t_back"),
        UNREAD,
        Span("after"),
        Span("entry", "resume"),
    ),
    CAT_MUTEX: (
        READ,
        Span("read"),
        Span("hook", "t_mreq"),
        MUTEX,
        Span("hold", "rel"),
        UNLOCK,
        UNREAD,
        Span("entry", "resume"),
    ),
}


def category_of(d: Any) -> int:
    """The program a decision takes (:data:`PROGRAMS`)."""
    if d.mutex:
        return CAT_MUTEX
    if d.hook_called:
        return CAT_HOOK_NOMUTEX
    return CAT_NOHOOK if d.kind == Kind.NO_HOOK_RC01 else CAT_EARLY


def categories(d: Any) -> np.ndarray:
    """:func:`category_of` over a batch decision (int8)."""
    cat = np.full(len(d.kind), CAT_EARLY, np.int8)
    cat[d.kind == Kind.NO_HOOK_RC01] = CAT_NOHOOK
    cat[d.hook_called & ~d.mutex] = CAT_HOOK_NOMUTEX
    cat[d.mutex] = CAT_MUTEX
    return cat


def _plain(t: Term) -> bool:
    return t.flag is None and t.kind is None and t.count is None


#: Each segment split once into its unconditional costs and its conditional terms (the scalar
#: walk runs once per request and stage: no per-term checks for the common case).
_SPLIT: dict[str, tuple[tuple[str, ...], tuple[Term, ...]]] = {
    seg: (tuple(t.cost for t in terms if _plain(t)), tuple(t for t in terms if not _plain(t)))
    for seg, terms in SEGMENTS.items()
}


def span_ns(seg: str, d: Any, costs: Any, r: int, c: int) -> int:
    """Segment ``seg``'s duration for the decision ``d`` of request ``(r, c)`` of a block's
    ``costs`` (:class:`hostsim.request_draws.Costs`)."""
    plain, cond = _SPLIT[seg]
    total = 0
    for name in plain:
        total += costs[name].item(r, c)
    for t in cond:
        if t.count is not None:
            for j in range(getattr(d, t.count)):
                total += costs.slot(t.cost, j).item(r, c)
        elif (t.flag is None or getattr(d, t.flag)) and (t.kind is None or d.kind == t.kind):
            total += costs[t.cost].item(r, c)
    return total


def walk(
    steps: tuple[Step, ...], start: int, t: int, d: Any, costs: Any, r: int, c: int, f: Any
) -> tuple[int, Wait | None]:
    """Run ``steps`` from index ``start`` at time ``t``, setting each mark on ``f`` as it is
    reached, up to the next wait or the end: (the time then, that wait or None)."""
    for i in range(start, len(steps)):
        step = steps[i]
        if isinstance(step, Span):
            t += span_ns(step.seg, d, costs, r, c)
            if step.mark is not None:
                setattr(f, step.mark, t)
        elif isinstance(step, Wait):
            return t, step
        # (a Release: the engine releases when the request gets here)
    return t, None


def _after(wait: Wait) -> int:
    """The index of the step after ``wait``: the same in every program that waits there."""
    at = {p.index(wait) + 1 for p in PROGRAMS.values() if wait in p}
    if len(at) != 1:
        raise AssertionError(f"the programs that wait for {wait.lock} differ before it: {at}")
    return at.pop()


#: Where a request's walk goes on after each wait, whatever its category is then.
AFTER: dict[Wait, int] = {READ: _after(READ), MUTEX: _after(MUTEX)}


def _add(
    out: np.ndarray, dists: Any, costs: Any, name: str, sel: np.ndarray, j: int | None = None
) -> None:
    """out[sel] += cost ``name`` (call slot ``j``) of the rows ``sel``, drawn for them alone."""
    dist = dists[name]
    n = len(out)
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


def span_batch(
    seg: str, d: Any, costs: Any, dists: Any, rows: np.ndarray | None, n: int
) -> np.ndarray:
    """Segment ``seg``'s duration over a batch decision ``d`` of ``n`` rows, its conditional
    terms only on ``rows`` (None: every row); ``costs``: the batch's
    :class:`hostsim.request_draws.Costs` (1-D keys), ``dists``: the scenario's costs."""
    plain, cond = _SPLIT[seg]
    out = np.zeros(n, np.int64)
    for name in plain:
        if rows is None:
            out += np.broadcast_to(costs[name], (n,))
        else:
            _add(out, dists, costs, name, rows)
    for t in cond:
        if t.count is not None:
            calls = getattr(d, t.count)
            for j in range(min(PER_CALL_COSTS[t.cost], int(calls.max()) if n else 0)):
                _add(
                    out, dists, costs, t.cost, calls > j if rows is None else rows & (calls > j), j
                )
            continue
        sel = np.ones(n, bool) if rows is None else rows
        if t.flag is not None:
            sel = sel & getattr(d, t.flag)
        if t.kind is not None:
            sel = sel & (d.kind == t.kind)
        _add(out, dists, costs, t.cost, sel)
    return out


def _segments_of(steps: tuple[Step, ...]) -> set[str]:
    return {s.seg for s in steps if isinstance(s, Span)}


#: The segments every request runs, and those each category's program adds.
_PREFIX_SEGS = _segments_of(PREFIX)
_SEGS_OF = {c: _segments_of(p) for c, p in PROGRAMS.items()}


def walk_batch(d: Any, cat: np.ndarray, costs: Any, dists: Any) -> dict[str, np.ndarray]:
    """Every mark's offset from the issue over a batch (categories ``cat``), each wait zero;
    a mark a row's program does not reach is 0 there. Each segment is evaluated once, on the
    rows whose program runs it."""
    n = len(cat)
    counts = np.bincount(cat, minlength=len(PROGRAMS)) if n else np.zeros(len(PROGRAMS), int)
    present = [c for c in PROGRAMS if counts[c]]
    segs: dict[str, np.ndarray] = {}
    for seg in SEGMENTS:
        using = [c for c in present if seg in _SEGS_OF[c]]
        rows = None  # every row runs it
        if seg not in _PREFIX_SEGS:
            if not using:
                continue
            if sum(int(counts[c]) for c in using) < n:
                lut = np.zeros(len(PROGRAMS), bool)
                lut[using] = True
                rows = lut.take(cat)
        segs[seg] = span_batch(seg, d, costs, dists, rows, n)
    marks: dict[str, np.ndarray] = {}
    t = np.zeros(n, np.int64)
    for step in PREFIX:
        if isinstance(step, Span):
            t = t + segs[step.seg]
            if step.mark is not None:
                marks[step.mark] = t
    base = t
    for c in present:
        sel = None if counts[c] == n else cat == c
        t = base
        for step in PROGRAMS[c]:
            if isinstance(step, Release):
                continue
            if isinstance(step, Span):
                t = t + segs[step.seg]
            if step.mark is None:
                continue
            if sel is None:
                marks[step.mark] = t
            else:
                out = marks.setdefault(step.mark, np.zeros(n, np.int64))
                out[sel] = t[sel]
    return marks


def path_of(d: Any) -> Path:
    """The latency path a decision takes (a record field)."""
    if d.kind == Kind.USERSPACE_EXIT:
        return Path.USERSPACE_EXIT
    if d.kind == Kind.PROGRAM_INTERRUPT:
        return Path.PROGRAM_CHECK
    if d.kind == Kind.NO_HOOK_RC01:
        return Path.NO_HOOK_RC01
    if d.rule == "disable.done":
        return Path.HOOK_DISABLE
    if d.hw_aqic_calls:
        return Path.HOOK_ENABLE
    return Path.HOOK_SOFTWARE


def paths(d: Any) -> np.ndarray:
    """:func:`path_of` over a batch decision (uint8)."""
    kind = d.kind
    path = np.full(len(kind), Path.HOOK_SOFTWARE, np.uint8)
    path[kind == Kind.USERSPACE_EXIT] = Path.USERSPACE_EXIT
    path[kind == Kind.PROGRAM_INTERRUPT] = Path.PROGRAM_CHECK
    path[kind == Kind.NO_HOOK_RC01] = Path.NO_HOOK_RC01
    served = kind == Kind.HOOK_HANDLED
    path[served & (d.hw_aqic_calls > 0)] = Path.HOOK_ENABLE
    path[served & (d.rule == rule_code("disable.done"))] = Path.HOOK_DISABLE
    return path
