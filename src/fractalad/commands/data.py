"""`fractalad data`: generate the synthetic dataset and summarise any supported dataset."""

from __future__ import annotations

import argparse

from fractalad.commands.arguments import image_size, positive_float, positive_int, seed_int
from fractalad.data.names import DATASETS, SYNTHETIC_CATEGORIES


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `data` with its `synth` and `info` subcommands."""
    parser = subparsers.add_parser(
        "data", help="generate synthetic data, inspect datasets", description=__doc__
    )
    commands = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    synth = commands.add_parser(
        "synth",
        help="write the synthetic MVTec-format dataset (cached, deterministic)",
        description="Generate procedural textures (weave, wood, tile) and objects (nut, capsule, pcb) with "
        "subtle defects and exact masks in MVTec AD layout. Categories already built with the same settings "
        "are kept.",
    )
    synth.add_argument(
        "--root",
        default=None,
        help="output folder (default: $FRACTALAD_CACHE/synthetic or ~/.cache/fractalad/synthetic)",
    )
    synth.add_argument(
        "--categories",
        nargs="+",
        default=None,
        choices=SYNTHETIC_CATEGORIES,
        metavar="CATEGORY",
        help=f"categories to build: {', '.join(SYNTHETIC_CATEGORIES)} (default: all)",
    )
    synth.add_argument("--seed", type=seed_int, default=0, help="random seed (default 0)")
    synth.add_argument("--size", type=image_size, default=256, help="image size in pixels (default 256)")
    synth.add_argument(
        "--n-train", type=positive_int, default=60, help="good training images per category (default 60)"
    )
    synth.add_argument(
        "--n-test-good", type=positive_int, default=20, help="good test images per category (default 20)"
    )
    synth.add_argument(
        "--n-test-defect",
        type=positive_int,
        default=30,
        help="defective test images per category, spread over its defect types (default 30)",
    )
    synth.add_argument(
        "--contrast",
        type=positive_float,
        default=1.0,
        help="scale of the surface defects' intensity change; < 1 is harder (default 1)",
    )
    synth.set_defaults(handler=_synth)
    info = commands.add_parser("info", help="count train/test images, defect types and masks of a dataset")
    info.add_argument("dataset", choices=DATASETS, help="dataset kind")
    info.add_argument("root", help="dataset root (folder: the category folder itself)")
    info.add_argument(
        "category", nargs="?", default=None, help="category (default: every category found under root)"
    )
    info.set_defaults(handler=_info)


def _synth(args: argparse.Namespace) -> int:
    from fractalad.data.synthetic import default_synthetic_root, generate_synthetic
    from fractalad.files import check_output_folder

    root = check_output_folder(args.root or default_synthetic_root())
    root = generate_synthetic(
        root,
        categories=tuple(args.categories or SYNTHETIC_CATEGORIES),
        seed=args.seed,
        size=args.size,
        n_train=args.n_train,
        n_test_good=args.n_test_good,
        n_test_defect=args.n_test_defect,
        contrast=args.contrast,
    )
    print(f"synthetic data ready in {root}")
    return 0


def _info(args: argparse.Namespace) -> int:
    from fractalad.data import list_categories, load_category

    names = (
        [args.category]
        if args.category or args.dataset == "folder"
        else list_categories(args.dataset, args.root)
    )
    for name in names:
        category = load_category(args.dataset, args.root, name)
        counts = category.counts()
        defects = ", ".join(f"{key.split(':', 1)[1]} {value}" for key, value in counts.items() if ":" in key)
        masks = "yes" if category.has_masks else "no (pixel metrics skipped)"
        print(
            f"{category.name}: train {counts['train']}, test good {counts['test_good']}, "
            f"test defective {counts['test_anomalous']} ({defects or 'none'}), masks {masks}"
        )
    return 0
