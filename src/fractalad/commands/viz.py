"""`fractalad viz`: figures about backbones (first-layer filter grids)."""

from __future__ import annotations

import argparse

from fractalad.commands.arguments import seed_int


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `viz` and its `filters` subcommand."""
    parser = subparsers.add_parser("viz", help="draw figures about backbones", description=__doc__)
    kinds = parser.add_subparsers(dest="viz_command", metavar="FIGURE", required=True)
    filters = kinds.add_parser(
        "filters",
        help="grid of the first-layer (conv1) filters, like the paper's Fig. 2",
        description="Draw the conv1 kernels of a weight file, or of 'imagenet', 'imagenet-timm' or 'random' "
        "weights for --arch, each kernel min-max scaled on its own.",
    )
    filters.add_argument(
        "weights", help="weight file (.safetensors/.pt), or imagenet | imagenet-timm | random"
    )
    filters.add_argument("--out", required=True, help="output PNG path")
    filters.add_argument(
        "--arch", default="resnet18", help="architecture for named weights (default resnet18)"
    )
    filters.add_argument(
        "--seed", type=seed_int, default=0, help="seed of the 'random' initialisation (default 0)"
    )
    filters.set_defaults(handler=_filters)


def _filters(args: argparse.Namespace) -> int:
    from fractalad.files import check_output_file
    from fractalad.report.filters import save_filter_grid

    check_output_file(args.out)
    out = save_filter_grid(args.weights, args.out, arch=args.arch, seed=args.seed)
    print(f"wrote {out}")
    return 0
