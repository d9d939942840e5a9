"""Guest starts and reboots as users read them: the summary's ``starts`` section.

For every ``start`` or ``reboot`` event whose program finished: the time from the event until
every queue of the guest has interrupts enabled (the host turned them on for the guest's
enable; the guest sees the I bit at its next poll, 40 ms later), and what that time is made of:

* ``lock_wait``: the host program waiting for its locks (``guests_lock``, ``kvm->lock``,
  ``mdevs_lock``: other guests' opens and resets ahead of it);
* ``host_work``: the rest of the host's part until the machine reset is done (the open, the
  APCB update, the reset's ZAPQs and its reset interval under ``mdevs_lock``);
* ``boot``: the guest's boot to its AP bus probe and the 40 ms low poll (``delay_ms`` + 40 ms);
* ``enable_burst``: from the probe until the last queue's enable succeeded (the guest's AQICs,
  with their own waits for ``mdevs_lock``).

A guest whose queues are not all enabled by the end (an enable failed and was not retried, or
the run ended first) is counted as not ready: its AP bus polls those queues. ``storm_ns`` is
from the first such event to the last guest ready (over the guests that got ready).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from hostsim.lock_stats import distribution
from hostsim.scenario_types import HostEventKind

_STARTS = (HostEventKind.START, HostEventKind.REBOOT)
PARTS = ("lock_wait", "host_work", "boot", "enable_burst")


def start_rows(model: Any, progs: Any) -> list[dict[str, Any]]:
    """One dict per finished start or reboot: its guest, times (ns) and parts."""
    events = model.s.events
    enabled: dict[tuple[int, int], list[int]] = {}
    for guest, apqn, t in progs.queues.enabled:
        enabled.setdefault((guest, apqn), []).append(t)
    unblock: dict[int, int] = {b[0]: b[3] for b in progs.blocked if b[4]}
    sections: dict[int, list[tuple[int, ...]]] = {}
    for sec in progs.rows:
        sections.setdefault(sec[0], []).append(sec)
    nxt: dict[int, int] = {}  # event -> the same guest's next start or reboot
    later: dict[int, int] = {}
    for i in range(len(events) - 1, -1, -1):
        ev = events[i]
        if ev.kind in _STARTS:
            nxt[i] = later.get(ev.guest, np.iinfo(np.int64).max)
            later[ev.guest] = ev.at_ns
    out = []
    for i, ev in enumerate(events):
        if ev.kind not in _STARTS or i not in unblock or not progs.runners[i].done:
            continue
        u = unblock[i]
        secs = [r for r in sections.get(i, []) if r[5] >= 0]
        host_end = max((r[6] for r in secs), default=ev.at_ns)
        wait = sum(r[5] - r[4] for r in secs)
        ready: int | None = None  # None: some queue is not enabled again
        at = u
        for a in model.event_queues[i].tolist():
            ts = [t for t in enabled.get((ev.guest, a), []) if u <= t < nxt[i]]
            if not ts:
                break
            at = max(at, ts[0])
        else:
            ready = at
        row: dict[str, Any] = {
            "event": i,
            "guest": ev.label,
            "kind": ev.kind.name.lower(),
            "at_ns": ev.at_ns,
            "queues": len(model.event_queues[i]),
            "ready_ns": None if ready is None else ready - ev.at_ns,
            "lock_wait": wait,
            "host_work": host_end - ev.at_ns - wait,
            "boot": u - host_end,
            "enable_burst": None if ready is None else ready - u,
        }
        out.append(row)
    return out


def start_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``starts`` section (module docstring) from :func:`start_rows`."""
    if not rows:
        return {"n": 0}
    ok = [r for r in rows if r["ready_ns"] is not None]
    ready = np.array([r["ready_ns"] for r in ok], np.int64)
    parts = {p: distribution(np.array([r[p] for r in ok], np.int64)) for p in PARTS}
    storm = (
        max(r["at_ns"] + r["ready_ns"] for r in ok) - min(r["at_ns"] for r in rows) if ok else None
    )
    return {
        "n": len(rows),
        "ready": len(ok),
        "not_ready": [r["guest"] for r in rows if r["ready_ns"] is None],
        "time_to_ready_ns": distribution(ready),
        "parts_ns": parts,
        "storm_ns": storm,
        "events": rows,
    }
