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
        while self.rates[i] <= 0:
            i += 1
        return max(prev, round(self.starts[i] + (target - self.cum[i]) / self.rates[i]))


#: Mean of the unit gap drawn for a bursty workload (any fixed value; ns resolution of e).
BURSTY_UNIT_MEAN_NS = 1e9
