"""Two evaluators of the same rule tables: one intercept at a time, and a whole batch at once.

:func:`decode_one` is the plain scalar reference: it walks each table row by row, as the kernel
walks its early returns. :func:`decode_batch` turns each row into a boolean mask over numpy
columns and keeps, for every intercept, the first row that holds. Both are pure: no SimPy, no
randomness. Property tests hold them equal for every variant.

The host AQIC/TAPQ answers drive ``vfio_ap_irq_disable()``'s retry loop and
``vfio_ap_wait_for_irqclear()`` (spec 4.3); both evaluators count the host calls and sleeps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hostsim import arch
from hostsim.intercept import AQIC_SLOTS, TAPQ_SLOTS, Intercept, InterceptBatch
from hostsim.rules import Act, Kind, Rule, enable_table, hook_table, kvm_table, rule_code
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

    def __init__(self, n: int, gr1: np.ndarray) -> None:
        self.kind = np.zeros(n, np.uint8)
        self.rule = np.zeros(n, np.int16)
        self.gr1 = gr1.copy()
        self.cc = np.full(n, -1, np.int8)
        self.pgm_code = np.full(n, -1, np.int16)
        self.response_code = np.full(n, -1, np.int16)
        self.guest_visible_rc = np.full(n, -1, np.int16)
        self.hw_aqic_calls = np.zeros(n, np.uint8)
        self.hw_tapq_calls = np.zeros(n, np.uint8)
        self.sleeps = np.zeros(n, np.uint8)
        self.hook_called = np.zeros(n, bool)
        self.mutex = np.zeros(n, bool)
        self.pin = np.zeros(n, bool)
        self.gisc = np.zeros(n, bool)

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


def _first_match(table: tuple[Rule, ...], v: InterceptBatch, active: np.ndarray) -> np.ndarray:
    """Index of the first row of ``table`` whose condition holds; -1 where not ``active``."""
    idx = np.full(v.n, -1, np.int16)
    undecided = active.copy()
    for i, r in enumerate(table):
        cond = r.when(v)
        hit = undecided if cond is True else undecided & cond
        idx[hit] = i
        undecided &= ~hit
        if not undecided.any():
            break
    return idx


def _irqclear_batch(v: InterceptBatch, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised vfio_ap_wait_for_irqclear() over row indices ``rows``."""
    m = len(rows)
    tapq = np.zeros(m, np.uint8)
    sleeps = np.zeros(m, np.uint8)
    polling = np.ones(m, bool)
    rc_all = v.hw_tapq_rc[rows]
    irq_all = v.hw_tapq_irq[rows]
    for j in range(TAPQ_SLOTS):
        rc = rc_all[:, j]
        ok = (rc == _RC_NORMAL) | (rc == _RC_RESET)
        tapq += polling
        slept = polling & ((ok & irq_all[:, j]) | (rc == _RC_BUSY))
        sleeps += slept
        polling = slept
        if not polling.any():
            break
    return tapq, sleeps


def _disable_batch(
    v: InterceptBatch, rows: np.ndarray, first_call: int, out: DecisionBatch, keep_status: bool
) -> None:
    """Vectorised vfio_ap_irq_disable() for ``rows``; writes calls, sleeps (and the status)."""
    m = len(rows)
    status = np.zeros(m, np.uint32)
    aqic = np.zeros(m, np.uint8)
    sleeps = np.zeros(m, np.uint8)
    clear = np.zeros(m, bool)
    looping = np.ones(m, bool)
    answers = v.hw_aqic[rows]
    for i in range(arch.DISABLE_MAX_AQIC):
        st = answers[:, min(first_call + i, AQIC_SLOTS - 1)]
        status = np.where(looping, st, status)
        aqic += looping
        rc = (st >> arch.STATUS_RC_SHIFT) & 0xFF
        clear |= looping & ((rc == _RC_NORMAL) | (rc == _RC_CHANGED))
        busy = looping & ((rc == _RC_RESET) | (rc == _RC_BUSY))
        sleeps += busy
        looping = busy
        if not looping.any():
            break
    tapq = np.zeros(m, np.uint8)
    crow = np.nonzero(clear)[0]
    if len(crow):
        t, s = _irqclear_batch(v, rows[crow])
        tapq[crow] = t
        sleeps[crow] += s
    out.hw_aqic_calls[rows] += aqic
    out.hw_tapq_calls[rows] = tapq
    out.sleeps[rows] = sleeps
    if keep_status:
        out.gr1[rows] = status


def _codes(table: tuple[Rule, ...]) -> np.ndarray:
    return np.array([rule_code(r.id) for r in table], np.int16)


def _acts(table: tuple[Rule, ...]) -> np.ndarray:
    return np.array([int(r.act) for r in table], np.int8)


def _rcs(table: tuple[Rule, ...]) -> np.ndarray:
    return np.array([max(r.rc, 0) for r in table], np.uint64)


def decode_batch(v: InterceptBatch, variant: Variant) -> DecisionBatch:
    """The vectorised evaluator: the same tables as :func:`decode_one`, over columns."""
    n = v.n
    out = DecisionBatch(n, v.gpr1)
    everyone = np.ones(n, bool)

    kt = kvm_table(variant)
    ki = _first_match(kt, v, everyone)
    kact = _acts(kt)[ki]
    out.rule[:] = _codes(kt)[ki]
    out.kind[kact == Act.USERSPACE] = Kind.USERSPACE_EXIT
    pgm2 = kact == Act.PGM_PRIVILEGED
    pgm6 = kact == Act.PGM_SPECIFICATION
    nohook = kact == Act.NO_HOOK
    hook = kact == Act.CALL_HOOK
    out.kind[pgm2 | pgm6] = Kind.PROGRAM_INTERRUPT
    out.pgm_code[pgm2] = 2
    out.pgm_code[pgm6] = 6
    if nohook.any():
        out.kind[nohook] = Kind.NO_HOOK_RC01
        out.gr1[nohook] = np.uint64(NO_HOOK_GR1_HIGH) | (v.gpr1[nohook] & np.uint64(arch.MASK32))
        out.cc[nohook] = 3
        out.response_code[nohook] = 1
        out.guest_visible_rc[nohook] = (out.gr1[nohook] >> np.uint64(16)) & np.uint64(0xFF)
    if not hook.any():
        return out

    out.hook_called[hook] = True
    ht = hook_table(variant)
    hi = _first_match(ht, v, hook)
    hsel = hi[hook]
    hact = np.full(n, -1, np.int8)
    hact[hook] = _acts(ht)[hsel]
    out.rule[hook] = _codes(ht)[hsel]
    h_user = hact == Act.USERSPACE
    out.kind[h_user] = Kind.USERSPACE_EXIT
    h2 = hact == Act.PGM_PRIVILEGED
    h6 = hact == Act.PGM_SPECIFICATION
    out.kind[h2 | h6] = Kind.PROGRAM_INTERRUPT
    out.pgm_code[h2] = 2
    out.pgm_code[h6] = 6
    served = (hact == Act.SW_STATUS) | (hact == Act.ENABLE) | (hact == Act.DISABLE)
    out.kind[served] = Kind.HOOK_HANDLED
    out.mutex[served] = True

    sw = hact == Act.SW_STATUS
    if sw.any():
        out.gr1[sw] = _rcs(ht)[hi[sw]] << np.uint64(arch.STATUS_RC_SHIFT)

    dis = np.nonzero(hact == Act.DISABLE)[0]
    if len(dis):
        out.rule[dis] = rule_code("disable.done")
        _disable_batch(v, dis, 0, out, keep_status=True)

    en = hact == Act.ENABLE
    if en.any():
        et = enable_table(variant)
        ei = _first_match(et, v, en)
        esel = ei[en]
        eact = np.full(n, -1, np.int8)
        eact[en] = _acts(et)[esel]
        out.rule[en] = _codes(et)[esel]
        ids = [r.id for r in et]
        early = [
            i
            for i, rid in enumerate(ids)
            if rid in ("enable.nib_zero", "enable.nib_not_in_memslot")
        ]
        if variant.nib_check == "pin":
            early = []
        out.pin[en] = ~np.isin(esel, early)
        gisc_rows = [
            i
            for i, rid in enumerate(ids)
            if rid in ("enable.gisc_register_failed", "enable.host_aqic")
        ]
        out.gisc[en] = np.isin(esel, gisc_rows)
        esw = eact == Act.SW_STATUS
        out.gr1[esw] = _rcs(et)[ei[esw]] << np.uint64(arch.STATUS_RC_SHIFT)
        host = eact == Act.HOST_AQIC
        if host.any():
            st = v.hw_aqic[host, 0]
            out.gr1[host] = st
            out.hw_aqic_calls[host] = 1
            rc = (st >> arch.STATUS_RC_SHIFT) & 0xFF
            hrows = np.nonzero(host)[0]
            codes = np.where(
                rc == _RC_NORMAL,
                rule_code("enable.aqic_normal"),
                np.where(
                    rc == _RC_CHANGED,
                    rule_code("enable.aqic_otherwise_changed"),
                    rule_code("enable.aqic_failed_then_disable"),
                ),
            )
            out.rule[hrows] = codes
            failed = hrows[(rc != _RC_NORMAL) & (rc != _RC_CHANGED)]
            if len(failed):
                _disable_batch(v, failed, 1, out, keep_status=False)

    g = served
    out.gr1[g] &= np.uint64(arch.MASK32)
    rc = ((out.gr1[g] >> np.uint64(16)) & np.uint64(0xFF)).astype(np.int16)
    out.response_code[g] = rc
    out.guest_visible_rc[g] = rc
    ok_cc = 0 if variant.cc_zero_on_success else -1
    out.cc[g] = np.where(rc != 0, 3, ok_cc)
    return out
