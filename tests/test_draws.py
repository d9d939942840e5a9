"""Draws by name (hostsim.draws): one registry, and common random numbers that really hold."""

from __future__ import annotations

import numpy as np
import pytest

from hostsim import draws
from hostsim.keyed import KeyedGen
from hostsim.model import Model
from hostsim.run import simulate
from hostsim.scenario import load, loads
from hostsim.scenario_types import HostEventKind
from tests.helpers import drive


def test_the_registry_refuses_duplicates_undeclared_names_and_separators() -> None:
    draws.check()  # the built-in families: unique names, distinct 64-bit keys
    with pytest.raises(draws.DrawRegistryError, match="declared twice"):
        draws.declare("arrival", "x", "again")
    with pytest.raises(draws.DrawRegistryError, match="without '/'"):
        draws.declare("a/b", "x", "a separator")
    with pytest.raises(draws.DrawRegistryError, match="not declared"):
        draws.keyed(1, "no-such-family", 0, np.zeros(1), np.zeros(1))
    with pytest.raises(draws.DrawRegistryError, match="not declared"):
        draws.seeded(1, "no-such-family", 0)
    with pytest.raises(draws.DrawRegistryError, match="same draw key"):
        draws.distinct_keys([1, 2, 1], "guest groups")


def test_every_family_used_by_a_run_is_declared() -> None:
    """The default scenario draws only through declared families (keyed() refuses others)."""
    used: set[str] = set()
    real = draws._known

    def spy(family: draws.Family | str) -> str:
        name = real(family)
        used.add(name)
        return name

    draws._known = spy
    try:
        simulate(load(None), engine="fast")
    finally:
        draws._known = real
    assert used <= set(draws.FAMILIES)
    assert {"arrival", "registers:queue", "cost:sie_exit", "host-cost:rwsem_write"} <= used


def test_sub_slots_beyond_eight_bits_are_refused() -> None:
    g = KeyedGen(1, "arrival", 0, np.zeros(2, np.int64), np.zeros(2, np.int64))
    with pytest.raises(ValueError, match="256 sub-slots"):
        g.random((2, 257))


def _irq_disable_holds(sets: list[str]) -> np.ndarray:
    s = load(None, sets)
    host = simulate(s, engine="fast").host_events
    dis = host[host["kind"] == HostEventKind.IRQ_DISABLE]
    return dis["t_mutex_rel"] - dis["t_mutex_grant"]


def test_a_host_costs_distribution_moves_no_other_host_draw() -> None:
    """rwsem_write fixed 200 ns or uniform(200, 201) ns: the irq_disable hold (disable loop,
    TAPQs, sleeps, its own costs) is the same, because each host cost has its own family."""
    base = _irq_disable_holds([])
    other = _irq_disable_holds(['costs.rwsem_write={dist="uniform",low_ns=200,high_ns=201}'])
    assert len(base) == 1
    assert np.array_equal(base, other)


def _regs(extra: str) -> dict[str, np.ndarray]:
    s = loads(
        "[run]\nseed = 4\n[[guests]]\nname = 'a'\ncount = 4\nvcpus = 2\n"
        "[guests.workload]\nkind = 'poisson'\nrate_hz = 100\n"
        "adversarial = { problem_state = 0.2, t_bit = 0.2, nib_zero = 0.2 }\n" + extra
    )
    m = Model(s)
    lv, k = np.broadcast_arrays(np.arange(8)[:, None], np.arange(200)[None, :])
    return m.draws(0, lv, k).regs


def test_adding_an_fc_mix_does_not_change_which_issues_are_adversarial() -> None:
    plain = _regs("")
    mixed = _regs("fc_mix = { '0x03' = 0.999999, '0x04' = 0.000001 }\n")
    assert np.array_equal(plain["psw_mask"], mixed["psw_mask"])
    assert np.array_equal(plain["gpr2"], mixed["gpr2"])
    fc_bits = np.uint64(0xFF << 56)
    assert np.array_equal(plain["gpr0"] & ~fc_bits, mixed["gpr0"] & ~fc_bits)
    assert (plain["psw_mask"] != mixed["psw_mask"]).sum() == 0
    assert (plain["gpr2"] == 0).any()  # the adversarial mix is really there


def _group(first: str, body: str) -> str:
    return (
        "[run]\nseed = 7\nduration_ms = 300\n"
        + first
        + "[[guests]]\nname = 'db'\ncount = 3\nvcpus = 2\n[guests.workload]\n"
        + body
        + "[[events]]\nat_ms = 100\nkind = 'irq_disable'\nguest = 'db[1]'\n"
    )


NEW_GROUP = (
    "[[guests]]\nname = 'web'\ncount = 5\nvcpus = 1\n"
    "[guests.workload]\nkind = 'poisson'\nrate_hz = 30\n"
    "[[events]]\nat_ms = 50\nkind = 'reset'\nguest = 'web[0]'\n"
)


def test_adding_a_guest_group_does_not_move_another_groups_draws() -> None:
    steady = "kind = 'poisson'\nrate_hz = 200\n"
    alone = Model(loads(_group("", steady)))
    joined = Model(loads(_group(NEW_GROUP, steady)))
    lv, k = np.broadcast_arrays(np.arange(6)[:, None], np.arange(50)[None, :])
    a, b = alone.draws(0, lv, k), joined.draws(1, lv, k)
    assert np.array_equal(a.gap, b.gap)
    assert np.array_equal(a.regs["gpr1"], b.regs["gpr1"])
    assert np.array_equal(a.qu, b.qu)
    assert np.array_equal(a.costs["sie_exit"], b.costs["sie_exit"])
    # The host event on db[1] is the same event: the same draws, the same work.
    ia = next(i for i, e in enumerate(alone.s.events) if e.label == "db[1]")
    ib = next(i for i, e in enumerate(joined.s.events) if e.label == "db[1]")
    assert _work(alone, ia) == _work(joined, ib)


def _work(m: Model, i: int) -> tuple:
    """What host event ``i`` does, whatever the guest's index: step lengths, calls, counts."""
    got, hp = drive(m, i)
    steps = [(type(st).__name__, getattr(st, "ns", 0), getattr(st, "op", "")) for st in got]
    return steps, hp.aqic, hp.tapq, hp.sleeps


def test_adding_a_guest_group_does_not_move_another_groups_boot_times() -> None:
    boot = "kind = 'boot'\nspread_ms = 100\n"
    alone = Model(loads(_group("", boot)))
    joined = Model(loads(_group(NEW_GROUP, boot)))
    first_a = alone.topo.guest_first_vcpu[alone.topo.group_first_guest[0]]
    first_b = joined.topo.guest_first_vcpu[joined.topo.group_first_guest[1]]
    sa = alone.scripts[int(first_a)]
    sb = joined.scripts[int(first_b)]
    assert np.array_equal(sa["t"], sb["t"])


@pytest.mark.parametrize("method", ["random", "lognormal", "sub-slots"])
def test_several_groups_at_once_give_each_groups_own_draws(method: str) -> None:
    """KeyedGen with an array of groups (one per row): each row is its group's own draws."""
    groups = np.array([3, 10**17, 7], np.int64)
    lv = np.broadcast_to(np.arange(5, dtype=np.int64), (3, 5))
    k = np.broadcast_to(np.arange(5, dtype=np.int64) * 2, (3, 5))

    def draw(gen: KeyedGen) -> np.ndarray:
        gen.random()  # a second call slot too
        if method == "random":
            return gen.random()
        if method == "lognormal":
            return gen.lognormal(1.0, 0.5)
        return gen.random((*gen.shape, 3))

    many = draw(KeyedGen(9, "x", groups, lv, k))
    for i, g in enumerate(groups.tolist()):
        assert np.array_equal(many[i], draw(KeyedGen(9, "x", g, lv[i], k[i])))


def test_host_cost_blocks_are_each_events_own_draws() -> None:
    """The host events' costs, drawn for a chunk of events at once, are each event's own keyed
    draws (its key, the queue, the call), whatever the width asked first."""
    from hostsim import host_draws
    from hostsim.host_draws import SLOTS, cost_block

    s = load(None, ['costs.zapq={ dist = "lognormal", median_ns = 2000, sigma = 0.4 }'])
    m = Model(s)
    n = len(s.events)
    host_draws.EVENTS_AT_ONCE, saved = 4, host_draws.EVENTS_AT_ONCE  # several chunks
    try:
        narrow = [cost_block(m, "zapq", 1, i, 1).copy() for i in range(n)]
        wide = [cost_block(m, "zapq", 1, i, 3) for i in range(n)]  # wider: drawn again
    finally:
        host_draws.EVENTS_AT_ONCE = saved
    assert n > 8 and len({key[2] for key in m.host_draws}) == -(-n // 4)
    for i, ek in enumerate(m.event_keys):
        assert wide[i].shape[0] >= 3 and np.array_equal(wide[i][:1], narrow[i][:1])
        lv = np.repeat(np.arange(3, dtype=np.int64), SLOTS)
        kk = np.tile(np.arange(SLOTS, dtype=np.int64), 3) + SLOTS
        gen = draws.keyed(s.seed, "host-cost:zapq", ek, lv, kk)
        own = s.costs["zapq"].sample(gen, gen.shape).reshape(3, SLOTS)
        assert np.array_equal(wide[i][:3], own)


def test_host_fault_blocks_are_each_events_own_draws() -> None:
    """The uniforms behind host-side hardware faults, drawn for a chunk of events at once, are
    each event's own keyed draws (its key, the queue; the calls are sub-slots)."""
    from hostsim.host_draws import fault_block

    s = load(None)
    m = Model(s)
    for i, ek in enumerate(m.event_keys):
        block = fault_block(m, draws.HOST_HW_TAPQ, i, 2, 5)
        gen = draws.keyed(s.seed, draws.HOST_HW_TAPQ, ek, np.arange(2), np.zeros(2, np.int64))
        assert np.array_equal(block[:2], gen.random((2, 5)))
