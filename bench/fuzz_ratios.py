"""The engines' speed ratio on the fuzz's random scenarios: the small runs a user may write.

``python bench/fuzz_ratios.py [--seeds N] [--start S] [--worst K]`` runs each of N random
scenarios (seeds S, S+1, ...) of ``tests/test_engine_fuzz.py`` (``scenario_text(seed)``, no
user processes) with both engines in this one process (the best of at least two runs each
after a warm-up, more for short runs), checks that the summaries are equal, and prints the K
lowest ratios (reference time / fast time) and the median. A ratio below 1 is a scenario where
the fast engine is slower than the reference.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.test_bench_scale import fingerprint
from hostsim.run import RunResult, simulate
from hostsim.scenario import loads
from tests.test_engine_fuzz import scenario_text


def best_of(s: object, engine: str, runs: int = 2, spend: float = 0.1) -> tuple[float, RunResult]:
    """The fastest of at least ``runs`` timed runs after one warm-up (more, up to 50, until
    ``spend`` seconds are used: a millisecond run needs many to show its time), and the last
    result."""
    res = simulate(s, engine)  # type: ignore[arg-type]
    best, used, n = float("inf"), 0.0, 0
    while n < runs or (used < spend and n < 50):
        t0 = time.perf_counter()
        res = simulate(s, engine)  # type: ignore[arg-type]
        took = time.perf_counter() - t0
        best, used, n = min(best, took), used + took, n + 1
    return best, res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=120, help="random scenarios (default 120)")
    ap.add_argument("--start", type=int, default=0, help="first seed (default 0)")
    ap.add_argument("--worst", type=int, default=8, help="lowest ratios shown (default 8)")
    args = ap.parse_args(argv)
    rows = []
    for seed in range(args.start, args.start + args.seeds):
        s = loads(scenario_text(seed))
        t_ref, ref = best_of(s, "reference")
        t_fast, fast = best_of(s, "fast")
        if fingerprint(ref) != fingerprint(fast):
            print(f"seed {seed}: the summaries differ", file=sys.stderr)
            return 1
        rows.append((t_ref / t_fast, seed, fast.n_records, t_ref, t_fast))
    rows.sort()
    for ratio, seed, n, t_ref, t_fast in rows[: args.worst]:
        times = f"reference {t_ref:.4f} s  fast {t_fast:.4f} s"
        print(f"seed {seed:4d}  {n:7,d} records  {times}  {ratio:.2f}x")
    print(f"median {statistics.median(r[0] for r in rows):.2f}x over {len(rows)} scenarios")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
