"""The tie rule: what happens first when several things happen in the same nanosecond.

Every scheduler of hostsim (the reference engine's SimPy queue, the fast engine's heap, the
fleet's vectorised FIFO) orders simultaneous work by this one rule:

* at one nanosecond, host-side state changes come first (:data:`URGENT`), then every process
  step, vCPU or host (:data:`NORMAL`), then lock decisions (:data:`LATE`): a lock is granted only
  after every request of that nanosecond is in;
* a host program that was granted a lock continues after every decision of that nanosecond
  (:data:`RESUME`), host programs in identifier order; a lock it asks for then, at the same
  nanosecond, is asked in the *late phase* (1) and queues after every request made at that
  nanosecond before the decisions (phase 0);
* a FIFO lock serves requests in the order of :func:`lock_key`: request time, phase, host before
  vCPU, then the identifier (host event index, then user process, or global vCPU index).
"""

from __future__ import annotations

#: event priorities inside one nanosecond, smallest first
URGENT, NORMAL, LATE, RESUME = 0, 1, 2, 3
#: requester classes: host-side work is served before vCPUs at equal request times
HOST, VCPU = 0, 1


def lock_key(t: int, phase: int, cls: int, ident: int) -> tuple[int, int, int, int]:
    """The FIFO position of a lock request made at ``t`` (in ``phase``) by ``(cls, ident)``."""
    return (t, phase, cls, ident)
