"""The decode's vectorised evaluator: a whole batch of intercepts at once.

:func:`decode_batch` turns each row of the rule tables (:mod:`hostsim.rules`) into a boolean
mask over numpy columns and keeps, for every intercept, the first row that holds: the same
rules as :func:`hostsim.decode.decode_one`, which property tests hold it equal to for every
variant. Pure: no SimPy, no randomness. Its result is :class:`DecisionBatch`, the column form of
:class:`hostsim.decode.Decision`.

The host AQIC/TAPQ answers drive ``vfio_ap_irq_disable()``'s retry loop and
``vfio_ap_wait_for_irqclear()`` (spec 4.3), counted here over arrays.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from hostsim import arch
from hostsim.decode import NO_HOOK_GR1_HIGH, Decision
from hostsim.intercept import AQIC_SLOTS, TAPQ_SLOTS, InterceptBatch
from hostsim.rules import Act, Kind, Rule, enable_table, hook_table, kvm_table, rule_code
from hostsim.variants import Variant


class DecisionBatch:
    """Column form of :class:`Decision`. Nulls are -1 in ``cc``, ``pgm_code``,
    ``response_code`` and ``guest_visible_rc``; ``rule`` holds :func:`rules.rule_code`."""

    __slots__ = (
        "cc",
        "gisc",
        "gr1",
        "guest_visible_rc",
        "hook_called",
        "hw_aqic_calls",
        "hw_tapq_calls",
        "kind",
        "mutex",
        "pgm_code",
        "pin",
        "response_code",
        "rule",
        "sleeps",
    )
    cc: np.ndarray
    gisc: np.ndarray
    gr1: np.ndarray
    guest_visible_rc: np.ndarray
    hook_called: np.ndarray
    hw_aqic_calls: np.ndarray
    hw_tapq_calls: np.ndarray
    kind: np.ndarray
    mutex: np.ndarray
    pgm_code: np.ndarray
    pin: np.ndarray
    response_code: np.ndarray
    rule: np.ndarray
    sleeps: np.ndarray

    def __init__(self, **columns: np.ndarray) -> None:
        missing = set(self.__slots__) - set(columns)
        if missing or len(columns) != len(self.__slots__):
            raise TypeError(f"DecisionBatch needs exactly the columns {sorted(self.__slots__)}")
        for name, col in columns.items():
            setattr(self, name, col)

    def row(self, k: int) -> Decision:
        """Row ``k`` as a scalar :class:`Decision` (for comparisons and output)."""
        from hostsim.rules import all_rule_ids

        def opt(a: np.ndarray) -> int | None:
            v = int(a[k])
            return None if v < 0 else v

        return Decision(
            Kind(int(self.kind[k])),
            all_rule_ids()[int(self.rule[k])],
            int(self.gr1[k]),
            opt(self.cc),
            opt(self.pgm_code),
            opt(self.response_code),
            opt(self.guest_visible_rc),
            int(self.hw_aqic_calls[k]),
            int(self.hw_tapq_calls[k]),
            int(self.sleeps[k]),
            bool(self.hook_called[k]),
            bool(self.mutex[k]),
            bool(self.pin[k]),
            bool(self.gisc[k]),
        )


# Look-up tables are read with ``take``: numpy's fancy indexing by a small-integer index array
# (int8, uint16 ...) is about three times slower than ``take``; an intp index is fast either way.

#: For every 16-bit pattern of rule outcomes, the index of its lowest set bit (-1 for none):
#: the vectorised "first row that holds" (intp: the rows it gives index fast).
_LOWEST_SET = np.full(1 << 16, -1, np.intp)
for _bit in range(15, -1, -1):
    _LOWEST_SET[(np.arange(1 << 16) >> _bit) & 1 == 1] = _bit
del _bit


def _first_match(table: tuple[Rule, ...], v: InterceptBatch) -> np.ndarray:
    """Index of the first row of ``table`` whose condition holds, for every intercept.

    Each row's condition becomes one bit of a 16-bit pattern; the first row that holds is the
    pattern's lowest set bit, found by one table lookup.
    """
    assert len(table) <= 16, "a table of more than 16 rows needs a wider pattern"
    pattern = np.zeros(v.n, np.uint16)
    for i, r in enumerate(table):
        cond = r.when(v)
        if cond is True:
            pattern |= np.uint16(1 << i)
        else:
            pattern |= cond.view(np.uint8).astype(np.uint16) << np.uint16(i)
    return _LOWEST_SET.take(pattern)


def _rc_set(*codes: int) -> np.ndarray:
    lut = np.zeros(1 << 16, bool)  # indexed by status >> 16 (RC in the low byte)
    for c in codes:
        lut[np.arange(256) << 8 | c] = True
    return lut


#: Response-code classes as lookup tables (one gather instead of several compares).
_CLEARS = _rc_set(
    arch.RC.NORMAL, arch.RC.OTHERWISE_CHANGED
)  # the disable AQIC is done: poll the IR bit
_RETRIES = _rc_set(arch.RC.RESET_IN_PROGRESS, arch.RC.BUSY)  # the disable AQIC sleeps and retries
_TAPQ_OK = np.zeros(256, bool)
_TAPQ_OK[[arch.RC.NORMAL, arch.RC.RESET_IN_PROGRESS]] = True
_TAPQ_BUSY = np.zeros(256, bool)
_TAPQ_BUSY[arch.RC.BUSY] = True


def _irqclear_batch(v: InterceptBatch, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised vfio_ap_wait_for_irqclear() over row indices ``rows``: (TAPQ calls, sleeps).

    Each round works only on the rows still polling, so the rare long loops cost little.
    """
    m = len(rows)
    tapq = np.zeros(m, np.uint8)
    sleeps = np.zeros(m, np.uint8)
    live = np.arange(m)  # positions (into rows) still polling
    for j in range(TAPQ_SLOTS):
        r = rows[live]
        rc = v.hw_tapq_rc[r, j]
        tapq[live] += 1
        slept = _TAPQ_OK.take(rc) & v.hw_tapq_irq[r, j] | _TAPQ_BUSY.take(rc)
        live = live[slept]
        if not len(live):
            break
        sleeps[live] += 1
    return tapq, sleeps


def _disable_batch(
    v: InterceptBatch, rows: np.ndarray, first_call: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Vectorised vfio_ap_irq_disable() for ``rows``, starting at AQIC answer ``first_call``:
    (status, AQIC calls, TAPQ calls, sleeps). Each round works only on the rows still looping."""
    m = len(rows)
    status = np.zeros(m, np.uint32)
    aqic = np.zeros(m, np.uint8)
    sleeps = np.zeros(m, np.uint8)
    cleared: list[np.ndarray] = []
    live = np.arange(m)
    for i in range(arch.DISABLE_MAX_AQIC):
        st = v.hw_aqic[rows[live], min(first_call + i, AQIC_SLOTS - 1)]
        status[live] = st
        aqic[live] += 1
        hi16 = st >> arch.STATUS_RC_SHIFT
        cleared.append(live[_CLEARS.take(hi16)])
        live = live[_RETRIES.take(hi16)]
        if not len(live):
            break
        sleeps[live] += 1
    tapq = np.zeros(m, np.uint8)
    crow = np.concatenate(cleared)
    if len(crow):
        t, sl = _irqclear_batch(v, rows[crow])
        tapq[crow] = t
        sleeps[crow] += sl
    return status, aqic, tapq, sleeps


_Arrays = tuple[np.ndarray, np.ndarray, np.ndarray]


@cache
def _compiled(variant: Variant) -> tuple[_Arrays, _Arrays, _Arrays, np.ndarray, np.ndarray]:
    """Per-row lookup arrays of the three tables of ``variant`` (acts, rule codes, RCs)."""

    def arrays(table: tuple[Rule, ...]) -> _Arrays:
        return (
            np.array([int(r.act) for r in table], np.int8),
            np.array([rule_code(r.id) for r in table], np.int16),
            np.array([max(r.rc, 0) << arch.STATUS_RC_SHIFT for r in table], np.uint32),
        )

    et = enable_table(variant)
    early = (
        {"enable.nib_zero", "enable.nib_not_in_memslot"}
        if variant.nib_check == "validate"
        else set()
    )
    pin = np.array([r.id not in early for r in et], bool)
    gisc = np.array([r.id in ("enable.gisc_register_failed", "enable.host_aqic") for r in et], bool)
    return arrays(kvm_table(variant)), arrays(hook_table(variant)), arrays(et), pin, gisc


_KIND_OF_KVM_ACT = np.zeros(16, np.uint8)
_KIND_OF_KVM_ACT[[Act.USERSPACE]] = Kind.USERSPACE_EXIT
_KIND_OF_KVM_ACT[[Act.PGM_PRIVILEGED, Act.PGM_SPECIFICATION]] = Kind.PROGRAM_INTERRUPT
_KIND_OF_KVM_ACT[[Act.NO_HOOK]] = Kind.NO_HOOK_RC01
_KIND_OF_KVM_ACT[[Act.SW_STATUS, Act.ENABLE, Act.DISABLE]] = Kind.HOOK_HANDLED
_PGM_OF_ACT = np.full(16, -1, np.int16)
_PGM_OF_ACT[Act.PGM_PRIVILEGED] = arch.PgmCode.PRIVILEGED_OP
_PGM_OF_ACT[Act.PGM_SPECIFICATION] = arch.PgmCode.SPECIFICATION


def decode_batch(v: InterceptBatch, variant: Variant) -> DecisionBatch:
    """The vectorised evaluator: the same tables as :func:`decode_one`, over columns.

    Every table is evaluated on every row (cheaper than selecting rows first); a row's outcome
    is the act of the first table row that holds, followed through KVM -> hook -> enable.
    """
    n = v.n
    (k_act, k_code, _), (h_act, h_code, h_st), (e_act, e_code, e_st), e_pin, e_gisc = _compiled(
        variant
    )
    ki = _first_match(kvm_table(variant), v)
    kact = k_act[ki]
    hook = kact == Act.CALL_HOOK
    rule = k_code[ki]
    if hook.any():
        hi = _first_match(hook_table(variant), v)
        act = np.where(hook, h_act[hi], kact)
        rule = np.where(hook, h_code[hi], rule)
        status = h_st[hi]
    else:
        act = kact
        status = np.zeros(n, np.uint32)
    en = act == Act.ENABLE
    aqic = np.zeros(n, np.uint8)
    tapq = np.zeros(n, np.uint8)
    sleeps = np.zeros(n, np.uint8)
    pin = gisc = np.zeros(n, bool)
    dis = np.flatnonzero(act == Act.DISABLE)
    if len(dis):
        rule[dis] = rule_code("disable.done")
        st, a, t, sl = _disable_batch(v, dis, 0)
        status[dis] = st
        aqic[dis] = a
        tapq[dis] = t
        sleeps[dis] = sl
    if en.any():
        ei = _first_match(enable_table(variant), v)
        eact = e_act[ei]
        pin = en & e_pin[ei]
        gisc = en & e_gisc[ei]
        rule = np.where(en, e_code[ei], rule)
        status = np.where(en, e_st[ei], status)
        host = np.flatnonzero(en & (eact == Act.HOST_AQIC))
        if len(host):
            st = v.hw_aqic[host, 0]
            status[host] = st
            aqic[host] = 1
            rc = (st >> arch.STATUS_RC_SHIFT) & 0xFF
            normal = rc == arch.RC.NORMAL
            changed = rc == arch.RC.OTHERWISE_CHANGED
            rule[host] = np.where(
                normal,
                rule_code("enable.aqic_normal"),
                np.where(
                    changed,
                    rule_code("enable.aqic_otherwise_changed"),
                    rule_code("enable.aqic_failed_then_disable"),
                ),
            )
            failed = host[~(normal | changed)]
            if len(failed):  # a failed enable keeps the enable's status
                _, a, t, sl = _disable_batch(v, failed, 1)
                aqic[failed] += a
                tapq[failed] = t
                sleeps[failed] = sl

    kind = _KIND_OF_KVM_ACT.take(act)
    served = kind == Kind.HOOK_HANDLED
    nohook = act == Act.NO_HOOK
    gr1 = np.where(served, status.astype(np.uint64), v.gpr1)
    if nohook.any():
        gr1 = np.where(nohook, np.uint64(NO_HOOK_GR1_HIGH) | (v.gpr1 & np.uint64(arch.MASK32)), gr1)
    rc16 = ((gr1 >> np.uint64(16)) & np.uint64(0xFF)).astype(np.int16)
    written = served | nohook
    ok_cc = 0 if variant.cc_zero_on_success else -1
    return DecisionBatch(
        kind=kind,
        rule=rule.astype(np.int16, copy=False),
        gr1=gr1,
        pgm_code=_PGM_OF_ACT.take(act),
        guest_visible_rc=np.where(written, rc16, np.int16(-1)),
        response_code=np.where(served, rc16, np.where(nohook, np.int16(1), np.int16(-1))),
        cc=np.where(
            served, np.where(rc16 != 0, np.int8(3), np.int8(ok_cc)), np.where(nohook, 3, -1)
        ).astype(np.int8),
        hw_aqic_calls=aqic,
        hw_tapq_calls=tapq,
        sleeps=sleeps,
        hook_called=hook,
        mutex=served,
        pin=pin,
        gisc=gisc,
    )
