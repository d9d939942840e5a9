"""What the decode needs to know about one intercepted PQAP, and about many.

:class:`Intercept` is one intercept with plain Python values (for the scalar evaluator);
:class:`InterceptBatch` is the same facts as a structure of arrays, one column per register and
per flag (for the vectorised evaluator). Both expose the same attribute names, which is what lets
one rule table serve both evaluators.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

import numpy as np

from hostsim import arch

#: Host AQIC answers a decode can consume: 1 for enable plus at most 6 in the disable loop.
AQIC_SLOTS = 1 + arch.DISABLE_MAX_AQIC
#: Host TAPQ answers a decode can consume (vfio_ap_wait_for_irqclear).
TAPQ_SLOTS = arch.IRQCLEAR_MAX_TAPQ

#: Configuration flags and their defaults: a healthy, configured host.
FLAG_DEFAULTS: dict[str, bool] = {
    "ap_instructions_available": True,
    "eca_apie": True,
    "eca_aiv": True,
    "facility15": True,
    "facility65": True,
    "apxa": True,
    "hook_registered": True,
    "hook_module_alive": True,
    "hook_cleared_in_flight": False,
    "mdev_has_kvm": True,
    "queue_assigned": True,
    "nib_in_memslot": True,
    "pin_ok": True,
    "pv_guest": False,
    "nib_shared": True,
    "gisc_register_ok": True,
}
FLAG_NAMES: tuple[str, ...] = tuple(FLAG_DEFAULTS)
REGISTER_NAMES: tuple[str, ...] = ("gpr0", "gpr1", "gpr2", "psw_mask")

T = TypeVar("T")


def pad_answers(values: list[T], width: int) -> list[T]:
    """Hardware answers padded to ``width`` by repeating the last one ("the last one repeats")."""
    if not values:
        raise ValueError("at least one hardware answer is needed")
    out = list(values[:width])
    out.extend([out[-1]] * (width - len(out)))
    return out


@dataclass(slots=True)
class Intercept:
    """One intercepted PQAP: registers, configuration flags, and the hardware's answers.

    ``hw_aqic`` holds 32-bit status words of successive host AQICs and ``hw_tapq`` pairs of
    ``(response_code, irq_enabled)`` of successive host TAPQs; the last element repeats.
    """

    gpr0: int
    gpr1: int = 0
    gpr2: int = 0
    psw_mask: int = 0
    ap_instructions_available: bool = True
    eca_apie: bool = True
    eca_aiv: bool = True
    facility15: bool = True
    facility65: bool = True
    apxa: bool = True
    hook_registered: bool = True
    hook_module_alive: bool = True
    hook_cleared_in_flight: bool = False
    mdev_has_kvm: bool = True
    queue_assigned: bool = True
    nib_in_memslot: bool = True
    pin_ok: bool = True
    pv_guest: bool = False
    nib_shared: bool = True
    gisc_register_ok: bool = True
    hw_aqic: list[int] = field(default_factory=lambda: [0])
    hw_tapq: list[tuple[int, bool]] = field(default_factory=lambda: [(0, False)])

    def aqic_answer(self, call: int) -> int:
        """Status word of the ``call``-th host AQIC (0-based); the last answer repeats."""
        return self.hw_aqic[min(call, len(self.hw_aqic) - 1)]

    def tapq_answer(self, call: int) -> tuple[int, bool]:
        """(rc, irq_enabled) of the ``call``-th host TAPQ; the last answer repeats."""
        return self.hw_tapq[min(call, len(self.hw_tapq) - 1)]


class InterceptBatch:
    """Many intercepts as columns: ``uint64`` registers, ``bool`` flags, answer matrices.

    ``hw_aqic`` is ``uint32 (n, AQIC_SLOTS)`` status words; ``hw_tapq_rc`` ``uint8 (n,
    TAPQ_SLOTS)``; ``hw_tapq_irq`` ``bool (n, TAPQ_SLOTS)``.
    """

    __slots__ = (*REGISTER_NAMES, *FLAG_NAMES, "hw_aqic", "hw_tapq_irq", "hw_tapq_rc", "n")
    # The columns the slots hold (REGISTER_NAMES, FLAG_NAMES, the answers), for type checkers.
    n: int
    gpr0: np.ndarray
    gpr1: np.ndarray
    gpr2: np.ndarray
    psw_mask: np.ndarray
    ap_instructions_available: np.ndarray
    eca_apie: np.ndarray
    eca_aiv: np.ndarray
    facility15: np.ndarray
    facility65: np.ndarray
    apxa: np.ndarray
    hook_registered: np.ndarray
    hook_module_alive: np.ndarray
    hook_cleared_in_flight: np.ndarray
    mdev_has_kvm: np.ndarray
    queue_assigned: np.ndarray
    nib_in_memslot: np.ndarray
    pin_ok: np.ndarray
    pv_guest: np.ndarray
    nib_shared: np.ndarray
    gisc_register_ok: np.ndarray
    hw_aqic: np.ndarray
    hw_tapq_irq: np.ndarray
    hw_tapq_rc: np.ndarray

    def __init__(self, n: int, **columns: np.ndarray) -> None:
        self.n = n
        for name in REGISTER_NAMES:
            col = columns.pop(name, None)
            arr = np.zeros(n, np.uint64) if col is None else np.asarray(col, dtype=np.uint64)
            setattr(self, name, arr)
        for name in FLAG_NAMES:
            col = columns.pop(name, None)
            arr = np.full(n, FLAG_DEFAULTS[name]) if col is None else np.asarray(col, bool)
            setattr(self, name, arr)
        aq = columns.pop("hw_aqic", None)
        self.hw_aqic = np.zeros((n, AQIC_SLOTS), np.uint32) if aq is None else aq
        rc = columns.pop("hw_tapq_rc", None)
        self.hw_tapq_rc = np.zeros((n, TAPQ_SLOTS), np.uint8) if rc is None else rc
        irq = columns.pop("hw_tapq_irq", None)
        self.hw_tapq_irq = np.zeros((n, TAPQ_SLOTS), bool) if irq is None else irq
        if columns:
            raise TypeError(f"unknown intercept columns: {sorted(columns)}")

    @classmethod
    def from_intercepts(cls, items: list[Intercept]) -> InterceptBatch:
        """Columns from a list of scalar intercepts (used by tests and the decode CLI)."""
        n = len(items)
        cols: dict[str, np.ndarray] = {}
        for name in REGISTER_NAMES:
            cols[name] = np.fromiter((getattr(i, name) for i in items), np.uint64, n)
        for name in FLAG_NAMES:
            cols[name] = np.fromiter((getattr(i, name) for i in items), bool, n)
        aq = np.empty((n, AQIC_SLOTS), np.uint32)
        trc = np.empty((n, TAPQ_SLOTS), np.uint8)
        tirq = np.empty((n, TAPQ_SLOTS), bool)
        for k, it in enumerate(items):
            aq[k] = pad_answers(it.hw_aqic, AQIC_SLOTS)
            tp = pad_answers(it.hw_tapq, TAPQ_SLOTS)
            trc[k] = [a for a, _ in tp]
            tirq[k] = [b for _, b in tp]
        return cls(n, **cols, hw_aqic=aq, hw_tapq_rc=trc, hw_tapq_irq=tirq)

    def row(self, k: int) -> Intercept:
        """Row ``k`` as a scalar :class:`Intercept`."""
        kw: dict[str, Any] = {name: int(getattr(self, name)[k]) for name in REGISTER_NAMES}
        kw.update({name: bool(getattr(self, name)[k]) for name in FLAG_NAMES})
        kw["hw_aqic"] = [int(x) for x in self.hw_aqic[k]]
        kw["hw_tapq"] = [
            (int(a), bool(b)) for a, b in zip(self.hw_tapq_rc[k], self.hw_tapq_irq[k], strict=True)
        ]
        return Intercept(**kw)


INTERCEPT_FIELDS = tuple(f.name for f in fields(Intercept))
