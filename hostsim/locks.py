"""Named lock instances: which locks the host has, their partition, kind and order.

The locks of vfio_ap and KVM that decide a PQAP's wait (``../shared/spec/host-operations.md``
section 1), each a *name* with a *partition* (one instance for the host, one per guest, or one
per mdev), a kind (FIFO mutex, or writer-preferring rwsem) and a rank in the kernel's lock order
``ap_perms_mutex -> guests_lock -> kvm->lock -> mdevs_lock``. A program that takes several must
take them in rank order (:meth:`LockTable.check_order`); ``mdevs_lock`` is the innermost, which
is also what lets the fast engine time a section under it when it is granted.

``pqap_hook_rwsem`` has no place in the spec's order: KVM's ``handle_pqap`` takes it for read
and the hook then takes ``mdevs_lock`` (rwsem before mdevs_lock); ``vfio_ap_mdev_set_kvm`` and
``unset_kvm`` take it for write alone, before the update locks (torvalds/linux
``drivers/s390/crypto/vfio_ap_ops.c``). Its rank sits just outside ``mdevs_lock``.

The ``per-mdev`` what-if is the partition of ``mdevs_lock`` (``host.lock_model``): one instance
for the host, or one per guest's mdev. Instance numbers start with the ``mdevs_lock`` instances,
so that the instance serving guest ``g`` is ``mutex_of_guest[g]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hostsim.steps import ProcessError

MUTEX, RWSEM = "mutex", "rwsem"
#: lock section modes: a mutex, and the two sides of an rwsem
EXCLUSIVE, READ, WRITE = 0, 1, 2
MODES = {"x": EXCLUSIVE, "r": READ, "w": WRITE}


@dataclass(frozen=True)
class LockSpec:
    """One named lock: kind, partition (``host``, ``guest`` or ``mdev``), rank in the order."""

    name: str
    kind: str
    partition: str
    rank: int
    kernel: str


#: The host's locks, in the kernel's lock order (outermost first).
LOCKS: tuple[LockSpec, ...] = (
    LockSpec("ap_perms_mutex", MUTEX, "host", 0, "ap_perms_mutex (AP bus apmask/aqmask)"),
    LockSpec("guests_lock", MUTEX, "host", 1, "matrix_dev->guests_lock"),
    LockSpec("kvm_lock", MUTEX, "guest", 2, "kvm->lock"),
    LockSpec("pqap_hook_rwsem", RWSEM, "guest", 3, "kvm->arch.crypto.pqap_hook_rwsem"),
    LockSpec("mdevs_lock", MUTEX, "host", 4, "matrix_dev->mdevs_lock (the vfio_ap mutex)"),
)
INNERMOST = "mdevs_lock"


class LockOrderError(ProcessError):
    """A program asked for locks against the kernel's lock order, or for a lock it holds."""


class LockTable:
    """The lock instances of one run: ``instance(name, guest)`` and the order check."""

    def __init__(self, n_guests: int, lock_model: str = "global") -> None:
        parts = {"host": 1, "guest": n_guests, "mdev": n_guests}
        self.specs = {s.name: s for s in LOCKS}
        mdev_part = "host" if lock_model == "global" else "mdev"
        self.partition = {
            s.name: (mdev_part if s.name == INNERMOST else s.partition) for s in LOCKS
        }
        self.base: dict[str, int] = {}
        self.labels: list[str] = []
        self.spec_of: list[LockSpec] = []
        self.index: list[int] = []  # the guest (or 0 for host-wide) of each instance
        order = [self.specs[INNERMOST]] + [s for s in LOCKS if s.name != INNERMOST]
        for s in order if n_guests else ():
            part = self.partition[s.name]
            self.base[s.name] = len(self.labels)
            for j in range(parts[part]):
                self.labels.append(s.name if part == "host" else f"{s.name}[{j}]")
                self.spec_of.append(s)
                self.index.append(j)
        n_mdevs = parts[mdev_part] if n_guests else 0
        #: the mdevs_lock instance serving each guest (the fleet's mutex index)
        self.mutex_of_guest = (
            np.zeros(n_guests, np.int32)
            if mdev_part == "host"
            else np.arange(n_guests, dtype=np.int32)
        )
        self.n_mdevs = n_mdevs

    def instance(self, name: str, guest: int = 0) -> int:
        """The instance of lock ``name`` that serves ``guest``."""
        if name not in self.specs:
            raise LockOrderError(f"unknown lock {name!r}: expected one of {sorted(self.specs)}")
        return self.base[name] + (0 if self.partition[name] == "host" else guest)

    def check_order(self, held: list[int], new: int, who: str) -> None:
        """Refuse taking ``new`` while holding ``held`` against the lock order."""
        if new in held:
            raise LockOrderError(f"{who}: {self.labels[new]} is already held (a self-deadlock)")
        rank = self.spec_of[new].rank
        for h in held:
            if self.spec_of[h].rank >= rank:
                raise LockOrderError(
                    f"{who}: {self.labels[new]} taken while holding {self.labels[h]}: the kernel's"
                    " order is " + " -> ".join(s.name for s in LOCKS)
                )
