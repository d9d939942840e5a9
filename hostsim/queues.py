"""Per-queue state: what each guest's AP queue (APQN) is doing, as arrays hardware calls use.

A queue is one APQN of one guest's mdev (vfio_ap never shares a queue between mdevs). Its state:
a reset in progress until when, interrupts enabled or not and with which NIB and ISC, and
whether it is in the guest's configuration. Hardware-call steps (:class:`hostsim.steps.HwCall`)
read and update it under the ``mdevs_lock`` instance that serves the guest, so both engines
change it in the same order (the lock's FIFO order) and an answer can depend on what happened
to the queue before.

The operations and their answers (a first model; the next issue fills in the kernel's):

* ``zapq``: start a reset that completes ``ns`` later (``reset_until``); interrupts go off;
  (``ns`` here is the step's ``reset_ns``);
* ``tapq``: read: RC 02 while a reset is in progress, else 00, and the interrupt bit;
* ``aqic_enable`` (``nib``, ``isc``): RC 02 during a reset, else 00 and interrupts on;
* ``aqic_disable``: RC 02 during a reset, else 00 and interrupts off;
* ``config_add`` / ``config_remove``: the queue enters or leaves the guest's configuration.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hostsim.arch import RC

OPS = ("zapq", "tapq", "aqic_enable", "aqic_disable", "config_add", "config_remove")

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


@dataclass(frozen=True)
class QueueAnswer:
    """What a hardware call answered: the AP response code and the interrupt bit after it."""

    rc: int
    irq: bool
    reset_pending: bool


class QueueState:
    """The queues of one run as arrays (rows added as queues are first touched)."""

    def __init__(self, initial: list[frozenset[int]]) -> None:
        self.initial = initial
        self.row: dict[tuple[int, int], int] = {}
        self.a = np.zeros(16, QUEUE_DTYPE)

    def _row(self, guest: int, apqn: int) -> int:
        key = (guest, apqn)
        r = self.row.get(key)
        if r is None:
            r = self.row[key] = len(self.row)
            if r == len(self.a):
                self.a = np.concatenate([self.a, np.zeros(len(self.a), QUEUE_DTYPE)])
            self.a[r] = (guest, apqn, -1, False, 0, 0, apqn in self.initial[guest], 0)
        return r

    def call(
        self, guest: int, apqn: int, op: str, t: int, ns: int, nib: int, isc: int
    ) -> QueueAnswer:
        """Hardware call ``op`` on queue ``(guest, apqn)`` at time ``t``; its answer."""
        r = self._row(guest, apqn)  # (first: it may grow the arrays)
        q = self.a[r]
        q["calls"] += 1
        resetting = t < int(q["reset_until"])
        rc = (
            RC.RESET_IN_PROGRESS
            if resetting and op != "zapq" and not op.startswith("config")
            else RC.NORMAL
        )
        if op == "zapq":
            q["reset_until"] = t + ns
            q["irq"] = False
        elif op == "aqic_enable" and not resetting:
            q["irq"], q["nib"], q["isc"] = True, nib, isc
        elif op == "aqic_disable" and not resetting:
            q["irq"] = False
        elif op == "config_add":
            q["in_config"] = True
        elif op == "config_remove":
            q["in_config"] = False
        return QueueAnswer(int(rc), bool(q["irq"]), t < int(q["reset_until"]))

    def table(self) -> np.ndarray:
        """Every queue touched, sorted by (guest, apqn)."""
        a = self.a[: len(self.row)]
        return np.sort(a, order=["guest", "apqn"])
