"""The `fractalad` command line: one subcommand per capability, each a thin call into the API.

Building the parser imports no torch, torchvision, timm or numba: `--help`, `--version` and argument errors
answer at once; each handler imports what it needs.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import typing
from collections.abc import Sequence

from fractalad import __version__
from fractalad.errors import InputError

# Each module in fractalad.commands exposes `register(subparsers)`; the subcommand's handler is stored as the
# parser default `handler` and receives the parsed namespace, returning a process exit code.
COMMAND_MODULES: tuple[str, ...] = ("fractals", "pretrain", "viz", "data", "detect", "bench", "report", "demo")
# Exit codes: 2 for input the user can fix (as argparse uses for bad flags), 130 for Ctrl-C.
EXIT_INPUT = 2
EXIT_INTERRUPTED = 130


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line that points to --help, instead of a usage block."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(EXIT_INPUT, f"{self.prog}: error: {message}; see '{self.prog} --help'\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="fractalad",
        description="Pre-train backbones on fractal images; evaluate them on industrial anomaly detection.",
    )
    parser.add_argument("--version", action="version", version=f"fractalad {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"fractalad.commands.{name}")
        module.register(subparsers)
    _name_commands(parser)
    return parser


def _name_commands(parser: argparse.ArgumentParser) -> None:
    """Store each subcommand's full name ("fractalad data synth") for its error messages."""
    parser.set_defaults(prog=parser.prog)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _name_commands(child)


def describe_os_error(error: OSError) -> str:
    """An OSError from the system (no permission, a full disk, a missing file) as one sentence."""
    from fractalad.files import ADVICE

    if error.filename is None or error.strerror is None:
        return str(error)  # raised by fractalad with its own message
    where = f"{error.filename} -> {error.filename2}" if error.filename2 else str(error.filename)
    advice = ADVICE.get(error.errno or 0)
    return f"{where}: {error.strerror}" + (f"; {advice}" if advice else "")


def one_line(text: str) -> str:
    """Messages that carry a library's multi-line text still end in one line on the terminal."""
    return " ".join(text.split())


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except InputError as error:
        # Bad input gets one clear line, not a traceback; programming errors (other types) still raise.
        message = str(error)
    except OSError as error:
        message = describe_os_error(error)
    except MemoryError:
        message = "out of memory; use a smaller --batch-size or --size, or a machine with more memory"
    except KeyboardInterrupt:
        print(f"{args.prog}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(f"{args.prog}: error: {one_line(message)}", file=sys.stderr)
    return EXIT_INPUT


if __name__ == "__main__":
    sys.exit(main())
