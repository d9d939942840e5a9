"""How long the kernel's ``msleep`` really sleeps, from the kernel release and HZ.

``../shared/spec/host-operations.md`` section 4 (sources H9, H10):

* ``msleep(ms)`` asks ``schedule_timeout`` for ``msecs_to_jiffies(ms) + 1`` jiffies up to Linux
  6.11 and for ``msecs_to_jiffies(ms)`` from 6.12 (commit 4381b895f544, "timers: Remove
  historical extra jiffie for timeout in msleep()");
* the timer wheel never fires early: ``calc_index()`` rounds the expiry up with the level's
  granularity (``expires = (expires >> LVL_SHIFT(lvl)) + 1``), so a timer of ``J`` jiffies at
  level 0 fires at the ``J + 1``-th tick from now;
* the sleep starts part-way through the current tick (uniformly, as a first model), so it lasts
  between ``J`` and ``J + 1`` jiffies of wall time.

At HZ=100 (the s390 ``defconfig``) ``msleep(20)`` lasts 30-40 ms up to 6.11 and 20-30 ms from
6.12. The same holds for ``AP_RESET_INTERVAL`` (20 ms), the reset-verification sleep.
"""

from __future__ import annotations

import math
import re

HZ_CHOICES = (100, 250, 300, 1000)
DEFAULT_HZ = 100  # arch/s390/configs/defconfig: CONFIG_HZ_100=y (H9)
#: the first release without the extra jiffy in msleep() (H10)
NO_EXTRA_JIFFY = (6, 12)
#: each kernel variant's release (its default ``host.kernel``)
VARIANT_RELEASE = {
    "upstream": "6.15",  # the tree host-operations.md was read from (H1: v6.15 or later)
    "merged-2019": "5.3",  # e5282de93105, merged in v5.3
    "v4-2019": "5.0",  # the series under review in February 2019 (on v5.0)
    "hook-owns-fc": "5.0",  # the alternative argued in the same thread
}
AP_RESET_INTERVAL_MS = 20  # drivers/s390/crypto/ap_bus.h (H14)
HOOK_SLEEP_MS = 20  # msleep(20) in vfio_ap_irq_disable / vfio_ap_wait_for_irqclear
_LVL_CLK_SHIFT = 3  # kernel/time/timer.c: 8 buckets of granularity per level step
_LVL_BITS = 6  # 64 buckets per level


def release(text: str) -> tuple[int, int]:
    """``"6.12"`` (or ``"6.12.3"``, ``"6.12-rc1"``) as ``(6, 12)``; ValueError otherwise."""
    m = re.fullmatch(r"(\d+)\.(\d+)(?:[.-].*)?", str(text).strip())
    if not m:
        raise ValueError(f"kernel release {text!r}: expected MAJOR.MINOR, for example '6.12'")
    return int(m.group(1)), int(m.group(2))


def msecs_to_jiffies(ms: int, hz: int) -> int:
    """``msecs_to_jiffies``: rounds up to whole jiffies."""
    return math.ceil(ms * hz / 1000)


def msleep_jiffies(ms: int, kernel: str, hz: int) -> int:
    """The timeout, in jiffies, that ``msleep(ms)`` asks for on ``kernel`` at ``hz``."""
    extra = 0 if release(kernel) >= NO_EXTRA_JIFFY else 1
    return msecs_to_jiffies(ms, hz) + extra


def _granularity(delta: int) -> int:
    """The timer wheel level granularity (jiffies) for a timeout of ``delta`` jiffies."""
    lvl = 0
    while delta >= ((1 << _LVL_BITS) - 1) << (lvl * _LVL_CLK_SHIFT):
        lvl += 1
    return 1 << (lvl * _LVL_CLK_SHIFT)


def msleep_range_ns(ms: int, kernel: str, hz: int) -> tuple[int, int]:
    """Shortest and longest wall time (ns) of ``msleep(ms)``: from the expiry (``J`` jiffies,
    armed at the very start of a tick) to the rounded-up bucket (armed just before the next
    tick); see the module docstring."""
    if hz not in HZ_CHOICES:
        raise ValueError(f"HZ {hz}: expected one of {', '.join(map(str, HZ_CHOICES))}")
    j = msleep_jiffies(ms, kernel, hz)
    gran = _granularity(j)
    fire = (j // gran + 1) * gran  # ticks from the one before now to the bucket's expiry
    jiffy = 1_000_000_000 // hz
    return (fire - 1) * jiffy, fire * jiffy


def sleep_cost(ms: int, kernel: str, hz: int) -> dict[str, object]:
    """``msleep(ms)`` as a cost distribution (uniform over its range)."""
    low, high = msleep_range_ns(ms, kernel, hz)
    return {"dist": "uniform", "low_ns": low, "high_ns": high}
