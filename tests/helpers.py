"""Shared test helpers: healthy register states, both evaluators at once, example loading.

The helpers deliberately do not reuse hostsim's own conversions (``decode_io``,
``arch.hw_status_word``) so that the tests check those instead of trusting them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hostsim.decode import Decision, decode_one
from hostsim.decode_batch import decode_batch
from hostsim.intercept import Intercept, InterceptBatch
from hostsim.variants import VARIANTS, Variant

DATA = Path(__file__).parent / "data"
#: Verbatim copy of ``shared/spec/decode-examples.jsonl`` (the tests must not depend on a path
#: outside the repository).
EXAMPLES_FILE = DATA / "decode-examples.jsonl"
#: The spec's copy, in the project's shared/ folder beside the checkout (absent: not compared).
SHARED_EXAMPLES_FILE = Path(__file__).resolve().parents[2] / "shared/spec/decode-examples.jsonl"

VARIANT_NAMES = tuple(VARIANTS)
#: Variants whose KVM handler rejects fc != 3 (spec 3 row 3); hook-owns-fc does it in the hook.
KVM_FC_VARIANTS = tuple(n for n in VARIANTS if VARIANTS[n].fc_check_in == "kvm")
#: Variants with a module reference instead of the rwsem (spec 9.3: before v5.15).
MODULE_VARIANTS = tuple(n for n in VARIANTS if VARIANTS[n].hook_guard == "module")
OLD_VARIANTS = ("merged-2019", "v4-2019", "hook-owns-fc")

# --- Register values (spec section 2) -------------------------------------------------------
SUPERVISOR_PSW = 0x0704000180000000  # DAT, IO, EXT, MCHK, 64-bit, key 0, CC 0
PSTATE = 0x0001000000000000  # PSW bit 15 (spec 2.5)
IR = 0x0000800000000000  # GR1 bit 16 (spec 2.2)
GR0_AQIC = 0x03000101  # fc 3, APID 1, APQI 1
GR1_ENABLE = IR | 3  # IR on, guest ISC 3
GR1_DISABLE = 3  # IR off
NIB = 0x12345678


def gr0(fc: int = 3, apid: int = 1, apqi: int = 1, t: int = 0, extra: int = 0) -> int:
    """GR0 from its fields, written out independently of ``arch.make_gr0``."""
    return extra | (fc << 24) | (t << 23) | (apid << 8) | apqi


def word(answer: int) -> int:
    """A ``hw_aqic`` answer in the CLI's form as a 32-bit status word: an RC (<= 0xff) goes to
    bits 40-47 of GR1 (``value << 16``); anything larger is already a whole status word."""
    return answer << 16 if answer <= 0xFF else answer


def healthy(**kw: Any) -> Intercept:
    """A valid PQAP(AQIC) enable on a healthy, configured host; ``kw`` overrides fields.

    ``hw_aqic`` may be given in the CLI's form (RCs or status words); it is converted.
    """
    base: dict[str, Any] = {
        "gpr0": GR0_AQIC,
        "gpr1": GR1_ENABLE,
        "gpr2": NIB,
        "psw_mask": SUPERVISOR_PSW,
    }
    base.update(kw)
    if "hw_aqic" in base:
        base["hw_aqic"] = [word(a) for a in base["hw_aqic"]]
    return Intercept(**base)


#: Intercepts that take other paths, mixed into the batches built by :func:`decide`, so that the
#: vectorised evaluator sees masks that select only some rows.
_FILLERS = (
    healthy(),
    healthy(gpr1=GR1_DISABLE, hw_aqic=[5, 0], hw_tapq=[(5, False), (0, True), (0, False)]),
    healthy(hook_registered=False, gpr1=0xFFFF_FFFF_FFFF_FFFF),
    healthy(psw_mask=SUPERVISOR_PSW | PSTATE),
    healthy(gpr0=gr0(fc=4)),
    healthy(eca_aiv=False),
    healthy(hw_aqic=[3, 2, 0]),
    healthy(queue_assigned=False),
)


def decide(x: Intercept, variant: str | Variant) -> Decision:
    """decode_one(x), after checking that decode_batch agrees on it inside a mixed batch."""
    var = VARIANTS[variant] if isinstance(variant, str) else variant
    want = decode_one(x, var)
    items = [x, *_FILLERS, x]
    got = decode_batch(InterceptBatch.from_intercepts(items), var)
    assert got.row(0) == want, f"decode_batch disagrees with decode_one for {x}"
    assert got.row(len(items) - 1) == want
    for k, f in enumerate(_FILLERS, 1):
        assert got.row(k) == decode_one(f, var)
    return want


def intercept_from_json(obj: dict[str, Any]) -> Intercept:
    """An example's ``input`` as an Intercept (independent of ``hostsim.decode_io``)."""
    kw = {k: v for k, v in obj.items() if k != "variant"}
    for key in ("gpr0", "gpr1", "gpr2", "psw_mask"):
        if isinstance(kw.get(key), str):
            kw[key] = int(kw[key], 16)
    if "hw_aqic" in kw:
        kw["hw_aqic"] = [word(a) for a in kw["hw_aqic"]]
    if "hw_tapq" in kw:
        kw["hw_tapq"] = [(rc, irq) for rc, irq in kw["hw_tapq"]]
    return Intercept(**kw)


def decision_as_output(d: Decision) -> dict[str, Any]:
    """A Decision in the ``expected`` form of the examples (the ``hostsim decode`` output)."""
    return {
        "kind": d.kind.name,
        "gr1": d.gr1,
        "cc": d.cc,
        "pgm_code": d.pgm_code,
        "response_code": d.response_code,
        "guest_visible_rc": d.guest_visible_rc,
        "hw_aqic_calls": d.hw_aqic_calls,
        "hw_tapq_calls": d.hw_tapq_calls,
        "sleep_ms": d.sleeps * 20,
    }


def load_examples() -> list[dict[str, Any]]:
    """The worked examples, one dict per line."""
    with EXAMPLES_FILE.open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


#: Files every complete result folder holds (the .hgrm files depend on the paths taken).
#: ``--set`` assignments that shorten the built-in default to 300 ms with its events inside:
#: the starts spread over 50 ms with a 20 ms boot, then the reboot, the unmap and the stop.
SHORT_DEFAULT = (
    "run.duration_ms=300",
    "events.0.delay_ms=20",
    "events.0.spread_ms=50",
    "events.1.delay_ms=20",
    "events.1.spread_ms=50",
    "events.2.at_ms=150",
    "events.2.delay_ms=20",
    "events.3.at_ms=200",
    "events.4.at_ms=250",
)

RESULT_FILES = frozenset(
    {
        "summary.json",
        "records.parquet",
        "host_events.parquet",
        "scenario.resolved.toml",
        "status.json",
    }
)


def console_script() -> str:
    """The installed ``hostsim`` console script (next to this interpreter, else on PATH)."""
    import shutil
    import sys

    import pytest

    here = Path(sys.executable).parent / "hostsim"
    found = str(here) if here.exists() else shutil.which("hostsim")
    if found is None:
        pytest.skip("the hostsim console script is not installed")
    return found


def drive(m: Any, index: int) -> tuple[list[Any], Any]:
    """Run host event ``index``'s program of model ``m`` alone (no other program, every lock
    free at once): its steps in order and its counts. Hardware calls are answered by a fresh
    queue state at the step's time."""
    from hostsim.host_ops import host_program
    from hostsim.queues import QueueState
    from hostsim.steps import Delay, HwCall, Sleep

    hp = host_program(m, index, m.s.events[index])
    qs = QueueState(list(m.initial_matrix))
    out: list[Any] = []
    t = m.s.events[index].at_ns
    reply = None
    gen = hp.steps
    while True:
        try:
            st = gen.send(reply) if reply is not None else next(gen)
        except StopIteration:
            return out, hp
        out.append(st)
        reply = None
        if isinstance(st, HwCall):
            lasts = st.ns if st.reset_ns is None else st.reset_ns
            reply = qs.call(st.guest, st.apqn, st.op, t, lasts, st.nib, st.isc)
        if isinstance(st, Delay | Sleep | HwCall):
            t += st.ns
