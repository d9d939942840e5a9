"""The ``hostsim`` command line: decode, run, and the other subcommands."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hostsim.variants import VARIANTS


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
    from hostsim.scenario import ScenarioError, load

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
    try:
        res = simulate(s, args.engine, out, overwrite=overwrite, progress=progress)
    except FileExistsError as e:
        print(f"hostsim run: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"hostsim run: interrupted; finished work kept in {out}.partial", file=sys.stderr)
        return 130
    if not args.quiet:
        print(format_report(res.summary))
        print(f"results: {res.out_dir}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    p = argparse.ArgumentParser(prog="hostsim", description=__doc__)
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
    r.set_defaults(func=_cmd_run)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except BrokenPipeError:
        return 0
