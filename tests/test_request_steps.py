"""The one request interpreter (hostsim.request.steps): what it asks of each engine.

Every request's waits and releases are its final program's (hostsim.chain.PROGRAMS), in order,
at the times its record keeps; and the two engines, which drive it with different mechanisms
(SimPy events, heap events), see the same steps at the same times."""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from hostsim import engine_fast, engine_ref, request
from hostsim.chain import MUTEX, PROGRAMS, READ, UNLOCK, UNREAD, Release, Wait, category_of
from hostsim.run import simulate
from hostsim.scenario import load

SCENARIOS = Path(__file__).parent / "scenarios"
#: how many of the four programs each scenario reaches (paths.toml: every outcome path)
NEED = {"paths": len(PROGRAMS), "rwsem": 2}


def _traced(
    monkeypatch: pytest.MonkeyPatch, module: Any
) -> dict[tuple[int, int], tuple[int, list[tuple[Any, int]], Any]]:
    """Wrap ``module.steps``: per request (vCPU, issue), its final category, its steps and the
    in-flight request at the end."""
    seen: dict[tuple[int, int], tuple[int, list[tuple[Any, int]], Any]] = {}

    def steps(m: Any, v: int, f: Any, *a: Any) -> Generator[Any, Any, None]:
        asked: list[tuple[Any, int]] = []
        run = request.steps(m, v, f, *a)
        sent = None
        while True:
            try:
                ask = run.send(sent)
            except StopIteration:
                break
            asked.append(ask)
            sent = yield ask
        seen[(v, f.req.issue)] = (category_of(f.d), asked, f)

    monkeypatch.setattr(module, "steps", steps)
    return seen


@pytest.mark.parametrize("variant", ["upstream", "merged-2019"])
@pytest.mark.parametrize("name", ["paths", "rwsem"])
def test_steps_follow_the_program(monkeypatch: pytest.MonkeyPatch, name: str, variant: str) -> None:
    s = load(SCENARIOS / f"{name}.toml", [f"host.variant={variant}"])
    seen = _traced(monkeypatch, engine_ref)
    simulate(s, "reference")
    assert seen
    rwsem = variant == "upstream"
    cats = set()
    for (_, issue), (cat, asked, f) in seen.items():
        cats.add(cat)
        want = [
            st
            for st in PROGRAMS[cat]
            if isinstance(st, Wait | Release) and (rwsem or st not in (READ, UNREAD))
        ]
        if f.t_rw < 0 and f.t_mreq < 0 and f.t_back < 0:
            want = []  # KVM's own guards: the program ends before any wait
        assert [st for st, _ in asked if st is not None] == want
        times = [t for _, t in asked]
        assert times == sorted(times) and all(t >= issue for t in times)
        at = dict((st, t) for st, t in asked if st is not None)
        if MUTEX in at:
            assert at[MUTEX] == f.t_mreq and at[UNLOCK] == f.rel
        if UNREAD in at:
            assert at[UNREAD] == (f.rel if MUTEX in at else f.t_back)
        if READ in at:
            assert at[READ] == f.t_decode
    assert len(cats) >= NEED[name]  # the programs the scenario is there to reach


def test_both_engines_ask_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    """Attach and detach in flight (rwsem writers): the fast engine's requests that run one at
    a time ask the same steps at the same times as the reference's."""
    s = load(SCENARIOS / "rwsem.toml")
    ref = _traced(monkeypatch, engine_ref)
    simulate(s, "reference")
    fast = _traced(monkeypatch, engine_fast)
    simulate(s, "fast")
    assert fast
    for key, (cat, asked, _) in fast.items():
        assert key in ref
        assert ref[key][0] == cat
        assert ref[key][1] == asked
