"""The hardware profiles of the host's queues and the answers they give.

A profile is how one set of queues answers (AQIC status words, TAPQ RCs and I bits, pin
success), as probabilities from the scenario's ``[host.hardware]`` and its queue overrides.
Here: the profiles as cumulative distributions, which profile each guest's queues use (later
overrides win), and the mapping of uniform draws through a request's profile to its answers.
Split from :mod:`hostsim.model`, which holds the profiles of one scenario and draws the uniforms.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from hostsim import arch
from hostsim.intercept import AQIC_SLOTS, TAPQ_SLOTS
from hostsim.scenario_types import Hardware


@dataclass(frozen=True)
class Profile:
    """One hardware profile: each answer's values and cumulative probabilities."""

    aqic_rc: np.ndarray
    aqic_cdf: np.ndarray
    tapq_rc: np.ndarray
    tapq_cdf: np.ndarray
    tapq_irq: float
    pin_fail: float


def profile(h: Hardware) -> Profile:
    """The profile of a hardware description."""

    def cdf(pairs: tuple[tuple[int, float], ...]) -> tuple[np.ndarray, np.ndarray]:
        rcs = np.array([rc for rc, _ in pairs], np.uint32)
        c = np.cumsum([p for _, p in pairs])
        c[-1] = 1.0
        return rcs, c

    a, ac = cdf(h.aqic_rc)
    t, tc = cdf(h.tapq_rc)
    return Profile(a, ac, t, tc, h.tapq_irq_enabled, h.pin_fail)


def deterministic(profiles: list[Profile]) -> bool:
    """Every queue answers the same way every time: no hardware draws are needed."""
    return all(
        len(p.aqic_rc) == 1
        and len(p.tapq_rc) == 1
        and p.tapq_irq in (0.0, 1.0)
        and p.pin_fail in (0.0, 1.0)
        for p in profiles
    )


def queue_profiles(
    guest_apqns: Sequence[np.ndarray], overrides: Sequence[Hardware]
) -> tuple[list[np.ndarray], np.ndarray]:
    """Per guest, the profile index of each of its queues (later overrides win), and a lookup
    table from APQN to profile index (queues not owned by anyone: the default, 0)."""
    queue_profile: list[np.ndarray] = []
    for apqns in guest_apqns:
        prof = np.zeros(len(apqns), np.int16)
        for i, o in enumerate(overrides, 1):
            ad = (apqns >> 8).astype(np.int64)
            dm = (apqns & 0xFF).astype(np.int64)
            sel = np.ones(len(apqns), bool)
            if o.adapters is not None:
                sel &= np.isin(ad, o.adapters)
            if o.domains is not None:
                sel &= np.isin(dm, o.domains)
            prof[sel] = i
        queue_profile.append(prof)
    profile_of: dict[int, int] = {}
    for apqns, prof in zip(guest_apqns, queue_profile, strict=True):
        profile_of.update(zip(apqns.tolist(), prof.tolist(), strict=True))
    lut = np.zeros(1 << 16, np.int16)
    for a, pidx in profile_of.items():
        lut[a] = pidx
    return queue_profile, lut


def answers(
    profiles: list[Profile],
    prof: np.ndarray,
    au: np.ndarray | None,
    tu: np.ndarray | None,
    iu: np.ndarray | None,
    pu: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Hardware answers (AQIC status words, TAPQ RCs and I bits, pin success) from uniforms
    through each request's queue profile (``prof``: indices into ``profiles``). Uniforms for
    fewer call slots than there are give the first slots' answers; the later ones answer
    NORMAL (zero), with the I bit off."""
    shape = prof.shape
    if au is None and len(profiles) == 1:
        # One deterministic profile: the same answers everywhere (read-only broadcasts).
        p = profiles[0]
        return (
            np.broadcast_to(np.uint32(p.aqic_rc[0] << arch.STATUS_RC_SHIFT), (*shape, AQIC_SLOTS)),
            np.broadcast_to(np.uint8(p.tapq_rc[0]), (*shape, TAPQ_SLOTS)),
            np.broadcast_to(np.bool_(p.tapq_irq == 1.0), (*shape, TAPQ_SLOTS)),
            np.broadcast_to(np.bool_(p.pin_fail == 0.0), shape),
        )
    aqic = np.zeros((*shape, AQIC_SLOTS), np.uint32)
    trc = np.zeros((*shape, TAPQ_SLOTS), np.uint8)
    tirq = np.zeros((*shape, TAPQ_SLOTS), bool)
    pin_ok = np.ones(shape, bool)
    for pi, p in enumerate(profiles):
        m: Any = prof == pi
        if not m.any():
            continue
        if m.all():  # (one profile for every request: no mask to apply)
            m = Ellipsis
        if au is None:  # deterministic: the one answer of each kind
            aqic[m] = p.aqic_rc[0] << arch.STATUS_RC_SHIFT
            trc[m] = p.tapq_rc[0]
            tirq[m] = p.tapq_irq == 1.0
            pin_ok[m] = p.pin_fail == 0.0
            continue
        assert tu is not None and iu is not None and pu is not None  # all or none are drawn
        wa, wt = au.shape[-1], tu.shape[-1]  # (the slots drawn)
        rc = p.aqic_rc[np.searchsorted(p.aqic_cdf, au[m], side="right").clip(0, len(p.aqic_rc) - 1)]
        aqic[m, :wa] = rc << arch.STATUS_RC_SHIFT
        trc[m, :wt] = p.tapq_rc[
            np.searchsorted(p.tapq_cdf, tu[m], side="right").clip(0, len(p.tapq_rc) - 1)
        ]
        tirq[m, :wt] = iu[m] < p.tapq_irq
        pin_ok[m] = pu[m] >= p.pin_fail
    return aqic, trc, tirq, pin_ok


def answers_one(
    p: Profile,
    au: Sequence[float] | None,
    tu: Sequence[float] | None,
    iu: Sequence[float] | None,
    pu: float | None,
) -> tuple[list[int], list[int], list[bool], bool]:
    """:func:`answers` for one request of profile ``p``, in plain Python (a request made one at
    a time; numpy's cost per call is most of it there): its AQIC status words, TAPQ RCs, TAPQ
    I bits and pin success, from its uniforms (``AQIC_SLOTS``, ``TAPQ_SLOTS``,
    ``TAPQ_SLOTS`` and one; None: a deterministic profile's one answer of each kind)."""
    shift = arch.STATUS_RC_SHIFT
    if au is None:
        return (
            [int(p.aqic_rc[0]) << shift] * AQIC_SLOTS,
            [int(p.tapq_rc[0])] * TAPQ_SLOTS,
            [p.tapq_irq == 1.0] * TAPQ_SLOTS,
            p.pin_fail == 0.0,
        )
    assert tu is not None and iu is not None and pu is not None  # all or none are drawn
    a_rc, a_cdf = p.aqic_rc.tolist(), p.aqic_cdf.tolist()
    t_rc, t_cdf = p.tapq_rc.tolist(), p.tapq_cdf.tolist()
    a_top, t_top = len(a_rc) - 1, len(t_rc) - 1
    return (
        [a_rc[min(bisect_right(a_cdf, u), a_top)] << shift for u in au],
        [t_rc[min(bisect_right(t_cdf, u), t_top)] for u in tu],
        [u < p.tapq_irq for u in iu],
        pu >= p.pin_fail,
    )
