"""Every program of a run, assembled for an engine, and what they did as record rows.

:func:`programs` makes the runners (:class:`hostsim.program.Runner`) of a run's host events
(:func:`hostsim.host_ops.host_program`) and user processes (:mod:`hostsim.process`), sharing
one queue state, one list of lock sections and one of block intervals; both engines run them.
The row builders read those back after the run: the host-event rows, the ``mdevs_lock``
sections the mutex statistics count, the user processes' lock sections, every lock section and
every block interval. Kept apart from the operations, which say what one event does.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import numpy as np

from hostsim.host_ops import host_program
from hostsim.host_pieces import HostProgram
from hostsim.locks import EXCLUSIVE, WRITE
from hostsim.model import Model
from hostsim.process import PROCESS_DTYPE, blocks_of
from hostsim.program import LOCK_DTYPE, Runner
from hostsim.queues import QueueState
from hostsim.records import HOST_EVENT_DTYPE
from hostsim.scenario_types import HostEventKind
from hostsim.sim_env import HostEnv
from hostsim.sim_process import Channel, Host, SimProcess
from hostsim.steps import ProcessError

K = HostEventKind


@dataclass
class Programs:
    """Every program of a run (host events first, then user processes) and what they share."""

    runners: list[Runner]
    starts: list[int]
    host: list[HostProgram]
    rows: list[tuple[int, ...]]  # lock sections (LOCK_DTYPE), appended as they end
    queues: QueueState
    blocked: list[tuple[int, ...]]  # block intervals (BLOCK_DTYPE), appended as they end
    blockable: frozenset[int]  # the guests some program may block
    #: the guests whose AQICs read and write the queue state (their queues see host operations)
    stateful: frozenset[int] = frozenset()


def programs(m: Model, processes: tuple[Any, ...] = (), env: HostEnv | None = None) -> Programs:
    """The runners of a run's host events and user processes, ready for an engine; a SimPy
    process (:class:`hostsim.sim_process.SimProcess`) is started on ``env``."""
    resets: dict[int, list[int]] = {}
    for ev in m.s.events:
        if ev.kind == K.GUEST_RESET:
            resets.setdefault(ev.guest, []).append(ev.at_ns)
    queues = QueueState(list(m.initial_matrix), resets)
    rows: list[tuple[int, ...]] = []
    blocked: list[tuple[int, ...]] = []
    events = m.s.events
    host = [host_program(m, i, ev) for i, ev in enumerate(events)]
    blockable = {g for hp in host for g in hp.blocks}
    runners = [
        Runner(
            i,
            hp.steps,
            f"host event {i} ({ev.kind.name.lower()})",
            m.locks,
            queues,
            rows,
            True,
            blocked=blocked,
        )
        for i, (hp, ev) in enumerate(zip(host, events, strict=True))
    ]
    for u, proc in enumerate(processes):
        who = f"host process {u}"
        ident = len(events) + u
        blocks = proc.blocks if isinstance(proc, SimProcess) else blocks_of(proc)
        bad = [g for g in blocks if not 0 <= g < m.n_guests]
        if bad:
            raise ProcessError(f"{who}: blocking({sorted(blocks)}): no guest {bad[0]}")
        blockable |= blocks
        if isinstance(proc, SimProcess):
            if env is None:
                raise ProcessError(f"{who}: a SimPy process needs the engine's environment")
            chan = Channel(env, ident, who)
            r = Runner(
                ident, (), who, m.locks, queues, rows, blocks=blocks, blocked=blocked, channel=chan
            )
            gen = proc.fn(env, Host(env, chan, m.n_guests))
            if not isinstance(gen, Generator):
                raise ProcessError(f"{who}: {proc.fn!r}(env, host) is {gen!r}, not a generator")
            env.start_as(ident, gen).callbacks.append(chan.end)
        else:
            r = Runner(ident, proc(), who, m.locks, queues, rows, blocks=blocks, blocked=blocked)
        r.stop_at = m.s.duration_ns
        runners.append(r)
    starts = [ev.at_ns for ev in events] + [0] * len(processes)
    stateful = frozenset({ev.guest for ev in events} | blockable)
    return Programs(runners, starts, host, rows, queues, blocked, frozenset(blockable), stateful)


def host_event_rows(m: Model, p: Programs) -> np.ndarray:
    """One row of :data:`HOST_EVENT_DTYPE` per host event whose program finished."""
    lock_of: dict[int, dict[int, tuple[int, int, int]]] = {}
    for owner, _, inst, mode, t_req, t_grant, t_rel in sorted(p.rows):
        if mode == WRITE or inst < m.n_mutexes:  # the rwsem's write side, or mdevs_lock
            sec = lock_of.setdefault(owner, {})
            first = sec.get(mode)  # several sections (start: open, reset): first to last
            sec[mode] = (t_req, t_grant, t_rel) if first is None else (*first[:2], t_rel)
    none = (-1, -1, -1)
    out = []
    for i, ev in enumerate(m.s.events):
        if not p.runners[i].done:
            continue
        sec = lock_of.get(i, {})
        hp = p.host[i]
        rw, mx = sec.get(WRITE, none), sec.get(EXCLUSIVE, none)
        out.append((i, int(ev.kind), ev.guest, ev.at_ns, *rw, *mx, hp.aqic, hp.tapq, hp.sleeps))
    return np.array(out, dtype=HOST_EVENT_DTYPE)


def host_mutex_sections(m: Model, p: Programs) -> np.ndarray:
    """One :data:`HOST_EVENT_DTYPE` row per ``mdevs_lock`` section of a host event (a start
    has two: the open's and the reset's): what the mutex statistics count, where a host-event
    row spans the event's first request to its last release."""
    out = []
    events = m.s.events
    for owner, _, inst, mode, t_req, t_grant, t_rel in sorted(p.rows):
        if owner < len(events) and mode != WRITE and inst < m.n_mutexes:
            ev = events[owner]
            out.append(
                (
                    owner,
                    int(ev.kind),
                    ev.guest,
                    ev.at_ns,
                    -1,
                    -1,
                    -1,
                    t_req,
                    t_grant,
                    t_rel,
                    0,
                    0,
                    0,
                )
            )
    return np.array(out, dtype=HOST_EVENT_DTYPE)


def process_rows(m: Model, p: Programs) -> np.ndarray:
    """The lock sections of the user processes (:data:`PROCESS_DTYPE`)."""
    e = len(m.s.events)
    rows = sorted(
        (owner - e, seq, inst, t_req, t_grant, t_rel)
        for owner, seq, inst, _, t_req, t_grant, t_rel in p.rows
        if owner >= e
    )
    return np.array(rows, dtype=PROCESS_DTYPE)


BLOCK_DTYPE = np.dtype(
    [
        ("owner", np.int32),  # host event index, or len(events) + user process index
        ("guest", np.int32),
        ("t_block", np.int64),
        ("t_unblock", np.int64),
        ("stopped", np.bool_),  # a start or reboot: not running until the AP bus probe
    ]
)


def block_rows(p: Programs) -> np.ndarray:
    """Every interval a program kept a guest's vCPUs blocked (:data:`BLOCK_DTYPE`)."""
    return np.array(sorted(p.blocked), dtype=BLOCK_DTYPE)


def lock_rows(p: Programs) -> np.ndarray:
    """Every program's lock sections (:data:`LOCK_DTYPE`), by owner and section."""
    return np.array(sorted(p.rows), dtype=LOCK_DTYPE)
