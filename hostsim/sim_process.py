"""User host processes written as free SimPy code, run by both engines.

A SimPy host process is a generator function ``fn(env, host)``: ``env`` is the run's SimPy
Environment (:class:`hostsim.sim_env.HostEnv`: ``env.now``, ``env.timeout``, ``env.process``,
``env.event``, ``simpy.AnyOf`` and the rest work as in any SimPy model), and ``host``
(:class:`Host`) is the public interface to the host's locks and queues: ``host.run(*steps)``
posts steps (:mod:`hostsim.steps`: ``Acquire``, ``Release``, ``HwCall``, ``Delay``, ``Sleep``,
``Block``, ``Unblock``) and returns an event that succeeds when they are done, with the
answers of their hardware calls (a list of :class:`hostsim.queues.QueueAnswer`) as its value::

    def agent(env, host):
        while True:
            yield env.timeout(100_000_000)
            answers = yield host.run(Acquire(0), HwCall("tapq", 0x0102, 0, ns=1_000), Release())

    simulate(scenario, engine, processes=[simpy_process(agent)])

The steps go through the same interpreter as the host's own operations
(:class:`hostsim.program.Runner`: checked, kept in the kernel's lock order, logged as lock
sections in ``RunResult.processes``). Host-only mutexes (``ap_perms_mutex``, ``guests_lock``,
``kvm_lock``) may be held across any SimPy code: acquire in one ``run``, release in a later one.
``mdevs_lock`` is the innermost lock and nothing waits under it, so a section under it is posted
whole, ``Acquire`` to ``Release``, in one ``run`` (anything else is a :class:`ProcessError`):
that is what lets the fast engine time the vCPUs that share it in closed form.

A process's events carry its identifier in the environment's keys (:mod:`hostsim.sim_env`), so
both engines run simultaneous events in the same order and give the same records. It stops at
its first event at or after the end of the run.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass, field
from typing import Any

import simpy
from simpy.events import Event

from hostsim.process import HostProcess
from hostsim.sim_env import HostEnv
from hostsim.steps import ProcessError, Step

#: what :meth:`Channel.take` returns once the process returned and its steps are done
ENDED = object()

#: A SimPy host process: a generator function of the environment and the host interface.
SimProcessFn = Callable[[simpy.Environment, "Host"], Generator[Event, Any, Any]]


@dataclass(frozen=True)
class SimProcess:
    """A SimPy host process for ``simulate(..., processes=[...])`` (make with
    :func:`simpy_process`); ``blocks``: the guests it may ``Block``."""

    fn: SimProcessFn
    blocks: frozenset[int] = field(default_factory=frozenset)


#: what ``simulate(..., processes=[...])`` takes: a generator of steps or a SimPy process
AnyProcess = HostProcess | SimProcess


def simpy_process(fn: SimProcessFn, blocks: Iterable[int] = ()) -> SimProcess:
    """``fn(env, host)`` as a host process; ``blocks``: the guests whose vCPUs it may block
    (they are then simulated one request at a time)."""
    if not callable(fn):
        raise ProcessError(f"simpy_process: expected a generator function, got {fn!r}")
    return SimProcess(fn, frozenset(int(g) for g in blocks))


class Channel:
    """The steps a SimPy process (and the processes it starts) posted, in post order: one
    host thread, which runs one ``host.run`` batch after the other."""

    def __init__(self, env: HostEnv, owner: int, who: str) -> None:
        self.env, self.owner, self.who = env, owner, who
        #: posted batches not yet done, the one being run first: (steps, event, answers)
        self.batches: deque[tuple[deque[Any], Event, list[Any]]] = deque()
        #: the interpreter waits for a post (set when it found nothing, cleared by a post)
        self.idle = False
        #: the engine's way to continue the interpreter at time ``t`` after a post
        self.wake: Callable[[int], None] | None = None
        #: the process's generator returned: once its batches are done, the program ends
        self.ended = False

    def post(self, steps: tuple[Step, ...]) -> Event:
        if self.ended:
            raise ProcessError(f"{self.who}: host.run(...) after the process returned")
        ev = Event(self.env)
        self.batches.append((deque(steps), ev, []))
        if self.idle:
            self.idle = False
            assert self.wake is not None
            self.wake(int(self.env.now))
        return ev

    def end(self, _ev: Event) -> None:
        """The process's generator returned (a callback of its SimPy process)."""
        self.ended = True
        if self.idle:
            self.idle = False
            assert self.wake is not None
            self.wake(int(self.env.now))

    def take(self, within: bool = False) -> Any:
        """The next posted step; None if there is none (then the interpreter is idle), or
        :data:`ENDED` once the process returned and all it posted is done. A batch whose
        steps are all done succeeds now; ``within``: inside a section, which does not go on
        into the next batch."""
        while self.batches:
            steps, ev, answers = self.batches[0]
            if steps:
                return steps.popleft()
            if within:
                return None
            self.batches.popleft()
            self.env.succeed_as(self.owner, ev, answers)
        if self.ended and not within:
            return ENDED
        self.idle = True
        return None

    def answer(self, value: Any) -> None:
        """A hardware call's answer, for the batch being run."""
        self.batches[0][2].append(value)


class Host:
    """The host as a SimPy process sees it: the environment and ``run`` (module docstring)."""

    def __init__(self, env: HostEnv, channel: Channel, n_guests: int) -> None:
        self.env = env
        self._channel = channel
        #: the number of guests (steps name a guest by its global index)
        self.n_guests = n_guests

    def run(self, *steps: Step) -> Event:
        """Post ``steps``; the event succeeds when they are done, with the hardware calls'
        answers (a list, in order) as its value."""
        if not steps:
            raise ProcessError(f"{self._channel.who}: host.run() without steps")
        return self._channel.post(steps)


__all__ = ["AnyProcess", "Host", "SimProcess", "SimProcessFn", "simpy_process"]
