"""The writer-preferring rwsem rule (a guest's ``pqap_hook_rwsem``), written once, in two forms.

The rule (the kernel's rw_semaphore as hostsim models it): a reader that asks while a writer
holds the semaphore or waits for it waits until that writer has released it; a writer waits
until every reader that got in before it has left, writers in request order; every decision is
made at the tie rule's ``LATE`` priority, after every request of that nanosecond is in.

* :class:`RwQueue`: the event-driven form, for readers whose release is known only when it
  happens: the reference engine's SimPy semaphore (:class:`hostsim.engine_ref.RwSem`).
* :class:`RwKnown`: the form for readers whose release is known once they are in (a request's
  hold is arithmetic on its draws): the readers are not queued at all; a writer is granted at
  ``max(now, its request, the latest release of the readers in)`` once no reader in has an
  unknown release. The fast engine's guests with writers (:mod:`hostsim.engine_fast_host`).

``tests/test_rwsem.py`` holds the two equal on random readers and writers with ties.
"""

from __future__ import annotations

from typing import Any


class RwQueue:
    """Readers and writers queued, granted by :meth:`decide` at ``LATE`` priority.

    Every ask and release returns True when the scheduler must run :meth:`decide` at ``LATE``
    priority of the current nanosecond (one decision is pending at a time)."""

    __slots__ = ("pending", "readers", "waiting_readers", "waiting_writers", "writer")

    def __init__(self) -> None:
        self.readers = 0
        self.writer = False
        self.waiting_writers: list[Any] = []
        self.waiting_readers: list[Any] = []
        self.pending = False

    def read(self, payload: Any) -> bool:
        self.waiting_readers.append(payload)
        return self._schedule()

    def write(self, payload: Any) -> bool:
        self.waiting_writers.append(payload)
        return self._schedule()

    def read_release(self) -> bool:
        self.readers -= 1
        return self._schedule()

    def write_release(self) -> bool:
        self.writer = False
        return self._schedule()

    def decide(self) -> list[Any]:
        """The payloads of the requests granted now: the first waiting writer if no reader is
        in, else (no writer waiting) every waiting reader."""
        self.pending = False
        if self.writer:
            return []
        if self.waiting_writers:
            if self.readers:
                return []
            self.writer = True
            return [self.waiting_writers.pop(0)]
        granted, self.waiting_readers = self.waiting_readers, []
        self.readers += len(granted)
        return granted

    def _schedule(self) -> bool:
        if self.pending:
            return False
        self.pending = True
        return True


class RwKnown:
    """The rule when every reader's release is known soon after it is in (see module
    docstring): readers that must wait are kept in :attr:`blocked` until a writer is done."""

    __slots__ = ("active", "blocked", "grant_pending", "max_release", "unknown", "waiting")

    def __init__(self) -> None:
        self.waiting: list[tuple[int, int]] = []  # (writer id, request time), FIFO
        self.active = False  # a writer holds it
        self.grant_pending = False  # the first writer's grant is scheduled
        self.unknown = 0  # readers in whose release is not known yet
        self.max_release = 0  # the latest release of the readers in
        self.blocked: list[int] = []  # readers waiting for the writers to be done

    def reader_asks(self, reader: int) -> bool:
        """A reader asks at a ``LATE`` decision: True if it gets in now; else it waits (a
        writer holds it or waits for it) until :meth:`decide` lets it in."""
        if self.active or self.waiting:
            self.blocked.append(reader)
            return False
        return True

    def reader_in(self) -> None:
        """A reader got in; its release is not known yet."""
        self.unknown += 1

    def reader_out(self, release: int, known: bool = True) -> None:
        """A reader in leaves at ``release`` (``known``: it was counted by :meth:`reader_in`)."""
        if release > self.max_release:
            self.max_release = release
        if known:
            self.unknown -= 1

    def writer_asks(self, ident: int, t: int) -> None:
        """Writer ``ident`` asks at ``t`` (the scheduler then decides at ``LATE`` priority)."""
        self.waiting.append((ident, t))

    def writer_grant_at(self, now: int) -> int | None:
        """When the first waiting writer is granted, if that can be scheduled now (once per
        grant); None if no writer waits, one holds it, or a reader's release is not known."""
        if not self.waiting or self.active or self.grant_pending or self.unknown:
            return None
        self.grant_pending = True
        first = self.waiting[0][1]
        return max(now, first, self.max_release)

    def writer_granted(self) -> int:
        """The first waiting writer holds it now: its id."""
        self.grant_pending = False
        self.active = True
        return self.waiting[0][0]

    def writer_release(self) -> None:
        self.active = False
        self.waiting.pop(0)

    def decide(self) -> list[int] | None:
        """At a ``LATE`` decision after a writer asked or left: the blocked readers that get in
        now (the scheduler lets each in), or None if a writer is next (the scheduler asks
        :meth:`writer_grant_at`)."""
        if self.active:
            return []
        if self.waiting:
            return None
        blocked, self.blocked = self.blocked, []
        return blocked
