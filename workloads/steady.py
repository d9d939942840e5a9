"""Steady workloads: open-loop Poisson, closed loop with think time, and on/off bursts (MMPP).

Poisson and closed loop are per-request gaps (inter-arrival or think time). The bursty workload
is a Markov-modulated Poisson process: the guest group alternates between "on" and "off" periods
of exponential length (one schedule per group, from its own seeded generator), and each vCPU is a
Poisson process whose rate follows the schedule. Arrivals are made by a time change: a vCPU's
next arrival is the time at which the cumulative intensity since its previous arrival reaches a
unit-exponential draw, so every vCPU's k-th gap is still one keyed draw.
"""

from __future__ import annotations

import bisect
import math

import numpy as np


class BurstyClock:
    """The on/off intensity of one guest group and the time change it defines."""

    def __init__(
        self,
        gen: np.random.Generator,
        until_ns: int,
        on_ns: float,
        off_ns: float,
        rate_on_hz: float,
        rate_off_hz: float,
    ) -> None:
        starts = [0]
        rates = []
        t = 0.0
        on = True
        while t < until_ns:
            length = gen.exponential(on_ns if on else off_ns)
            rates.append((rate_on_hz if on else rate_off_hz) / 1e9)
            t += max(length, 1.0)
            starts.append(round(t))
            on = not on
        rates.append(rates[-1] if rates else rate_on_hz / 1e9)
        starts.append(math.inf)  # type: ignore[arg-type]
        self.starts = starts  # period i covers [starts[i], starts[i+1])
        self.rates = rates
        cum = [0.0]
        for i in range(len(rates) - 1):
            cum.append(cum[-1] + rates[i] * (starts[i + 1] - starts[i]))
        self.cum = cum  # intensity accumulated at starts[i]

    def on_at(self, t: int) -> bool:
        """Whether the group is in an "on" period at time ``t``."""
        return bisect.bisect_right(self.starts, t) % 2 == 1

    def intensity(self, t: float) -> float:
        i = bisect.bisect_right(self.starts, t) - 1
        return self.cum[i] + self.rates[i] * (t - self.starts[i])

    def next_arrival(self, prev: int, unit_gap_ns: int, mean_ns: float) -> int:
        """The arrival after ``prev``: intensity ``unit_gap_ns / mean_ns`` later.

        ``unit_gap_ns`` is an exponential draw of mean ``mean_ns`` (the keyed gap), so the
        target intensity is a unit exponential.
        """
        target = self.intensity(prev) + unit_gap_ns / mean_ns
        i = bisect.bisect_right(self.cum, target) - 1
        while i < len(self.rates) and self.rates[i] <= 0:
            i += 1
        if i == len(self.rates):  # the last period (to infinity) is "off" at rate 0: never
            return NEVER_NS
        return max(prev, round(self.starts[i] + (target - self.cum[i]) / self.rates[i]))

    def next_arrivals(
        self, prev: np.ndarray, unit_gap_ns: np.ndarray, mean_ns: float
    ) -> np.ndarray:
        """:meth:`next_arrival` for arrays of ``prev`` and ``unit_gap_ns`` (int64), exactly: the
        same float64 operations in the same order, and numpy's round is Python's (half to
        even)."""
        if not hasattr(self, "_arrays"):
            starts = np.array(self.starts, np.float64)
            rates = np.array(self.rates, np.float64)
            live = np.flatnonzero(rates > 0)
            # The first period at or after each one with a positive rate (the scalar's loop).
            first = np.searchsorted(live, np.arange(len(rates)))
            nxt = np.append(live, -1)[first]  # -1: no later period with a positive rate
            self._arrays = (starts, np.array(self.cum, np.float64), rates, nxt)
        starts, cum, rates, nxt = self._arrays
        prev = np.asarray(prev, np.int64)
        i = np.searchsorted(starts, prev, side="right") - 1
        intensity = cum[i] + rates[i] * (prev - starts[i].astype(np.int64))
        target = intensity + np.asarray(unit_gap_ns, np.int64) / mean_ns
        j = nxt[np.searchsorted(cum, target, side="right") - 1]
        never = j < 0
        j = np.where(never, 0, j)
        with np.errstate(divide="ignore", invalid="ignore"):
            at = np.round(starts[j] + (target - cum[j]) / rates[j])
        at = np.where(never, NEVER_NS, at).astype(np.int64)
        return np.maximum(prev, at)


#: An arrival that never comes (after an "off" period at rate 0 that lasts to the end)
NEVER_NS = 1 << 62
#: Mean of the unit gap drawn for a bursty workload (any fixed value; ns resolution of e).
BURSTY_UNIT_MEAN_NS = 1e9
