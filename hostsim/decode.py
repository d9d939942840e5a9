"""The decode's scalar evaluator: one intercept at a time, the plain reference.

:func:`decode_one` walks each rule table (:mod:`hostsim.rules`) row by row, as the kernel walks
its early returns. The vectorised evaluator of the same tables is
:func:`hostsim.decode_batch.decode_batch`. Both are pure: no SimPy, no randomness. Property
tests hold them equal for every variant.

The host AQIC/TAPQ answers drive ``vfio_ap_irq_disable()``'s retry loop and
``vfio_ap_wait_for_irqclear()`` (spec 4.3); both evaluators count the host calls and sleeps.
"""

from __future__ import annotations

from dataclasses import dataclass

from hostsim import arch
from hostsim.intercept import Intercept
from hostsim.rules import Act, Kind, Rule, enable_table, hook_table, kvm_table
from hostsim.variants import Variant

NO_HOOK_GR1_HIGH = arch.pack_status(arch.RC.Q_NOT_AVAIL) << 32  # spec 3.4: status in bits 0-31
_RC_NORMAL = arch.RC.NORMAL
_RC_CHANGED = arch.RC.OTHERWISE_CHANGED
_RC_RESET = arch.RC.RESET_IN_PROGRESS
_RC_BUSY = arch.RC.BUSY


@dataclass(frozen=True, slots=True)
class Decision:
    """What KVM (and the hook) did with one intercept, and what it cost in host calls.

    ``cc`` is None where KVM leaves the PSW's condition code unchanged. ``hook_called``: the
    hook ran (under pqap_hook_rwsem or a module reference); ``mutex``: the global vfio_ap
    mutex was taken; ``pin``/``gisc``: the NIB pin and the GISC registration were attempted.
    """

    kind: Kind
    rule: str
    gr1: int
    cc: int | None
    pgm_code: int | None
    response_code: int | None
    guest_visible_rc: int | None
    hw_aqic_calls: int = 0
    hw_tapq_calls: int = 0
    sleeps: int = 0
    hook_called: bool = False
    mutex: bool = False
    pin: bool = False
    gisc: bool = False

    @property
    def sleep_ms(self) -> int:
        """Milliseconds of msleep(20) the hook asked for (each a minimum, spec 4.3)."""
        return self.sleeps * arch.HOOK_SLEEP_MS


def _first(table: tuple[Rule, ...], x: Intercept) -> Rule:
    for r in table:
        if r.when(x):
            return r
    raise AssertionError("rule tables end with an unconditional row")


def _irqclear_one(x: Intercept) -> tuple[int, int]:
    """vfio_ap_wait_for_irqclear(): (TAPQ calls, sleeps)."""
    sleeps = 0
    for j in range(arch.IRQCLEAR_MAX_TAPQ):
        rc, irq = x.tapq_answer(j)
        if rc in (_RC_NORMAL, _RC_RESET):
            if not irq:
                return j + 1, sleeps
            sleeps += 1
        elif rc == _RC_BUSY:
            sleeps += 1
        else:
            return j + 1, sleeps
    return arch.IRQCLEAR_MAX_TAPQ, sleeps


def _disable_one(x: Intercept, first_call: int) -> tuple[int, int, int, int]:
    """vfio_ap_irq_disable(): (status, AQIC calls, TAPQ calls, sleeps)."""
    sleeps = 0
    status = 0
    for i in range(arch.DISABLE_MAX_AQIC):
        status = x.aqic_answer(first_call + i)
        rc = arch.status_rc(status)
        if rc in (_RC_NORMAL, _RC_CHANGED):
            tapq, s = _irqclear_one(x)
            return status, i + 1, tapq, sleeps + s
        if rc in (_RC_RESET, _RC_BUSY):
            sleeps += 1
            continue
        return status, i + 1, 0, sleeps
    return status, arch.DISABLE_MAX_AQIC, 0, sleeps


def decode_one(x: Intercept, variant: Variant) -> Decision:
    """The scalar reference: what ``variant``'s kernel does with intercept ``x``."""
    r = _first(kvm_table(variant), x)
    gr1_in = x.gpr1
    if r.act == Act.USERSPACE:
        return Decision(Kind.USERSPACE_EXIT, r.id, gr1_in, None, None, None, None)
    if r.act == Act.PGM_PRIVILEGED:
        return Decision(Kind.PROGRAM_INTERRUPT, r.id, gr1_in, None, 2, None, None)
    if r.act == Act.PGM_SPECIFICATION:
        return Decision(Kind.PROGRAM_INTERRUPT, r.id, gr1_in, None, 6, None, None)
    if r.act == Act.NO_HOOK:
        gr1 = NO_HOOK_GR1_HIGH | (gr1_in & arch.MASK32)
        return Decision(Kind.NO_HOOK_RC01, r.id, gr1, 3, None, 1, arch.status_rc(gr1))
    # Act.CALL_HOOK
    h = _first(hook_table(variant), x)
    if h.act == Act.USERSPACE:
        return Decision(Kind.USERSPACE_EXIT, h.id, gr1_in, None, None, None, None, hook_called=True)
    if h.act in (Act.PGM_PRIVILEGED, Act.PGM_SPECIFICATION):
        code = 2 if h.act == Act.PGM_PRIVILEGED else 6
        return Decision(
            Kind.PROGRAM_INTERRUPT, h.id, gr1_in, None, code, None, None, hook_called=True
        )
    aqic = tapq = sleeps = 0
    pin = gisc = False
    rule = h.id
    if h.act == Act.SW_STATUS:
        status = arch.pack_status(h.rc)
    elif h.act == Act.DISABLE:
        status, aqic, tapq, sleeps = _disable_one(x, 0)
        rule = "disable.done"
    else:  # Act.ENABLE
        e = _first(enable_table(variant), x)
        pin = e.id not in ("enable.nib_zero", "enable.nib_not_in_memslot") or (
            variant.nib_check == "pin"
        )
        gisc = e.id in ("enable.gisc_register_failed", "enable.host_aqic")
        rule = e.id
        if e.act == Act.SW_STATUS:
            status = arch.pack_status(e.rc)
        else:  # Act.HOST_AQIC
            status = x.aqic_answer(0)
            aqic = 1
            rc = arch.status_rc(status)
            if rc == _RC_NORMAL:
                rule = "enable.aqic_normal"
            elif rc == _RC_CHANGED:
                rule = "enable.aqic_otherwise_changed"
            else:
                rule = "enable.aqic_failed_then_disable"
                _, a2, tapq, sleeps = _disable_one(x, 1)
                aqic += a2
    gr1 = status & arch.MASK32  # memcpy(&gprs[1], &qstatus, 4); gprs[1] >>= 32
    rc = arch.status_rc(gr1)
    cc = 3 if rc else (0 if variant.cc_zero_on_success else None)
    return Decision(
        Kind.HOOK_HANDLED,
        rule,
        gr1,
        cc,
        None,
        rc,
        rc,
        aqic,
        tapq,
        sleeps,
        hook_called=True,
        mutex=True,
        pin=pin,
        gisc=gisc,
    )
