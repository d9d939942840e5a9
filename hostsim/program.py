"""The step interpreter both engines share: a program's steps checked, its locks tracked.

An engine asks a :class:`Runner` for the program's next *action* (:meth:`Runner.next`) and does
only what needs its own clock and locks:

* :class:`Wait` ``(ns)``: let time pass;
* :class:`Take` / :class:`Drop`: wait for, or release, an outer lock instance (a host mutex, or
  an rwsem's write side);
* :class:`Section` ``(inst)``: wait for the ``mdevs_lock`` instance; when it is granted,
  :meth:`Runner.section` runs every step up to its release (delays, sleeps, hardware calls
  against the queue state, blocks and unblocks at their times, deferred configuration changes)
  and returns the hold. ``mdevs_lock``
  is the innermost lock, so nothing inside a section waits: the hold is known at the grant.
* :class:`Effect`: apply a :class:`~hostsim.steps.SetHook`, :class:`~hostsim.steps.Block` or
  :class:`~hostsim.steps.Unblock` now (the runner logs each block interval).
* :class:`Idle`: a SimPy process (:mod:`hostsim.sim_process`) has done all it posted; the
  engine continues the runner when the process posts again (its channel's ``wake``).

The runner checks every step (types, ranges, lock order, a hardware call only under the lock
that serves its queue) and logs every lock section as a row of :data:`LOCK_DTYPE`, so the
engines cannot differ in what a program means.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hostsim.locks import EXCLUSIVE, INNERMOST, MODES, RWSEM, WRITE, LockTable
from hostsim.queues import OPS, QueueState
from hostsim.sim_process import ENDED
from hostsim.steps import (
    Acquire,
    Block,
    Delay,
    HwCall,
    ProcessError,
    Reconfigure,
    Release,
    SetHook,
    Sleep,
    Unblock,
)

LOCK_DTYPE = np.dtype(
    [
        ("owner", np.int32),  # host event index, or len(events) + user process index
        ("section", np.int32),  # the owner's lock section number, from 0, in acquire order
        ("lock", np.int32),  # lock instance (RunResult.lock_labels)
        ("mode", np.uint8),  # 0 mutex, 2 rwsem write
        ("t_req", np.int64),
        ("t_grant", np.int64),
        ("t_rel", np.int64),
    ]
)


@dataclass(frozen=True)
class Wait:
    ns: int


@dataclass(frozen=True)
class Take:
    inst: int
    mode: int
    guest: int


@dataclass(frozen=True)
class Drop:
    inst: int
    mode: int
    guest: int


@dataclass(frozen=True)
class Section:
    inst: int


@dataclass(frozen=True)
class Effect:
    step: SetHook | Block | Unblock


@dataclass(frozen=True)
class Idle:
    """A SimPy process's program has done every step it posted: wait for its next post."""


#: what :meth:`Runner._step` returns when a SimPy process has posted nothing more
_IDLE = Idle()


@dataclass
class SectionResult:
    """A section under ``mdevs_lock``: its hold and the configuration changes it makes."""

    hold: int
    effects: list[Reconfigure] = field(default_factory=list)  # at the release
    timed: list[tuple[int, Block | Unblock]] = field(default_factory=list)  # at their time


def _ns(step: Delay | Sleep | HwCall, who: str) -> int:
    ns = step.ns
    if not isinstance(ns, int | np.integer) or ns < 0:
        raise ProcessError(f"{who}: {type(step).__name__}(ns={ns!r}): expected an integer >= 0")
    return int(ns)


class Runner:
    """One program being run (see module docstring)."""

    def __init__(
        self,
        ident: int,
        steps: Iterable[Any],
        who: str,
        table: LockTable,
        queues: QueueState,
        rows: list[tuple[int, ...]],
        internal: bool = False,
        blocks: frozenset[int] | None = None,
        blocked: list[tuple[int, ...]] | None = None,
        channel: Any = None,
    ) -> None:
        self.ident, self.who, self.table, self.queues = ident, who, table, queues
        #: a SimPy process's posted steps (:class:`hostsim.sim_process.Channel`), or None
        self.channel = channel
        #: the time of the last lock granted to it: its requests then are late (ties.py)
        self.late_at = -1
        self.gen = iter(steps)
        self.send = getattr(self.gen, "send", None)
        self.reply: Any = None
        self.internal = internal
        #: the guests whose vCPUs this program may block (None: any, the host's own programs)
        self.blocks = blocks
        #: (owner, guest, t_block, t_unblock, stopped) of each block that ended
        self.blocked = blocked if blocked is not None else []
        self.blocking: dict[int, tuple[int, bool]] = {}  # guest -> (when blocked, stopped)
        self.n_guests = len(table.mutex_of_guest)
        self.held: list[int] = []
        self.open: dict[int, list[int]] = {}  # inst -> [section, mode, t_req, t_grant]
        self.seq = 0
        self.rows = rows
        self.done = False
        #: user processes stop at their first step at or after this time (the run's end)
        self.stop_at: int | None = None

    # --- steps --------------------------------------------------------------------------------
    def _step(self, within: bool = False) -> Any:
        if self.channel is not None:
            step = self.channel.take(within)
            return _IDLE if step is None else None if step is ENDED else step
        reply, self.reply = self.reply, None
        try:
            return (
                self.send(reply) if self.send is not None and reply is not None else next(self.gen)
            )
        except StopIteration:
            return None

    def _guest(self, g: Any, step: Any) -> int:
        if not isinstance(g, int | np.integer) or not 0 <= g < self.n_guests:
            raise ProcessError(
                f"{self.who}: {step!r}: expected a guest index 0..{self.n_guests - 1}"
            )
        return int(g)

    def phase(self, t: int) -> int:
        """The phase of a lock request made at ``t`` (:func:`hostsim.ties.lock_key`): 1 if a
        lock was granted to this program at ``t``, else 0."""
        return int(t == self.late_at)

    def next(self, t: int) -> Wait | Take | Drop | Section | Effect | Idle | None:
        """The next action, at time ``t``; None when the program is done (or stopped)."""
        if self.stop_at is not None and t >= self.stop_at:
            return None
        step = self._step()
        if step is _IDLE:
            return _IDLE
        if step is None:
            if self.held:
                raise ProcessError(f"{self.who}: ended holding {self._labels(self.held)}")
            if self.blocking:
                raise ProcessError(f"{self.who}: ended with guest {min(self.blocking)} blocked")
            self.done = True
            return None
        if isinstance(step, Delay | Sleep):
            return Wait(_ns(step, self.who))
        if isinstance(step, Acquire):
            return self._acquire(step, t)
        if isinstance(step, Release):
            return self._release(step, t)
        if isinstance(step, SetHook) and self.internal:
            g = self._guest(step.guest, step)
            if self.table.instance("pqap_hook_rwsem", g) not in self.held:
                raise ProcessError(f"{self.who}: {step!r} without the rwsem's write side")
            return Effect(step)
        if isinstance(step, Block | Unblock):
            return self._block(step, t)
        if isinstance(step, Release | HwCall | Reconfigure):
            raise ProcessError(f"{self.who}: {step!r} outside a {INNERMOST} section")
        raise ProcessError(
            f"{self.who}: {step!r} is not a step (Delay, Sleep, Acquire, Release, HwCall,"
            " Block, Unblock)"
        )

    def _block(self, step: Block | Unblock, t: int) -> Effect:
        g = self._guest(step.guest, step)
        if self.blocks is not None and g not in self.blocks:
            raise ProcessError(
                f"{self.who}: {step!r}: declare the guests a process may block with"
                " hostsim.process.blocking(guests, process)"
            )
        if isinstance(step, Block):
            if g in self.blocking:
                raise ProcessError(f"{self.who}: {step!r}: guest {g} is already blocked by it")
            self.blocking[g] = (t, step.stopped)
        else:
            if g not in self.blocking:
                raise ProcessError(f"{self.who}: {step!r} without a Block of guest {g}")
            t0, stopped = self.blocking.pop(g)
            self.blocked.append((self.ident, g, t0, t, stopped))
        return Effect(step)

    def _labels(self, insts: list[int]) -> str:
        return ", ".join(self.table.labels[i] for i in insts)

    def _acquire(self, step: Acquire, t: int) -> Take | Section:
        g = self._guest(step.guest, step)
        inst = self.table.instance(step.lock, g)
        spec = self.table.specs[step.lock]
        mode = MODES.get(step.mode)
        want = WRITE if spec.kind == RWSEM else EXCLUSIVE
        if mode != want:
            raise ProcessError(
                f"{self.who}: {step!r}: {step.lock} is taken with mode "
                f"{'w' if want == WRITE else 'x'}"
            )
        if spec.kind == RWSEM and not self.internal:
            raise ProcessError(f"{self.who}: {step!r}: the rwsem is the host operations' own")
        self.table.check_order(self.held, inst, self.who)
        self.held.append(inst)
        self.open[inst] = [self.seq, mode, t, -1]
        self.seq += 1
        if step.lock == INNERMOST:
            return Section(inst)
        return Take(inst, mode, g)

    def _release(self, step: Release, t: int) -> Drop:
        if not self.held:
            raise ProcessError(f"{self.who}: Release without Acquire")
        inst = self.held[-1] if step.lock is None else self.table.instance(step.lock, step.guest)
        if inst not in self.held:
            raise ProcessError(f"{self.who}: {step!r}: {self.table.labels[inst]} is not held")
        self.held.remove(inst)
        seq, mode, t_req, t_grant = self.open.pop(inst)
        self.rows.append((self.ident, seq, inst, mode, t_req, t_grant, t))
        return Drop(inst, mode, self.table.index[inst])

    def granted(self, inst: int, t: int) -> None:
        """The engine granted ``inst`` at ``t``."""
        self.open[inst][3] = t
        self.late_at = t

    # --- a section under mdevs_lock -----------------------------------------------------------
    def section(self, inst: int, t0: int) -> SectionResult:
        """Every step of the section granted at ``t0`` up to its release: hold and effects."""
        self.open[inst][3] = t0
        res = SectionResult(0)
        while True:
            step = self._step(within=True)
            if step is _IDLE:
                raise ProcessError(
                    f"{self.who}: a section under {self.table.labels[inst]} is posted whole,"
                    f" Acquire to Release, in one host.run(...): nothing waits under it"
                )
            if step is None:
                raise ProcessError(
                    f"{self.who}: ended holding {self.table.labels[inst]} (no Release)"
                )
            if isinstance(step, Delay | Sleep):
                res.hold += _ns(step, self.who)
            elif isinstance(step, HwCall):
                self.reply = self._hw(step, inst, t0 + res.hold)
                if self.channel is not None:
                    self.channel.answer(self.reply)
                res.hold += _ns(step, self.who)
            elif isinstance(step, Release):
                if step.lock not in (None, INNERMOST) or (
                    step.lock is not None and self.table.instance(INNERMOST, step.guest) != inst
                ):
                    raise ProcessError(
                        f"{self.who}: {step!r} inside a {INNERMOST} section: release it first"
                    )
                self.held.remove(inst)
                seq, mode, t_req, _ = self.open.pop(inst)
                self.rows.append((self.ident, seq, inst, mode, t_req, t0, t0 + res.hold))
                return res
            elif isinstance(step, Reconfigure) and self.internal:
                res.effects.append(step)
            elif isinstance(step, Block | Unblock):  # an APCB update stops the vCPUs meanwhile
                t = t0 + res.hold
                self._block(step, t)  # its Effect's step is ``step``
                res.timed.append((t, step))
            elif isinstance(step, Acquire):
                g = self._guest(step.guest, step)
                self.table.check_order(self.held, self.table.instance(step.lock, g), self.who)
                raise ProcessError(f"{self.who}: {step!r} inside a {INNERMOST} section")
            else:
                raise ProcessError(
                    f"{self.who}: {step!r} while holding {self.table.labels[inst]}:"
                    " only Delay, Sleep, HwCall, Block and Unblock are allowed"
                )

    def _hw(self, step: HwCall, inst: int, t: int) -> Any:
        g = self._guest(step.guest, step)
        if step.op not in OPS:
            raise ProcessError(f"{self.who}: {step!r}: expected op one of {', '.join(OPS)}")
        if not isinstance(step.apqn, int | np.integer) or not 0 <= step.apqn <= 0xFFFF:
            raise ProcessError(f"{self.who}: {step!r}: expected an APQN 0..0xffff")
        if self.table.instance(INNERMOST, g) != inst:
            raise ProcessError(
                f"{self.who}: {step!r} under {self.table.labels[inst]}: queues of guest {g} are"
                f" served by {self.table.labels[self.table.instance(INNERMOST, g)]}"
            )
        ns = _ns(step, self.who)
        lasts = ns if step.reset_ns is None else step.reset_ns
        if not isinstance(lasts, int | np.integer) or lasts < 0:
            raise ProcessError(f"{self.who}: {step!r}: expected reset_ns an integer >= 0")
        return self.queues.call(g, int(step.apqn), step.op, t, int(lasts), step.nib, step.isc)
