"""The SimPy Environment both engines run on, with the tie rule in its event keys.

A plain :class:`simpy.Environment` orders the events of one instant by priority and then by
creation order (its event id). That order differs between two engines that create different
events, so it must never decide anything another engine could see. :class:`HostEnv` keys every
event it schedules ``(time, priority, class, owner, SIMPY, id, event)``:

* a user host process's events (:mod:`hostsim.sim_process`) carry its class and identifier
  (:data:`hostsim.ties.HOST`, ``len(events) + index``), so simultaneous user processes run in
  identifier order in both engines, and creation order only orders one process's own events;
* every other SimPy event (the reference engine's vCPUs, locks and program interpreters) has
  owner :data:`INTERNAL`, which keeps the reference engine's own order exactly as before;
* the fast engine puts its own events in the same queue as 5-tuples ``(time, priority, class,
  identifier, kind)`` (:mod:`hostsim.engine_fast_host`) and gives the environment a
  ``native`` callback that runs them. Both kinds of entry compare field by field, and an
  engine's kinds all come before :data:`SIMPY`, so one heap holds both. The fast engine's fleet and
  host programs are SimPy processes that wait on events keyed as its own entries
  (:meth:`HostEnv.at`): they run where those entries would.

With ``owned=False`` (the reference engine when no user SimPy process runs) it is a plain
Environment: with one owner and one kind, SimPy's ``(time, priority, id)`` keys order events
exactly as the long keys would, without the cost of computing them.

The priorities are :mod:`hostsim.ties`'s (URGENT 0 and NORMAL 1 are SimPy's own values).
User events at or after the end of the run are dropped: a user process stops at its first
event at or after ``stop_at``, as a program of steps does.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from heapq import heappop, heappush
from typing import Any, cast

import simpy
from simpy.core import EmptySchedule, SimTime
from simpy.events import NORMAL, Event, EventPriority, Process

from hostsim.ties import HOST

#: the kind of a SimPy entry: after every kind of the fast engine's own events
SIMPY = 1 << 8
#: the owner of SimPy events that no user process owns
INTERNAL = -1
#: the kind of a wake-up entry (:meth:`HostEnv.at`): after an engine's own kinds
WAKE = SIMPY - 1


class HostEnv(simpy.Environment):
    """A SimPy Environment whose event keys follow :mod:`hostsim.ties` (module docstring)."""

    def __init__(self, stop_at: int | None = None, owned: bool = True) -> None:
        super().__init__()
        if not owned:  # no user process and no native entries: SimPy's own keys and loop
            self.schedule = simpy.Environment.schedule.__get__(self)  # type: ignore[method-assign]
            self.step = simpy.Environment.step.__get__(self)  # type: ignore[method-assign]
        #: the user process each SimPy process belongs to (processes they start inherit it)
        self.owner_of: dict[Process, int] = {}
        self._as: int | None = None  # the owner of what is scheduled now, when set explicitly
        self.stop_at = stop_at
        #: runs one of an engine's own (5-tuple) entries; None: there are none
        self.native: Callable[[tuple[int, ...]], None] | None = None

    def owner(self) -> int:
        """The user process on whose behalf code runs now (:data:`INTERNAL` if none)."""
        if self._as is not None:
            return self._as
        proc = self._active_proc
        return INTERNAL if proc is None else self.owner_of.get(proc, INTERNAL)

    def schedule(self, event: Event, priority: EventPriority = NORMAL, delay: SimTime = 0) -> None:
        owner = self._as
        if owner is None:  # owner(), inlined: this runs for every SimPy event
            proc = self._active_proc
            owner = INTERNAL if proc is None else self.owner_of.get(proc, INTERNAL)
        entry = (self._now + delay, priority, HOST, owner, SIMPY, next(self._eid), event)
        heappush(cast(list[Any], self._queue), entry)

    def process(self, generator: Generator[Event, Any, Any]) -> Process:
        """A SimPy process, owned by the user process that starts it (if any)."""
        owner = self.owner()
        proc = Process(self, generator)
        if owner != INTERNAL:
            self.owner_of[proc] = owner
        return proc

    def start_as(self, owner: int, generator: Generator[Event, Any, Any]) -> Process:
        """Start ``generator`` as the process of user process ``owner``."""
        self._as = owner
        try:
            return self.process(generator)
        finally:
            self._as = None

    def succeed_as(self, owner: int, event: Event, value: Any = None) -> None:
        """Succeed ``event`` on behalf of user process ``owner`` (engine code calls this)."""
        self._as = owner
        try:
            event.succeed(value)
        finally:
            self._as = None

    def at(
        self, t: int, priority: int, cls: int, ident: int, kind: int, event: Event | None = None
    ) -> Event:
        """``event`` (a new one if None), succeeded and keyed ``(t, priority, cls, ident,
        kind)`` as one of an engine's own entries would be: the fast engine's processes (its
        fleet, its host programs) wait on these, so that they run exactly where its own
        entries would. With ``kind`` :data:`WAKE` it comes after every such entry of the same
        ``(t, priority, cls, ident)``: a process that yields it lets everything that comes
        before its next action run first."""
        if event is None:
            event = Event(self)
        event._ok, event._value = True, None
        heappush(
            cast(list[Any], self._queue), (t, priority, cls, ident, kind, next(self._eid), event)
        )
        return event

    def step(self) -> None:
        """Run the next entry: an engine's own event, or a SimPy event."""
        try:
            entry = heappop(self._queue)
        except IndexError:
            raise EmptySchedule from None
        self.run_entry(entry)

    def run_entry(self, entry: tuple[Any, ...]) -> None:
        """Run one popped entry (the fast engine pops its own, between fleet requests)."""
        self._now = entry[0]
        if len(entry) == 5:
            assert self.native is not None
            self.native(entry)
            return
        if (
            entry[3] != INTERNAL
            and entry[4] == SIMPY
            and self.stop_at is not None
            and entry[0] >= self.stop_at
        ):
            return  # a user process stops at the end of the run
        event = entry[6]
        callbacks, event.callbacks = event.callbacks, None
        for callback in callbacks:
            callback(event)
        if not event._ok and not hasattr(event, "_defused"):
            exc = type(event._value)(*event._value.args)
            exc.__cause__ = event._value
            raise exc
