"""The FIFO mutex rule (hostsim.fifo): its event-driven, scalar and vectorised forms agree."""

from __future__ import annotations

from typing import Any

import numpy as np
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

from hostsim.engine_ref import FifoLock
from hostsim.fifo import FifoQueue, grant, releases
from hostsim.ties import HOST, VCPU, lock_key

N_MUTEX = 3

#: requests: (time, phase, class, mutex, hold); the identifier is the index (unique per class)
requests = st.lists(
    st.tuples(
        st.integers(0, 60),
        st.integers(0, 1),
        st.sampled_from([HOST, VCPU]),
        st.integers(0, N_MUTEX - 1),
        st.integers(0, 25),
    ),
    min_size=1,
    max_size=40,
)
frees = st.lists(st.integers(0, 50), min_size=N_MUTEX, max_size=N_MUTEX)


def _keyed(reqs: list[tuple[int, ...]]) -> list[tuple[tuple[int, int, int, int], int, int, int]]:
    """(lock key, mutex, hold, index) in FIFO order."""
    out = [(lock_key(t, ph, cls, i), mx, h, i) for i, (t, ph, cls, mx, h) in enumerate(reqs)]
    return sorted(out)


def _simpy(reqs: list[tuple[int, ...]], free: list[int]) -> dict[int, tuple[int, int]]:
    """Grant and release of each request, each holder a SimPy process on the reference lock.
    A mutex next free at ``free[m]`` is held from 0 by a host holder that comes first."""
    env = simpy.Environment()
    locks = [FifoLock(env) for _ in range(N_MUTEX)]
    out: dict[int, tuple[int, int]] = {}

    def holder(i: int, t: int, phase: int, cls: int, mx: int, h: int) -> Any:
        yield env.timeout(t)
        yield locks[mx].request(cls, i, phase)
        g = int(env.now)
        yield env.timeout(h)
        locks[mx].release()
        out[i] = (g, g + h)

    for mx, f in enumerate(free):
        env.process(holder(-1 - mx, 0, 0, HOST, mx, f))
    for i, (t, ph, cls, mx, h) in enumerate(reqs):
        env.process(holder(i, t, ph, cls, mx, h))
    env.run()
    return {i: gr for i, gr in out.items() if i >= 0}


def _scalar(reqs: list[tuple[int, ...]], free: list[int]) -> dict[int, tuple[int, int]]:
    nxt = list(free)
    out = {}
    for key, mx, h, i in _keyed(reqs):
        g = grant(key[0], nxt[mx])
        nxt[mx] = g + h
        out[i] = (g, g + h)
    return out


def _vector(
    reqs: list[tuple[int, ...]], free: list[int], single: bool
) -> dict[int, tuple[int, int]]:
    keyed = _keyed(reqs)
    t = np.array([k[0] for k, _, _, _ in keyed], np.int64)
    mid = np.array([mx for _, mx, _, _ in keyed], np.int64)
    h = np.array([hh for _, _, hh, _ in keyed], np.int64)
    rel = releases(t, h, None if single else mid, free)
    return {i: (int(r - hh), int(r)) for (_, _, hh, i), r in zip(keyed, rel, strict=True)}


@settings(max_examples=300, deadline=None)
@given(requests, frees)
def test_three_forms_agree(reqs: list[tuple[int, ...]], free: list[int]) -> None:
    """Known holds: the SimPy lock (the event-driven queue), the scalar closed form taken in
    key order and the vectorised recursion give every request the same grant and release."""
    want = _simpy(reqs, free)
    assert _scalar(reqs, free) == want
    assert _vector(reqs, free, single=False) == want


@settings(max_examples=200, deadline=None)
@given(requests, st.integers(0, 50))
def test_single_mutex_form(reqs: list[tuple[int, ...]], free0: int) -> None:
    """One mutex (the global lock model): the unsegmented vector form is the same rule."""
    one = [(t, ph, cls, 0, h) for t, ph, cls, _, h in reqs]
    free = [free0] + [0] * (N_MUTEX - 1)
    want = _simpy(one, free)
    assert _vector(one, free, single=True) == want
    assert _vector(one, free, single=False) == want


def test_queue_decides_once_per_nanosecond() -> None:
    """One pending decision at a time; none while the lock is held or nobody waits."""
    q = FifoQueue()
    assert q.ask(lock_key(5, 0, VCPU, 3), "v3") is True
    assert q.ask(lock_key(5, 0, HOST, 9), "h9") is False  # a decision is already pending
    assert q.decide() == "h9"  # host before vCPU at the same request time
    assert q.ask(lock_key(6, 0, HOST, 1), "h1") is False  # held: its release decides
    assert q.decide() is None and q.busy
    assert q.release() is True
    assert q.decide() == "v3"  # an earlier request beats a host that asked later
    assert q.release() is True
    assert q.decide() == "h1"
    assert q.release() is False  # nobody waits
    assert q.decide() is None and not q.busy
