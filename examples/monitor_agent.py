"""A host monitoring agent beside the workload, written as a SimPy process.

Every 100 ms the agent reads vfio_ap's sysfs attributes of each mdev (``matrix``,
``guest_matrix``, ``control_domains``: the ``*_show`` handlers take ``mdevs_lock``, see
``shared/spec/host-operations.md`` section 1), a few microseconds per read under the lock, and
once a second it asks each guest's first queue for its status (TAPQ) in the same section. It is
ordinary SimPy code (``env.timeout``, a child process per mdev, ``simpy.AllOf``) against the
host interface of :mod:`hostsim.sim_process` (``host.run(steps)``). Run it on the built-in
default scenario with both engines:

    python examples/monitor_agent.py

and it prints the agent's lock sections, the TAPQ answers it saw and the AQIC p99 with and
without it; both engines give the same records.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import simpy

from hostsim.run import simulate
from hostsim.scenario import load
from hostsim.scenario_types import Scenario
from hostsim.sim_process import Host, simpy_process
from hostsim.steps import Acquire, Delay, HwCall, Release

PERIOD_NS = 100_000_000  # one scan every 100 ms
READ_NS = 4_000  # one sysfs attribute formatted under mdevs_lock
ATTRIBUTES = 3  # matrix, guest_matrix, control_domains
TAPQ_NS = 1_500  # a TAPQ to the adapter, once a second


def read_mdev(
    host: Host, guest: int, apqn: int | None, seen: list[Any]
) -> Generator[simpy.Event, Any, None]:
    """One mdev's attributes under the lock (and, if ``apqn``, a TAPQ of that queue)."""
    steps: list[Any] = [Acquire(guest)] + [Delay(READ_NS)] * ATTRIBUTES
    if apqn is not None:
        steps.append(HwCall("tapq", apqn, guest, ns=TAPQ_NS))
    answers = yield host.run(*steps, Release())
    seen.extend(answers)


def agent(
    guests: list[int], first_queue: dict[int, int], seen: list[Any]
) -> Any:  # a SimPy process function: (env, host) -> generator
    """The agent: every period, one child process per mdev, all started at once."""

    def run(env: simpy.Environment, host: Host) -> Generator[simpy.Event, Any, None]:
        scan = 0
        while True:
            tapq = scan % 10 == 0
            children = [
                env.process(read_mdev(host, g, first_queue.get(g) if tapq else None, seen))
                for g in guests
            ]
            yield simpy.AllOf(env, children)
            scan += 1
            yield env.timeout(PERIOD_NS)

    return run


def p99(summary: dict) -> float:
    """The p99 latency of every measured request (ns)."""
    return summary["all"]["lat_ns"]["percentile"]["99.000000"]


def mdevs(s: Scenario) -> dict[int, int | None]:
    """The guests with an mdev, and each one's first queue (APQN), if it has one."""
    out: dict[int, int | None] = {}
    g = 0
    for grp in s.guests:
        for i in range(grp.count):
            if grp.mdev:
                doms = grp.domains[i] if i < len(grp.domains) else ()
                out[g] = (grp.adapters[0] << 8 | doms[0]) if grp.adapters and doms else None
            g += 1
    return out


def main() -> None:
    s = load(None)
    queues = mdevs(s)
    guests = list(queues)
    first_queue = {g: q for g, q in queues.items() if q is not None}
    for engine in ("reference", "fast"):
        seen: list[Any] = []
        base = simulate(s, engine)
        with_agent = simulate(
            s,
            engine,
            keep_records=True,
            processes=[simpy_process(agent(guests, first_queue, seen))],
        )
        sections = with_agent.processes
        waits = sections["t_grant"] - sections["t_req"]
        rcs = sorted({a.rc for a in seen})
        print(
            f"{engine:>9}: {len(sections)} agent lock sections, longest wait "
            f"{waits.max() / 1e3:.1f} us; {len(seen)} TAPQs, RCs {rcs}; all p99 "
            f"{p99(base.summary) / 1e3:.2f} us without the agent, "
            f"{p99(with_agent.summary) / 1e3:.2f} us with it"
        )


if __name__ == "__main__":
    main()
