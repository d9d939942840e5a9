"""hostsim.arch: constants against the spec tables, and extractors on ints and uint64 arrays.

Spec: ``shared/spec/kernel-pqap.md`` sections 2 (registers, fields, constants) and 5 (AP
response codes). IBM bit numbering: bit 0 is the most significant of 64.
"""

from __future__ import annotations

import numpy as np
import pytest

from hostsim import arch

MASK64 = (1 << 64) - 1


def ibm_bits(*bits: int) -> int:
    """The 64-bit mask with the given IBM-numbered bits set."""
    return sum(1 << (63 - b) for b in bits)


# --- Constants against the spec tables ------------------------------------------------------
def test_gr0_t_bit_mask_is_bit_40() -> None:
    """Spec 2.1: T bit is GR0 bit 40, C mask 0x00800000 (K1)."""
    assert arch.GR0_T_BIT == 0x00800000 == ibm_bits(40)


def test_gr0_reserved_mask_is_bits_41_to_47() -> None:
    """Spec 2.1: bits 41-47 must be zero for AQIC, C mask 0x007f0000 (K1)."""
    assert arch.GR0_RESERVED_41_47 == 0x007F0000 == ibm_bits(*range(41, 48))


def test_gr0_apxa_range_mask_is_apid_ge_64_or_apqi_ge_16() -> None:
    """Spec 2.1: without APXA, bits 48-49 (APID >= 64) and 56-59 (APQI >= 16): 0x0000c0f0."""
    assert arch.GR0_APXA_RANGE == 0x0000C0F0 == ibm_bits(48, 49, 56, 57, 58, 59)


def test_gr0_fc_apqn_fields() -> None:
    """Spec 2.1: FC is bits 32-39 ((gr0 >> 24) & 0xff); APQN bits 48-63 (gr0 & 0xffff)."""
    assert arch.GR0_FC_SHIFT == 24 and arch.GR0_FC_MASK == 0xFF
    assert arch.GR0_APQN_MASK == 0xFFFF
    assert arch.GR0_APID_SHIFT == 8


def test_gr1_ir_bit_and_isc_mask() -> None:
    """Spec 2.2: IR is GR1 bit 16 (mask 0x0000800000000000); guest ISC is gr1 & 0x07."""
    assert arch.GR1_IR_BIT == 0x0000800000000000 == ibm_bits(16)
    assert arch.GR1_IR_SHIFT == 47
    assert arch.GR1_ISC_MASK == 0x07 == ibm_bits(61, 62, 63)


def test_gr1_status_word_fields() -> None:
    """Spec 2.4: struct ap_queue_status in GR1 bits 32-63; RC mask 0x00ff0000 (bits 40-47)."""
    assert arch.STATUS_QUEUE_EMPTY == 0x80000000 == ibm_bits(32)
    assert arch.STATUS_REPLIES_WAITING == 0x40000000 == ibm_bits(33)
    assert arch.STATUS_QUEUE_FULL == 0x20000000 == ibm_bits(34)
    assert arch.STATUS_ASYNC == 0x02000000 == ibm_bits(38)
    assert arch.STATUS_IRQ_ENABLED == 0x01000000 == ibm_bits(39)
    assert arch.STATUS_RC_MASK == 0x00FF0000 == ibm_bits(*range(40, 48))
    assert arch.STATUS_RC_SHIFT == 16


def test_psw_problem_state_and_cc_position() -> None:
    """Spec 2.5: PSW_MASK_PSTATE = 0x0001000000000000 (bit 15); CC is 3UL << 44 (bits 18-19)."""
    assert arch.PSW_MASK_PSTATE == 0x0001000000000000 == ibm_bits(15)
    assert arch.PSW_CC_SHIFT == 44
    assert arch.PSW_CC_MASK == 3 << 44 == ibm_bits(18, 19)
    assert arch.PSW_DEFAULT_SUPERVISOR & arch.PSW_MASK_PSTATE == 0


def test_program_interruption_codes() -> None:
    """Spec 2.6: PGM_OPERATION 0x01, PGM_PRIVILEGED_OP 0x02, PGM_SPECIFICATION 0x06 (K7)."""
    assert arch.PgmCode.OPERATION == 0x0001
    assert arch.PgmCode.PRIVILEGED_OP == 0x0002
    assert arch.PgmCode.SPECIFICATION == 0x0006


def test_sie_controls_and_crycb() -> None:
    """Spec 2.7: ECA_APIE = 0x00000008, ECA_AIV = 0x00200000; CRYCB format 2 = 3, APXA 0x02."""
    assert arch.ECA_APIE == 0x00000008
    assert arch.ECA_AIV == 0x00200000
    assert (arch.CRYCB_FORMAT0, arch.CRYCB_FORMAT1, arch.CRYCB_FORMAT2) == (0, 1, 3)
    assert arch.CRYCB_FORMAT_MASK == 3
    assert arch.CRYCB_APXA_BIT == 0x02
    assert arch.CRYCB_FORMAT2 & arch.CRYCB_APXA_BIT
    assert not arch.CRYCB_FORMAT1 & arch.CRYCB_APXA_BIT


def test_facilities_and_opcode() -> None:
    """Spec 2.1, 2.7 and 7: APFT is facility 15, AQIC facility 65, MSAX3 76; PQAP is 0xb2af."""
    assert (arch.FACILITY_APFT, arch.FACILITY_AQIC, arch.FACILITY_MSAX3) == (15, 65, 76)
    assert arch.PQAP_OPCODE == 0xB2AF
    assert arch.SIE_ICPT_INSTRUCTION == 0x04
    assert arch.KVM_EXIT_S390_SIEIC == 13


def test_function_codes() -> None:
    """Spec 7: 0 TAPQ, 1 RAPQ, 2 ZAPQ, 3 AQIC, 4 QCI, 5 QACT, 7 BAPQ, 8 AAPQ (P1)."""
    want = {"TAPQ": 0, "RAPQ": 1, "ZAPQ": 2, "AQIC": 3, "QCI": 4, "QACT": 5, "BAPQ": 7, "AAPQ": 8}
    assert {f.name: f.value for f in arch.FunctionCode} == want


def test_hook_loop_bounds() -> None:
    """Spec 4.3: the disable loop runs at most 6 AQICs, irqclear at most 5 TAPQs, msleep(20)."""
    assert arch.DISABLE_MAX_AQIC == 6
    assert arch.IRQCLEAR_MAX_TAPQ == 5
    assert arch.HOOK_SLEEP_MS == 20


#: Spec section 5, verbatim (value -> name without the AP_RESPONSE_ prefix).
SPEC_5_RESPONSE_CODES = {
    0x00: "NORMAL",
    0x01: "Q_NOT_AVAIL",
    0x02: "RESET_IN_PROGRESS",
    0x03: "DECONFIGURED",
    0x04: "CHECKSTOPPED",
    0x05: "BUSY",
    0x06: "INVALID_ADDRESS",
    0x07: "OTHERWISE_CHANGED",
    0x08: "INVALID_GISA",
    0x09: "Q_BOUND_TO_ANOTHER",
    0x0A: "STATE_CHANGE_IN_PROGRESS",
    0x0B: "Q_NOT_BOUND",
    0x10: "Q_FULL",
    0x11: "INDEX_TOO_BIG",
    0x13: "NO_FIRST_PART",
    0x15: "MESSAGE_TOO_BIG",
    0x16: "REQ_FAC_NOT_INST",
    0x30: "Q_BIND_ERROR",
    0x31: "Q_NOT_AVAIL_FOR_ASSOC",
    0x32: "Q_NOT_EMPTY",
    0x33: "BIND_LIMIT_EXCEEDED",
    0x34: "INVALID_ASSOC_SECRET",
    0x35: "ASSOC_SECRET_NOT_UNIQUE",
    0x36: "ASSOC_FAILED",
    0x42: "INVALID_DOMAIN",
}


@pytest.mark.parametrize(("value", "name"), sorted(SPEC_5_RESPONSE_CODES.items()))
def test_response_code_names_match_spec_section_5(value: int, name: str) -> None:
    """Spec 5: AP_RESPONSE_* names and values (P2 ap_bus.h and its newer additions)."""
    assert arch.RC[name] == value
    assert arch.rc_name(value) == "AP_RESPONSE_" + name


def test_response_code_enum_has_no_values_outside_spec_section_5() -> None:
    """Spec 5: besides the table only 0xFF (software-only "partially received") exists."""
    extra = {rc.value for rc in arch.RC} - set(SPEC_5_RESPONSE_CODES)
    assert extra == {0xFF}
    assert arch.AP_RESPONSE_NO_PENDING_REPLY == arch.RC.Q_FULL == 0x10


@pytest.mark.parametrize("value", [0x0C, 0x12, 0x14, 0x41, 0xFE])
def test_rc_name_of_unnamed_code_is_hex(value: int) -> None:
    """Codes outside spec 5 have no kernel name; rc_name shows them as hex."""
    assert arch.rc_name(value) == f"0x{value:02x}"


# --- Extractors: int and uint64 arrays ------------------------------------------------------
def _values() -> list[int]:
    rng = np.random.default_rng(20190222)
    edge = [0, 1, MASK64, 1 << 63, 0x03000101, 0xFFFFFFFF03000101, 0x0000800000000007]
    edge += [1 << b for b in range(64)]
    return edge + [int(v) for v in rng.integers(0, MASK64, 500, dtype=np.uint64, endpoint=True)]


VALUES = _values()
ARRAY = np.array(VALUES, dtype=np.uint64)

EXTRACTORS = [
    arch.fc,
    arch.t_bit,
    arch.apqn,
    arch.apid,
    arch.apqi,
    arch.ir,
    arch.isc,
    arch.status_rc,
    arch.status_irq_enabled,
    arch.psw_cc,
]


@pytest.mark.parametrize("fn", EXTRACTORS, ids=lambda f: f.__name__)
def test_extractor_gives_same_values_on_int_and_uint64_array(fn) -> None:
    """Spec 2 / DESIGN: every extractor works on a Python int and a uint64 array alike."""
    got = fn(ARRAY)
    assert isinstance(got, np.ndarray)
    assert got.dtype == np.uint64
    assert got.tolist() == [fn(v) for v in VALUES]
    assert all(type(fn(v)) is int for v in VALUES[:10])


@pytest.mark.parametrize(
    ("fn", "value", "want"),
    [
        (arch.fc, 0x03000101, 3),
        (arch.fc, 0xFFFFFFFF03000101, 3),  # only bits 32-39 count
        (arch.fc, 0x00800000, 0),
        (arch.t_bit, 0x00800000, 1),
        (arch.t_bit, 0x007F0000, 0),
        (arch.apqn, 0x0300ABCD, 0xABCD),
        (arch.apid, 0x0300ABCD, 0xAB),
        (arch.apqi, 0x0300ABCD, 0xCD),
        (arch.ir, 0x0000800000000000, 1),
        (arch.ir, 0x0000400000000007, 0),
        (arch.isc, 0x0000800000000007, 7),
        (arch.isc, 0x000080000000000B, 3),
        (arch.status_rc, 0x00050000, 5),
        (arch.status_rc, 0x81420000, 0x42),
        (arch.status_irq_enabled, 0x01000000, 1),
        (arch.status_irq_enabled, 0x00FF0000, 0),
        (arch.psw_cc, 0x0704300180000000, 3),
        (arch.psw_cc, 0x0704100180000000, 1),
    ],
)
def test_extractor_value_from_spec_field_table(fn, value: int, want: int) -> None:
    """Spec 2.1, 2.2, 2.4, 2.5: the field each extractor reads."""
    assert fn(value) == want
    assert fn(np.array([value, value], np.uint64)).tolist() == [want, want]


def test_pack_status_on_ints_and_uint64_arrays() -> None:
    """Spec 2.4: status word = RC in bits 40-47 and I bit (39); same on int and array."""
    rc = np.arange(256, dtype=np.uint64)
    irq = (rc % 2).astype(np.uint64)
    got = arch.pack_status(rc, irq)
    assert got.dtype == np.uint64
    assert got.tolist() == [arch.pack_status(int(a), int(b)) for a, b in zip(rc, irq, strict=True)]
    assert arch.pack_status(1) == 0x00010000
    assert arch.pack_status(0, 1) == 0x01000000
    assert arch.pack_status(0x42, 1) == 0x01420000
    assert arch.status_rc(got).tolist() == rc.tolist()
    assert arch.status_irq_enabled(got).tolist() == irq.tolist()


@pytest.mark.parametrize("cc", [0, 1, 2, 3])
def test_set_psw_cc_on_ints_and_uint64_arrays(cc: int) -> None:
    """Spec 2.5: kvm_s390_set_psw_cc clears 3UL << 44 and ORs cc << 44; nothing else changes."""
    got = arch.set_psw_cc(ARRAY, cc)
    assert got.dtype == np.uint64
    assert got.tolist() == [arch.set_psw_cc(v, cc) for v in VALUES]
    assert arch.psw_cc(got).tolist() == [cc] * len(VALUES)
    assert ((got ^ ARRAY) & ~np.uint64(arch.PSW_CC_MASK)).tolist() == [0] * len(VALUES)
    assert arch.set_psw_cc(MASK64, cc) == (MASK64 & ~(3 << 44)) | (cc << 44)


def test_make_gr0_and_make_gr1_build_the_fields_back() -> None:
    """Spec 2.1 and 2.2: make_gr0 / make_gr1_aqic are the extractors' inverses."""
    g0 = arch.make_gr0(3, 0x41, 0x1F, t=1)
    assert g0 == 0x0380411F
    assert (arch.fc(g0), arch.t_bit(g0), arch.apid(g0), arch.apqi(g0)) == (3, 1, 0x41, 0x1F)
    g1 = arch.make_gr1_aqic(1, 5)
    assert g1 == 0x0000800000000005
    assert (arch.ir(g1), arch.isc(g1)) == (1, 5)
    assert arch.make_gr1_aqic(0, 0xF) == 7


@pytest.mark.parametrize(
    ("value", "want"),
    [
        (0x00, 0x00000000),
        (0x05, 0x00050000),
        (0x42, 0x00420000),
        (0xFF, 0x00FF0000),
        (0x01000000, 0x01000000),  # whole status word: I bit, RC 0
        (0x80050000, 0x80050000),  # whole status word: E bit, RC 5
        (0x100, 0x100),
        (0x1_0000_0000 | 0x00070000, 0x00070000),  # only 32 bits are kept
    ],
)
def test_hw_status_word_accepts_rc_or_full_status_word(value: int, want: int) -> None:
    """hw_aqic answers: values <= 0xff are RCs (moved to bits 40-47), larger ones are whole
    32-bit status words (e.g. 0x01000000 = I bit on, RC 0)."""
    assert arch.hw_status_word(value) == want
