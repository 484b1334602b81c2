"""The `fractalad` command line: one subcommand per capability, each a thin call into the API."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from fractalad import __version__
from fractalad.errors import InputError

# Each module in fractalad.commands exposes `register(subparsers)`; the subcommand's handler is stored as the
# parser default `handler` and receives the parsed namespace, returning a process exit code.
COMMAND_MODULES: tuple[str, ...] = ("fractals", "pretrain", "viz", "data", "detect", "bench", "report", "demo")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fractalad",
        description="Pre-train backbones on fractal images; evaluate them on industrial anomaly detection.",
    )
    parser.add_argument("--version", action="version", version=f"fractalad {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"fractalad.commands.{name}")
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except (InputError, FileNotFoundError) as error:
        # Bad input gets one clear line, not a traceback; programming errors (other types) still raise.
        print(f"fractalad {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"fractalad {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
