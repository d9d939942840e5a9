"""Paired timing of two checkouts on one scenario: the A/B that a shared, noisy machine allows.

Each checkout runs in a long-lived process of its own (imports and first-run caches paid once);
the two take turns, one run each, the order swapped every round, so both see the same phases
of the machine. Reports each side's fastest and median wall time and the median of the paired
ratios, and checks that both gave the same summary, but for the scenario file's path (a
faster path that changes a result is a bug).

Run from this checkout, against another one (for example a ``git worktree`` of an earlier
commit)::

    git worktree add /tmp/base <commit>
    python bench/paired.py /tmp/base                      # the 100,000-vCPU steady fleet
    python bench/paired.py /tmp/base --scenario bench/scenarios/knee-44-global.toml --runs 8
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent.parent

#: The worker each checkout runs: load the scenario, run once, then one timed run per line.
WORKER = r"""
import hashlib, json, sys, time
from hostsim.run import simulate
name, engine = sys.argv[1], sys.argv[2]
if name == "steady-100k":
    from bench.test_bench_scale import scenario
    sc = scenario(100_000, 10_000)
else:
    from hostsim.scenario import load
    sc = load(name)
simulate(sc, engine)
print("ready", flush=True)
for _ in sys.stdin:
    t = time.perf_counter()
    r = simulate(sc, engine)
    wall = time.perf_counter() - t
    summary = dict(r.summary, hostsim=dict(r.summary["hostsim"], scenario=""))  # (its path)
    digest = hashlib.sha256(json.dumps(summary, sort_keys=True, default=str).encode())
    print(f"{wall:.6f} {digest.hexdigest()[:16]}", flush=True)
"""


def _start(root: Path, scenario: str, engine: str) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(root))
    cmd = [sys.executable, "-c", WORKER, scenario, engine]
    p = subprocess.Popen(
        cmd, cwd=root, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert p.stdout is not None
    line = p.stdout.readline().strip()
    if line != "ready":
        raise SystemExit(f"{root}: the worker did not start (got {line!r})")
    return p


def _run(p: subprocess.Popen[str]) -> tuple[float, str]:
    assert p.stdin is not None and p.stdout is not None
    p.stdin.write("go\n")
    p.stdin.flush()
    wall, digest = p.stdout.readline().split()
    return float(wall), digest


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("other", type=Path, help="the other checkout (its root folder)")
    ap.add_argument(
        "--scenario",
        default="steady-100k",
        help='a scenario TOML, or "steady-100k" (bench/test_bench_scale.py: 100,000 vCPUs, '
        "ten simulated seconds; the default)",
    )
    ap.add_argument("--runs", type=int, default=10, help="timed runs of each side (default 10)")
    ap.add_argument("--engine", default="fast", choices=["fast", "reference"])
    a = ap.parse_args(argv)
    if not (a.other / "hostsim").is_dir():
        ap.error(f"{a.other}: not a hostsim checkout (no hostsim/ folder)")
    scenario = a.scenario
    if scenario != "steady-100k":
        scenario = str(Path(scenario).resolve())
    this, other = _start(HERE, scenario, a.engine), _start(a.other.resolve(), scenario, a.engine)
    walls: dict[str, list[float]] = {"other": [], "this": []}
    digests: dict[str, set[str]] = {"other": set(), "this": set()}
    for i in range(a.runs):
        order = [("other", other), ("this", this)]
        for side, p in order if i % 2 == 0 else order[::-1]:
            wall, digest = _run(p)
            walls[side].append(wall)
            digests[side].add(digest)
    for p in (this, other):
        p.terminate()
    ratios = [t / o for t, o in zip(walls["this"], walls["other"], strict=True)]
    for side in ("other", "this"):
        w = walls[side]
        print(f"{side:5}  min {min(w):.3f} s  median {statistics.median(w):.3f} s")
    print(f"this / other: median of paired ratios {statistics.median(ratios):.3f}")
    if len(digests["this"] | digests["other"]) != 1:
        print("the summaries differ between the checkouts (or between runs)")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
