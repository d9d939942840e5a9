"""The ``hostsim`` command line: the argument parser of every subcommand, and ``main``.

:func:`build_parser` declares each subcommand's arguments and binds it to its handler in
:mod:`hostsim.cli_commands`; :func:`main` (the console script and ``python -m hostsim``) parses
and dispatches. Importing this module loads no numpy, pandas or matplotlib.
"""

from __future__ import annotations

import argparse

from hostsim import __version__
from hostsim.cli_commands import (
    cmd_calibrate,
    cmd_compare,
    cmd_decode,
    cmd_plot,
    cmd_replay,
    cmd_report,
    cmd_run,
    cmd_sweep,
    cmd_validate,
)
from hostsim.variants import VARIANTS

#: hostsim.report_perf.PERF_STYLES, written out so that the parser does not import numpy
REPORT_STYLES = ("perf", "perf-unknown", "hostsim")

_REPORT_HELP = (
    "end-of-run report: perf (perf kvm stat report's table, a row per PQAP path; default), "
    "perf-unknown (the single UNKNOWN row real perf on s390 shows for PQAP, to compare with a "
    "capture) or hostsim (hostsim's percentile table); see docs/outputs.md"
)


#: Subcommands that may draw figures.
PLOTTING = ("plot", "compare")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    p = argparse.ArgumentParser(
        prog="hostsim",
        description="Simulate PQAP(AQIC) interception on a multi-guest s390x KVM host.",
    )
    p.add_argument("--version", action="version", version=f"hostsim {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("decode", help="what would KVM do with these intercepts? (JSON Lines)")
    d.add_argument("file", help="JSON Lines input, or - for standard input")
    d.add_argument("--variant", choices=list(VARIANTS), help="override every line's variant")
    d.set_defaults(func=cmd_decode)

    r = sub.add_parser("run", help="simulate a scenario (the built-in default without a file)")
    r.add_argument("scenario", nargs="?", help="scenario TOML file (default: built-in)")
    r.add_argument("--seed", type=int, help="override run.seed")
    r.add_argument("--engine", choices=["fast", "reference"], default="fast")
    r.add_argument(
        "--set",
        action="append",
        metavar="KEY.PATH=VALUE",
        help="override a scenario value (TOML syntax; repeatable)",
    )
    r.add_argument(
        "--out",
        help="result folder (default: hostsim-results/<name>-seed<N>-<engine>,"
        " replaced if it exists)",
    )
    r.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    r.add_argument("--quiet", action="store_true", help="print nothing but errors")
    r.add_argument("--progress", action="store_true", help="show progress even when not a TTY")
    r.add_argument(
        "--record",
        metavar="FILE",
        help="write the run's arrivals (.jsonl or .csv) for hostsim replay",
    )
    r.add_argument(
        "--trace-out",
        metavar="FILE",
        help="write kvm-s390 tracepoint text of the run (trace-cmd report or perf "
        "script form) that hostsim replay reads back",
    )
    r.add_argument("--trace-format", choices=["trace-cmd", "perf"], default="trace-cmd")
    r.add_argument("--report", choices=REPORT_STYLES, default="perf", help=_REPORT_HELP)
    r.set_defaults(func=cmd_run)

    rp = sub.add_parser("replay", help="drive the host model with recorded arrivals")
    rp.add_argument(
        "file",
        help="arrivals (.jsonl / .csv from hostsim run --record), or "
        "kernel trace text (trace-cmd report / perf script with kvm-s390 events)",
    )
    rp.add_argument(
        "--scenario",
        help="the host to replay on (default: a recording's own, embedded in it; a trace's: "
        "built-in)",
    )
    rp.add_argument("--seed", type=int, help="override run.seed (default: a recording's own)")
    rp.add_argument("--engine", choices=["fast", "reference"], default="fast")
    rp.add_argument("--set", action="append", metavar="KEY.PATH=VALUE")
    rp.add_argument("--out", help="result folder (default: hostsim-results/replay-<name>)")
    rp.add_argument("--overwrite", action="store_true")
    rp.add_argument(
        "--skip-bad",
        action="store_true",
        help="skip malformed lines (and report how many) instead of stopping",
    )
    rp.add_argument("--quiet", action="store_true")
    rp.add_argument("--report", choices=REPORT_STYLES, default="perf", help=_REPORT_HELP)
    rp.set_defaults(func=cmd_replay)

    rr = sub.add_parser("report", help="print a finished run's report again, in any style")
    rr.add_argument("result", help="a result folder (hostsim run or replay) or its summary.json")
    rr.add_argument("--report", choices=REPORT_STYLES, default="perf", help=_REPORT_HELP)
    rr.set_defaults(func=cmd_report)

    va = sub.add_parser(
        "validate",
        help="check the timing layer against queueing theory "
        "(M/M/1, M/D/1, closed-population MVA at utilisation 0.9)",
    )
    va.add_argument("--requests", type=int, default=40_000_000, help="requests per open-loop check")
    va.add_argument(
        "--closed-requests",
        type=int,
        default=12_000_000,
        help="requests of the closed-population check (closed loops run in conservative "
        "batches, about 25 times slower per request)",
    )
    va.add_argument(
        "--tolerance",
        type=float,
        default=None,
        help="also fail a check whose relative error is above this (default: none; each "
        "check's own tolerance is its sample's 99.9 %% interval)",
    )
    va.set_defaults(func=cmd_validate)

    w = sub.add_parser(
        "sweep", help="run a capacity sweep (factors x replications) on a local pool or Dask"
    )
    w.add_argument("sweep", help="sweep TOML file ([sweep] base, factors, replications, seed)")
    w.add_argument(
        "--out", help="sweep folder (default: hostsim-results/sweep-<name>); reused to resume"
    )
    w.add_argument(
        "--workers", type=int, help="local worker processes (default: CPU count; 1: inline)"
    )
    w.add_argument("--scheduler", metavar="ADDRESS", help="run on this dask.distributed scheduler")
    w.add_argument("--quiet", action="store_true", help="print nothing but errors")
    w.add_argument("--progress", action="store_true", help="show progress even when not a TTY")
    w.set_defaults(func=cmd_sweep)

    pl = sub.add_parser("plot", help="PNG plots of a result folder or a sweep folder")
    pl.add_argument(
        "result", help="a result folder (hostsim run) or a sweep folder (hostsim sweep)"
    )
    pl.add_argument("--out", help="folder for the PNG files (default: <result>/plots)")
    pl.set_defaults(func=cmd_plot)

    c = sub.add_parser(
        "compare", help="one scenario and seed under several kernel variants and lock models"
    )
    c.add_argument("scenario", nargs="?", help="scenario TOML file (default: built-in)")
    c.add_argument(
        "--variants",
        default=",".join(VARIANTS),
        help=f"comma-separated kernel variants (default: {','.join(VARIANTS)})",
    )
    c.add_argument(
        "--lock-models",
        default="global",
        help="comma-separated: global, per-mdev (default: global)",
    )
    c.add_argument("--seed", type=int, help="override run.seed")
    c.add_argument("--engine", choices=["fast", "reference"], default="fast")
    c.add_argument("--set", action="append", metavar="KEY.PATH=VALUE", help="override a value")
    c.add_argument("--out", help="output folder (default: hostsim-results/compare-<name>)")
    c.add_argument("--no-plot", action="store_true", help="do not write compare.png")
    c.set_defaults(func=cmd_compare)

    cb = sub.add_parser("calibrate", help="fit [costs] from host captures (docs/captures.md)")
    cb.add_argument("captures", nargs="+", metavar="CAPTURE", help="capture files")
    cb.add_argument(
        "--scenario", help="the scenario whose other costs are known (default: built-in)"
    )
    cb.add_argument("--set", action="append", metavar="KEY.PATH=VALUE")
    cb.add_argument(
        "--format",
        help="the captures' format (default: detected from each file's content)",
    )
    cb.add_argument(
        "--in-kernel-cost",
        default="host_aqic",
        help="the cost an in-kernel or hook duration is attributed to (default: host_aqic)",
    )
    cb.add_argument("--out", metavar="F", help="write the [costs] TOML fragment to F")
    cb.add_argument("--quiet", action="store_true")
    cb.set_defaults(func=cmd_calibrate)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script."""
    args = build_parser().parse_args(argv)
    if args.command in PLOTTING:
        import matplotlib

        matplotlib.use("Agg")  # the command line draws files only; the library leaves it alone
    try:
        return int(args.func(args))
    except BrokenPipeError:
        return 0
