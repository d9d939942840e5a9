"""Register states of PQAP issues: well-formed AQICs, and the malformed mix of an adversary.

Every function takes its uniforms from a callable that draws one named family of keyed draws
per part (``"fc"``, ``"adversarial"``, ``"pick"``: :mod:`hostsim.draws`), so the same draws give
the same registers in both engines, and adding an ``fc_mix`` never moves which issues are
adversarial.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from hostsim import arch

#: Function codes other than AQIC, for the adversarial "other_fc" category.
OTHER_FCS = np.array([0, 1, 2, 4, 5, 7, 8], np.uint64)


def compose(
    uniforms: Callable[[str], np.ndarray],
    shape: tuple[int, ...],
    apqn: np.ndarray,
    enable: np.ndarray,
    isc: int,
    nib: int,
    fc_mix: tuple[tuple[int, float], ...],
    adversarial: tuple[tuple[str, float], ...],
) -> dict[str, np.ndarray]:
    """GR0, GR1, GR2 and the PSW mask of a block of requests (``shape``).

    ``fc_mix`` picks the function code of each issue (nested guests intercept every fc); the
    adversarial mix turns a fraction of the issues into one malformed category each:
    ``problem_state`` (PSW bit 15), ``reserved_bits`` (GR0 bits 41-47), ``t_bit`` (GR0 bit 40),
    ``apxa_range`` (APID >= 64 or APQI >= 16), ``other_fc``, ``nib_zero`` (GR2 = 0) and
    ``unassigned`` (another domain on the same adapter: APQI bit 3 flipped, which stays within
    the non-APXA range; usually outside the guest's matrix, and then the hook answers RC 01).
    ``uniforms(part)``: uniforms in [0, 1) of ``shape`` for one part, the same on every call.
    """
    u64 = np.uint64
    a = apqn.astype(u64)
    if len(fc_mix) == 1:
        fc = np.full(shape, fc_mix[0][0], u64)
    else:
        codes = np.array([c for c, _ in fc_mix], u64)
        cdf = np.cumsum([p for _, p in fc_mix])
        fc = codes[np.minimum(np.searchsorted(cdf, uniforms("fc"), side="right"), len(codes) - 1)]
    gpr0 = (fc << u64(arch.GR0_FC_SHIFT)) | a
    gpr1 = np.where(enable, u64(arch.GR1_IR_BIT), u64(0)) | u64(isc & arch.GR1_ISC_MASK)
    gpr2 = np.full(shape, nib, u64)
    psw = np.full(shape, arch.PSW_DEFAULT_SUPERVISOR, u64)
    if adversarial:
        cat_u = uniforms("adversarial")
        pick = uniforms("pick")
        lo = 0.0
        for name, p in adversarial:
            m = (cat_u >= lo) & (cat_u < lo + p)
            lo += p
            if not m.any():
                continue
            if name == "problem_state":
                psw[m] |= u64(arch.PSW_MASK_PSTATE)
            elif name == "reserved_bits":
                bits = (1 + (pick[m] * 127).astype(np.int64)).astype(u64) << u64(16)
                gpr0[m] |= bits
            elif name == "t_bit":
                gpr0[m] |= u64(arch.GR0_T_BIT)
            elif name == "apxa_range":
                gpr0[m] |= np.where(pick[m] < 0.5, u64(0x4000), u64(0x0010))
            elif name == "other_fc":
                other = OTHER_FCS[(pick[m] * len(OTHER_FCS)).astype(np.int64)]
                gpr0[m] = (gpr0[m] & u64(0xFFFF)) | (other << u64(arch.GR0_FC_SHIFT))
            elif name == "nib_zero":
                gpr2[m] = 0
            elif name == "unassigned":
                gpr0[m] ^= u64(0x0008)
    return {"gpr0": gpr0, "gpr1": gpr1, "gpr2": gpr2, "psw_mask": psw}
