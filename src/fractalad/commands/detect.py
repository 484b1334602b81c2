"""`fractalad detect`: fit PatchCore / PaDiM on one category, write metrics.json and anomaly-map overlays."""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path
from typing import Any

import numpy as np
import timm
import torch
import torchvision

from fractalad import __version__
from fractalad.data import DATASETS, load_category
from fractalad.data.images import load_images
from fractalad.detectors import create_detector, list_detectors
from fractalad.detectors.evaluate import Evaluation, evaluate
from fractalad.detectors.overlay import pick_examples, save_overlays
from fractalad.errors import InputError
from fractalad.files import write_text_atomic


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
    parser.add_argument("--layers", type=int, nargs="+", default=None, help="backbone stages, e.g. 2 3")
    parser.add_argument(
        "--normalization",
        default=None,
        help="imagenet | fractal | none | MEAN/STD (default: the one stored with the weights; "
        "'imagenet' reproduces the paper's Anomalib runs)",
    )
    parser.add_argument("--size", type=int, default=256, help="image size in pixels (default 256)")
    parser.add_argument("--batch-size", type=int, default=16, help="images per batch (default 16)")
    parser.add_argument("--seed", type=int, default=0, help="seed for random weights, subsets and coresets")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda[:N] (default auto)")
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any hyper-parameter of the method, e.g. --param epochs=1 --param lr=1e-3 (repeatable)",
    )
    parser.add_argument("--overlays", type=int, default=6, help="number of overlay PNGs to write (default 6)")
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
    for item in args.param:
        key, value = parse_param(item)
        params[key] = value
    return params


def parse_value(text: str) -> Any:
    """A --param value: int, float, true/false, none, a comma-separated list of those, or text."""
    if "," in text:
        return [parse_value(part) for part in text.split(",") if part]
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    for convert in (int, float):
        try:
            return convert(text)
        except ValueError:
            pass
    return text


def parse_param(item: str) -> tuple[str, Any]:
    """'key=value' -> (key, typed value)."""
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise InputError(f"--param {item!r} is not KEY=VALUE (for example --param epochs=1)")
    return key.strip(), parse_value(value)


def versions() -> dict[str, str]:
    """Library versions recorded next to every result."""
    return {
        "fractalad": __version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "timm": timm.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Atomic JSON write."""
    write_text_atomic(path, json.dumps(payload, indent=2, sort_keys=True))


def write_overlays(out: Path, evaluation: Evaluation, test_samples, size: int, count: int) -> list[Path]:
    """Overlay PNGs for a few test images, colour range shared across the run's maps."""
    chosen = pick_examples(evaluation.labels, count)
    if not chosen:
        return []
    images = load_images([test_samples[i] for i in chosen], size).numpy()
    names = [f"{i:03d}_{test_samples[i].defect_type}_{Path(test_samples[i].image_path).stem}" for i in chosen]
    value_range = (float(evaluation.maps.min()), float(evaluation.maps.max()))
    return save_overlays(
        out / "overlays", images, evaluation.masks[chosen], evaluation.maps[chosen], names, value_range
    )


def run(args: argparse.Namespace) -> int:
    """Fit, evaluate, and write metrics.json plus overlays into --out."""
    category = load_category(args.dataset, args.root, args.category)
    detector = create_detector(args.method, **detector_params(args))
    evaluation = evaluate(
        detector, category, size=args.size, batch_size=args.batch_size, device=args.device, progress=True
    )
    extractor = getattr(detector, "extractor_", None)
    args.out.mkdir(parents=True, exist_ok=True)
    overlays = write_overlays(args.out, evaluation, category.test, args.size, args.overlays)
    payload = {
        "dataset": args.dataset,
        "category": category.name,
        "root": str(category.root),
        "method": args.method,
        "params": detector.get_params(),
        "size": args.size,
        "n_train": len(category.train),
        "n_test": len(category.test),
        "metrics": evaluation.summary(),
        "weights_id": extractor.weights_id if extractor is not None else args.weights,
        "normalization": extractor.normalization.as_text() if extractor is not None else None,
        "versions": versions(),
        "overlays": [str(p.relative_to(args.out)) for p in overlays],
    }
    write_json(args.out / "metrics.json", payload)
    if args.save_model:
        detector.save(args.out / "detector.safetensors")
    summary = evaluation.summary()
    pixel = "n/a" if summary["pixel_auroc"] is None else f"{summary['pixel_auroc']:.4f}"
    print(
        f"{args.method} {category.name}: image AUROC {summary['image_auroc']:.4f}, pixel AUROC {pixel}, "
        f"fit {summary['fit_seconds']:.1f} s, predict {summary['predict_seconds']:.1f} s -> {args.out}"
    )
    return 0
