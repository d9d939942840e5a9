"""The ``hostsim`` subcommands' handlers: each turns its parsed arguments into work and output.

One ``cmd_<name>`` function per subcommand (decode, run, replay, report, sweep, plot, compare,
validate, calibrate) takes the :class:`argparse.Namespace` that :func:`hostsim.cli.build_parser`
made, does the work, prints the terminal text and returns the exit status. Apart from the
standard library, every import is inside its handler, so that the parser (and ``hostsim
--help``) loads no numpy, pandas or matplotlib. The parser and ``main`` are in
:mod:`hostsim.cli`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def cmd_decode(args: argparse.Namespace) -> int:
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


def cmd_run(args: argparse.Namespace) -> int:
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


def cmd_replay(args: argparse.Namespace) -> int:
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


def cmd_report(args: argparse.Namespace) -> int:
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


def cmd_sweep(args: argparse.Namespace) -> int:
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


def cmd_plot(args: argparse.Namespace) -> int:
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


def cmd_compare(args: argparse.Namespace) -> int:
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


def cmd_validate(args: argparse.Namespace) -> int:
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


def cmd_calibrate(args: argparse.Namespace) -> int:
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
