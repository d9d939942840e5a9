"""Host operations as programs: what each host event of a scenario does, step by step.

Each host event becomes a generator of :mod:`hostsim.steps` that both engines interpret
(:mod:`hostsim.program`); it reads every hardware answer from the queue state
(:mod:`hostsim.queues`), so a reset's verification loops while the adapter is still resetting
and a disable loop sleeps while a reset is in progress. Upstream (``../shared/spec/
host-operations.md`` sections 1-3, with the kernel function each follows):

* ``attach`` (``vfio_ap_mdev_set_kvm``): the rwsem's write side publishes the hook; then
  ``guests_lock -> kvm->lock -> mdevs_lock``: the mdev walk and KVM reference
  (``mdev_kvm_update``) and an APCB update (``kvm_arch_crypto_set_masks``: every vCPU of the
  guest blocked for ``apcb_update``);
* ``reset`` (QEMU's ``VFIO_DEVICE_RESET`` -> ``vfio_ap_mdev_reset_queues``): under
  ``mdevs_lock``, a ZAPQ of every queue one after the other, then one ``apq_reset_check`` per
  queue *in parallel*: each sleeps ``reset_interval`` before its first TAPQ, sleeps again while
  the reset is in progress and re-ZAPQs if its ZAPQ answered 02, 05 or 0A; the lock is held
  until every check is done (``flush_work``). The hold is about one reset interval whatever
  the number of queues;
* ``start``: a guest start as QEMU does it: ``attach`` (the device open), then the machine
  reset's ``reset``; the guest's vCPUs do not run meanwhile (``Block(stopped=True)``: its APCB
  update needs no block of its own), then the guest boots (``delay_ms``) and its AP bus probes
  the queues (RAPQ, the 40 ms low poll): only then do its vCPUs run, and its enable burst issues;
* ``reboot``: the machine reset (``s390_machine_reset`` -> ``VFIO_DEVICE_RESET``), the vCPUs
  stopped, then the boot and the probe as for ``start``;
* ``detach`` / ``stop`` (``vfio_ap_mdev_unset_kvm``): the rwsem's write side clears the hook;
  ``guests_lock -> kvm->lock -> mdevs_lock``: clear the masks (an APCB update, vCPUs blocked),
  reset every queue, drop the KVM reference. No irq disable: resetting a queue disables its
  interrupts (removed in 2020, H11);
* ``irq_disable`` (``vfio_ap_mdev_dma_unmap``): ``vfio_ap_irq_disable`` of every queue whose
  interrupts are on: AQIC(IR=0), a sleep and a retry on 02/05, then TAPQ until the I bit clears;
* ``assign`` (``assign_domain_store``): ``ap_perms_mutex -> guests_lock -> kvm->lock ->
  mdevs_lock``: link and filter, an APCB update, the queues enter the configuration;
* ``unassign`` (``unassign_domain_store``): ``guests_lock -> kvm->lock -> mdevs_lock``: an APCB
  update (hot-unplug) and a reset of the removed queues;
* ``guest_reset``: the guest's own business (interpreted ZAPQ/RAPQ): no host lock, no steps.

The 2019 variants (``Variant.reset_style == "sync"``) take ``matrix_dev->lock`` alone and reset
the queues one after the other: ZAPQ, up to two ``msleep(20)`` + TAPQ until the queue is empty,
then ``vfio_ap_irq_disable`` of the queue; their detach is that reset (disable + reset).

Every cost is keyed by the event, its queue and the call (:mod:`hostsim.draws`), so a cost's
distribution never moves another cost's values. A queue's hardware faults (the scenario's
``[host.hardware]`` probabilities, keyed per event, queue and call) override the state's answer
when they draw something other than NORMAL: faults are an explicit option, not the default.

This module holds the operations (which locks and pieces each event takes, in order) and
:func:`host_program`; the pieces (the hook, the outer locks, an APCB update, the queue resets,
the irq disable) are in :mod:`hostsim.host_pieces`, the keyed cost and fault draws in
:mod:`hostsim.host_draws`, and a run's programs and their record rows in
:mod:`hostsim.run_programs`.
"""

from __future__ import annotations

from hostsim.host_pieces import HostProgram, Pieces, Steps
from hostsim.model import Model
from hostsim.scenario_types import HostEvent, HostEventKind
from hostsim.steps import Acquire, Block, Delay, Reconfigure, Release, Unblock

K = HostEventKind
#: the kinds whose program takes the rwsem's write side (with an rwsem-guarded hook)
HOOK_KINDS = (K.ATTACH, K.DETACH, K.START)
#: the kinds whose program updates the guest's APCB (and so blocks its vCPUs), upstream
_APCB = (
    K.ATTACH,
    K.DETACH,
    K.START,
    K.ASSIGN,
    K.UNASSIGN,
    K.QUEUE_PROBE,
    K.QUEUE_REMOVE,
    K.CONFIG_CHANGED,
)
_STOPS = (K.START, K.REBOOT)  # the guest's vCPUs stopped from the event to its AP bus probe


class _Op(Pieces):
    """The program of one host event (see the module docstring)."""

    def open(self) -> Steps:
        yield from self.hook(True)
        yield from self.outer()
        yield Acquire(self.g)
        yield Delay(self.c("mutex_acquire"))
        yield Delay(self.c("mdev_kvm_update"))
        if not self.sync:
            yield from self.apcb()
        yield Reconfigure(self.index)
        yield Release()
        yield from self.release_outer()

    def machine_reset(self) -> Steps:
        yield Acquire(self.g)
        yield Delay(self.c("mutex_acquire"))
        yield from self.reset(list(range(len(self.apqns))))
        yield Release()

    def close(self) -> Steps:
        yield from self.hook(False)
        yield from self.outer()
        yield Acquire(self.g)
        yield Delay(self.c("mutex_acquire"))
        if not self.sync:
            yield from self.apcb()
        yield from self.reset(list(range(len(self.apqns))))
        yield Delay(self.c("mdev_kvm_update"))
        yield Reconfigure(self.index)
        yield Release()
        yield from self.release_outer()

    def dma_unmap(self) -> Steps:
        yield Acquire(self.g)
        yield Delay(self.c("mutex_acquire"))
        for q in range(len(self.apqns)):
            yield from self.disable(q)
        yield Reconfigure(self.index)
        yield Release()

    def assign(self, add: bool, perms: bool = True) -> Steps:
        perms = perms and add
        yield from self.outer(perms=perms)
        yield Acquire(self.g)
        yield Delay(self.c("mutex_acquire"))
        yield Delay(self.c("mdev_kvm_update"))
        if not self.sync:
            yield from self.apcb()
        if not add:
            yield from self.reset(list(range(len(self.apqns))))
        op = "config_add" if add else "config_remove"
        for q in range(len(self.apqns)):
            yield from self.hw(op, q, 0)
        yield Reconfigure(self.index)
        yield Release()
        yield from self.release_outer(perms=perms)

    def boot(self) -> Steps:
        """The guest runs again after QEMU's reset: its boot until the AP bus scan
        (``delay_ms``), the RAPQs, and the low poll (``probe_ms``, 40 ms) before its one
        tasklet pass enables every queue (host-operations.md section 5). The vCPUs stay
        stopped until then, so the enable burst (scripted at the event's time) issues at the
        probe."""
        g = self.m.s.guests[int(self.m.topo.guest_group[self.g])]
        yield Delay(round((self.ev.delay_ms + g.workload.probe_ms) * 1_000_000))
        yield Unblock(self.g)

    def sysfs_read(self) -> Steps:
        """A ``*_show`` attribute of the mdev (``matrix_show``, ``guest_matrix_show``, ...)."""
        yield Acquire(self.g)
        yield Delay(self.c("mutex_acquire"))
        yield Delay(self.c("sysfs_read"))
        yield Release()

    def mdev_create(self) -> Steps:
        """vfio_ap_mdev_probe: the new mdev joins matrix_dev's list."""
        yield Acquire(self.g)
        yield Delay(self.c("mutex_acquire"))
        yield Delay(self.c("mdev_list"))
        yield Release()

    def mdev_remove(self) -> Steps:
        """vfio_ap_mdev_remove: ``guests_lock -> mdevs_lock``, every queue reset, unlinked."""
        if not self.sync:
            yield Acquire(self.g, "guests_lock")
        yield Acquire(self.g)
        yield Delay(self.c("mutex_acquire"))
        yield from self.reset(list(range(len(self.apqns))))
        yield Delay(self.c("mdev_list"))
        yield Reconfigure(self.index)
        yield Release()
        if not self.sync:
            yield Release("guests_lock", self.g)

    def config_changed(self) -> Steps:
        """vfio_ap_on_cfg_changed / on_scan_complete: ``guests_lock``, then for every mdev
        ``kvm->lock -> mdevs_lock`` to filter its matrix; the event's guest gets an APCB update
        (its hot-plug or hot-unplug)."""
        m = self.m
        if not self.sync:
            yield Acquire(self.g, "guests_lock")
        for g in range(m.n_guests):
            if not m.s.guests[int(m.topo.guest_group[g])].mdev:
                continue
            if not self.sync:
                yield Acquire(g, "kvm_lock")
            yield Acquire(g)
            yield Delay(self.c("mutex_acquire"))
            yield Delay(self.c("mdev_list"))
            if g == self.g and not self.sync:
                yield from self.apcb()
            yield Release()
            if not self.sync:
                yield Release("kvm_lock", g)
        if not self.sync:
            yield Release("guests_lock", self.g)

    def steps(self) -> Steps:
        kind = self.ev.kind
        if kind in (K.START, K.REBOOT):  # the vCPUs do not run until QEMU's reset is done
            yield Block(self.g, stopped=True)
            self.stopped = True
            if self.mdev:  # (a guest without an mdev: no vfio-ap device to open or reset)
                if kind == K.START:
                    yield from self.open()
                yield from self.machine_reset()
            yield from self.boot()
        elif kind == K.ATTACH:
            yield from self.open()
        elif kind == K.DETACH:
            yield from self.close()
        elif kind == K.RESET:
            yield from self.machine_reset()
        elif kind == K.IRQ_DISABLE:
            yield from self.dma_unmap()
        elif kind in (K.ASSIGN, K.UNASSIGN):
            yield from self.assign(kind == K.ASSIGN)
        elif kind in (K.QUEUE_PROBE, K.QUEUE_REMOVE):  # as (un)assign, without ap_perms_mutex
            yield from self.assign(kind == K.QUEUE_PROBE, perms=False)
        elif kind == K.SYSFS_READ:
            yield from self.sysfs_read()
        elif kind == K.MDEV_CREATE:
            yield from self.mdev_create()
        elif kind == K.MDEV_REMOVE:
            yield from self.mdev_remove()
        elif kind == K.CONFIG_CHANGED:
            yield from self.config_changed()


def host_program(m: Model, index: int, ev: HostEvent) -> HostProgram:
    """The program of host event ``index`` (see module docstring)."""
    sync = m.variant.reset_style == "sync"
    apcb = not sync and ev.kind in _APCB
    blocks = frozenset({ev.guest}) if apcb or ev.kind in _STOPS else frozenset()
    hp = HostProgram(iter(()), blocks)
    if ev.kind != K.GUEST_RESET:
        hp.steps = _Op(m, index, ev, hp).steps()
    return hp
