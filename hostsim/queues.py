"""Per-queue state: what each guest's AP queue (APQN) is doing, as rows hardware calls use.

A queue is one APQN of one guest's mdev (vfio_ap never shares a queue between mdevs). Its state:
a reset in progress until when, interrupts enabled or not and with which NIB and ISC, and
whether it is in the guest's configuration. Hardware-call steps (:class:`hostsim.steps.HwCall`)
read and update it under the ``mdevs_lock`` instance that serves the guest, so both engines
change it in the same order (the lock's FIFO order) and an answer can depend on what happened
to the queue before.

The operations and their answers (``../shared/spec/host-operations.md`` section 6):

* ``zapq``: start a reset that the adapter completes ``reset_ns`` later (``reset_until``);
  interrupts go off (a reset disables them). During a reset already in progress it answers
  02 and changes nothing (``apq_reset_check`` then issues it again);
* ``tapq``: read: RC 02 while a reset is in progress (``apq_status_check``: keep waiting),
  else 00; and the I bit;
* ``aqic_enable`` (``nib``, ``isc``): 02 during a reset; 07 (otherwise changed, inferred in the
  spec) when interrupts are already on; else 00 and interrupts on with that NIB and ISC;
* ``aqic_disable``: 02 during a reset, else 00 and interrupts off;
* ``config_add`` / ``config_remove``: the queue enters or leaves the guest's configuration;
* ``peek``: what the host knows of the queue (its saved NIB, a reset's end) without an
  instruction: nothing changes and no call is counted.

A guest's own reset of its queues (a ``guest_reset`` event: ZAPQ and RAPQ interpreted by SIE,
no host lock) turns their interrupts off at its time: the next call on the queue after it sees
them off (the guest then waits ``delay_ms`` before enabling, so no reset is still running).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from hostsim.arch import RC

OPS = ("zapq", "tapq", "aqic_enable", "aqic_disable", "config_add", "config_remove", "peek")

QUEUE_DTYPE = np.dtype(
    [
        ("guest", np.int32),
        ("apqn", np.uint16),
        ("reset_until", np.int64),  # a reset is in progress before this time (-1: never reset)
        ("irq", np.bool_),  # adapter interruptions enabled
        ("nib", np.uint64),  # the notification-indicator byte address of the last enable
        ("isc", np.uint8),
        ("in_config", np.bool_),  # in the guest's AP configuration
        ("calls", np.int64),  # hardware calls made on the queue
    ]
)


#: a row's fields (``QUEUE_DTYPE``'s order)
_UNTIL, _IRQ, _NIB, _ISC, _CONFIG, _CALLS = 2, 3, 4, 5, 6, 7
assert QUEUE_DTYPE.names is not None
assert [QUEUE_DTYPE.names[i] for i in (_UNTIL, _IRQ, _NIB, _ISC, _CONFIG, _CALLS)] == [
    "reset_until",
    "irq",
    "nib",
    "isc",
    "in_config",
    "calls",
]


class QueueAnswer(NamedTuple):
    """What a hardware call answered: the AP response code and the interrupt bit after it
    (a named tuple: one is made per hardware call, on the requests' hot path too)."""

    rc: int
    irq: bool
    reset_pending: bool
    reset_until: int = -1  # when the queue's last reset completes (-1: never reset)


class QueueState:
    """The queues of one run (rows added as queues are first touched). Each row is a small
    Python list in :data:`QUEUE_DTYPE`'s field order, the form a call reads fastest (a call is
    on the requests' hot path); :meth:`table` is the array form."""

    def __init__(
        self, initial: list[frozenset[int]], guest_resets: dict[int, list[int]] | None = None
    ) -> None:
        self.initial = initial
        self.row: dict[tuple[int, int], list[Any]] = {}
        self.enabled: list[tuple[int, int, int]] = []  # (guest, apqn, t) as interrupts go on
        #: per guest, the times it resets its own queues (interpreted ZAPQ/RAPQ: no host lock)
        self.guest_resets = guest_resets or {}
        self._irq_at: dict[tuple[int, int], int] = {}  # queue -> when its interrupts last went on

    def call(
        self, guest: int, apqn: int, op: str, t: int, ns: int, nib: int, isc: int
    ) -> QueueAnswer:
        """Hardware call ``op`` on queue ``(guest, apqn)`` at time ``t``; its answer."""
        key = (guest, apqn)
        q = self.row.get(key)
        if q is None:
            q = self.row[key] = [guest, apqn, -1, False, 0, 0, apqn in self.initial[guest], 0]
        irq = q[_IRQ]
        if irq and guest in self.guest_resets:  # the guest's own reset turned them off
            on = self._irq_at.get(key, -1)
            if any(on < tr <= t for tr in self.guest_resets[guest]):
                q[_IRQ] = irq = False
        until = q[_UNTIL]
        resetting = t < until
        if op == "peek":
            return QueueAnswer(0, irq, resetting, until)
        q[_CALLS] += 1
        rc = RC.RESET_IN_PROGRESS if resetting and not op.startswith("config") else RC.NORMAL
        if op == "zapq" and not resetting:
            q[_UNTIL] = t + ns
            q[_IRQ] = False
        elif op == "aqic_enable" and not resetting:
            if q[_IRQ]:
                rc = RC.OTHERWISE_CHANGED
            else:
                q[_IRQ], q[_NIB], q[_ISC] = True, nib, isc
                self.enabled.append((guest, apqn, t))
                self._irq_at[key] = t
        elif op == "aqic_disable" and not resetting:
            q[_IRQ] = False
        elif op == "config_add":
            q[_CONFIG] = True
        elif op == "config_remove":
            q[_CONFIG] = False
        until = q[_UNTIL]
        return QueueAnswer(int(rc), q[_IRQ], t < until, until)

    def table(self) -> np.ndarray:
        """Every queue touched, sorted by (guest, apqn)."""
        a = np.array([tuple(q) for q in self.row.values()], QUEUE_DTYPE)
        return np.sort(a, order=["guest", "apqn"])
