"""Which CPU-sized pre-training recipe gives the best anomaly-detection features? One run, cached on disk.

Pre-trains every recipe at the same budget (the same number of training images seen), then fits PatchCore and
PaDiM with each resulting backbone, and with random weights, on every built-in synthetic category at every
evaluation size, and prints the mean image AUROC, pixel AUROC and AUPRO per recipe, method and size, with the
gain over random weights at the same size. Each pre-training run resumes from its folder and each detector
result is a JSON file, so an interrupted run continues where it stopped and a re-run only prints.

A recipe is `LABEL=PRESET[:key=value...]` (PretrainConfig keys), e.g. `ofdb96=tiny-ofdb:crop=96:render_size=192`
for the training-resolution study; `--sizes` gives the evaluation resolutions.

    python benchmarks/pretrain_quality.py --out outputs/pretrain-quality
    python benchmarks/pretrain_quality.py --images 20000 --sizes 128 256 --categories carpet_like screw_like
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from tqdm import tqdm

from fractalad.bench.evaluate import RunOptions, run_one
from fractalad.bench.grid import single_run_spec
from fractalad.data import SYNTHETIC_CATEGORIES
from fractalad.errors import InputError
from fractalad.files import write_text_atomic
from fractalad.pretrain.config import PretrainConfig, from_mapping, get_preset, parse_overrides
from fractalad.pretrain.train import BACKBONE_FILE, SUMMARY_FILE, pretrain

DEFAULT_RECIPES: tuple[str, ...] = ("tiny=tiny", "tiny-ofdb=tiny-ofdb", "tiny-multi=tiny-multi")
METHODS: tuple[str, ...] = ("patchcore", "padim")
METRICS: tuple[str, ...] = ("image_auroc", "pixel_auroc", "aupro")
RANDOM = "random"


@dataclasses.dataclass(frozen=True)
class Recipe:
    label: str
    config: PretrainConfig


def parse_recipe(spec: str, images: int, seed: int) -> Recipe:
    """`LABEL=PRESET[:key=value...]` at a budget of `images` training images (epochs = images / epoch)."""
    label, sep, rest = spec.partition("=")
    if not sep or not label or label == RANDOM:
        raise InputError(
            f"recipe {spec!r}: expected LABEL=PRESET[:key=value...] with a label other than 'random'"
        )
    preset, *overrides = rest.split(":")
    config = from_mapping(
        {"seed": seed, **parse_overrides(overrides)}, get_preset(preset), source=f"recipe {label}"
    )
    if images % config.epoch_size:
        raise InputError(
            f"recipe {label}: the budget of {images} images is not a whole number of epochs of "
            f"{config.epoch_size} samples; choose --images as a multiple of it"
        )
    return Recipe(label, dataclasses.replace(config, epochs=images // config.epoch_size))


def pretrained_weights(recipe: Recipe, out: Path) -> Path:
    """The recipe's exported backbone: trained (or resumed) into out/pretrain/LABEL unless already done."""
    folder = out / "pretrain" / recipe.label
    if (folder / SUMMARY_FILE).is_file():
        return folder / BACKBONE_FILE
    print(
        f"pre-training {recipe.label}: {recipe.config.epochs} epochs x {recipe.config.epoch_size}", flush=True
    )
    return pretrain(recipe.config, folder, resume=True)


def detection_result(
    out: Path, job: tuple[int, str, str, str], weights: str, arch: str, seed: int, root: Path | None
) -> dict[str, float | str | None]:
    """The result of job (size, category, weights label, method), read from
    out/eval/LABEL/SIZE/CATEGORY-METHOD.json or computed and written there."""
    size, category, label, method = job
    path = out / "eval" / label / str(size) / f"{category}-{method}.json"
    if path.is_file():
        return json.loads(path.read_text())
    spec = single_run_spec(
        "synthetic", root, category, method, {"backbone": arch, "weights": weights, "seed": seed}, size
    )
    try:
        result = run_one(spec, "cpu", RunOptions(examples=0))
        summary: dict[str, float | str | None] = {
            "image_auroc": result.image_auroc,
            "pixel_auroc": result.pixel_auroc,
            "aupro": result.aupro,
            "fit_seconds": result.fit_seconds,
            "predict_seconds": result.predict_seconds,
        }
    except torch.linalg.LinAlgError as error:
        # PaDiM's Cholesky fails on some backbones' features (badly scaled covariances): a recipe result,
        # recorded and counted in the table rather than ending the run.
        summary = {m: None for m in METRICS} | {"error": str(error).splitlines()[0]}
    write_text_atomic(path, json.dumps(summary, indent=2))
    return summary


def mean(values: Sequence[float | str | None]) -> float:
    """Mean of the values present (failed runs have None)."""
    present = [float(v) for v in values if v is not None]
    return sum(present) / len(present) if present else math.nan


def training_facts(out: Path, label: str) -> str:
    """'accuracy / seconds' of a recipe's pre-training run, '-' for random weights."""
    path = out / "pretrain" / label / SUMMARY_FILE
    if not path.is_file():
        return "-"
    summary = json.loads(path.read_text())
    return f"{100 * summary['best_accuracy']:.1f} % / {summary['train_seconds']:.0f} s"


def table(
    means: dict[tuple[str, int, str], dict[str, float]],
    labels: Sequence[str],
    sizes: Sequence[int],
    out: Path,
) -> str:
    """Markdown: one row per (weights, evaluation size); per method image/pixel AUROC, AUPRO and the image
    AUROC gain over random weights at the same size, in percent; means over the categories that ran, with
    the number of failed ones."""
    head = "| weights | train acc / s | eval px |"
    rule = "|---|---|---|"
    for method in METHODS:
        head += f" {method} image | pixel | AUPRO | image vs random |"
        rule += "---|---|---|---|"
    lines = [head, rule]
    for label in labels:
        for size in sizes:
            row = f"| {label} | {training_facts(out, label)} | {size} |"
            for method in METHODS:
                cell = means[label, size, method]
                gain = cell["image_auroc"] - means[RANDOM, size, method]["image_auroc"]
                failed = f" ({cell['failed']} failed)" if cell["failed"] else ""
                row += "".join(f" {100 * cell[m]:.1f}{failed} |" for m in METRICS) + f" {100 * gain:+.1f} |"
            lines.append(row)
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("outputs/pretrain-quality"))
    parser.add_argument("--recipes", nargs="+", default=list(DEFAULT_RECIPES))
    parser.add_argument("--images", type=int, default=50_000, help="training images seen per recipe")
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256], help="evaluation resolutions")
    parser.add_argument("--categories", nargs="+", default=list(SYNTHETIC_CATEGORIES))
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument(
        "--synthetic-root", type=Path, default=None, help="synthetic data folder (default: fractalad's cache)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    recipes = [parse_recipe(spec, args.images, args.seed) for spec in args.recipes]
    if any(r.config.arch != args.arch for r in recipes):
        raise InputError(f"every recipe must train --arch {args.arch} (set arch=... in the recipe or --arch)")
    started = time.perf_counter()
    weights = {RANDOM: RANDOM, **{r.label: str(pretrained_weights(r, args.out)) for r in recipes}}
    # Smallest size first, then category by category with every backbone: an interrupted run already holds
    # complete comparisons on the categories it finished (re-run with --categories to print those).
    results: dict[tuple[str, int, str, str], dict[str, float | str | None]] = {}
    jobs = [
        (size, category, label, method)
        for size in sorted(args.sizes)
        for category in args.categories
        for label in weights
        for method in METHODS
    ]
    for job in tqdm(jobs, desc="detect", unit="run"):
        size, category, label, method = job
        results[label, size, category, method] = detection_result(
            args.out, job, weights[label], args.arch, args.seed, args.synthetic_root
        )
    means = {
        (label, size, method): {
            **{m: mean([results[label, size, c, method][m] for c in args.categories]) for m in METRICS},
            "failed": sum("error" in results[label, size, c, method] for c in args.categories),
        }
        for label in weights
        for size in args.sizes
        for method in METHODS
    }
    text = table(means, list(weights), args.sizes, args.out)
    print(
        f"\n{args.arch}, {args.images} training images per recipe, categories: {', '.join(args.categories)}"
    )
    print(text)
    print(f"\nwall time of this invocation: {time.perf_counter() - started:.0f} s")
    return text


if __name__ == "__main__":
    main()
