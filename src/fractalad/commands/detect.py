"""`fractalad detect`: one benchmark run (fit a detector on one category, score its test split); writes
metrics.json (the run's RunSpec and RunResult, as the grid stores them) and anomaly-map overlays."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from fractalad.commands.arguments import (
    DEVICE_HELP,
    PRECISION_HELP,
    device_name,
    image_size,
    nonnegative_int,
    positive_int,
    seed_int,
)
from fractalad.data.names import DATASETS
from fractalad.detectors.registry import list_detectors
from fractalad.devices import PRECISIONS

# Where the fitted detector goes with --save-model; checked with the other outputs before the fit.
MODEL_FILE = "detector.safetensors"
ARTIFACTS_FOLDER = "artifacts"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `detect` subcommand."""
    parser = subparsers.add_parser(
        "detect", help="fit an anomaly detector on a category and evaluate it", description=__doc__
    )
    parser.add_argument("--dataset", choices=DATASETS, required=True, help="dataset layout")
    parser.add_argument(
        "--root", type=Path, default=None, help="dataset root (synthetic: default cache folder)"
    )
    parser.add_argument("--category", default=None, help="category name (folder: optional display name)")
    parser.add_argument(
        "--method", choices=list_detectors(), default="patchcore", help="detector (default patchcore)"
    )
    parser.add_argument(
        "--backbone",
        default=None,
        help="architecture (default: the method's, wide_resnet50_2 for PatchCore, resnet18 for PaDiM)",
    )
    parser.add_argument(
        "--weights",
        default="imagenet",
        help="imagenet | imagenet-tv | imagenet-timm | random | PATH to a weight file",
    )
    parser.add_argument(
        "--layers", type=positive_int, nargs="+", default=None, help="backbone stages, e.g. 2 3"
    )
    parser.add_argument(
        "--normalization",
        default=None,
        help="imagenet | fractal | none | MEAN/STD (default: the one stored with the weights; "
        "'imagenet' reproduces the paper's Anomalib runs)",
    )
    parser.add_argument("--size", type=image_size, default=256, help="image size in pixels (default 256)")
    parser.add_argument("--batch-size", type=positive_int, default=16, help="images per batch (default 16)")
    parser.add_argument(
        "--seed", type=seed_int, default=0, help="seed for random weights, subsets and coresets"
    )
    parser.add_argument("--device", type=device_name, default="auto", help=f"{DEVICE_HELP} (default auto)")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto", help=PRECISION_HELP)
    parser.add_argument(
        "--overlays", type=nonnegative_int, default=6, help="number of overlay PNGs to write (default 6)"
    )
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any hyper-parameter of the method, e.g. --param epochs=1 --param lr=1e-3 (repeatable)",
    )
    parser.add_argument(
        "--save-model", action="store_true", help="also write the fitted detector.safetensors"
    )
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.set_defaults(handler=run)


def detector_params(args: argparse.Namespace) -> dict[str, Any]:
    """Detector hyper-parameters given on the command line (others keep the method's defaults)."""
    params: dict[str, Any] = {"weights": args.weights, "seed": args.seed}
    if args.backbone is not None:
        params["backbone"] = args.backbone
    if args.layers is not None:
        params["layers"] = tuple(args.layers)
    if args.normalization is not None:
        params["normalization"] = args.normalization
    params.update(method_params(args.method, args.param))
    return params


def method_params(method: str, items: list[str]) -> dict[str, Any]:
    """`--param KEY=VALUE` items, checked against the method's hyper-parameters and typed by them."""
    from fractalad.config import coerce_call_arguments, parse_overrides
    from fractalad.detectors.registry import detector_class

    return coerce_call_arguments(detector_class(method).__init__, parse_overrides(items), f"--param for {method}")




def check_outputs(args: argparse.Namespace) -> None:
    """Everything the run will write must be writable: fail now rather than after the fit."""
    from fractalad.files import check_output_file, check_output_folder

    check_output_folder(args.out)
    check_output_file(args.out / "metrics.json")
    if args.overlays:
        check_output_folder(args.out / "overlays")
    if args.save_model:
        check_output_file(args.out / MODEL_FILE)


def run(args: argparse.Namespace) -> int:
    """One run through the benchmark's run_one; metrics.json holds its RunSpec and RunResult, plus overlays."""
    from fractalad.bench.evaluate import RunOptions, run_one
    from fractalad.bench.grid import single_run_spec
    from fractalad.devices import resolve_device
    from fractalad.files import write_text_atomic
    from fractalad.report.overlays import save_example_overlays

    check_outputs(args)
    resolve_device(args.device)

    spec = single_run_spec(
        args.dataset, args.root, args.category, args.method, detector_params(args), args.size
    )
    options = RunOptions(
        batch_size=args.batch_size,
        precision=args.precision,
        examples=args.overlays,
        progress=True,
        artifacts_dir=args.out / ARTIFACTS_FOLDER,
        model_file=args.out / MODEL_FILE if args.save_model else None,
    )
    result = run_one(spec, args.device, options)
    examples = [a for a in result.artifacts if a.path.endswith("examples.npz")]
    overlays = (
        save_example_overlays(options.artifacts_dir / examples[0].path, args.out / "overlays")
        if examples
        else []
    )
    payload = {
        "run_id": result.run_id,
        "spec": json.loads(spec.to_json()),
        "result": json.loads(result.to_json()),
        "artifacts_dir": ARTIFACTS_FOLDER,
        "overlays": [p.relative_to(args.out).as_posix() for p in overlays],
    }
    write_text_atomic(args.out / "metrics.json", json.dumps(payload, indent=2, sort_keys=True))
    pixel = "n/a" if result.pixel_auroc is None else f"{result.pixel_auroc:.4f}"
    print(
        f"{args.method} {spec.category}: image AUROC {result.image_auroc:.4f}, pixel AUROC {pixel}, "
        f"fit {result.fit_seconds:.1f} s, predict {result.predict_seconds:.1f} s -> {args.out}"
    )
    return 0
