"""`fractalad pretrain` (train on fractals, resumable, torchrun-aware) and `fractalad pretrain-export`."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import yaml

EPILOG = """examples:
  fractalad pretrain --preset tiny --out runs/tiny
  fractalad pretrain --preset tiny --out runs/demo epochs=1 samples_per_class=8
  fractalad pretrain --config my.yaml --out runs/mine --resume
  torchrun --nproc_per_node=8 -m fractalad pretrain --preset paper-resnet18 --out runs/r18 --resume
  fractalad pretrain-export runs/tiny/best.pt tiny-best.safetensors
overrides are key=value pairs of PretrainConfig keys, e.g. lr=0.05 milestones=20,40 mean=null std=null."""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add `pretrain` and `pretrain-export`."""
    from fractalad.pretrain.config import PRESETS

    parser = subparsers.add_parser(
        "pretrain",
        help="pre-train a ResNet on on-the-fly fractal images",
        description="Pre-train a classifier on fractal classes; writes config.yaml, checkpoints (last.pt, "
        "best.pt), metrics.csv, TensorBoard logs and backbone.safetensors into --out.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--preset", choices=sorted(PRESETS), help="named recipe (see --print-config)")
    parser.add_argument(
        "--config", type=Path, help="YAML file with PretrainConfig keys (applied after --preset)"
    )
    parser.add_argument("--out", type=Path, help="output folder (default runs/pretrain-<preset>)")
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue from <out>/last.pt (exactly, mid-epoch included) if it exists",
    )
    parser.add_argument(
        "--print-config", action="store_true", help="print the resolved config as YAML and exit"
    )
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. epochs=5")
    parser.set_defaults(handler=_pretrain)

    export = subparsers.add_parser(
        "pretrain-export",
        help="write a checkpoint's backbone (no classifier) as safetensors",
        description="Export the model of a pre-training checkpoint without fc.* as a safetensors weight file "
        "with arch/mean/std/provenance metadata, loadable by `--weights FILE` everywhere.",
    )
    export.add_argument("checkpoint", type=Path, help="last.pt or best.pt written by `fractalad pretrain`")
    export.add_argument("out", type=Path, help="output .safetensors path")
    export.set_defaults(handler=_export)


def _pretrain(args: argparse.Namespace) -> int:
    from fractalad.errors import InputError
    from fractalad.files import check_output_folder
    from fractalad.pretrain import pretrain, resolve_config

    if args.preset is None and args.config is None:
        raise InputError("choose a recipe with --preset (e.g. --preset tiny) or --config FILE.yaml")
    config = resolve_config(args.preset, args.config, args.overrides)
    if args.print_config:
        sys.stdout.write(yaml.safe_dump(config.to_dict(), sort_keys=False))
        return 0
    out = check_output_folder(args.out or Path("runs") / f"pretrain-{config.preset}")
    weights = pretrain(config, out, resume=args.resume)
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun only rank 0 reports
        print(f"backbone weights: {weights}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from fractalad.files import check_output_file
    from fractalad.pretrain import export_backbone

    check_output_file(args.out)
    print(f"wrote {export_backbone(args.checkpoint, args.out)}")
    return 0
