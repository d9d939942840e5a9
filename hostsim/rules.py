"""The decision rules of intercepted PQAP as ordered tables, one set per kernel variant.

A table is a tuple of :class:`Rule` rows; the first row whose condition holds decides, as the
kernel's early returns do. A condition is a function of an *intercept view*: an object whose
attributes (``gpr0`` ... ``psw_mask`` and the configuration flags) are Python ints and bools for
the scalar evaluator, or numpy arrays for the vectorised one. Conditions use only operators that
mean the same on both (``&``, ``|``, ``!=``, ``==`` and :func:`not_`), so each rule is written
once and both evaluators walk the same rows.

Sources are the ids of ``shared/spec/kernel-pqap.md`` section 0.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from functools import cache
from typing import Any

from hostsim import arch
from hostsim.variants import Variant


class Kind(IntEnum):
    """What becomes of one intercepted PQAP (the ``kind`` of ``hostsim decode``)."""

    USERSPACE_EXIT = 0
    PROGRAM_INTERRUPT = 1
    HOOK_HANDLED = 2
    NO_HOOK_RC01 = 3


class Act(IntEnum):
    """What a table row does when its condition holds."""

    USERSPACE = 0  # return -EOPNOTSUPP: exit to the VMM
    PGM_PRIVILEGED = 1  # inject PGM_PRIVILEGED_OP
    PGM_SPECIFICATION = 2  # inject PGM_SPECIFICATION
    CALL_HOOK = 3  # KVM: call the registered vfio_ap hook
    NO_HOOK = 4  # KVM: answer RC 0x01 in GR1's high word, CC 3
    SW_STATUS = 5  # hook: answer the row's software response code (under the mutex)
    ENABLE = 6  # hook: vfio_ap_irq_enable
    DISABLE = 7  # hook: vfio_ap_irq_disable
    HOST_AQIC = 8  # enable: issue the host PQAP(AQIC) and act on its answer


def not_(x: Any) -> Any:
    """Logical not for a Python bool and for a numpy bool array alike."""
    return x ^ True


@dataclass(frozen=True)
class Rule:
    """One guard of a kernel function: the first whose condition holds decides."""

    id: str
    source: str
    when: Callable[[Any], Any]
    act: Act
    rc: int = -1  # response code for SW_STATUS

    def __repr__(self) -> str:
        return f"Rule({self.id})"


def _always(v: Any) -> bool:
    return True


# --- Shared guard conditions (K1 handle_pqap) ------------------------------------------------
def _ap_unavailable(v: Any) -> Any:
    return not_(v.ap_instructions_available)


def _apie_off(v: Any) -> Any:
    return not_(v.eca_apie)


def _fc_not_aqic(v: Any) -> Any:
    return arch.fc(v.gpr0) != arch.FunctionCode.AQIC


def _problem_state(v: Any) -> Any:
    return (v.psw_mask & arch.PSW_MASK_PSTATE) != 0


def _reserved_bits(v: Any) -> Any:
    return (v.gpr0 & arch.GR0_RESERVED_41_47) != 0


def _t_bit_without_apft(v: Any) -> Any:
    return not_(v.facility15) & ((v.gpr0 & arch.GR0_T_BIT) != 0)


def _apxa_range(v: Any) -> Any:
    return not_(v.apxa) & ((v.gpr0 & arch.GR0_APXA_RANGE) != 0)


def _no_facility65(v: Any) -> Any:
    return not_(v.facility65)


def _module_get_failed(v: Any) -> Any:
    return v.hook_registered & not_(v.hook_module_alive)


def _hook_registered(v: Any) -> Any:
    return v.hook_registered


def _checks(prefix: str, variant: Variant) -> tuple[Rule, ...]:
    """Privilege and specification checks, in K1's order (rows 4-8)."""
    src = "K1 handle_pqap" if prefix == "kvm" else "spec 9.1 hook-owns-fc (inferred)"
    rows = [
        Rule(f"{prefix}.problem_state", src, _problem_state, Act.PGM_PRIVILEGED),
        Rule(f"{prefix}.reserved_bits_41_47", src, _reserved_bits, Act.PGM_SPECIFICATION),
        Rule(f"{prefix}.t_bit_without_apft", src, _t_bit_without_apft, Act.PGM_SPECIFICATION),
        Rule(f"{prefix}.apxa_range", src, _apxa_range, Act.PGM_SPECIFICATION),
    ]
    if variant.checks_facility65:
        rows.append(Rule(f"{prefix}.no_facility65", src, _no_facility65, Act.PGM_SPECIFICATION))
    return tuple(rows)


@cache
def kvm_table(variant: Variant) -> tuple[Rule, ...]:
    """KVM ``handle_pqap()`` (arch/s390/kvm/priv.c): section 3 of the spec."""
    rows = [
        Rule("kvm.ap_unavailable", "K1 row 1", _ap_unavailable, Act.USERSPACE),
        Rule("kvm.apie_off", "K1 row 2", _apie_off, Act.USERSPACE),
    ]
    if variant.fc_check_in == "kvm":
        rows.append(Rule("kvm.fc_not_aqic", "K1 row 3", _fc_not_aqic, Act.USERSPACE))
        rows.extend(_checks("kvm", variant))
    if variant.hook_guard == "module":
        rows.append(
            Rule("kvm.module_get_failed", "K3 try_module_get", _module_get_failed, Act.USERSPACE)
        )
    rows.append(Rule("kvm.call_hook", "K1 row 9", _hook_registered, Act.CALL_HOOK))
    rows.append(Rule("kvm.no_hook", "K1 row 10, spec 3.4", _always, Act.NO_HOOK))
    return tuple(rows)


def _aiv_off(v: Any) -> Any:
    return not_(v.eca_aiv)


def _hook_cleared(v: Any) -> Any:
    return v.hook_cleared_in_flight


def _mdev_without_kvm(v: Any) -> Any:
    return not_(v.mdev_has_kvm)


def _queue_not_found(v: Any) -> Any:
    return not_(v.queue_assigned)


def _ir_set(v: Any) -> Any:
    return arch.ir(v.gpr1) != 0


@cache
def hook_table(variant: Variant) -> tuple[Rule, ...]:
    """vfio_ap ``handle_pqap()`` (drivers/s390/crypto/vfio_ap_ops.c): spec section 4.1."""
    rows: list[Rule] = []
    if variant.fc_check_in == "hook":
        rows.append(
            Rule(
                "hook.fc_not_aqic",
                "spec 9.1 hook-owns-fc: switch default",
                _fc_not_aqic,
                Act.USERSPACE,
            )
        )
        rows.extend(_checks("hook", variant))
    rows.append(Rule("hook.aiv_off", "V1 step 2 / V7", _aiv_off, Act.USERSPACE))
    # From here on the global mutex is held.
    if variant.hook_guard == "module":
        rows.append(
            Rule(
                "hook.cleared_in_flight",
                "V7: !pqap_hook under the lock",
                _hook_cleared,
                Act.SW_STATUS,
                arch.RC.Q_NOT_AVAIL,
            )
        )
    if variant.checks_mdev_kvm:
        rows.append(
            Rule(
                "hook.mdev_without_kvm",
                "V1 step 6",
                _mdev_without_kvm,
                Act.SW_STATUS,
                arch.RC.Q_NOT_AVAIL,
            )
        )
    rows.append(
        Rule(
            "hook.queue_not_found",
            "V1 step 7 / V7 vfio_ap_get_queue",
            _queue_not_found,
            Act.SW_STATUS,
            arch.RC.Q_NOT_AVAIL,
        )
    )
    rows.append(Rule("hook.irq_enable", "V1 step 8: IR bit set", _ir_set, Act.ENABLE))
    rows.append(Rule("hook.irq_disable", "V1 step 8: IR bit clear", _always, Act.DISABLE))
    return tuple(rows)


def _nib_zero(v: Any) -> Any:
    return v.gpr2 == 0


def _nib_not_in_memslot(v: Any) -> Any:
    return not_(v.nib_in_memslot)


def _pin_failed(v: Any) -> Any:
    return not_(v.pin_ok)


def _pv_nib_not_shared(v: Any) -> Any:
    return v.pv_guest & not_(v.nib_shared)


def _gisc_failed(v: Any) -> Any:
    return not_(v.gisc_register_ok)


@cache
def enable_table(variant: Variant) -> tuple[Rule, ...]:
    """``vfio_ap_irq_enable()`` up to the host AQIC: spec section 4.2 steps a-e."""
    bad = arch.RC.INVALID_ADDRESS
    rows: list[Rule] = []
    if variant.nib_check == "validate":
        rows.append(
            Rule("enable.nib_zero", "V1 vfio_ap_validate_nib", _nib_zero, Act.SW_STATUS, bad)
        )
        rows.append(
            Rule(
                "enable.nib_not_in_memslot",
                "V1 vfio_ap_validate_nib",
                _nib_not_in_memslot,
                Act.SW_STATUS,
                bad,
            )
        )
    else:  # 2019: no validation; a NIB outside guest memory makes the pin fail.
        rows.append(
            Rule(
                "enable.nib_not_in_memslot",
                "V7 vfio_pin_pages fails",
                _nib_not_in_memslot,
                Act.SW_STATUS,
                bad,
            )
        )
    rows.append(
        Rule("enable.pin_failed", "V1/V7 vfio_pin_pages != 1", _pin_failed, Act.SW_STATUS, bad)
    )
    if variant.checks_pv_nib_shared:
        rows.append(
            Rule(
                "enable.pv_nib_not_shared",
                "V1 ensure_nib_shared",
                _pv_nib_not_shared,
                Act.SW_STATUS,
                bad,
            )
        )
    if variant.gisc_fail_rc is not None:
        rows.append(
            Rule(
                "enable.gisc_register_failed",
                "V1 kvm_s390_gisc_register < 0 (M9)",
                _gisc_failed,
                Act.SW_STATUS,
                variant.gisc_fail_rc,
            )
        )
    rows.append(Rule("enable.host_aqic", "V1 step f: ap_aqic", _always, Act.HOST_AQIC))
    return tuple(rows)


# Outcome labels below the tables: the host AQIC's answer and the disable loop (spec 4.2 g, 4.3).
TAIL_RULES: tuple[str, ...] = (
    "enable.aqic_normal",
    "enable.aqic_otherwise_changed",
    "enable.aqic_failed_then_disable",
    "disable.done",
)


@cache
def all_rule_ids() -> tuple[str, ...]:
    """Every rule id of every variant, in a stable order: the index is the rule's code."""
    from hostsim.variants import VARIANTS

    ids: list[str] = []
    for var in VARIANTS.values():
        for table in (kvm_table(var), hook_table(var), enable_table(var)):
            for r in table:
                if r.id not in ids:
                    ids.append(r.id)
    ids.extend(TAIL_RULES)
    return tuple(ids)


def rule_code(rule_id: str) -> int:
    """Stable small-integer code of a rule id (see :func:`all_rule_ids`)."""
    return all_rule_ids().index(rule_id)
