"""The steps of a program: what a host operation or a user host process does, as pure data.

No SimPy, no randomness, no clock: a program is a sequence (or a generator) of these, and the
engines interpret it (:mod:`hostsim.program`). A generator receives the answer of each
:class:`HwCall` as the value of its ``yield``.

* :class:`Delay` / :class:`Sleep` ``(ns)``: time passes (a sleep is a delay that counts as one);
  locks held stay held;
* :class:`Acquire` ``(guest, lock, mode)``: take the instance of a named lock
  (:mod:`hostsim.locks`) that serves ``guest``; ``mode`` is ``"x"`` for a mutex, ``"w"`` for
  the write side of an rwsem;
* :class:`Release` ``(lock, guest)``: release it (with no arguments: the last lock taken);
* :class:`HwCall` ``(op, apqn, guest, ns, nib, isc, reset_ns)``: a hardware call on a queue,
  under the ``mdevs_lock`` that serves ``guest``, reading and updating its state
  (:mod:`hostsim.queues`); it takes ``ns``;
* :class:`Block` / :class:`Unblock` ``(guest)``: stop the guest's vCPUs, as KVM's
  ``kvm_s390_vcpu_block_all`` does for an APCB update, and let them go: while blocked, a vCPU
  neither issues an instruction nor re-enters SIE (an issue or a resume then waits for the
  unblock);
* :class:`SetHook`, :class:`Reconfigure`: what the host's own operations change (the guest's
  ``pqap_hook`` pointer under the rwsem's write side; a host event's configuration change under
  ``mdevs_lock``); user processes do not use them.
"""

from __future__ import annotations

from dataclasses import dataclass


class ProcessError(ValueError):
    """A program yielded something that is not a valid step here."""


@dataclass(frozen=True)
class Delay:
    """A free delay of ``ns`` nanoseconds (an integer, at least 0)."""

    ns: int


@dataclass(frozen=True)
class Sleep:
    """An ``msleep``: a delay of ``ns`` that counts as a sleep; held locks stay held."""

    ns: int


@dataclass(frozen=True)
class Acquire:
    """Take the instance of lock ``lock`` that serves guest ``guest`` (a global guest index)."""

    guest: int = 0
    lock: str = "mdevs_lock"
    mode: str = "x"


@dataclass(frozen=True)
class Release:
    """Release lock ``lock`` of ``guest``; with no arguments, the last lock taken."""

    lock: str | None = None
    guest: int = 0


@dataclass(frozen=True)
class HwCall:
    """Hardware call ``op`` (:data:`hostsim.queues.OPS`) on queue ``apqn`` of ``guest``,
    lasting ``ns``; a ``zapq`` starts a reset that the queue reports in progress for
    ``reset_ns`` after the call (default: until the call returns)."""

    op: str
    apqn: int
    guest: int = 0
    ns: int = 0
    nib: int = 0
    isc: int = 0
    reset_ns: int | None = None


@dataclass(frozen=True)
class Block:
    """Stop every vCPU of ``guest`` (no issue, no SIE entry) until :class:`Unblock`.

    ``stopped``: the guest is not running its AP bus yet (QEMU's start or machine reset, then the
    guest's boot to its AP bus probe), reported apart from the short blocks of APCB updates."""

    guest: int
    stopped: bool = False


@dataclass(frozen=True)
class Unblock:
    """Let the vCPUs of ``guest`` run again."""

    guest: int


@dataclass(frozen=True)
class SetHook:
    """Publish (``value`` true) or clear the guest's ``pqap_hook`` (under the rwsem write)."""

    guest: int
    value: bool


@dataclass(frozen=True)
class Reconfigure:
    """The configuration change of host event ``event`` (under ``mdevs_lock``)."""

    event: int


Step = Delay | Sleep | Acquire | Release | HwCall | Block | Unblock | SetHook | Reconfigure
