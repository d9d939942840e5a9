"""Registers that make a replayed trace take its traced outcome classes (:func:`class_registers`).

A trace carries no registers, only what each PQAP intercept became: a program check (with its
program code), an exit to userspace, or an answer in the kernel. For every intercept the
candidates below are tried in order and the first that hostsim's own decode
(:func:`hostsim.decode_batch.decode_batch`, the rules of ``hostsim decode``) sends down the traced
class, under the scenario's kernel variant and the guest's configuration, is kept:

* every class first tries the healthy AQIC (:func:`workloads.trace_read._arrivals`) with the
  traced PSW: where the guest's configuration alone explains the class (no AIV or no ECA_APIE:
  userspace; no facility 65: specification exception), the registers stay as real as they get;
* program check, code 2 (privileged operation): the PSW problem-state bit (bit 15) set;
* program check, code 6 (specification): the problem-state bit cleared and GR0 bit 47 (one of
  the reserved bits 41-47) set;
* userspace exit: function code 0x04 (QCI), which KVM (or, in hook-owns-fc, the hook) does not
  handle and sends to userspace;
* in the kernel: the healthy AQIC with the problem-state bit cleared.

An intercept no candidate reproduces keeps the healthy AQIC and is counted: the scenario does
not match the traced host there (for example a traced in-kernel answer on a guest the scenario
gives no ECA_APIE). The decode uses the guest's static configuration (its mdev as the hook, its
queues assigned, hardware answers normal): host operations that change it during the run are
not foreseen, and neither are retries.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from hostsim import arch
from hostsim.decode_batch import decode_batch
from hostsim.intercept import InterceptBatch
from hostsim.plan import guest_flags
from hostsim.rules import Kind, all_rule_ids
from hostsim.scenario_types import Scenario
from hostsim.variants import get_variant
from workloads.trace_format import CLASSES, IN_KERNEL, PROGRAM_CHECK, USERSPACE_EXIT

#: The function code a replayed userspace exit is given.
USERSPACE_FC = int(arch.FunctionCode.QCI)
#: The reserved GR0 bit a replayed specification exception is given (bit 47).
RESERVED_BIT = 0x00010000
_U = np.uint64


def decoded_class(
    s: Scenario, group: int, gpr0: np.ndarray, gpr1: np.ndarray, gpr2: np.ndarray, psw: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(class code, program code or -1, rule code) of each register state on guest ``group``."""
    n = len(gpr0)
    flags = guest_flags(s, group)
    batch = InterceptBatch(
        n,
        gpr0=gpr0,
        gpr1=gpr1,
        gpr2=gpr2,
        psw_mask=psw,
        **{k: np.full(n, v, bool) for k, v in flags.items()},
    )
    d = decode_batch(batch, get_variant(s.host.variant))
    cls = np.full(n, IN_KERNEL, np.int8)
    cls[d.kind == Kind.USERSPACE_EXIT] = USERSPACE_EXIT
    cls[d.kind == Kind.PROGRAM_INTERRUPT] = PROGRAM_CHECK
    return cls, np.asarray(d.pgm_code, np.int64), np.asarray(d.rule, np.int64)


def _candidates(
    cls: int, pgm: int, g0: np.ndarray, psw: np.ndarray
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(GR0, PSW mask) candidates for rows of one traced class (and program code)."""
    pstate = _U(arch.PSW_MASK_PSTATE)
    clear = psw & ~pstate
    if cls == PROGRAM_CHECK and pgm == int(arch.PgmCode.PRIVILEGED_OP):
        return [(g0, psw), (g0, psw | pstate)]
    if cls == PROGRAM_CHECK:
        return [(g0, psw), (g0 | _U(RESERVED_BIT), clear)]
    if cls == USERSPACE_EXIT:
        other = (g0 & ~_U(arch.GR0_FC_MASK << arch.GR0_FC_SHIFT)) | (
            _U(USERSPACE_FC) << _U(arch.GR0_FC_SHIFT)
        )
        return [(g0, psw), (other, clear)]
    return [(g0, psw), (g0, clear)]


def class_registers(
    s: Scenario,
    group: int,
    rows: np.ndarray,
    outcome: np.ndarray,
    pgm_code: np.ndarray,
    tally: Counter[Any],
) -> None:
    """Rewrite the registers of ``rows`` (SCRIPT_DTYPE, one vCPU of guest ``group``) in place so
    that each takes its traced class; count (class, rule id or ``None``: not reproduced)."""
    if len(rows) == 0:
        return
    ids = all_rule_ids()
    for c in range(len(CLASSES)):
        for p in np.unique(pgm_code[outcome == c]) if c == PROGRAM_CHECK else (-1,):
            sel = np.flatnonzero((outcome == c) & ((pgm_code == p) if c == PROGRAM_CHECK else True))
            if len(sel) == 0:
                continue
            todo = sel
            g1, g2 = rows["gpr1"][sel], rows["gpr2"][sel]
            base_g0, base_psw = rows["gpr0"][sel], rows["psw_mask"][sel]
            done = np.zeros(len(sel), bool)
            for g0, psw in _candidates(c, int(p), base_g0, base_psw):
                got, got_pgm, rule = decoded_class(s, group, g0, g1, g2, psw)
                ok = ~done & (got == c)
                if c == PROGRAM_CHECK:
                    ok &= got_pgm == p
                rows["gpr0"][todo[ok]] = g0[ok]
                rows["psw_mask"][todo[ok]] = psw[ok]
                for r, k in zip(*np.unique(rule[ok], return_counts=True), strict=True):
                    tally[(CLASSES[c], ids[int(r)])] += int(k)
                done |= ok
            if not done.all():
                tally[(CLASSES[c], None)] += int((~done).sum())


def class_notes(s: Scenario, tally: Counter[Any]) -> list[str]:
    """The inference notes of :func:`class_registers`: the choice, the rules it led to, misses."""
    notes = [
        "classes: each traced intercept is replayed with registers that hostsim's decode sends "
        f"down its traced class under variant {s.host.variant!r} and the guest's configuration "
        "(the healthy AQIC first; else a program check of code 2: PSW problem-state bit 15 set; "
        "code 6: GR0 bit 47, one of the reserved bits 41-47, set; a userspace exit: function "
        f"code 0x{USERSPACE_FC:02x} (QCI), which KVM does not handle; in the kernel: the "
        "problem-state bit cleared)"
    ]
    got = [f"{n} {c} via {r}" for (c, r), n in sorted(tally.items(), key=str) if r is not None]
    if got:
        notes.append("classes decoded: " + ", ".join(got))
    missed = {c: n for (c, r), n in tally.items() if r is None}
    if missed:
        notes.append(
            "classes NOT reproduced: "
            + ", ".join(f"{n} {c}" for c, n in sorted(missed.items()))
            + " traced intercepts take another path on this scenario whatever the registers "
            "(its guests' configuration, e.g. eca_apie, eca_aiv, mdev or facility65, differs "
            "from the traced host's): they keep the healthy AQIC"
        )
    return notes
