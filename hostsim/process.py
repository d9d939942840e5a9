"""User host processes: a program of steps that both engines run against the host's locks.

A *host process* is what a user adds to a run beside the workload: a host monitoring agent that
reads vfio_ap's sysfs attributes under ``mdevs_lock`` every 100 ms, a management daemon that
polls the matrix, a what-if holder of the lock. It is written as a Python generator that yields
*steps*, which are pure data (no SimPy, no randomness, no clock):

* :class:`Delay` ``(ns)``: a free delay;
* :class:`Acquire` ``(guest)``: take the vfio_ap mutex that serves ``guest`` (with the global
  lock model, the one host-global mutex);
* :class:`Release`: release it.

While it holds the mutex a process may only yield delays: the hold is then known when the lock
is granted, which is what lets the fast engine time it without SimPy. The reference engine runs
each process as a SimPy process (timeouts and its FIFO lock); the fast engine runs the same steps
on its event heap; both follow the tie rule with the process as a host-side requester, ranked
after the scenario's host events (identifier ``len(events) + index``), so both give the same
records. A process stops at its first step at or after the end of the run.

Each lock section becomes a row of :data:`PROCESS_DTYPE` in ``RunResult.processes``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Delay:
    """A free delay of ``ns`` nanoseconds (an integer, at least 0)."""

    ns: int


@dataclass(frozen=True)
class Acquire:
    """Take the vfio_ap mutex that serves guest ``guest`` (a global guest index)."""

    guest: int = 0


@dataclass(frozen=True)
class Release:
    """Release the mutex taken by the last :class:`Acquire`."""


Step = Delay | Acquire | Release
#: A host process: called once per run, returns the steps it takes.
HostProcess = Callable[[], Iterable[Step]]

PROCESS_DTYPE = np.dtype(
    [
        ("process", np.int32),  # index in the run's list of processes
        ("section", np.int32),  # the process's lock section number, from 0
        ("mutex", np.int32),  # which mutex (0 with the global lock model)
        ("t_mutex_req", np.int64),
        ("t_mutex_grant", np.int64),
        ("t_mutex_rel", np.int64),
    ]
)


@dataclass(frozen=True)
class Section:
    """A lock section as the engines time it: the mutex serving ``guest`` held ``hold_ns``."""

    guest: int
    hold_ns: int


class ProcessError(ValueError):
    """A host process yielded something that is not a valid step here."""


def _delay_ns(step: Delay, who: str) -> int:
    """The length of a delay step, checked."""
    if not isinstance(step.ns, int | np.integer) or step.ns < 0:
        raise ProcessError(f"{who}: Delay(ns={step.ns!r}): expected an integer >= 0")
    return int(step.ns)


def _hold_of(steps: Iterator[Step], who: str) -> int:
    """Consume the steps of a lock section up to its :class:`Release`: the hold's length."""
    hold = 0
    for step in steps:
        if isinstance(step, Release):
            return hold
        if not isinstance(step, Delay):
            raise ProcessError(f"{who}: {step!r} while holding the mutex: only Delay is allowed")
        hold += _delay_ns(step, who)
    raise ProcessError(f"{who}: ended while holding the mutex (no Release)")


def _check_guest(step: Acquire, n_guests: int, who: str) -> int:
    """The guest of an acquire step, checked."""
    g = step.guest
    if not isinstance(g, int | np.integer) or not 0 <= g < n_guests:
        raise ProcessError(f"{who}: Acquire(guest={g!r}): expected a guest index 0..{n_guests - 1}")
    return int(g)


def _other_step(step: object, who: str) -> ProcessError:
    """The error for a step that is neither a delay nor an acquire outside a lock section."""
    if isinstance(step, Release):
        return ProcessError(f"{who}: Release without Acquire")
    return ProcessError(f"{who}: {step!r} is not a step (Delay, Acquire or Release)")


def next_action(steps: Iterator[Step], who: str, n_guests: int) -> Delay | Section | None:
    """What a process does next, checked: a delay, a whole lock section (its steps consumed up
    to the :class:`Release`), or None when it is done. Both engines time exactly this."""
    step = next(steps, None)
    if step is None:
        return None
    if isinstance(step, Delay):
        return Delay(_delay_ns(step, who))
    if isinstance(step, Acquire):
        return Section(_check_guest(step, n_guests, who), _hold_of(steps, who))
    raise _other_step(step, who)
