"""The ``hostsim`` command line: decode, run, and the other subcommands."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hostsim import __version__
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


def _cmd_decode(args: argparse.Namespace) -> int:
    from hostsim.decode_io import run_decode

    if args.file == "-":
        return run_decode(sys.stdin, "<stdin>", sys.stdout, args.variant)
    try:
        with open(args.file, encoding="utf-8") as fh:
            return run_decode(fh, args.file, sys.stdout, args.variant)
    except OSError as e:
        print(f"hostsim decode: cannot read {args.file}: {e.strerror}", file=sys.stderr)
        return 2


def _default_out(args: argparse.Namespace, seed: int) -> str:
    stem = Path(args.scenario).stem if args.scenario else "default"
    return str(Path("hostsim-results") / f"{stem}-seed{seed}-{args.engine}")


def _cmd_run(args: argparse.Namespace) -> int:
    from hostsim.report import format_report
    from hostsim.run import simulate
    from hostsim.scenario import load
    from hostsim.scenario_types import ScenarioError

    sets = list(args.set or [])
    if args.seed is not None:
        sets.append(f"run.seed={args.seed}")
    try:
        s = load(args.scenario, sets)
    except ScenarioError as e:
        print(f"hostsim run: {e}", file=sys.stderr)
        return 2
    out = args.out or _default_out(args, s.seed)
    overwrite = args.overwrite or args.out is None
    progress = not args.quiet and (args.progress or sys.stderr.isatty())
    trace = None
    if args.trace_out:
        from workloads.trace_write import TraceWriter

        trace_tmp = Path(args.trace_out).with_name(f".{Path(args.trace_out).name}.tmp")
        trace_fh = open(trace_tmp, "w", encoding="utf-8")  # noqa: SIM115
        trace = TraceWriter(trace_fh, s, args.trace_format)
    try:
        res = simulate(
            s,
            args.engine,
            out,
            overwrite=overwrite,
            progress=progress,
            record=args.record,
            trace_out=trace,
        )
    except (FileExistsError, ValueError) as e:
        print(f"hostsim run: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"hostsim run: interrupted; finished work kept in {out}.partial", file=sys.stderr)
        return 130
    finally:
        if trace is not None:
            trace.close()
            trace_fh.close()
    if trace is not None:
        trace_tmp.replace(args.trace_out)
    if not args.quiet:
        print(format_report(res.summary, args.report))
        print(f"results: {res.out_dir}")
    return 0


def _cmd_replay(args: argparse.Namespace) -> int:
    from hostsim.report import format_report
    from hostsim.scenario_types import ScenarioError
    from workloads.replay import ReplayError
    from workloads.replay_run import EXIT_NOTHING, plan_replay, run_replay
    from workloads.trace_durations import format_calibration
    from workloads.trace_format import TraceError
    from workloads.trace_read import format_import

    try:
        plan = plan_replay(args.file, args.scenario, args.seed, args.set or [], args.skip_bad)
    except (ScenarioError, ReplayError, TraceError, OSError) as e:
        print(f"hostsim replay: {e}", file=sys.stderr)
        return 2
    for msg in plan.messages:
        print(f"hostsim replay: {msg}", file=sys.stderr)
    out = args.out or str(Path("hostsim-results") / f"replay-{Path(args.file).stem}")
    try:
        res, got = run_replay(
            plan,
            args.engine,
            out,
            overwrite=args.overwrite or args.out is None,
            progress=not args.quiet and sys.stderr.isatty(),
        )
    except (FileExistsError, ValueError) as e:
        print(f"hostsim replay: {e}", file=sys.stderr)
        return 2
    if not args.quiet:
        print(format_report(res.summary, args.report))
        if plan.imported is not None:
            print(format_import(plan.imported))
            print("Measured in the trace vs simulated (per outcome class):")
            print(format_calibration(plan.imported.measured, got.sim_measured))
        else:
            feed = plan.feed
            print(
                f"replayed {feed.rows} arrivals from {args.file}"
                + (f"; skipped {feed.n_skipped} bad lines" if feed.n_skipped else "")
            )
            for msg in feed.skipped:
                print(f"  skipped: {msg}")
        print(f"results: {res.out_dir} (replay: {', '.join(got.files)})")
    for w in got.warnings:
        print(f"hostsim replay: WARNING: {w}", file=sys.stderr)
    return EXIT_NOTHING if got.simulated == 0 else 0


def _cmd_report(args: argparse.Namespace) -> int:
    import json

    from hostsim.report import format_report

    path = Path(args.result)
    file = path / "summary.json" if path.is_dir() else path
    try:
        summary = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        print(f"hostsim report: cannot read {file}: {e}", file=sys.stderr)
        return 2
    try:
        print(format_report(summary, args.report))
    except (KeyError, TypeError) as e:
        print(f"hostsim report: {file} is not a hostsim summary ({e!r})", file=sys.stderr)
        return 2
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from hostsim.scenario_types import ScenarioError
    from hostsim.sweep import run_sweep
    from hostsim.sweep_spec import SweepError, SweepRunError, load_sweep
    from hostsim.sweep_table import format_knees, format_sweep

    try:
        spec = load_sweep(args.sweep)
    except (SweepError, ScenarioError) as e:
        print(f"hostsim sweep: {e}", file=sys.stderr)
        return 2
    out = args.out or str(Path("hostsim-results") / f"sweep-{Path(args.sweep).stem}")
    progress = not args.quiet and (args.progress or sys.stderr.isatty())
    try:
        res = run_sweep(
            spec, out, workers=args.workers, scheduler=args.scheduler, progress=progress
        )
    except KeyboardInterrupt:
        print(
            f"hostsim sweep: interrupted; finished runs are kept in {out}/runs and the table of "
            "what finished is written. Run the same command again to resume.",
            file=sys.stderr,
        )
        return 130
    except (SweepError, ScenarioError) as e:
        print(f"hostsim sweep: {e}", file=sys.stderr)
        return 1 if isinstance(e, SweepRunError) else 2
    if not args.quiet:
        print(format_sweep(spec, res.table))
        if res.knees:
            print(
                f"Knee ({spec.knee_path} {spec.knee_percentile} > {spec.knee_multiple:g} x its"
                " value at the lowest load, or throughput growth <"
                f" {spec.knee_growth:g} x offered-load growth):"
            )
            print(format_knees(spec, res.knees))
        print(
            f"runs: {res.total} ({res.computed} simulated, {res.resumed} resumed)  "
            f"results: {res.out_dir}"
        )
    return 0


def _cmd_plot(args: argparse.Namespace) -> int:
    from hostsim.plot import PlotError, plot_path

    try:
        made, notes = plot_path(args.result, args.out)
    except PlotError as e:
        print(f"hostsim plot: {e}", file=sys.stderr)
        return 2
    for path in made:
        print(path)
    sys.stdout.flush()
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from hostsim.compare import CompareError, compare, format_compare, write_compare
    from hostsim.scenario_types import ScenarioError

    sets = list(args.set or [])
    if args.seed is not None:
        sets.append(f"run.seed={args.seed}")
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    locks = [m.strip() for m in args.lock_models.split(",") if m.strip()]
    stem = Path(args.scenario).stem if args.scenario else "default"
    out = args.out or str(Path("hostsim-results") / f"compare-{stem}")
    try:
        cmp = compare(args.scenario, variants, locks, sets=sets, engine=args.engine, out_dir=out)
    except (CompareError, ScenarioError) as e:
        print(f"hostsim compare: {e}", file=sys.stderr)
        return 2
    files = write_compare(cmp, out, plot=not args.no_plot)
    print(format_compare(cmp))
    print("written: " + "  ".join(str(f) for f in files))
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from hostsim import validate

    checks = validate.run_all(args.requests, args.closed_requests)
    failed = 0
    for c in checks:
        bad = not c.passed or (args.tolerance is not None and c.rel_error > args.tolerance)
        failed += bad
        print(c.line() + ("  (over --tolerance)" if c.passed and bad else ""))
    worst = max(c.rel_error for c in checks)
    print(
        f"{'FAIL' if failed else 'PASS'}: {len(checks) - failed} of {len(checks)} checks within "
        f"their sample's 99.9 % interval; worst relative error {100 * worst:.3f} %"
        + (f" (--tolerance {100 * args.tolerance:g} %)" if args.tolerance is not None else "")
    )
    return 1 if failed else 0


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from hostsim.calibrate import calibrate, set_args, to_toml
    from hostsim.scenario import load
    from hostsim.scenario_types import ScenarioError
    from workloads.trace_format import TraceError

    try:
        s = load(args.scenario, list(args.set or []))
        fmts = [args.format] * len(args.captures) if args.format else None
        cal = calibrate(args.captures, s, fmts, in_kernel_cost=args.in_kernel_cost)
    except (ScenarioError, TraceError, ValueError) as e:
        print(f"hostsim calibrate: {e}", file=sys.stderr)
        return 2
    header = [
        "hostsim calibrate: costs fitted from " + ", ".join(args.captures),
        f"known parts from the scenario {args.scenario or '<built-in default>'}",
    ]
    text = to_toml(cal, header)
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
    if not args.quiet:
        print(text, end="")
        if cal.fits:
            print("as --set arguments:")
            for a in set_args(cal):
                print(f"  --set '{a}'")
        if args.out:
            print(f"written: {args.out}")
    return 0 if cal.fits else 1


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
    d.set_defaults(func=_cmd_decode)

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
    r.set_defaults(func=_cmd_run)

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
    rp.set_defaults(func=_cmd_replay)

    rr = sub.add_parser("report", help="print a finished run's report again, in any style")
    rr.add_argument("result", help="a result folder (hostsim run or replay) or its summary.json")
    rr.add_argument("--report", choices=REPORT_STYLES, default="perf", help=_REPORT_HELP)
    rr.set_defaults(func=_cmd_report)

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
    va.set_defaults(func=_cmd_validate)

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
    w.set_defaults(func=_cmd_sweep)

    pl = sub.add_parser("plot", help="PNG plots of a result folder or a sweep folder")
    pl.add_argument(
        "result", help="a result folder (hostsim run) or a sweep folder (hostsim sweep)"
    )
    pl.add_argument("--out", help="folder for the PNG files (default: <result>/plots)")
    pl.set_defaults(func=_cmd_plot)

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
    c.set_defaults(func=_cmd_compare)

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
    cb.set_defaults(func=_cmd_calibrate)
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
