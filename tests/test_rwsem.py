"""The writer-preferring rwsem rule (hostsim.rwsem): its two forms agree.

The event-driven form runs as the reference engine's SimPy semaphore; the known-release form
runs as the fast engine drives it (decisions at LATE priority, a reader's release learnt some
time after it got in, a writer's grant scheduled once no release is unknown)."""

from __future__ import annotations

from typing import Any

import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

from hostsim.engine_ref import LATE, RwSem, _at
from hostsim.rwsem import RwKnown, RwQueue

#: (writer?, request time, hold, how long after its grant a reader's release is learnt)
requests = st.lists(
    st.tuples(st.booleans(), st.integers(0, 40), st.integers(0, 15), st.integers(0, 15)),
    min_size=1,
    max_size=30,
)


def _event_driven(reqs: list[tuple[bool, int, int, int]]) -> dict[int, tuple[int, int]]:
    env = simpy.Environment()
    rw = RwSem(env)
    out: dict[int, tuple[int, int]] = {}

    def who(i: int, writer: bool, t: int, h: int) -> Any:
        yield env.timeout(t)
        yield rw.write() if writer else rw.read()
        g = int(env.now)
        yield env.timeout(h)
        rw.write_release() if writer else rw.read_release()
        out[i] = (g, g + h)

    for i, (writer, t, h, _) in enumerate(reqs):
        env.process(who(i, writer, t, h))
    env.run()
    return out


def _known(reqs: list[tuple[bool, int, int, int]]) -> dict[int, tuple[int, int]]:
    env = simpy.Environment()
    rw = RwKnown()
    out: dict[int, tuple[int, int]] = {}

    def now() -> int:
        return int(env.now)

    def enter(i: int) -> None:  # a reader gets in now
        _, _, h, d = reqs[i]
        g = now()
        out[i] = (g, g + h)
        if d == 0:  # known at once (a request that takes no mutex)
            rw.reader_out(g + h, known=False)
            return
        rw.reader_in()

        def learnt(_: Any) -> None:  # its mutex grant: the release is known now
            rw.reader_out(g + h)
            maybe_grant()

        _at(env, simpy.events.NORMAL, learnt, min(d, h))

    def maybe_grant() -> None:
        at = rw.writer_grant_at(now())
        if at is not None:
            _at(env, LATE, writer_grant, at - now())

    def writer_grant(_: Any) -> None:
        i = rw.writer_granted()
        h = reqs[i][2]
        out[i] = (now(), now() + h)

        def release(_: Any) -> None:
            rw.writer_release()
            _at(env, LATE, decide)

        _at(env, simpy.events.NORMAL, release, h)

    def decide(_: Any) -> None:
        readers = rw.decide()
        if readers is None:
            maybe_grant()
            return
        for i in readers:
            enter(i)

    def read_check(i: int) -> Any:
        def check(_: Any) -> None:
            if rw.reader_asks(i):
                enter(i)

        return check

    def who(i: int, writer: bool, t: int) -> Any:
        yield env.timeout(t)
        if writer:
            rw.writer_asks(i, t)
            _at(env, LATE, decide)
        else:
            _at(env, LATE, read_check(i))

    for i, (writer, t, _, _) in enumerate(reqs):
        env.process(who(i, writer, t))
    env.run()
    return out


@settings(max_examples=400, deadline=None)
@given(requests)
def test_two_forms_agree(reqs: list[tuple[bool, int, int, int]]) -> None:
    """Every reader and writer is granted, and released, at the same time by both forms."""
    want = _event_driven(reqs)
    assert len(want) == len(reqs)
    assert _known(reqs) == want


@settings(max_examples=200, deadline=None)
@given(requests)
def test_writers_exclusive_and_in_order(reqs: list[tuple[bool, int, int, int]]) -> None:
    """The rule itself: a writer holds it alone, writers in request order, and no reader that
    asked after a writer gets in before that writer has left."""
    got = _event_driven(reqs)
    writers = sorted((t, i) for i, (w, t, _, _) in enumerate(reqs) if w)
    grants = [got[i][0] for _, i in writers]
    assert grants == sorted(grants)
    for _, i in writers:
        g, r = got[i]
        for j, (g2, r2) in got.items():
            if j != i and g < r and g2 < r2:
                assert r2 <= g or g2 >= r, (i, j)  # no overlap with a held writer
        for j, (w, t, _, _) in enumerate(reqs):
            if not w and t >= reqs[i][1] and t <= g:
                assert got[j][0] >= r


def test_queue_decisions() -> None:
    """A waiting writer keeps new readers out; readers in keep the writer out."""
    q = RwQueue()
    assert q.read("r1") is True
    assert q.decide() == ["r1"]
    assert q.write("w1") is True
    assert q.read("r2") is False  # the decision is pending
    assert q.decide() == []  # r1 is in: the writer waits, and r2 behind it
    assert q.read_release() is True
    assert q.decide() == ["w1"]
    assert q.write_release() is True
    assert q.decide() == ["r2"]
