"""The ``hostsim`` command line: decode, run, and the other subcommands."""

from __future__ import annotations

import argparse
import sys

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


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every subcommand."""
    p = argparse.ArgumentParser(prog="hostsim", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("decode", help="what would KVM do with these intercepts? (JSON Lines)")
    d.add_argument("file", help="JSON Lines input, or - for standard input")
    d.add_argument("--variant", choices=list(VARIANTS), help="override every line's variant")
    d.set_defaults(func=_cmd_decode)
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of the console script."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except BrokenPipeError:
        return 0
