"""User host processes written as SimPy code (hostsim.sim_process): both engines run them on
their SimPy Environment and give the same records."""

from __future__ import annotations

import runpy
from collections.abc import Generator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import simpy

import hostsim
from hostsim.process import Acquire, Block, Delay, HwCall, ProcessError, Release, Unblock
from hostsim.run import RunResult, simulate
from hostsim.scenario import load
from hostsim.scenario_types import Scenario
from hostsim.sim_process import Host, simpy_process
from tests.test_process import monitor

ROOT = Path(__file__).parents[1]
STEADY = ROOT / "bench" / "scenarios" / "steady.toml"
Q = 0x0102
Proc = Generator[simpy.Event, Any, Any]


def both(s: Scenario, *procs: Any) -> tuple[RunResult, RunResult]:
    ref = simulate(s, "reference", keep_records=True, processes=list(procs))
    fast = simulate(s, "fast", keep_records=True, processes=list(procs))
    for name in ("records", "host_events", "processes", "locks", "queues", "blocks"):
        assert getattr(ref, name).tobytes() == getattr(fast, name).tobytes(), name
    return ref, fast


def simpy_monitor(guests: int, period: int, read: int = 4_000) -> Any:
    """The agent of tests/test_process.py as SimPy code: one host.run per mdev section,
    env.timeout between scans."""

    def run(env: simpy.Environment, host: Host) -> Proc:
        while True:
            for g in range(guests):
                yield host.run(Acquire(g), Delay(read), Delay(read), Release())
            yield env.timeout(period)

    return run


def test_the_fast_engines_fleet_is_a_simpy_process_that_yields_to_user_code() -> None:
    """The fleet runs as a process of the run's environment, and a user SimPy process that
    acts between its requests runs first: the records are the reference's."""
    from hostsim.engine_fast import FastEngine
    from hostsim.model import Model
    from hostsim.sink import RecordSink

    s = load(STEADY, ["run.duration_ms=50", "guests.0.count=20", "guests.0.workload.rate_hz=2000"])
    agent = simpy_process(simpy_monitor(s.n_guests, 1_000_000))
    both(s, agent)
    eng = FastEngine(Model(s), RecordSink(lambda chunk: None), (agent,))
    assert eng.fleet.vcpus.size == s.n_guests * s.guests[0].vcpus  # every vCPU is the fleet's
    eng.run()
    assert isinstance(eng.fleet_proc, simpy.Process) and eng.fleet_proc.env is eng.env
    assert eng.fleet_proc.processed and eng.fleet_proc.ok  # it ran to its end in the env
    assert eng.yields > 10  # it let the agent's sections go first, many times


def test_the_fast_engines_host_programs_are_simpy_processes() -> None:
    """Every host event's program and every user process's program runs as a SimPy process
    of the run's environment in the fast engine too: host events run to their end, the agent
    until the run stops."""
    from hostsim.engine_fast import FastEngine
    from hostsim.model import Model
    from hostsim.sink import RecordSink

    s = load(None)
    agent = simpy_process(simpy_monitor(s.n_guests, 10_000_000))
    eng = FastEngine(Model(s), RecordSink(lambda chunk: None), (agent,))
    eng.run()
    procs = eng.program_procs
    assert len(procs) == len(s.events) + 1 and len(s.events) > 10
    assert all(isinstance(p, simpy.Process) and p.env is eng.env for p in procs)
    assert all(p.processed and p.ok for p in procs[:-1])  # every host event ran to its end
    # the agent scans until the run stops: its program waits on the agent's next post
    assert not procs[-1].processed and procs[-1].target is eng.held[eng.runners[-1].ident]


@pytest.mark.parametrize("lock_model", ["global", "per-mdev"])
def test_a_simpy_agent_gives_the_records_of_the_same_agent_as_steps(lock_model: str) -> None:
    s = load(None, [f'host.lock_model="{lock_model}"'])
    ref, _ = both(s, simpy_process(simpy_monitor(s.n_guests, 100_000_000)))
    steps = simulate(
        s, "fast", keep_records=True, processes=[lambda: monitor(s.n_guests, 100_000_000)]
    )
    for name in ("records", "host_events", "processes", "locks", "queues"):
        assert getattr(ref, name).tobytes() == getattr(steps, name).tobytes(), name
    assert len(ref.processes) > 10 * s.n_guests
    assert (ref.processes["t_grant"] > ref.processes["t_req"]).any()  # it waited sometimes


def test_answers_depend_on_the_queue_and_decide_what_the_process_does() -> None:
    s = load(STEADY, ["guests.0.count=4", "run.duration_ms=100"])
    seen: list[Any] = []

    def resetter(env: simpy.Environment, host: Host) -> Proc:
        yield env.timeout(1_000_000)
        yield host.run(Acquire(0), HwCall("zapq", Q, 0, 2_000, reset_ns=20_000_000), Release())

    def poller(env: simpy.Environment, host: Host) -> Proc:
        yield env.timeout(5_000_000)
        while True:
            (ans,) = yield host.run(Acquire(0), HwCall("tapq", Q, 0, 1_000), Release())
            seen.append(ans)
            if not ans.reset_pending:
                yield host.run(Acquire(0), HwCall("aqic_enable", Q, 0, 1_000, 0xABC0, 6), Release())
                return
            yield env.timeout(5_000_000)

    ref, _ = both(s, simpy_process(resetter), simpy_process(poller))
    # Polls at 5, 10, 15, 20 ms see the reset that lasts until about 21 ms; the one at 25 does not.
    assert [a.reset_pending for a in seen] == ([True] * 4 + [False]) * 2  # both engines' answers
    (q,) = ref.queues
    assert (q["apqn"], q["irq"], q["nib"], q["isc"], q["calls"]) == (Q, True, 0xABC0, 6, 7)
    polls = ref.processes[ref.processes["process"] == 1]
    assert len(polls) == 6 and polls[-1]["t_req"] == polls[-2]["t_rel"]


@pytest.mark.parametrize("lock_model", ["global", "per-mdev"])
def test_host_locks_held_across_simpy_waits(lock_model: str) -> None:
    """guests_lock and kvm->lock held across env.timeout; mdevs_lock free meanwhile."""
    s = load(None, [f'host.lock_model="{lock_model}"'])

    def operator(guest: int, start: int, sleep: int) -> Any:
        def run(env: simpy.Environment, host: Host) -> Proc:
            yield env.timeout(start)
            yield host.run(Acquire(0, "guests_lock"), Acquire(guest, "kvm_lock"))
            yield host.run(Acquire(guest), Delay(50_000), Release())
            yield env.timeout(sleep)
            yield host.run(Acquire(guest), Delay(10_000), Release())
            yield host.run(Release("kvm_lock", guest), Release("guests_lock"))

        return run

    a, b = operator(0, 300_000_000, 20_000_000), operator(1, 300_000_001, 0)
    ref, _ = both(s, simpy_process(a), simpy_process(b))
    rows, e = ref.locks, len(s.events)
    first, second = rows[rows["owner"] == e], rows[rows["owner"] == e + 1]
    assert [ref.lock_labels[i] for i in first["lock"][:2]] == ["guests_lock", "kvm_lock[0]"]
    g1, g2 = first[first["section"] == 0][0], second[second["section"] == 0][0]
    assert g2["t_grant"] == g1["t_rel"] and g1["t_rel"] - g1["t_grant"] > 20_000_000
    m1 = first[first["section"] == 2][0]
    rec = ref.records
    got = (rec["t_mutex_grant"] > m1["t_rel"]) & (rec["t_mutex_grant"] < m1["t_rel"] + 20_000_000)
    assert got.any()  # vCPUs take mdevs_lock while the operator waits in SimPy


def test_child_processes_share_the_host_thread_in_post_order() -> None:
    s = load(STEADY, ["guests.0.count=4", "run.duration_ms=50"])
    done: list[tuple[int, int]] = []

    def child(env: simpy.Environment, host: Host, g: int) -> Proc:
        yield host.run(Acquire(g), Delay(30_000), Release())
        done.append((g, int(env.now)))

    def parent(env: simpy.Environment, host: Host) -> Proc:
        yield env.timeout(10_000_000)
        yield simpy.AllOf(env, [env.process(child(env, host, g)) for g in (2, 0, 3)])
        done.append((-1, int(env.now)))

    ref, _ = both(s, simpy_process(parent))
    sec = ref.processes
    assert len(sec) == 3 and (sec["t_rel"] - sec["t_grant"] == 30_000).all()
    assert (sec["t_req"][1:] >= sec["t_rel"][:-1]).all()  # one after the other, as posted
    assert [g for g, _ in done] == [2, 0, 3, -1] * 2
    assert done[3][1] == int(sec["t_rel"][-1])


def test_simultaneous_processes_run_in_the_order_they_are_listed() -> None:
    s = load(STEADY, ["guests.0.count=2", "run.duration_ms=20"])
    order: list[str] = []

    def at(name: str) -> Any:
        def run(env: simpy.Environment, host: Host) -> Proc:
            yield env.timeout(5_000_000)
            order.append(name)
            yield host.run(Acquire(0), Delay(1_000), Release())

        return run

    ref, _ = both(s, simpy_process(at("b")), simpy_process(at("a")))
    assert order == ["b", "a"] * 2
    sec = ref.processes
    assert list(sec["process"]) == [0, 1] and sec[1]["t_grant"] == sec[0]["t_rel"]


@pytest.mark.parametrize("workload", ["poisson", "closed"])
def test_a_simpy_process_blocks_a_guests_vcpus(workload: str) -> None:
    sets = ["guests.0.count=3", "guests.0.vcpus=4", "run.duration_ms=100"]
    if workload == "closed":
        sets.append('guests.0.workload={kind="closed",think={dist="exponential",mean_ns=100000}}')
    else:
        sets.append("guests.0.workload.rate_hz=5000")
    s = load(STEADY, sets)

    def update(env: simpy.Environment, host: Host) -> Proc:
        while True:
            yield env.timeout(10_000_000)
            yield host.run(Block(1))
            yield env.timeout(2_000_000)
            yield host.run(Unblock(1))

    ref, _ = both(s, simpy_process(update, blocks=[1]))
    blocks = ref.blocks
    assert len(blocks) == 8 and set(blocks["guest"]) == {1}
    assert (blocks["t_unblock"] - blocks["t_block"] == 2_000_000).all()
    mine = ref.records[ref.records["guest"] == 1]
    for b in blocks:
        for t in (mine["t_issue"], mine["t_resume"]):
            assert not ((t >= b["t_block"]) & (t < b["t_unblock"])).any()
    assert np.isin(mine["t_issue"], blocks["t_unblock"]).any()


def test_a_simpy_process_stops_at_the_end_of_the_run() -> None:
    s = load(STEADY, ["run.duration_ms=30", "guests.0.count=3"])
    ticks: list[int] = []

    def tick(env: simpy.Environment, host: Host) -> Proc:
        while True:
            yield env.timeout(1_000_000)
            ticks.append(int(env.now))
            yield host.run(Acquire(0), Delay(1), Release())

    ref, _ = both(s, simpy_process(tick))
    n = len(ref.processes)
    assert n > 20 and ticks == ticks[:n] * 2  # both engines, one section per tick
    assert ticks[n - 1] < s.duration_ns <= int(ref.processes["t_rel"][-1]) + 1_000_000


def split(env: simpy.Environment, host: Host) -> Proc:
    yield host.run(Acquire(0))
    yield env.timeout(1_000)
    yield host.run(Release())


def holds(env: simpy.Environment, host: Host) -> Proc:
    yield host.run(Acquire(0, "guests_lock"))


def unblocked(env: simpy.Environment, host: Host) -> Proc:
    yield host.run(Block(0))


def empty(env: simpy.Environment, host: Host) -> Proc:
    yield host.run()


def late(env: simpy.Environment, host: Host) -> Proc:
    env.process(later(env, host))
    yield env.timeout(1)


def later(env: simpy.Environment, host: Host) -> Proc:
    yield env.timeout(2)
    yield host.run(Delay(1))


@pytest.mark.parametrize(
    ("proc", "message"),
    [
        (simpy_process(split), "is posted whole, Acquire to Release, in one host.run"),
        (simpy_process(holds), "ended holding guests_lock"),
        (simpy_process(unblocked), "declare the guests a process may block"),
        (simpy_process(unblocked, blocks=[0]), "ended with guest 0 blocked"),
        (simpy_process(empty), "host.run\\(\\) without steps"),
        (simpy_process(late), "after the process returned"),
        (simpy_process(lambda env, host: 5), "is 5, not a generator"),
        (simpy_process(unblocked, blocks=[9]), "no guest 9"),
    ],
)
@pytest.mark.parametrize("engine", ["reference", "fast"])
def test_bad_simpy_processes_are_named(proc: Any, message: str, engine: str) -> None:
    s = load(STEADY, ["guests.0.count=2", "run.duration_ms=10"])
    with pytest.raises(ProcessError, match=f"host process 0: .*{message}"):
        simulate(s, engine, processes=[proc])


def test_simpy_process_wants_a_function() -> None:
    with pytest.raises(ProcessError, match="expected a generator function, got 5"):
        simpy_process(5)  # type: ignore[arg-type]


@pytest.mark.parametrize("engine", ["reference", "fast"])
def test_an_exception_in_a_simpy_process_reaches_the_caller(engine: str) -> None:
    def boom(env: simpy.Environment, host: Host) -> Proc:
        yield env.timeout(1_000)
        raise ValueError("agent failed")

    s = load(STEADY, ["guests.0.count=2", "run.duration_ms=10"])
    with pytest.raises(ValueError, match="agent failed"):
        simulate(s, engine, processes=[simpy_process(boom)])


def test_the_simpy_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    runpy.run_path(str(ROOT / "examples" / "monitor_agent.py"), run_name="__main__")
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 and out[0].split(":", 1)[1] == out[1].split(":", 1)[1]
    assert "agent lock sections" in out[0] and "TAPQs, RCs [0]" in out[0]


def test_the_library_api_runs_the_documented_simpy_example(
    capsys: pytest.CaptureFixture[str],
) -> None:
    doc = (ROOT / "docs" / "api.md").read_text(encoding="utf-8")
    blocks = [b.split("```")[0] for b in doc.split("```python\n")[1:]]
    (code,) = [b for b in blocks if "simpy_process" in b]
    exec(code, {})
    wait = int(capsys.readouterr().out)
    assert wait >= 0

    locks = hostsim.run(None, processes=[simpy_process(simpy_monitor(4, 100_000_000))]).locks
    mine = locks[locks["owner_name"] == "process 0"]
    assert len(mine) > 40 and (mine["hold_ns"] == 8_000).all()
