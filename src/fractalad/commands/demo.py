"""`fractalad demo`: the README's main job on the built-in synthetic data."""

from __future__ import annotations

import argparse
from pathlib import Path

from fractalad.commands.arguments import DEVICE_HELP, device_name, image_size, seed_int
from fractalad.data.names import SYNTHETIC_CATEGORIES
from fractalad.demo_settings import DEMO_METHODS, DEMO_PRETRAIN_OVERRIDES, DemoSettings
from fractalad.pretrain.config import PRESETS


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="end-to-end demo: CPU-sized fractal pre-training, then PatchCore and PaDiM on the synthetic dataset",
        description="Sample fractals and pre-train a small ResNet18 on them, then compare its features with "
        "random (and locally cached ImageNet) weights under PatchCore and PaDiM on the built-in synthetic "
        "MVTec-format dataset, as a small benchmark grid (grid.yaml) run into results.db; the report (report.md, "
        "runs.csv, index.html, tables/, figures/) is written beside it. About 10 minutes on 2 CPU cores; "
        "re-running reuses the finished pre-training and the finished runs.",
    )
    parser.add_argument(
        "--out", type=Path, default=DemoSettings.out_dir, help="output folder (default: %(default)s)"
    )
    parser.add_argument(
        "--categories",
        nargs="+",
        default=list(SYNTHETIC_CATEGORIES),
        choices=SYNTHETIC_CATEGORIES,
        metavar="CATEGORY",
        help="synthetic categories to evaluate (default: all)",
    )
    parser.add_argument("--methods", nargs="+", default=list(DEMO_METHODS), choices=DEMO_METHODS)
    parser.add_argument("--size", type=image_size, default=DemoSettings.size, help="evaluation image size")
    parser.add_argument("--seed", type=seed_int, default=DemoSettings.seed)
    parser.add_argument("--device", type=device_name, default="auto", help=f"{DEVICE_HELP} (default auto)")
    parser.add_argument(
        "--pretrain-preset",
        default=DemoSettings.pretrain_preset,
        choices=sorted(PRESETS),
        help="pre-training recipe (default: %(default)s, the best CPU recipe of benchmarks/pretrain_quality.py)",
    )
    parser.add_argument(
        "--synthetic-root",
        type=Path,
        default=None,
        help="where the synthetic dataset is (or is generated); default: the fractalad cache folder",
    )
    parser.add_argument(
        "pretrain_overrides",
        nargs="*",
        default=list(DEMO_PRETRAIN_OVERRIDES),
        metavar="KEY=VALUE",
        help="overrides of the pre-training preset (default: %(default)s)",
    )
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from fractalad.demo import run_demo
    from fractalad.files import check_output_folder

    check_output_folder(args.out)
    settings = DemoSettings(
        out_dir=args.out,
        categories=tuple(args.categories),
        methods=tuple(args.methods),
        size=args.size,
        seed=args.seed,
        pretrain_preset=args.pretrain_preset,
        pretrain_overrides=tuple(args.pretrain_overrides),
        synthetic_root=args.synthetic_root,
        device=args.device,
    )
    run_demo(settings)
    return 0
