"""A host monitoring agent beside the workload: a user host process (``hostsim.process``).

Every 100 ms the agent reads vfio_ap's sysfs attributes of each mdev (``matrix``,
``guest_matrix``, ``control_domains``: the ``*_show`` handlers take ``mdevs_lock``, see
``shared/spec/host-operations.md`` section 1), a few microseconds per read under the lock.
Run it on the built-in default scenario with both engines:

    python examples/monitor_agent.py

and it prints the agent's lock sections and the AQIC p99 with and without it; both engines
give the same records.
"""

from __future__ import annotations

from collections.abc import Iterator

from hostsim.process import Acquire, Delay, Release, Step
from hostsim.run import simulate
from hostsim.scenario import load

PERIOD_NS = 100_000_000  # one scan every 100 ms
READ_NS = 4_000  # one sysfs attribute formatted under mdevs_lock
ATTRIBUTES = 3  # matrix, guest_matrix, control_domains


def monitor(guests: int) -> Iterator[Step]:
    """Every period: for each mdev, take the lock, read its attributes, release."""
    while True:
        for g in range(guests):
            yield Acquire(guest=g)
            for _ in range(ATTRIBUTES):
                yield Delay(READ_NS)
            yield Release()
        yield Delay(PERIOD_NS)


def p99(summary: dict) -> float:
    """The p99 latency of every measured request (ns)."""
    return summary["all"]["lat_ns"]["percentile"]["99.000000"]


def main() -> None:
    s = load(None)

    def agent() -> Iterator[Step]:
        return monitor(s.n_guests)

    for engine in ("reference", "fast"):
        base = simulate(s, engine)
        with_agent = simulate(s, engine, keep_records=True, processes=[agent])
        sections = with_agent.processes
        waits = sections["t_grant"] - sections["t_req"]
        print(
            f"{engine:>9}: {len(sections)} agent lock sections, longest wait "
            f"{waits.max() / 1e3:.1f} us; all p99 "
            f"{p99(base.summary) / 1e3:.2f} us without the agent, "
            f"{p99(with_agent.summary) / 1e3:.2f} us with it"
        )


if __name__ == "__main__":
    main()
