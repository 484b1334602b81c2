"""`fractalad report`: the paper's tables and figures from a results store (nothing else is read)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `report` subcommand."""
    parser = subparsers.add_parser(
        "report",
        help="tables 1-8, figures and one HTML page from a results store",
        description="Write Tables 1-8 in the paper's layout (Markdown, CSV, LaTeX) with the paper's numbers "
        "beside ours, PNG figures and a self-contained index.html, reading only the store and its artefacts.",
    )
    parser.add_argument("--store", type=Path, required=True, help="results database written by `bench run`")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument(
        "--reference", default=None, help="weights label of the reference (default: the first)"
    )
    parser.add_argument(
        "--candidate", default=None, help="weights label compared with it (default: the second)"
    )
    parser.add_argument(
        "--artifacts", type=Path, default=None, help="artefact folder (default: <store stem>-artifacts)"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from fractalad.report.build import build_report

    files = build_report(args.store, args.out, args.reference, args.candidate, args.artifacts)
    print(f"{len(files.tables)} table files, {len(files.figures)} figures -> {files.html}")
    return 0
