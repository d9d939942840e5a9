"""Architecture facts for intercepted PQAP: masks, codes, facilities and field extractors.

Every constant names the kernel source it was read from (ids as in ``shared/spec/kernel-pqap.md``
section 0: K1 = ``arch/s390/kvm/priv.c``, V1 = ``drivers/s390/crypto/vfio_ap_ops.c``, P1 =
``arch/s390/include/asm/ap.h``, P2 = ``drivers/s390/crypto/ap_bus.h``, K5 =
``arch/s390/kvm/kvm-s390.c``, K7 = ``arch/s390/include/uapi/asm/sie.h``).

Bit numbers are IBM's (bit 0 is the most significant of 64). Masks are the value of the 64-bit
register, as the kernel's C code writes them.

The extractors use only ``>>``, ``&``, ``|`` and ``<<`` with Python ints, so each one works on a
Python ``int`` and on a ``numpy.uint64`` array alike (numpy keeps the array's dtype when the other
operand is a Python int).
"""

from __future__ import annotations

from enum import IntEnum
from typing import TypeVar

import numpy as np

U64 = TypeVar("U64", int, np.ndarray)

MASK64 = (1 << 64) - 1
MASK32 = (1 << 32) - 1

# --- Instruction --------------------------------------------------------------------------
PQAP_OPCODE = 0xB2AF  # K1 kvm_s390_handle_b2 "case 0xaf"; P1 wrappers ".insn rre,0xb2af0000"
SIE_ICPT_INSTRUCTION = 0x04  # K7 sie_intercept_code: 0x04 "Instruction"
#: ICPT_PV_INSTR: a protected (PV) guest's instruction intercept (host-operations.md 5, H15);
#: not in sie_intercept_code, so the tracepoint prints the hex fallback "(0x68)"
SIE_ICPT_PV_INSTRUCTION = 0x68
KVM_EXIT_S390_SIEIC = 13  # include/uapi/linux/kvm.h; spec section 1


class FunctionCode(IntEnum):
    """PQAP function codes in GR0 bits 32-39 (P1 wrappers ap_tapq ... ap_aapq)."""

    TAPQ = 0x00
    RAPQ = 0x01
    ZAPQ = 0x02
    AQIC = 0x03
    QCI = 0x04
    QACT = 0x05
    BAPQ = 0x07
    AAPQ = 0x08


# --- GR0 (K1 handle_pqap; spec 2.1) ---------------------------------------------------------
GR0_FC_SHIFT = 24  # K1: fc = (reg0 >> 24) & 0xff
GR0_FC_MASK = 0xFF
GR0_T_BIT = 0x00800000  # bit 40; K1 "!test_kvm_facility(kvm, 15) && (reg0 & 0x00800000UL)"
GR0_RESERVED_41_47 = 0x007F0000  # K1 "bits 41-47 must all be zeros"
GR0_APXA_RANGE = 0x0000C0F0  # K1 "APXA not installed and APID greater 64 or APQI greater 16"
GR0_APQN_MASK = 0xFFFF  # V1 handle_pqap: apqn = gprs[0] & 0xffff
GR0_APID_SHIFT = 8  # P1 AP_QID_CARD(qid) = (qid >> 8) & 0xff
GR0_BYTE_MASK = 0xFF

# --- GR1 on input: union ap_qirq_ctrl (P1; spec 2.2) ---------------------------------------
GR1_IR_SHIFT = 63 - 16  # V1: (status >> (63 - 16)) & 0x01
GR1_IR_BIT = 1 << GR1_IR_SHIFT  # 0x0000800000000000
GR1_ISC_MASK = 0x07  # V1: status & 0x07 is the guest ISC

# --- GR1 on output: struct ap_queue_status in bits 32-63 (P1; spec 2.4) --------------------
STATUS_QUEUE_EMPTY = 0x80000000  # bit 32
STATUS_REPLIES_WAITING = 0x40000000  # bit 33
STATUS_QUEUE_FULL = 0x20000000  # bit 34
STATUS_ASYNC = 0x02000000  # bit 38 (newer P1 only)
STATUS_IRQ_ENABLED = 0x01000000  # bit 39
STATUS_RC_SHIFT = 16
STATUS_RC_MASK = 0x00FF0000  # bits 40-47; K1 tests exactly this mask to choose CC 3

# --- PSW (K1; kvm-s390.h kvm_s390_set_psw_cc; spec 2.5) -------------------------------------
PSW_MASK_PSTATE = 0x0001000000000000  # bit 15: problem state
PSW_CC_SHIFT = 44  # kvm_s390_set_psw_cc: mask &= ~(3UL << 44); mask |= cc << 44
PSW_CC_MASK = 3 << PSW_CC_SHIFT
PSW_DEFAULT_SUPERVISOR = 0x0704000180000000  # DAT, IO, EXT, MCHK on, 64-bit, key 0, CC 0

# --- SIE controls and crypto designation (K5; spec 2.7) -------------------------------------
ECA_APIE = 0x00000008  # kvm_host.h: interpret AP instructions
ECA_AIV = 0x00200000  # kvm_host.h: adapter-interruption virtualization (GISA in use)
CRYCB_FORMAT0 = 0
CRYCB_FORMAT1 = 1
CRYCB_FORMAT2 = 3
CRYCB_FORMAT_MASK = 3
CRYCB_APXA_BIT = 0x02  # K1: "!(kvm->arch.crypto.crycbd & 0x02)" means no APXA

# --- Facilities (K1, K5) -------------------------------------------------------------------
FACILITY_APFT = 15  # AP facilities test: needed for the T bit
FACILITY_AQIC = 65  # AP queue interruption control
FACILITY_MSAX3 = 76  # needed for CRYCB format 2 (K5 kvm_s390_set_crycb_format)

# --- Topology limits (vfio_ap_ops.c vfio_ap_matrix_init; spec timing-calibration 2.1) -------
APID_MAX_APXA = 255
APQI_MAX_APXA = 255
APID_MAX_NO_APXA = 63
APQI_MAX_NO_APXA = 15

# --- Timing constants of the hook (V1 vfio_ap_irq_disable / vfio_ap_wait_for_irqclear) -------
DISABLE_MAX_AQIC = 6  # "retries = 5; do { ... } while (retries--)" runs at most 6 times
IRQCLEAR_MAX_TAPQ = 5  # "retry = 5; do { ... } while (--retry)" runs at most 5 times
HOOK_SLEEP_MS = 20  # msleep(20)


class PgmCode(IntEnum):
    """Program-interruption codes KVM or QEMU inject on this path (K7 icpt_prog_codes)."""

    OPERATION = 0x0001  # QEMU: no PQAP case in handle_b2 (Q1)
    PRIVILEGED_OP = 0x0002  # K1 row 4
    SPECIFICATION = 0x0006  # K1 rows 5-8


class RC(IntEnum):
    """AP response codes (P2 ap_bus.h; the newer ones from a later ap_bus.h, spec section 5)."""

    NORMAL = 0x00
    Q_NOT_AVAIL = 0x01
    RESET_IN_PROGRESS = 0x02
    DECONFIGURED = 0x03
    CHECKSTOPPED = 0x04
    BUSY = 0x05
    INVALID_ADDRESS = 0x06
    OTHERWISE_CHANGED = 0x07
    INVALID_GISA = 0x08
    Q_BOUND_TO_ANOTHER = 0x09
    STATE_CHANGE_IN_PROGRESS = 0x0A
    Q_NOT_BOUND = 0x0B
    Q_FULL = 0x10  # == AP_RESPONSE_NO_PENDING_REPLY
    INDEX_TOO_BIG = 0x11
    NO_FIRST_PART = 0x13
    MESSAGE_TOO_BIG = 0x15
    REQ_FAC_NOT_INST = 0x16
    Q_BIND_ERROR = 0x30
    Q_NOT_AVAIL_FOR_ASSOC = 0x31
    Q_NOT_EMPTY = 0x32
    BIND_LIMIT_EXCEEDED = 0x33
    INVALID_ASSOC_SECRET = 0x34
    ASSOC_SECRET_NOT_UNIQUE = 0x35
    ASSOC_FAILED = 0x36
    INVALID_DOMAIN = 0x42
    PARTIALLY_RECEIVED = 0xFF  # software only (ap_dqap); never from PQAP


AP_RESPONSE_NO_PENDING_REPLY = RC.Q_FULL


def rc_name(rc: int) -> str:
    """Kernel name of an AP response code, or its hex value when it has none."""
    try:
        return "AP_RESPONSE_" + RC(rc).name
    except ValueError:
        return f"0x{rc:02x}"


# --- Field extractors: work on int and on uint64 arrays --------------------------------------
def fc(gr0: U64) -> U64:
    """Function code, GR0 bits 32-39."""
    return (gr0 >> GR0_FC_SHIFT) & GR0_FC_MASK


def t_bit(gr0: U64) -> U64:
    """T bit (test facilities), GR0 bit 40, as 0 or 1."""
    return (gr0 >> 23) & 1


def apqn(gr0: U64) -> U64:
    """APQN = APID || APQI, GR0 bits 48-63."""
    return gr0 & GR0_APQN_MASK


def apid(gr0: U64) -> U64:
    """Adapter number, GR0 bits 48-55 (AP_QID_CARD)."""
    return (gr0 >> GR0_APID_SHIFT) & GR0_BYTE_MASK


def apqi(gr0: U64) -> U64:
    """Domain (queue index), GR0 bits 56-63 (AP_QID_QUEUE)."""
    return gr0 & GR0_BYTE_MASK


def ir(gr1: U64) -> U64:
    """Interruption request bit of the AQIC control in GR1 (bit 16), as 0 or 1."""
    return (gr1 >> GR1_IR_SHIFT) & 1


def isc(gr1: U64) -> U64:
    """Guest interruption subclass, GR1 bits 61-63."""
    return gr1 & GR1_ISC_MASK


def status_rc(status: U64) -> U64:
    """Response code of a 32-bit AP queue status word (bits 40-47 of GR1)."""
    return (status >> STATUS_RC_SHIFT) & GR0_BYTE_MASK


def status_irq_enabled(status: U64) -> U64:
    """I bit of a 32-bit AP queue status word, as 0 or 1."""
    return (status >> 24) & 1


def pack_status(rc: U64, irq_enabled: U64 | int = 0) -> U64:
    """32-bit AP queue status word with the given response code and I bit."""
    return (rc << STATUS_RC_SHIFT) | (irq_enabled << 24)


def make_gr0(fc_: int, apid_: int, apqi_: int, t: int = 0) -> int:
    """GR0 for PQAP: function code, optional T bit, APQN."""
    return (fc_ << GR0_FC_SHIFT) | (t << 23) | (apid_ << GR0_APID_SHIFT) | apqi_


def make_gr1_aqic(ir_: int, isc_: int) -> int:
    """GR1 for PQAP(AQIC) as a Linux guest builds it: IR bit and guest ISC."""
    return (ir_ << GR1_IR_SHIFT) | (isc_ & GR1_ISC_MASK)


def set_psw_cc(psw_mask: U64, cc: int) -> U64:
    """PSW mask with the condition code replaced, as kvm_s390_set_psw_cc() does."""
    return (psw_mask & (MASK64 ^ PSW_CC_MASK)) | (cc << PSW_CC_SHIFT)


def psw_cc(psw_mask: U64) -> U64:
    """Condition code held in a PSW mask (bits 18-19)."""
    return (psw_mask >> PSW_CC_SHIFT) & 3


def hw_status_word(value: int) -> int:
    """A hardware answer as given to ``hw_aqic``: an RC (<= 0xff) or a full 32-bit status."""
    return value << STATUS_RC_SHIFT if value <= 0xFF else value & MASK32
