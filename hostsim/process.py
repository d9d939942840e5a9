"""User host processes: programs of steps that both engines run against the host's locks.

A *host process* is what a user adds to a run beside the workload: a host monitoring agent that
reads vfio_ap's sysfs attributes under ``mdevs_lock`` every 100 ms, a management daemon that
takes ``guests_lock`` and ``kvm->lock`` before the mdevs lock, a what-if holder of a lock, a
tool that resets a queue and polls it. It is written as a Python generator of *steps*
(:mod:`hostsim.steps`: pure data, no SimPy, no randomness, no clock), the same steps the host's
own operations are made of (:mod:`hostsim.host_ops`), run by the same interpreter
(:mod:`hostsim.program`):

* ``Delay(ns)``, ``Sleep(ns)``: time passes, held locks stay held;
* ``Acquire(guest, lock="mdevs_lock")``, ``Release()``: a named lock (:mod:`hostsim.locks`:
  ``ap_perms_mutex``, ``guests_lock``, ``kvm_lock`` per guest, ``mdevs_lock`` host-wide or per
  mdev), taken in the kernel's lock order;
* ``HwCall(op, apqn, guest, ns)`` under ``mdevs_lock``: a hardware call on a queue, whose
  answer (:class:`hostsim.queues.QueueAnswer`) is the value of the ``yield``;
* ``Block(guest)``, ``Unblock(guest)``: stop a guest's vCPUs and let them go (a process
  declares the guests it may block with :func:`blocking`: their vCPUs are then simulated one
  request at a time).

While it holds ``mdevs_lock`` (the innermost lock) a process may only wait, sleep and make
hardware calls, so the hold is known when the lock is granted. Both engines follow the tie rule
(:mod:`hostsim.ties`) with the process as a host-side requester ranked after the scenario's
host events (identifier ``len(events) + index``), so both give the same records. A process
stops at its first step at or after the end of the run.

Each lock section becomes a row of :data:`PROCESS_DTYPE` in ``RunResult.processes``. The same
steps can be posted from free SimPy code instead (``env.timeout``, child processes and the
rest): :func:`hostsim.sim_process.simpy_process`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

from hostsim.steps import (
    Acquire,
    Block,
    Delay,
    HwCall,
    ProcessError,
    Release,
    Sleep,
    Step,
    Unblock,
)

#: A host process: called once per run, returns the steps it takes.
HostProcess = Callable[[], Iterable[Step]]

PROCESS_DTYPE = np.dtype(
    [
        ("process", np.int32),  # index in the run's list of processes
        ("section", np.int32),  # the process's lock section number, from 0, in acquire order
        ("lock", np.int32),  # lock instance: RunResult.lock_labels[lock], e.g. "mdevs_lock"
        ("t_req", np.int64),
        ("t_grant", np.int64),
        ("t_rel", np.int64),
    ]
)


def blocking(guests: Iterable[int], process: HostProcess) -> HostProcess:
    """``process``, declared to block (``Block``/``Unblock``) the vCPUs of ``guests``."""

    def run() -> Iterable[Step]:
        return process()

    run.blocks = frozenset(int(g) for g in guests)  # type: ignore[attr-defined]
    return run


def blocks_of(process: HostProcess) -> frozenset[int]:
    """The guests ``process`` may block (none unless declared with :func:`blocking`)."""
    return getattr(process, "blocks", frozenset())


__all__ = [
    "PROCESS_DTYPE",
    "Acquire",
    "Block",
    "Delay",
    "HostProcess",
    "HwCall",
    "ProcessError",
    "Release",
    "Sleep",
    "Step",
    "Unblock",
    "blocking",
]
