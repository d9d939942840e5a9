"""Property tests: the scalar reference and the vectorised evaluator agree, field for field.

Each hypothesis example is a whole batch of ``BATCH`` intercepts: ``N_DRAWN`` drawn one by one
from biased hypothesis strategies (these shrink well), plus ``N_BULK`` generated with numpy from
a hypothesis-drawn seed and a hypothesis-drawn bias profile (that is what makes >100,000 cases
per variant affordable). The bias sends the data down every branch: fc mostly 3, reserved bits,
the T bit, APXA-range APQNs, problem state, every configuration flag, host AQIC answer lists of
1..8 (RCs and whole status words, with runs of busy answers) and TAPQ answer lists.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hostsim import rules
from hostsim.decode import decode_one
from hostsim.decode_batch import decode_batch
from hostsim.intercept import (
    AQIC_SLOTS,
    FLAG_DEFAULTS,
    FLAG_NAMES,
    INTERCEPT_FIELDS,
    TAPQ_SLOTS,
    Intercept,
    InterceptBatch,
)
from hostsim.variants import VARIANTS

from .helpers import PSTATE, SUPERVISOR_PSW, VARIANT_NAMES, word

N_DRAWN = 4
N_BULK = 516
BATCH = N_DRAWN + N_BULK
MAX_EXAMPLES = 200
#: The issue's requirement: at least this many generated intercepts per variant.
MIN_CASES = 100_000
assert MAX_EXAMPLES * BATCH >= MIN_CASES

MASK64 = (1 << 64) - 1
IR = 1 << 47
OTHER_FCS = (0x00, 0x01, 0x02, 0x04, 0x05, 0x06, 0x07, 0x08, 0x10, 0x83, 0xFF)
AQIC_RCS = (0x00, 0x01, 0x02, 0x03, 0x05, 0x06, 0x07, 0x42)
BUSY_RCS = (0x02, 0x05)
TAPQ_RCS = (0x00, 0x02, 0x05, 0x01, 0x03)
STATUS_FLAG_BITS = (0x80000000, 0x40000000, 0x20000000, 0x02000000, 0x01000000)


# --- Hypothesis strategies for single intercepts ---------------------------------------------
def _full_status_word(rc: int, flags: int) -> int:
    """A whole 32-bit status word (> 0xff, so not read as a bare RC)."""
    return (flags | 0x01000000 if flags == 0 and rc == 0 else flags) | rc << 16


aqic_answer = st.one_of(
    st.sampled_from(AQIC_RCS),
    st.builds(
        _full_status_word,
        st.sampled_from(AQIC_RCS),
        st.sets(st.sampled_from(STATUS_FLAG_BITS)).map(sum),
    ),
)
busy_run = st.builds(
    lambda k, busy, last: ([busy] * k + [last])[:8],
    st.integers(0, 7),
    st.sampled_from(BUSY_RCS),
    aqic_answer,
)
tapq_answer = st.tuples(st.sampled_from(TAPQ_RCS), st.booleans())
irq_on_run = st.builds(
    lambda k, last: ([(0, True)] * k + [last])[:6],
    st.integers(0, 5),
    tapq_answer,
)


#: Flags flip away from their healthy default where both of two drawn 16-bit masks have the
#: bit set (about 1 in 4 each); two draws instead of sixteen, and shrinking goes to "healthy".
flip_mask = st.tuples(st.integers(0, 0xFFFF), st.integers(0, 0xFFFF)).map(lambda ab: ab[0] & ab[1])


def _flags(mask: int) -> dict[str, bool]:
    return {n: FLAG_DEFAULTS[n] ^ bool(mask >> i & 1) for i, n in enumerate(FLAG_NAMES)}


@st.composite
def intercepts(draw: st.DrawFn) -> Intercept:
    fc = draw(st.sampled_from((3,) * 8 + OTHER_FCS))
    high = draw(st.sampled_from([0, 0, 0, 0xFFFFFFFF, 0x80000001]))
    reserved = draw(st.sampled_from([0] * 6 + [1 << b for b in range(16, 23)] + [0x7F << 16]))
    t = draw(st.sampled_from([0, 0, 0, 1]))
    apid = draw(st.sampled_from([0, 1, 63, 64, 0x80, 0xFF]))
    apqi = draw(st.sampled_from([0, 1, 15, 16, 0x10, 0xFF]))
    gpr1 = draw(st.sampled_from([0, 3, 7, 0x00420000, 0xFFFFFFFFFFFFFFFF, 0x123456789ABCDEF0]))
    gpr1 = gpr1 & ~IR | (IR if draw(st.booleans()) else 0)
    return Intercept(
        gpr0=high << 32 | fc << 24 | t << 23 | reserved | apid << 8 | apqi,
        gpr1=gpr1,
        gpr2=draw(st.sampled_from([0x12345678, 0, MASK64])),
        psw_mask=SUPERVISOR_PSW
        | draw(st.sampled_from([0, 0, 0, PSTATE]))
        | draw(st.integers(0, 3)) << 44,
        **_flags(draw(flip_mask)),
        hw_aqic=[
            word(a)
            for a in draw(st.one_of(st.lists(aqic_answer, min_size=1, max_size=8), busy_run))
        ],
        hw_tapq=draw(st.one_of(st.lists(tapq_answer, min_size=1, max_size=6), irq_on_run)),
    )


# --- numpy bulk generation from a drawn seed and bias profile --------------------------------
@dataclass(frozen=True)
class Bias:
    """Per-batch probabilities; hypothesis picks them, so batches differ in their mix."""

    fc_other: float
    reserved: float
    t_bit: float
    apxa_range: float
    problem: float
    flag: float
    nib_zero: float
    busy_run: float


_p = st.sampled_from([0.02, 0.1, 0.3])
#: Sixteen flags: a small flip rate each still leaves most rows a path past the KVM guards.
biases = st.builds(
    Bias, _p, _p, _p, _p, _p, st.sampled_from([0.005, 0.02, 0.06]), _p, st.sampled_from([0.3, 0.6])
)


def bulk_intercepts(rng: np.random.Generator, n: int, b: Bias) -> list[Intercept]:
    """``n`` intercepts drawn with numpy, with the branch probabilities of ``b``."""
    u64 = np.uint64

    def chance(p: float) -> np.ndarray:
        return rng.random(n) < p

    def rand64() -> np.ndarray:
        return rng.integers(0, MASK64, n, dtype=u64, endpoint=True)

    fc = np.where(chance(b.fc_other), rng.choice(OTHER_FCS, n), 3).astype(u64)
    high = np.where(chance(0.1), rand64() >> u64(32), u64(0))
    reserved = np.where(chance(b.reserved), rng.integers(1, 128, n).astype(u64) << u64(16), 0)
    t = chance(b.t_bit).astype(u64)
    wide = chance(b.apxa_range)
    apid = np.where(wide, rng.integers(0, 256, n), rng.integers(0, 64, n)).astype(u64)
    wide = chance(b.apxa_range)
    apqi = np.where(wide, rng.integers(0, 256, n), rng.integers(0, 16, n)).astype(u64)
    gpr0 = high << u64(32) | fc << u64(24) | t << u64(23) | reserved.astype(u64)
    gpr0 |= apid << u64(8) | apqi
    gpr1 = np.where(chance(0.3), rand64(), rng.integers(0, 8, n).astype(u64))
    gpr1 = gpr1 & ~u64(IR) | chance(0.5).astype(u64) << u64(47)
    gpr2 = np.where(chance(b.nib_zero), u64(0), rand64())
    psw = (
        u64(SUPERVISOR_PSW)
        | np.where(chance(b.problem), u64(PSTATE), u64(0))
        | rng.integers(0, 4, n).astype(u64) << u64(44)
    )
    flags = {
        name: np.where(chance(b.flag), not FLAG_DEFAULTS[name], FLAG_DEFAULTS[name]).tolist()
        for name in FLAG_NAMES
    }
    # spec 4.2 d needs two flags together: a protected guest whose NIB page is not shared.
    flags["pv_guest"] = chance(0.3).tolist()
    flags["nib_shared"] = (~chance(0.3)).tolist()

    # Host AQIC answers: either a uniform list of 1..8, or k busy answers then one more.
    codes = rng.choice(AQIC_RCS, (n, 8)).astype(np.int64)
    as_word = rng.random((n, 8)) < 0.2
    flag_bits = np.zeros((n, 8), np.int64)
    for bit in STATUS_FLAG_BITS:
        flag_bits |= np.where(rng.random((n, 8)) < 0.3, bit, 0)
    flag_bits = np.where(flag_bits == 0, 0x01000000, flag_bits)
    answers = np.where(as_word, flag_bits | codes << 16, codes << 16)
    length = rng.integers(1, 9, n)
    run = chance(b.busy_run)
    # Runs of 5 or 6 busy answers reach the loop bounds of spec 4.3; the answer after a run
    # is mostly NORMAL, so that the IR polling follows.
    k = np.where(chance(0.5), rng.integers(0, 8, n), rng.integers(5, 7, n))
    answers[np.arange(n), np.minimum(k, 7)] = np.where(
        chance(0.7), 0, answers[np.arange(n), np.minimum(k, 7)]
    )
    busy = rng.choice(BUSY_RCS, (n, 8)).astype(np.int64) << 16
    col = np.arange(8)
    answers = np.where(run[:, None] & (col[None, :] < k[:, None]), busy, answers)
    length = np.where(run, np.minimum(k + 1, 8), length)

    tapq_rc = rng.choice(TAPQ_RCS, (n, 6))
    tapq_irq = rng.random((n, 6)) < 0.5
    tlen = rng.integers(1, 7, n)
    trun = chance(b.busy_run)
    tk = np.where(chance(0.5), rng.integers(0, 6, n), 5)
    on = trun[:, None] & (np.arange(6)[None, :] < tk[:, None])
    tapq_rc = np.where(on, 0, tapq_rc)
    tapq_irq = np.where(on, True, tapq_irq)
    tlen = np.where(trun, np.minimum(tk + 1, 6), tlen)

    ans, alen = answers.tolist(), length.tolist()
    trc, tirq, tl = tapq_rc.tolist(), tapq_irq.tolist(), tlen.tolist()
    aqic_lists = [a[:m] for a, m in zip(ans, alen, strict=True)]
    tapq_lists = [
        list(zip(r[:m], q[:m], strict=True)) for r, q, m in zip(trc, tirq, tl, strict=True)
    ]
    # Positional construction in Intercept's field order (registers, flags, answers): fast.
    assert (
        "gpr0",
        "gpr1",
        "gpr2",
        "psw_mask",
        *FLAG_NAMES,
        "hw_aqic",
        "hw_tapq",
    ) == INTERCEPT_FIELDS
    columns = [gpr0, gpr1, gpr2, psw]
    flag_cols = [flags[name] for name in FLAG_NAMES]
    return [
        Intercept(*row)
        for row in zip(
            *(c.tolist() for c in columns), *flag_cols, aqic_lists, tapq_lists, strict=True
        )
    ]


class Batch(list):
    """The intercepts of one example; its repr (what hypothesis prints for a failing example)
    is the recipe, not 520 intercepts: the drawn ones, the numpy seed and the bias."""

    def __init__(self, drawn: list[Intercept], seed: int, bias: Bias) -> None:
        super().__init__(drawn + bulk_intercepts(np.random.default_rng(seed), N_BULK, bias))
        self.recipe = f"Batch(drawn={drawn!r}, seed={seed}, bias={bias!r})"

    def __repr__(self) -> str:
        return self.recipe


@st.composite
def batches(draw: st.DrawFn) -> Batch:
    """One hypothesis example: ``BATCH`` intercepts."""
    drawn = draw(st.lists(intercepts(), min_size=N_DRAWN, max_size=N_DRAWN))
    seed = draw(st.integers(0, 2**63 - 1))
    return Batch(drawn, seed, draw(biases))


PROPERTY_SETTINGS = settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# --- The properties --------------------------------------------------------------------------
@pytest.mark.parametrize("name", VARIANT_NAMES)
def test_decode_one_and_decode_batch_agree_field_for_field(name: str) -> None:
    """decode_one(x) == decode_batch(batch).row(k) for every generated intercept, and at least
    100,000 generated intercepts per variant."""
    variant = VARIANTS[name]
    seen: Counter[str] = Counter()

    @PROPERTY_SETTINGS
    @given(batch=batches())
    def check(batch: Batch) -> None:
        out = decode_batch(InterceptBatch.from_intercepts(batch), variant)
        for k, x in enumerate(batch):
            want = decode_one(x, variant)
            got = out.row(k)
            assert got == want, f"row {k}: {x}\nscalar:     {want}\nvectorised: {got}"
        seen["cases"] += len(batch)
        seen["examples"] += 1

    check()
    assert seen["cases"] >= MIN_CASES, seen
    assert seen["examples"] >= MAX_EXAMPLES, seen


def _expected_rule_ids(variant) -> set[str]:
    """Every rule id a Decision of ``variant`` can name: its table rows that decide, and the
    tail labels (dispatch rows hand over, so they are covered through what they hand to)."""
    dispatch = {rules.Act.CALL_HOOK, rules.Act.ENABLE, rules.Act.DISABLE, rules.Act.HOST_AQIC}
    ids = {
        r.id
        for t in (rules.kvm_table, rules.hook_table, rules.enable_table)
        for r in t(variant)
        if r.act not in dispatch
    }
    return ids | set(rules.TAIL_RULES)


@pytest.mark.parametrize("name", VARIANT_NAMES)
def test_generated_data_hits_every_rule_of_the_variant(name: str) -> None:
    """The bias works: every rule id of the variant's tables (rules.all_rule_ids() restricted to
    them) is hit at least once by the generated data, as are the loop extremes of spec 4.3
    (0..7 host AQICs, 0..5 TAPQs, 0..10 sleeps) and every Kind."""
    variant = VARIANTS[name]
    hits: Counter[str] = Counter()
    aqic: set[int] = set()
    tapq: set[int] = set()
    sleeps: set[int] = set()
    kinds: set[int] = set()
    all_ids = rules.all_rule_ids()

    @settings(PROPERTY_SETTINGS, max_examples=40, derandomize=True)
    @given(batch=batches())
    def collect(batch: Batch) -> None:
        out = decode_batch(InterceptBatch.from_intercepts(batch), variant)
        hits.update(all_ids[c] for c in out.rule.tolist())
        aqic.update(out.hw_aqic_calls.tolist())
        tapq.update(out.hw_tapq_calls.tolist())
        sleeps.update(out.sleeps.tolist())
        kinds.update(out.kind.tolist())

    collect()
    expected = _expected_rule_ids(variant)
    assert expected <= set(all_ids)
    missing = expected - set(hits)
    assert not missing, f"never hit: {sorted(missing)}"
    assert set(hits) <= expected, f"hit rules outside the variant: {set(hits) - expected}"
    assert aqic == set(range(8))
    assert tapq == set(range(6))
    assert sleeps == set(range(11))
    assert kinds == {int(k) for k in rules.Kind}


def test_expected_rule_ids_cover_all_rule_ids() -> None:
    """Together the variants' rule sets are all of rules.all_rule_ids() except dispatch rows."""
    union = set().union(*(_expected_rule_ids(v) for v in VARIANTS.values()))
    dispatch = {"kvm.call_hook", "hook.irq_enable", "hook.irq_disable", "enable.host_aqic"}
    assert union | dispatch == set(rules.all_rule_ids())


@pytest.mark.parametrize("name", VARIANT_NAMES)
def test_intercept_batch_rows_decode_like_their_intercepts(name: str) -> None:
    """InterceptBatch.from_intercepts then .row(k) keeps every register and flag, and pads the
    answer lists by repeating the last one, which decodes the same (hw_aqic semantics)."""
    variant = VARIANTS[name]
    # Every host call a decode can make: 1 + 6 AQICs and 5 TAPQs (spec 4.3).
    AQ, TQ = range(AQIC_SLOTS), range(TAPQ_SLOTS)

    @settings(PROPERTY_SETTINGS, max_examples=10)
    @given(batch=batches())
    def check(batch: Batch) -> None:
        b = InterceptBatch.from_intercepts(batch)
        assert b.n == len(batch)
        for k, x in enumerate(batch):
            y = b.row(k)
            assert y.gpr0 == x.gpr0 and y.gpr1 == x.gpr1 and y.gpr2 == x.gpr2
            assert y.psw_mask == x.psw_mask
            assert all(getattr(y, f) == getattr(x, f) for f in FLAG_NAMES)
            assert [y.aqic_answer(i) for i in AQ] == [x.aqic_answer(i) for i in AQ]
            assert [y.tapq_answer(i) for i in TQ] == [x.tapq_answer(i) for i in TQ]
            assert decode_one(y, variant) == decode_one(x, variant)

    check()
