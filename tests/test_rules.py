"""The kernel's PQAP rules, one named test per rule, checked with both evaluators.

Every test goes through :func:`tests.helpers.decide`, which runs ``decode_one`` and checks that
``decode_batch`` gives the same Decision inside a mixed batch. Spec references are to
``shared/spec/kernel-pqap.md``: section 3 is KVM's ``handle_pqap()`` (K1 rows 1-10), section 4
the vfio_ap hook (V1; V7 for the 2019 variants), section 9.4 the variant table.
"""

from __future__ import annotations

from typing import Any

import pytest

from hostsim import rules
from hostsim.decode import decode_one
from hostsim.decode_batch import decode_batch
from hostsim.intercept import InterceptBatch
from hostsim.rules import Act, Kind
from hostsim.variants import VARIANTS

from .helpers import (
    EXAMPLES_FILE,
    GR0_AQIC,
    GR1_DISABLE,
    GR1_ENABLE,
    IR,
    KVM_FC_VARIANTS,
    MODULE_VARIANTS,
    OLD_VARIANTS,
    PSTATE,
    SHARED_EXAMPLES_FILE,
    SUPERVISOR_PSW,
    VARIANT_NAMES,
    decide,
    decision_as_output,
    gr0,
    healthy,
    intercept_from_json,
    load_examples,
)

HOOK_VARIANT = "hook-owns-fc"
USERSPACE, PGM, HOOK, NOHOOK = (
    Kind.USERSPACE_EXIT,
    Kind.PROGRAM_INTERRUPT,
    Kind.HOOK_HANDLED,
    Kind.NO_HOOK_RC01,
)
NON_AQIC_FCS = [0x00, 0x01, 0x02, 0x04, 0x05, 0x07, 0x08, 0x06, 0x83, 0xFF]


def prefix(variant: str) -> str:
    """Where the privilege and specification checks live: KVM or (hook-owns-fc) the hook."""
    return "kvm" if VARIANTS[variant].fc_check_in == "kvm" else "hook"


def assert_userspace(d, rule: str, hook_called: bool = False) -> None:
    assert d.kind == USERSPACE and d.rule == rule
    assert (d.cc, d.pgm_code, d.response_code, d.guest_visible_rc) == (None, None, None, None)
    assert d.hook_called is hook_called and d.mutex is False
    assert (d.hw_aqic_calls, d.hw_tapq_calls, d.sleeps) == (0, 0, 0)


def assert_pgm(d, rule: str, code: int, gr1_in: int = GR1_ENABLE) -> None:
    assert d.kind == PGM and d.rule == rule and d.pgm_code == code
    assert d.cc is None and d.response_code is None and d.guest_visible_rc is None
    assert d.gr1 == gr1_in, "GR1 is untouched when a program interruption is injected"
    assert d.mutex is False and (d.hw_aqic_calls, d.hw_tapq_calls, d.sleeps) == (0, 0, 0)


def assert_hook_rc(d, rule: str, rc: int) -> None:
    assert d.kind == HOOK and d.rule == rule
    assert d.response_code == rc == d.guest_visible_rc
    assert d.gr1 == rc << 16, "the hook writes the zero-extended status word"
    assert d.cc == 3
    assert d.hook_called and d.mutex


def assert_no_hook(d, gr1_in: int) -> None:
    assert d.kind == NOHOOK and d.rule == "kvm.no_hook"
    assert d.gr1 == (0x00010000 << 32) | (gr1_in & 0xFFFFFFFF)
    assert d.response_code == 1 and d.cc == 3 and d.pgm_code is None
    assert d.guest_visible_rc == (d.gr1 >> 16) & 0xFF
    assert not d.hook_called and not d.mutex


# =============================================================================================
# KVM handle_pqap(), spec section 3 (K1)
# =============================================================================================
@pytest.mark.parametrize("variant", VARIANT_NAMES)
def test_kvm_row1_ap_instructions_unavailable_exits_to_userspace(variant: str) -> None:
    """Spec 3 row 1 (K1): !ap_instructions_available() -> -EOPNOTSUPP -> userspace exit."""
    assert_userspace(
        decide(healthy(ap_instructions_available=False), variant), "kvm.ap_unavailable"
    )


@pytest.mark.parametrize("variant", VARIANT_NAMES)
def test_kvm_row2_eca_apie_off_exits_to_userspace(variant: str) -> None:
    """Spec 3 row 2 (K1): !(eca & ECA_APIE) -> -EOPNOTSUPP -> userspace exit."""
    assert_userspace(decide(healthy(eca_apie=False), variant), "kvm.apie_off")


@pytest.mark.parametrize("fc", NON_AQIC_FCS)
@pytest.mark.parametrize("variant", KVM_FC_VARIANTS)
def test_kvm_row3_fc_not_aqic_exits_to_userspace(variant: str, fc: int) -> None:
    """Spec 3 row 3 (K1): fc = (gr0 >> 24) & 0xff != 0x03 -> -EOPNOTSUPP, also without a hook
    (spec 9.2: unknown fcs are neither answered RC 01 nor given a specification exception)."""
    assert_userspace(decide(healthy(gpr0=gr0(fc=fc)), variant), "kvm.fc_not_aqic")
    d = decide(healthy(gpr0=gr0(fc=fc), hook_registered=False), variant)
    assert_userspace(d, "kvm.fc_not_aqic")


@pytest.mark.parametrize("variant", VARIANT_NAMES)
def test_kvm_row3_fc_is_only_bits_32_39_of_gr0(variant: str) -> None:
    """Spec 2.1 / 9.2 (merged e5282de93105): fc = (reg0 >> 24) & 0xff, so bits 0-31 of GR0 do
    not change the function code."""
    d = decide(healthy(gpr0=0xFFFFFFFF00000000 | GR0_AQIC), variant)
    assert d.kind == HOOK and d.rule == "enable.aqic_normal"


@pytest.mark.parametrize("variant", VARIANT_NAMES)
def test_kvm_row4_problem_state_gives_privileged_operation(variant: str) -> None:
    """Spec 3 row 4 (K1): gpsw.mask & PSW_MASK_PSTATE -> inject PGM_PRIVILEGED_OP (0x02)
    ("PQAP instruction is allowed for guest kernel only"); hook-owns-fc: the hook does it."""
    d = decide(healthy(psw_mask=SUPERVISOR_PSW | PSTATE), variant)
    assert_pgm(d, f"{prefix(variant)}.problem_state", 0x02)
    assert d.hook_called is (variant == HOOK_VARIANT)


@pytest.mark.parametrize("bit", range(41, 48))
@pytest.mark.parametrize("variant", VARIANT_NAMES)
def test_kvm_row5_reserved_bits_41_47_gives_specification_exception(variant: str, bit: int) -> None:
    """Spec 3 row 5 (K1): gr0 & 0x007f0000 ("bits 41-47 must all be zeros") -> PGM 0x06."""
    d = decide(healthy(gpr0=GR0_AQIC | 1 << (63 - bit)), variant)
    assert_pgm(d, f"{prefix(variant)}.reserved_bits_41_47", 0x06)


@pytest.mark.parametrize("variant", VARIANT_NAMES)
def test_kvm_row6_t_bit_without_apft_gives_specification_exception(variant: str) -> None:
    """Spec 3 row 6 (K1): !test_kvm_facility(kvm, 15) && (gr0 & 0x00800000) -> PGM 0x06."""
    d = decide(healthy(gpr0=gr0(t=1), facility15=False), variant)
    assert_pgm(d, f"{prefix(variant)}.t_bit_without_apft", 0x06)


@pytest.mark.parametrize("variant", VARIANT_NAMES)
def test_kvm_row6_t_bit_with_apft_or_apft_without_t_bit_passes(variant: str) -> None:
    """Spec 3 row 6 (K1): the T bit is a specification error only without facility 15."""
    assert decide(healthy(gpr0=gr0(t=1), facility15=True), variant).kind == HOOK
    assert decide(healthy(gpr0=gr0(t=0), facility15=False), variant).kind == HOOK


@pytest.mark.parametrize(
    ("apid", "apqi"), [(64, 0), (0, 16), (0x80, 0x01), (0xFF, 0xFF), (1, 0xF0)]
)
@pytest.mark.parametrize("variant", VARIANT_NAMES)
def test_kvm_row7_apxa_range_without_apxa_gives_specification_exception(
    variant: str, apid: int, apqi: int
) -> None:
    """Spec 3 row 7 (K1): !(crycbd & 0x02) && (gr0 & 0x0000c0f0): "APXA not installed and APID
    greater 64 or APQI greater 16" -> PGM 0x06."""
    d = decide(healthy(gpr0=gr0(apid=apid, apqi=apqi), apxa=False), variant)
    assert_pgm(d, f"{prefix(variant)}.apxa_range", 0x06)


@pytest.mark.parametrize(
    ("apid", "apqi", "apxa"), [(63, 15, False), (0, 0, False), (255, 255, True)]
)
@pytest.mark.parametrize("variant", VARIANT_NAMES)
def test_kvm_row7_apqn_in_range_or_apxa_installed_passes(
    variant: str, apid: int, apqi: int, apxa: bool
) -> None:
    """Spec 3 row 7 (K1): APID <= 63 and APQI <= 15 always pass; with APXA any APQN passes."""
    assert decide(healthy(gpr0=gr0(apid=apid, apqi=apqi), apxa=apxa), variant).kind == HOOK


@pytest.mark.parametrize("variant", ["upstream", "merged-2019", HOOK_VARIANT])
def test_kvm_row8_facility65_missing_gives_specification_exception(variant: str) -> None:
    """Spec 3 row 8 (K1): !test_kvm_facility(kvm, 65) -> PGM 0x06 ("AQIC function code
    specific exception"); hook-owns-fc: checked by the hook (spec 9.1)."""
    assert_pgm(decide(healthy(facility65=False), variant), f"{prefix(variant)}.no_facility65", 6)


def test_kvm_row8_v4_2019_has_no_facility65_check() -> None:
    """Spec 9.1 / 9.4: the v4 patch had no facility-65 check (it appears from v5 on), so the
    hook runs (with a hook) or RC 01 is answered (without one)."""
    assert "kvm.no_facility65" not in [r.id for r in rules.kvm_table(VARIANTS["v4-2019"])]
    d = decide(healthy(facility65=False), "v4-2019")
    assert d.kind == HOOK and d.rule == "enable.aqic_normal"
    assert_no_hook(decide(healthy(facility65=False, hook_registered=False), "v4-2019"), GR1_ENABLE)


@pytest.mark.parametrize("variant", VARIANT_NAMES)
def test_kvm_row9_registered_hook_is_called(variant: str) -> None:
    """Spec 3 row 9 (K1): if kvm->arch.crypto.pqap_hook is set, KVM calls it."""
    d = decide(healthy(), variant)
    assert d.kind == HOOK and d.hook_called and d.mutex
    assert d.rule == "enable.aqic_normal"


@pytest.mark.parametrize(
    "gr1_in",
    [GR1_ENABLE, GR1_DISABLE, 0, 0xFFFFFFFFFFFFFFFF, 0x123456789ABCDEF0, 0x00000000_00420000],
)
@pytest.mark.parametrize("variant", VARIANT_NAMES)
def test_kvm_row10_no_hook_puts_rc01_in_gr1_high_word_cc3(variant: str, gr1_in: int) -> None:
    """Spec 3 row 10 and 3.4 (K1): with no hook, memcpy(&gprs[1], &status, 4) puts the status in
    GR1 bits 0-31: GR1 = (0x00010000 << 32) | (GR1_in & 0xffffffff); CC 3; the RC the guest
    reads at bits 40-47 is the low half of its own input."""
    d = decide(healthy(hook_registered=False, gpr1=gr1_in), variant)
    assert_no_hook(d, gr1_in)
    assert d.guest_visible_rc == (gr1_in >> 16) & 0xFF


def test_kvm_row10_linux_guest_sees_rc0_with_cc3() -> None:
    """Spec 3.4: a Linux guest's GR1 (gisa 0, isc n) reads back as RC 0 with CC 3."""
    d = decide(healthy(hook_registered=False, gpr1=GR1_ENABLE), "upstream")
    assert d.gr1 == 0x0001000000000000 | 3 == 0x0001000000000003
    assert (d.response_code, d.guest_visible_rc, d.cc) == (1, 0, 3)
    d = decide(healthy(hook_registered=False, gpr1=0x00420000), "upstream")
    assert (d.response_code, d.guest_visible_rc, d.cc) == (1, 0x42, 3)


@pytest.mark.parametrize("variant", MODULE_VARIANTS)
def test_kvm_module_get_failed_exits_to_userspace(variant: str) -> None:
    """Spec 9.4 "owner module going away" (K3 try_module_get, before v5.15): userspace exit;
    the hook is not called."""
    d = decide(healthy(hook_module_alive=False), variant)
    assert_userspace(d, "kvm.module_get_failed")


@pytest.mark.parametrize("variant", MODULE_VARIANTS)
def test_kvm_module_liveness_is_irrelevant_without_a_hook(variant: str) -> None:
    """K3: try_module_get is only attempted on a registered hook; without one: RC 01 / CC 3."""
    assert_no_hook(decide(healthy(hook_module_alive=False, hook_registered=False), variant), IR | 3)


def test_kvm_upstream_rwsem_has_no_module_reference() -> None:
    """Spec 9.3 (1e753732bda6, v5.15): the rwsem replaces the module reference, so a dying
    owner module is "n/a" upstream (spec 9.4)."""
    assert "kvm.module_get_failed" not in [r.id for r in rules.kvm_table(VARIANTS["upstream"])]
    assert decide(healthy(hook_module_alive=False), "upstream").rule == "enable.aqic_normal"


def test_kvm_hook_owns_fc_kvm_checks_only_availability_and_apie() -> None:
    """Spec 9.1 hook-owns-fc: KVM checks only AP availability and ECA_APIE, then calls the hook
    if there is one; without a hook every PQAP gets RC 01 / CC 3 whatever its registers."""
    ids = [r.id for r in rules.kvm_table(VARIANTS[HOOK_VARIANT])]
    assert ids == [
        "kvm.ap_unavailable",
        "kvm.apie_off",
        "kvm.module_get_failed",
        "kvm.call_hook",
        "kvm.no_hook",
    ]
    bad = dict(
        gpr0=gr0(fc=4, t=1, apid=0xFF) | 0x007F0000,
        psw_mask=SUPERVISOR_PSW | PSTATE,
        facility15=False,
        facility65=False,
        apxa=False,
        eca_aiv=False,
        hook_registered=False,
    )
    assert_no_hook(decide(healthy(**bad), HOOK_VARIANT), GR1_ENABLE)


# =============================================================================================
# vfio_ap handle_pqap(), spec section 4.1 (V1; V7 for 2019)
# =============================================================================================
@pytest.mark.parametrize("variant", VARIANT_NAMES)
def test_hook_step2_aiv_off_exits_to_userspace_before_the_mutex(variant: str) -> None:
    """Spec 4.1 step 2 (V1/V7): !(eca & ECA_AIV) -> return -EOPNOTSUPP before any lock; KVM
    sets no CC (spec 3.1), the vCPU exits to userspace."""
    d = decide(healthy(eca_aiv=False), variant)
    assert_userspace(d, "hook.aiv_off", hook_called=True)


@pytest.mark.parametrize("variant", MODULE_VARIANTS)
def test_hook_2019_pqap_hook_cleared_in_flight_answers_rc01(variant: str) -> None:
    """Spec 4.1 step 5 / 9.4 "hook pointer cleared in flight" (V7, module reference): the hook
    finds !pqap_hook under the lock -> RC 01 / CC 3."""
    assert_hook_rc(
        decide(healthy(hook_cleared_in_flight=True), variant), "hook.cleared_in_flight", 1
    )


def test_hook_upstream_cleared_in_flight_is_impossible_under_rwsem() -> None:
    """Spec 4.1 step 5 / 9.4: upstream holds pqap_hook_rwsem for read, so the hook cannot be
    cleared in flight; the flag has no effect."""
    d = decide(healthy(hook_cleared_in_flight=True), "upstream")
    assert d.rule == "enable.aqic_normal"


def test_hook_step6_mdev_without_kvm_answers_rc01() -> None:
    """Spec 4.1 step 6 (V1): !matrix_mdev->kvm -> RC 01 (Q_NOT_AVAIL), CC 3."""
    assert_hook_rc(decide(healthy(mdev_has_kvm=False), "upstream"), "hook.mdev_without_kvm", 1)


@pytest.mark.parametrize("variant", OLD_VARIANTS)
def test_hook_2019_does_not_check_mdev_kvm(variant: str) -> None:
    """Spec 9.4 "mdev without KVM": not checked in the 2019 hook (V7)."""
    assert decide(healthy(mdev_has_kvm=False), variant).rule == "enable.aqic_normal"


@pytest.mark.parametrize("gr1", [GR1_ENABLE, GR1_DISABLE])
@pytest.mark.parametrize("variant", VARIANT_NAMES)
def test_hook_step7_queue_not_found_answers_rc01(variant: str, gr1: int) -> None:
    """Spec 4.1 step 7 (V1 vfio_ap_mdev_get_queue / V7 vfio_ap_get_queue): APQN not in the
    mdev -> RC 01, CC 3, for enable and disable alike."""
    d = decide(healthy(queue_assigned=False, gpr1=gr1), variant)
    assert_hook_rc(d, "hook.queue_not_found", 1)
    assert (d.pin, d.gisc, d.hw_aqic_calls) == (False, False, 0)


@pytest.mark.parametrize("variant", VARIANT_NAMES)
def test_hook_step8_ir_bit_selects_enable_or_disable(variant: str) -> None:
    """Spec 4.1 step 8 (V1): IR (GR1 bit 16) set -> vfio_ap_irq_enable(q, gr1 & 7), clear ->
    vfio_ap_irq_disable(q). Other GR1 bits do not matter."""
    en = decide(healthy(gpr1=IR | 0xFFFF_7FFF_FFFF), variant)
    assert en.rule == "enable.aqic_normal" and en.pin and en.gisc
    dis = decide(healthy(gpr1=0xFFFF_7FFF_FFFF_FFFF & ~IR), variant)
    assert dis.rule == "disable.done" and not dis.pin and not dis.gisc


@pytest.mark.parametrize("fc", NON_AQIC_FCS)
def test_hook_owns_fc_switch_default_exits_to_userspace(fc: int) -> None:
    """Spec 9.1 / 9.4 hook-owns-fc: the hook switches on fc; default -> -EOPNOTSUPP ->
    userspace exit (after the module reference was taken)."""
    d = decide(healthy(gpr0=gr0(fc=fc)), HOOK_VARIANT)
    assert_userspace(d, "hook.fc_not_aqic", hook_called=True)


def test_hook_owns_fc_no_hook_answers_rc01_for_any_fc() -> None:
    """Spec 9.4 row "fc != 3, no hook": hook-owns-fc answers RC 0x01 / CC 3 in-kernel."""
    for fc in NON_AQIC_FCS:
        assert_no_hook(
            decide(healthy(gpr0=gr0(fc=fc), hook_registered=False), HOOK_VARIANT), IR | 3
        )


@pytest.mark.parametrize(
    ("kw", "rule", "code"),
    [
        ({"psw_mask": SUPERVISOR_PSW | PSTATE}, "hook.problem_state", 2),
        ({"gpr0": GR0_AQIC | 0x00010000}, "hook.reserved_bits_41_47", 6),
        ({"gpr0": gr0(t=1), "facility15": False}, "hook.t_bit_without_apft", 6),
        ({"gpr0": gr0(apqi=16), "apxa": False}, "hook.apxa_range", 6),
        ({"facility65": False}, "hook.no_facility65", 6),
    ],
)
def test_hook_owns_fc_aqic_case_makes_privilege_and_specification_checks(
    kw: dict[str, Any], rule: str, code: int
) -> None:
    """Spec 9.1 hook-owns-fc: the hook's AQIC case makes the privilege and specification
    checks in upstream's order (facility 65 included); the hook raises the interruption."""
    d = decide(healthy(**kw), HOOK_VARIANT)
    assert_pgm(d, rule, code)
    assert d.hook_called


# =============================================================================================
# vfio_ap_irq_enable(), spec section 4.2
# =============================================================================================
def test_enable_step_a_nib_zero_gives_rc06_invalid_address() -> None:
    """Spec 4.2 a (V1 vfio_ap_validate_nib): nib == 0 -> RC 0x06; nothing is pinned."""
    d = decide(healthy(gpr2=0), "upstream")
    assert_hook_rc(d, "enable.nib_zero", 6)
    assert (d.pin, d.gisc, d.hw_aqic_calls) == (False, False, 0)


@pytest.mark.parametrize("variant", OLD_VARIANTS)
def test_enable_2019_nib_zero_is_not_checked(variant: str) -> None:
    """Spec 9.4 "NIB = 0": the 2019 hook does no validation; the pin decides ("none for 0"),
    so a NIB of 0 inside a memslot goes on to the host AQIC."""
    d = decide(healthy(gpr2=0), variant)
    assert d.rule == "enable.aqic_normal" and d.pin and d.hw_aqic_calls == 1


@pytest.mark.parametrize("variant", VARIANT_NAMES)
def test_enable_step_a_nib_not_in_memslot_gives_rc06(variant: str) -> None:
    """Spec 4.2 a (V1 validate: GPA not in a memslot) / 9.4 (2019: the pin fails): RC 0x06.
    Upstream rejects before pinning; 2019 attempts the pin."""
    d = decide(healthy(nib_in_memslot=False), variant)
    assert_hook_rc(d, "enable.nib_not_in_memslot", 6)
    assert d.pin is (variant != "upstream")
    assert d.gisc is False and d.hw_aqic_calls == 0


@pytest.mark.parametrize("variant", VARIANT_NAMES)
def test_enable_step_b_pin_failure_gives_rc06(variant: str) -> None:
    """Spec 4.2 b (V1/V7): vfio_pin_pages() != 1 -> RC 0x06; no GISC registration."""
    d = decide(healthy(pin_ok=False), variant)
    assert_hook_rc(d, "enable.pin_failed", 6)
    assert d.pin and not d.gisc


def test_enable_step_d_pv_guest_nib_not_shared_gives_rc06() -> None:
    """Spec 4.2 d (V1 ensure_nib_shared, v6.5+): protected guest, NIB not shared -> RC 0x06."""
    d = decide(healthy(pv_guest=True, nib_shared=False), "upstream")
    assert_hook_rc(d, "enable.pv_nib_not_shared", 6)
    assert d.pin and not d.gisc


def test_enable_step_d_only_protected_guests_need_a_shared_nib() -> None:
    """Spec 4.2 d: the shared check applies to PV guests only."""
    assert (
        decide(healthy(pv_guest=False, nib_shared=False), "upstream").rule == "enable.aqic_normal"
    )
    assert decide(healthy(pv_guest=True, nib_shared=True), "upstream").rule == "enable.aqic_normal"


@pytest.mark.parametrize("variant", OLD_VARIANTS)
def test_enable_2019_has_no_pv_check(variant: str) -> None:
    """Spec 9.4 "PV guest, NIB not shared": n/a before v6.5."""
    d = decide(healthy(pv_guest=True, nib_shared=False), variant)
    assert d.rule == "enable.aqic_normal"


def test_enable_step_e_gisc_register_failure_gives_rc06() -> None:
    """Spec 4.2 e (V1, M9 v6.8+): kvm_s390_gisc_register() < 0 -> unpin, RC 0x06."""
    d = decide(healthy(gisc_register_ok=False), "upstream")
    assert_hook_rc(d, "enable.gisc_register_failed", 6)
    assert d.pin and d.gisc and d.hw_aqic_calls == 0


@pytest.mark.parametrize("variant", OLD_VARIANTS)
def test_enable_2019_gisc_register_result_unchecked(variant: str) -> None:
    """Spec 4.2 e / 9.4: the 2019 code (V7) does not check kvm_s390_gisc_register()."""
    d = decide(healthy(gisc_register_ok=False), variant)
    assert d.rule == "enable.aqic_normal" and d.hw_aqic_calls == 1


@pytest.mark.parametrize("variant", VARIANT_NAMES)
def test_enable_step_g_rc00_normal_answers_the_host_status(variant: str) -> None:
    """Spec 4.2 f-g (V1): host PQAP(AQIC) answers RC 0x00 -> the guest gets that status; one
    host AQIC, no disable."""
    d = decide(healthy(hw_aqic=[0]), variant)
    assert d.kind == HOOK and d.rule == "enable.aqic_normal"
    assert (d.gr1, d.response_code, d.guest_visible_rc) == (0, 0, 0)
    assert (d.hw_aqic_calls, d.hw_tapq_calls, d.sleeps) == (1, 0, 0)
    assert d.pin and d.gisc and d.mutex


@pytest.mark.parametrize("variant", VARIANT_NAMES)
def test_enable_step_g_rc07_otherwise_changed_answers_rc07_without_disable(variant: str) -> None:
    """Spec 4.2 g (V1, M9): RC 0x07 -> unregister the new ISC, unpin; RC 0x07, CC 3; no
    disable loop."""
    d = decide(healthy(hw_aqic=[7, 5, 5], hw_tapq=[(5, True)]), variant)
    assert d.rule == "enable.aqic_otherwise_changed"
    assert (d.gr1, d.response_code, d.cc) == (0x00070000, 7, 3)
    assert (d.hw_aqic_calls, d.hw_tapq_calls, d.sleeps) == (1, 0, 0)


@pytest.mark.parametrize("rc", [0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x08, 0x42])
@pytest.mark.parametrize("variant", VARIANT_NAMES)
def test_enable_step_g_other_rc_runs_disable_and_guest_sees_enable_status(
    variant: str, rc: int
) -> None:
    """Spec 4.2 g "any other RC" (V1): pr_warn, then vfio_ap_irq_disable() (the full loop of
    4.3) consuming the NEXT host AQIC answers; the guest gets the enable's status, CC 3."""
    # Enable answers rc; the disable then sees BUSY, BUSY, NORMAL; TAPQ says irq off.
    d = decide(healthy(hw_aqic=[rc, 5, 5, 0], hw_tapq=[(0, False)]), variant)
    assert d.rule == "enable.aqic_failed_then_disable"
    assert (d.gr1, d.response_code, d.guest_visible_rc, d.cc) == (rc << 16, rc, rc, 3)
    assert (d.hw_aqic_calls, d.hw_tapq_calls, d.sleeps, d.sleep_ms) == (4, 1, 2, 40)


def test_enable_failed_disable_gives_up_with_other_rc_immediately() -> None:
    """Spec 4.2 g + 4.3: the disable's first answer is e.g. RC 0x03 -> WARN, no TAPQ; the
    guest still sees the enable's RC."""
    d = decide(healthy(hw_aqic=[0x42, 3], hw_tapq=[(0, True)]), "upstream")
    assert (d.response_code, d.hw_aqic_calls, d.hw_tapq_calls, d.sleeps) == (0x42, 2, 0, 0)


def test_enable_failed_disable_six_busy_answers() -> None:
    """Spec 4.2 g + 4.3: enable RC 0x03 then six busy disable answers (the last one repeats):
    1 + 6 AQICs, 6 sleeps (120 ms), the guest sees RC 0x03."""
    d = decide(healthy(hw_aqic=[3, 5]), "upstream")
    assert (d.response_code, d.hw_aqic_calls, d.hw_tapq_calls, d.sleep_ms) == (3, 7, 0, 120)


def test_enable_failed_worst_case_is_7_aqic_5_tapq_200ms() -> None:
    """Spec 4.3 bounds: "a failed enable: 1 AQIC plus the disable bound": enable BUSY, then
    5 x BUSY, NORMAL, then 5 TAPQs with the I bit still on = 7 AQIC, 5 TAPQ, 10 sleeps."""
    d = decide(healthy(hw_aqic=[5, 5, 5, 5, 5, 5, 0], hw_tapq=[(0, True)]), "upstream")
    assert d.rule == "enable.aqic_failed_then_disable"
    assert (d.hw_aqic_calls, d.hw_tapq_calls, d.sleeps, d.sleep_ms) == (7, 5, 10, 200)
    assert (d.response_code, d.cc) == (5, 3)


# =============================================================================================
# vfio_ap_irq_disable() and vfio_ap_wait_for_irqclear(), spec section 4.3
# =============================================================================================
def disable(variant: str = "upstream", **kw: Any):
    return decide(healthy(gpr1=GR1_DISABLE, **kw), variant)


@pytest.mark.parametrize("busy", [0x05, 0x02])
@pytest.mark.parametrize("variant", VARIANT_NAMES)
def test_disable_six_busy_answers_give_6_aqic_6_sleeps_120ms_and_return_last_rc(
    variant: str, busy: int
) -> None:
    """Spec 4.3: RC 0x02/0x05 -> msleep(20); "retries = 5; do {} while (retries--)" runs at most
    6 times: 6 busy answers give 6 AQICs, 6 sleeps = 120 ms, and that RC is returned."""
    d = disable(variant, hw_aqic=[busy] * 6, hw_tapq=[(0, True)])
    assert d.rule == "disable.done"
    assert (d.hw_aqic_calls, d.hw_tapq_calls, d.sleeps, d.sleep_ms) == (6, 0, 6, 120)
    assert (d.gr1, d.response_code, d.cc) == (busy << 16, busy, 3)


def test_disable_last_hw_answer_repeats() -> None:
    """hw_aqic semantics: the last answer repeats, so [5] alone is six busy answers."""
    assert disable(hw_aqic=[5]) == disable(hw_aqic=[5, 5, 5, 5, 5, 5, 5, 5])
    assert disable(hw_aqic=[2, 5]).sleep_ms == 120


def test_disable_five_busy_then_normal_then_irq_on_five_times_gives_200ms() -> None:
    """Spec 4.3 bound: 5 x 20 ms busy, then NORMAL, then 5 x 20 ms IR polling = 200 ms with
    6 AQICs and 5 TAPQs ("could not clear IR bit"); the NORMAL status is returned."""
    d = disable(hw_aqic=[5, 5, 5, 5, 5, 0], hw_tapq=[(0, True)] * 5)
    assert (d.hw_aqic_calls, d.hw_tapq_calls, d.sleeps, d.sleep_ms) == (6, 5, 10, 200)
    assert (d.gr1, d.response_code, d.cc) == (0, 0, 0)


@pytest.mark.parametrize("rc", [0x00, 0x07])
def test_disable_rc00_or_rc07_waits_for_irqclear_then_ends(rc: int) -> None:
    """Spec 4.3: RC 0x00 or 0x07 -> vfio_ap_wait_for_irqclear(apqn); goto end_free."""
    d = disable(hw_aqic=[rc, 5], hw_tapq=[(5, False), (0, True), (0, False)])
    assert (d.hw_aqic_calls, d.hw_tapq_calls, d.sleeps) == (1, 3, 2)
    assert (d.response_code, d.cc) == (rc, 3 if rc else 0)


@pytest.mark.parametrize("rc", [0x01, 0x03, 0x04, 0x06, 0x08, 0x42, 0xFF])
def test_disable_other_rc_gives_up_after_one_aqic(rc: int) -> None:
    """Spec 4.3: "anything else: WARN_ONCE; goto end_free" (0x01, 0x03, 0x04, 0x06 ...):
    no sleep, no TAPQ, that status is returned with CC 3."""
    d = disable(hw_aqic=[rc, 0], hw_tapq=[(0, True)])
    assert (d.hw_aqic_calls, d.hw_tapq_calls, d.sleeps) == (1, 0, 0)
    assert (d.gr1, d.response_code, d.cc) == (rc << 16, rc, 3)


@pytest.mark.parametrize("rc", [0x00, 0x02])
def test_irqclear_rc00_or_rc02_with_irq_off_returns(rc: int) -> None:
    """Spec 4.3 wait_for_irqclear: RC 0x00 or 0x02 and !irq_enabled -> return (1 TAPQ)."""
    d = disable(hw_aqic=[0], hw_tapq=[(rc, False), (5, True)])
    assert (d.hw_tapq_calls, d.sleeps) == (1, 0)


@pytest.mark.parametrize("rc", [0x00, 0x02])
def test_irqclear_rc00_or_rc02_with_irq_on_sleeps(rc: int) -> None:
    """Spec 4.3 wait_for_irqclear: RC 0x00/0x02 with irq_enabled falls through to the busy
    case: msleep(20) and poll again."""
    d = disable(hw_aqic=[0], hw_tapq=[(rc, True), (rc, True), (0, False)])
    assert (d.hw_tapq_calls, d.sleeps) == (3, 2)


@pytest.mark.parametrize("irq", [False, True])
def test_irqclear_rc05_sleeps_whatever_the_irq_bit(irq: bool) -> None:
    """Spec 4.3 wait_for_irqclear: RC 0x05 -> msleep(20), regardless of the I bit."""
    d = disable(hw_aqic=[0], hw_tapq=[(5, irq), (0, False)])
    assert (d.hw_tapq_calls, d.sleeps) == (2, 1)


@pytest.mark.parametrize("irq", [False, True])
@pytest.mark.parametrize("rc", [0x01, 0x03, 0x04, 0x06, 0x42])
def test_irqclear_other_rc_returns_without_sleep(rc: int, irq: bool) -> None:
    """Spec 4.3 wait_for_irqclear: "anything else: WARN_ONCE; return"."""
    d = disable(hw_aqic=[0], hw_tapq=[(5, True), (rc, irq), (5, True)])
    assert (d.hw_tapq_calls, d.sleeps) == (2, 1)


def test_irqclear_gives_up_after_five_tapq() -> None:
    """Spec 4.3: "retry = 5; do {} while (--retry)" runs at most 5 times, 5 sleeps, then
    WARN_ONCE("could not clear IR bit"); the disable's status is still returned."""
    d = disable(hw_aqic=[0], hw_tapq=[(5, False), (0, True)])
    assert (d.hw_aqic_calls, d.hw_tapq_calls, d.sleeps, d.sleep_ms) == (1, 5, 5, 100)
    assert d.response_code == 0


# --- The full 32-bit status form of hw_aqic ------------------------------------------------
@pytest.mark.parametrize(("variant", "cc"), [("upstream", 0), ("merged-2019", None)])
def test_hw_aqic_full_status_word_0x01000000_is_irq_enabled_with_rc0(
    variant: str, cc: int | None
) -> None:
    """hw_aqic values > 0xff are whole status words (spec 2.4): 0x01000000 is the I bit with
    RC 0: a successful enable; GR1 is that status word zero-extended."""
    d = decide(healthy(hw_aqic=[0x01000000]), variant)
    assert d.rule == "enable.aqic_normal"
    assert (d.gr1, d.response_code, d.guest_visible_rc, d.cc) == (0x01000000, 0, 0, cc)


def test_hw_aqic_full_status_word_rc_byte_drives_the_disable_loop() -> None:
    """Only bits 40-47 (the RC) of a status word decide; E/R/F/I bits ride along to GR1."""
    d = disable(hw_aqic=[0x80050000, 0x41020000, 0xE1070000], hw_tapq=[(0, False)])
    assert (d.hw_aqic_calls, d.hw_tapq_calls, d.sleeps) == (3, 1, 2)
    assert (d.gr1, d.response_code, d.cc) == (0xE1070000, 7, 3)
    d = decide(healthy(hw_aqic=[0xA1070000]), "upstream")
    assert d.rule == "enable.aqic_otherwise_changed" and d.gr1 == 0xA1070000


# =============================================================================================
# Condition codes (spec 3 row 9, 3.2, 9.4)
# =============================================================================================
def test_cc_upstream_is_0_after_successful_hook() -> None:
    """Spec 3 row 9 / 3.2 (83303a4c776c, v6.8): ret == 0 and RC == 0 -> CC 0."""
    assert decide(healthy(), "upstream").cc == 0
    assert disable("upstream").cc == 0


@pytest.mark.parametrize("variant", OLD_VARIANTS)
def test_cc_2019_variants_leave_cc_unchanged_after_success(variant: str) -> None:
    """Spec 9.4 "hook succeeds with RC 0": CC unchanged (None) before 83303a4c776c (K2)."""
    assert decide(healthy(), variant).cc is None
    assert disable(variant).cc is None


@pytest.mark.parametrize(
    "kw",
    [
        {"queue_assigned": False},
        {"nib_in_memslot": False},
        {"pin_ok": False},
        {"hw_aqic": [7]},
        {"hw_aqic": [3, 0]},
        {"gpr1": GR1_DISABLE, "hw_aqic": [5]},
        {"hook_registered": False},
    ],
    ids=["queue", "memslot", "pin", "rc07", "rc03", "disable-busy", "no-hook"],
)
@pytest.mark.parametrize("variant", VARIANT_NAMES)
def test_cc_is_3_whenever_rc_is_nonzero(variant: str, kw: dict[str, Any]) -> None:
    """Spec 3 row 9/10, 3.2, 9.4 "hook RC != 0": CC 3 in every variant."""
    d = decide(healthy(**kw), variant)
    assert d.response_code and d.cc == 3


@pytest.mark.parametrize("variant", VARIANT_NAMES)
def test_cc_untouched_by_program_interrupts_and_userspace_exits(variant: str) -> None:
    """Spec 3: "GR1, GR2 and the PSW CC are untouched unless a row says otherwise"; spec 3.1:
    with -EOPNOTSUPP KVM sets no CC."""
    for kw in ({"psw_mask": SUPERVISOR_PSW | PSTATE}, {"eca_apie": False}, {"eca_aiv": False}):
        d = decide(healthy(**kw), variant)
        assert d.cc is None and d.gr1 == GR1_ENABLE


# =============================================================================================
# Rule order (the first guard that fires decides)
# =============================================================================================
@pytest.mark.parametrize("variant", VARIANT_NAMES)
def test_order_ap_unavailable_beats_apie_off_beats_everything(variant: str) -> None:
    """Spec 3 rows 1-2 (K1): availability first, then ECA_APIE, before any register check."""
    everything = dict(
        gpr0=gr0(fc=4) | 0x007F0000,
        psw_mask=SUPERVISOR_PSW | PSTATE,
        eca_aiv=False,
        hook_registered=False,
    )
    d = decide(healthy(ap_instructions_available=False, eca_apie=False, **everything), variant)
    assert d.rule == "kvm.ap_unavailable"
    assert decide(healthy(eca_apie=False, **everything), variant).rule == "kvm.apie_off"


@pytest.mark.parametrize("variant", KVM_FC_VARIANTS)
def test_order_kvm_fc_check_before_privilege(variant: str) -> None:
    """Spec 3 rows 3-4 (K1): fc != 3 is checked before problem state: userspace exit, not a
    privileged-operation exception."""
    d = decide(healthy(gpr0=gr0(fc=0), psw_mask=SUPERVISOR_PSW | PSTATE), variant)
    assert_userspace(d, "kvm.fc_not_aqic")


def test_order_hook_owns_fc_fc_check_in_hook_before_privilege() -> None:
    """Spec 9.1 hook-owns-fc: KVM does not check fc; the hook's switch sees fc != 3 before
    its AQIC case checks the privilege; without a hook: RC 01 / CC 3 (spec 9.4)."""
    x = healthy(gpr0=gr0(fc=0), psw_mask=SUPERVISOR_PSW | PSTATE)
    assert_userspace(decide(x, HOOK_VARIANT), "hook.fc_not_aqic", hook_called=True)
    y = healthy(gpr0=gr0(fc=0), psw_mask=SUPERVISOR_PSW | PSTATE, hook_registered=False)
    assert_no_hook(decide(y, HOOK_VARIANT), GR1_ENABLE)


def test_order_hook_owns_fc_module_reference_before_fc_switch() -> None:
    """Spec 9.4 row 1, hook-owns-fc: "rwsem/module ref taken first": a dying module gives
    the module-get userspace exit even for fc != 3."""
    d = decide(healthy(gpr0=gr0(fc=4), hook_module_alive=False), HOOK_VARIANT)
    assert_userspace(d, "kvm.module_get_failed")


@pytest.mark.parametrize("variant", VARIANT_NAMES)
def test_order_problem_state_beats_reserved_bits(variant: str) -> None:
    """Spec 3 rows 4-5 (K1): the privilege check comes before the bits 41-47 check."""
    d = decide(healthy(gpr0=GR0_AQIC | 0x007F0000, psw_mask=SUPERVISOR_PSW | PSTATE), variant)
    assert_pgm(d, f"{prefix(variant)}.problem_state", 2)


@pytest.mark.parametrize("variant", VARIANT_NAMES)
def test_order_specification_checks_rows_5_to_8(variant: str) -> None:
    """Spec 3 rows 5-8 (K1): bits 41-47, then T without APFT, then APXA range, then fac 65."""
    p = prefix(variant)
    every = dict(facility15=False, apxa=False, facility65=False)
    g = gr0(t=1, apid=0xFF, apqi=0xFF)
    assert decide(healthy(gpr0=g | 0x00400000, **every), variant).rule == f"{p}.reserved_bits_41_47"
    assert decide(healthy(gpr0=g, **every), variant).rule == f"{p}.t_bit_without_apft"
    g = gr0(apid=0xFF, apqi=0xFF)
    assert decide(healthy(gpr0=g, **every), variant).rule == f"{p}.apxa_range"
    if VARIANTS[variant].checks_facility65:
        assert decide(healthy(**every), variant).rule == f"{p}.no_facility65"


@pytest.mark.parametrize("variant", KVM_FC_VARIANTS)
def test_order_kvm_checks_before_the_hook_lookup(variant: str) -> None:
    """Spec 3 rows 4-10 (K1): the checks run whether or not a hook is registered."""
    d = decide(healthy(psw_mask=SUPERVISOR_PSW | PSTATE, hook_registered=False), variant)
    assert_pgm(d, "kvm.problem_state", 2)


@pytest.mark.parametrize("variant", MODULE_VARIANTS)
def test_order_kvm_checks_before_module_reference(variant: str) -> None:
    """Spec 9.2 (v8): the checks come before try_module_get."""
    d = decide(healthy(psw_mask=SUPERVISOR_PSW | PSTATE, hook_module_alive=False), variant)
    assert d.kind == (PGM if variant != HOOK_VARIANT else USERSPACE)


@pytest.mark.parametrize("variant", VARIANT_NAMES)
def test_order_aiv_off_beats_queue_lookup(variant: str) -> None:
    """Spec 4.1 steps 2 and 7 (V1): the ECA_AIV check returns -EOPNOTSUPP before the mutex
    and the queue lookup (and before the mdev/hook-cleared checks)."""
    x = healthy(
        eca_aiv=False, queue_assigned=False, mdev_has_kvm=False, hook_cleared_in_flight=True
    )
    assert_userspace(decide(x, variant), "hook.aiv_off", hook_called=True)


def test_order_hook_owns_fc_privilege_before_aiv() -> None:
    """Spec 9.1 hook-owns-fc: the AQIC case's checks precede the hook's own AIV test."""
    d = decide(healthy(eca_aiv=False, psw_mask=SUPERVISOR_PSW | PSTATE), HOOK_VARIANT)
    assert_pgm(d, "hook.problem_state", 2)


def test_order_upstream_mdev_without_kvm_before_queue_lookup() -> None:
    """Spec 4.1 steps 6-7 (V1): !matrix_mdev->kvm is tested before the queue lookup."""
    d = decide(healthy(mdev_has_kvm=False, queue_assigned=False), "upstream")
    assert d.rule == "hook.mdev_without_kvm"


@pytest.mark.parametrize("variant", MODULE_VARIANTS)
def test_order_2019_hook_cleared_before_queue_lookup(variant: str) -> None:
    """Spec 4.1 steps 5 and 7 (V7): !pqap_hook is tested before the queue lookup."""
    d = decide(healthy(hook_cleared_in_flight=True, queue_assigned=False), variant)
    assert d.rule == "hook.cleared_in_flight"


@pytest.mark.parametrize("variant", VARIANT_NAMES)
def test_order_queue_lookup_before_enable_or_disable(variant: str) -> None:
    """Spec 4.1 steps 7-8: no queue -> RC 01 before any NIB check or host AQIC."""
    d = decide(healthy(queue_assigned=False, gpr2=0, pin_ok=False, hw_aqic=[5]), variant)
    assert d.rule == "hook.queue_not_found"


def test_order_upstream_enable_steps_a_b_d_e() -> None:
    """Spec 4.2 (V1): nib == 0, then memslot, then pin, then PV shared, then gisc register."""
    bad = dict(
        gpr2=0,
        nib_in_memslot=False,
        pin_ok=False,
        pv_guest=True,
        nib_shared=False,
        gisc_register_ok=False,
    )
    order = [
        ("gpr2", "enable.nib_zero"),
        ("nib_in_memslot", "enable.nib_not_in_memslot"),
        ("pin_ok", "enable.pin_failed"),
        ("nib_shared", "enable.pv_nib_not_shared"),
        ("gisc_register_ok", "enable.gisc_register_failed"),
    ]
    for key, rule in order:
        assert decide(healthy(**bad), "upstream").rule == rule
        bad.pop(key)
    assert decide(healthy(**bad), "upstream").rule == "enable.aqic_normal"


@pytest.mark.parametrize("variant", OLD_VARIANTS)
def test_order_2019_memslot_before_pin(variant: str) -> None:
    """Spec 9.4 / V7: a NIB outside guest memory makes the pin fail (memslot row first)."""
    assert decide(healthy(nib_in_memslot=False, pin_ok=False), variant).rule == (
        "enable.nib_not_in_memslot"
    )


# =============================================================================================
# Spec 9.4: the variant table, row by row
# =============================================================================================
def _outcome(d) -> tuple:
    return (d.kind, d.pgm_code, d.response_code, d.cc)


UX = (USERSPACE, None, None, None)
P2 = (PGM, 2, None, None)
P6 = (PGM, 6, None, None)
RC01 = (NOHOOK, None, 1, 3)
H01 = (HOOK, None, 1, 3)
H06 = (HOOK, None, 6, 3)
OK0 = (HOOK, None, 0, 0)
OKN = (HOOK, None, 0, None)
H03 = (HOOK, None, 3, 3)

SPEC_9_4: list[tuple[str, dict[str, Any], tuple, tuple, tuple, tuple]] = [
    # row id, input, upstream, merged-2019, v4-2019, hook-owns-fc
    ("fc_not_3_hook_registered", {"gpr0": gr0(fc=4)}, UX, UX, UX, UX),
    ("fc_not_3_no_hook", {"gpr0": gr0(fc=4), "hook_registered": False}, UX, UX, UX, RC01),
    ("problem_state_hook", {"psw_mask": SUPERVISOR_PSW | PSTATE}, P2, P2, P2, P2),
    (
        "problem_state_no_hook",
        {"psw_mask": SUPERVISOR_PSW | PSTATE, "hook_registered": False},
        P2,
        P2,
        P2,
        RC01,
    ),
    ("bits_41_47_hook", {"gpr0": GR0_AQIC | 0x00200000}, P6, P6, P6, P6),
    (
        "bits_41_47_no_hook",
        {"gpr0": GR0_AQIC | 0x00200000, "hook_registered": False},
        P6,
        P6,
        P6,
        RC01,
    ),
    ("t_without_apft_hook", {"gpr0": gr0(t=1), "facility15": False}, P6, P6, P6, P6),
    (
        "t_without_apft_no_hook",
        {"gpr0": gr0(t=1), "facility15": False, "hook_registered": False},
        P6,
        P6,
        P6,
        RC01,
    ),
    ("apxa_range_hook", {"gpr0": gr0(apid=64), "apxa": False}, P6, P6, P6, P6),
    (
        "apxa_range_no_hook",
        {"gpr0": gr0(apid=64), "apxa": False, "hook_registered": False},
        P6,
        P6,
        P6,
        RC01,
    ),
    ("no_facility65_hook", {"facility65": False}, P6, P6, OKN, P6),
    ("no_facility65_no_hook", {"facility65": False, "hook_registered": False}, P6, P6, RC01, RC01),
    ("hook_succeeds_rc0", {}, OK0, OKN, OKN, OKN),
    ("hook_rc_not_0", {"hw_aqic": [3, 0]}, H03, H03, H03, H03),
    ("owner_module_going_away", {"hook_module_alive": False}, OK0, UX, UX, UX),
    ("hook_cleared_in_flight", {"hook_cleared_in_flight": True}, OK0, H01, H01, H01),
    ("mdev_without_kvm", {"mdev_has_kvm": False}, H01, OKN, OKN, OKN),
    ("nib_zero", {"gpr2": 0}, H06, OKN, OKN, OKN),
    ("nib_outside_memslots", {"nib_in_memslot": False}, H06, H06, H06, H06),
    ("gisc_registration_fails", {"gisc_register_ok": False}, H06, OKN, OKN, OKN),
    ("pv_nib_not_shared", {"pv_guest": True, "nib_shared": False}, H06, OKN, OKN, OKN),
]


@pytest.mark.parametrize(
    ("kw", "variant", "want"),
    [
        pytest.param(kw, v, want, id=f"{row}-{v}")
        for row, kw, *wants in SPEC_9_4
        for v, want in zip(VARIANT_NAMES, wants, strict=True)
    ],
)
def test_spec_9_4_variant_table_row(kw: dict[str, Any], variant: str, want: tuple) -> None:
    """Spec 9.4 "Variant differences in observable outcome": (kind, pgm, RC, CC) per row."""
    assert VARIANT_NAMES == ("upstream", "merged-2019", "v4-2019", "hook-owns-fc")
    assert _outcome(decide(healthy(**kw), variant)) == want


def test_spec_9_4_global_lock_row() -> None:
    """Spec 9.4 "global lock": mdevs_lock upstream, matrix_dev->lock in the 2019 variants."""
    assert VARIANTS["upstream"].global_lock_name == "matrix_dev->mdevs_lock"
    for v in OLD_VARIANTS:
        assert VARIANTS[v].global_lock_name == "matrix_dev->lock"


# =============================================================================================
# Every row of every table, for every variant
# =============================================================================================
#: How to make each row fire on an otherwise healthy AQIC enable, keyed by the part of the
#: rule id after the dot, and the rule id the Decision then names (dispatch rows hand over to
#: the next table, so the final id is that of the row reached below them).
TRIGGERS: dict[str, tuple[dict[str, Any], str | None]] = {
    "ap_unavailable": ({"ap_instructions_available": False}, None),
    "apie_off": ({"eca_apie": False}, None),
    "fc_not_aqic": ({"gpr0": gr0(fc=1)}, None),
    "problem_state": ({"psw_mask": SUPERVISOR_PSW | PSTATE}, None),
    "reserved_bits_41_47": ({"gpr0": GR0_AQIC | 0x00100000}, None),
    "t_bit_without_apft": ({"gpr0": gr0(t=1), "facility15": False}, None),
    "apxa_range": ({"gpr0": gr0(apqi=0x10), "apxa": False}, None),
    "no_facility65": ({"facility65": False}, None),
    "module_get_failed": ({"hook_module_alive": False}, None),
    "call_hook": ({}, "enable.aqic_normal"),
    "no_hook": ({"hook_registered": False}, None),
    "aiv_off": ({"eca_aiv": False}, None),
    "cleared_in_flight": ({"hook_cleared_in_flight": True}, None),
    "mdev_without_kvm": ({"mdev_has_kvm": False}, None),
    "queue_not_found": ({"queue_assigned": False}, None),
    "irq_enable": ({}, "enable.aqic_normal"),
    "irq_disable": ({"gpr1": GR1_DISABLE}, "disable.done"),
    "nib_zero": ({"gpr2": 0}, None),
    "nib_not_in_memslot": ({"nib_in_memslot": False}, None),
    "pin_failed": ({"pin_ok": False}, None),
    "pv_nib_not_shared": ({"pv_guest": True, "nib_shared": False}, None),
    "gisc_register_failed": ({"gisc_register_ok": False}, None),
    "host_aqic": ({}, "enable.aqic_normal"),
}
ACT_KIND = {
    Act.USERSPACE: USERSPACE,
    Act.PGM_PRIVILEGED: PGM,
    Act.PGM_SPECIFICATION: PGM,
    Act.NO_HOOK: NOHOOK,
    Act.SW_STATUS: HOOK,
}
TABLE_ROWS = [
    pytest.param(v, table.__name__, r, id=f"{v}-{r.id}")
    for v in VARIANT_NAMES
    for table in (rules.kvm_table, rules.hook_table, rules.enable_table)
    for r in table(VARIANTS[v])
]


@pytest.mark.parametrize(("variant", "table", "row"), TABLE_ROWS)
def test_every_table_row_fires_on_its_trigger(variant: str, table: str, row: rules.Rule) -> None:
    """kvm_table / hook_table / enable_table: each row of each variant decides when its
    condition is the only one that holds, with the outcome its Act names."""
    kw, final = TRIGGERS[row.id.split(".", 1)[1]]
    d = decide(healthy(**kw), variant)
    assert d.rule == (final or row.id)
    if row.act in ACT_KIND:
        assert d.kind == ACT_KIND[row.act]
    if row.act == Act.PGM_PRIVILEGED:
        assert d.pgm_code == 2
    if row.act == Act.PGM_SPECIFICATION:
        assert d.pgm_code == 6
    if row.act == Act.SW_STATUS:
        assert d.response_code == row.rc and d.gr1 == row.rc << 16 and d.cc == 3
    assert d.hook_called is (table != "kvm_table" or row.act == Act.CALL_HOOK)


def test_trigger_map_covers_every_rule_id() -> None:
    """Meta: a new table row needs a trigger here (and a named test above)."""
    table_ids = [i for i in rules.all_rule_ids() if i not in rules.TAIL_RULES]
    assert {i.split(".", 1)[1] for i in table_ids} == set(TRIGGERS)


def test_all_rule_ids_are_unique_and_stable() -> None:
    """rules.all_rule_ids(): every table row of every variant plus the tail labels, once each;
    rule_code is the index."""
    ids = rules.all_rule_ids()
    assert len(ids) == len(set(ids))
    assert ids[-len(rules.TAIL_RULES) :] == rules.TAIL_RULES
    for k, rid in enumerate(ids):
        assert rules.rule_code(rid) == k
    in_tables = {
        r.id
        for v in VARIANTS.values()
        for t in (rules.kvm_table, rules.hook_table, rules.enable_table)
        for r in t(v)
    }
    assert set(ids) == in_tables | set(rules.TAIL_RULES)


@pytest.mark.parametrize("variant", VARIANT_NAMES)
def test_tables_end_with_an_unconditional_row(variant: str) -> None:
    """Each table's last row always holds, as each kernel function's fall-through does."""
    v = VARIANTS[variant]
    assert rules.kvm_table(v)[-1].id == "kvm.no_hook"
    assert rules.hook_table(v)[-1].id == "hook.irq_disable"
    assert rules.enable_table(v)[-1].id == "enable.host_aqic"
    x = healthy()
    for t in (rules.kvm_table, rules.hook_table, rules.enable_table):
        assert t(v)[-1].when(x) is True


# =============================================================================================
# The worked examples (shared/spec/decode-examples.jsonl), both evaluators
# =============================================================================================
EXAMPLES = load_examples()


def test_examples_file_is_the_shared_copy() -> None:
    """tests/data holds a verbatim copy of the spec's examples; 39 of them."""
    assert len(EXAMPLES) == 39
    if SHARED_EXAMPLES_FILE.exists():
        assert SHARED_EXAMPLES_FILE.read_bytes() == EXAMPLES_FILE.read_bytes()


@pytest.mark.parametrize("example", EXAMPLES, ids=[e["id"] for e in EXAMPLES])
def test_decode_example_scalar(example: dict[str, Any]) -> None:
    """decode_one on each worked example gives its expected output."""
    x = intercept_from_json(example["input"])
    d = decode_one(x, VARIANTS[example["input"]["variant"]])
    assert decision_as_output(d) == example["expected"]


@pytest.mark.parametrize("variant", VARIANT_NAMES)
def test_decode_examples_batch_per_variant(variant: str) -> None:
    """decode_batch on all examples of one variant, as one batch, gives the expected outputs."""
    mine = [e for e in EXAMPLES if e["input"]["variant"] == variant]
    assert mine
    batch = InterceptBatch.from_intercepts([intercept_from_json(e["input"]) for e in mine])
    out = decode_batch(batch, VARIANTS[variant])
    for k, e in enumerate(mine):
        assert decision_as_output(out.row(k)) == e["expected"], e["id"]


def test_decode_examples_batch_all_together_per_variant_order() -> None:
    """All 39 examples decoded in one batch per variant keep their order and outputs."""
    got = {}
    for variant in VARIANT_NAMES:
        idx = [k for k, e in enumerate(EXAMPLES) if e["input"]["variant"] == variant]
        batch = InterceptBatch.from_intercepts(
            [intercept_from_json(EXAMPLES[k]["input"]) for k in idx]
        )
        out = decode_batch(batch, VARIANTS[variant])
        got.update({k: decision_as_output(out.row(j)) for j, k in enumerate(idx)})
    assert [got[k] for k in range(len(EXAMPLES))] == [e["expected"] for e in EXAMPLES]
