"""Does a detector's image score follow the photo's exposure instead of the defect? One category, one run.

The synthetic photos carry a random gain (0.92-1.08), a light gradient and sensor noise
(fractalad.data.synthetic.shapes.photograph). A detector that measures Euclidean feature distances (PatchCore)
with features that scale with the input sees the gain as an anomaly. This fits the detector on a synthetic
category and prints the image AUROC, Spearman's rho between the good test images' scores and their mean
brightness, and the same after each image is rescaled to a common mean (`--flatten`), so the share of the
score that is exposure can be read off.

    python benchmarks/score_vs_gain.py --category tile --method patchcore --weights random --size 128
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from fractalad.data.images import load_images
from fractalad.data.mvtec import load_mvtec
from fractalad.data.synthetic import default_synthetic_root
from fractalad.detectors.registry import create_detector

COMMON_MEAN = 0.5


def flatten_exposure(images: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) in [0, 1] -> the same images scaled to one mean brightness (a global gain per image)."""
    return (images * (COMMON_MEAN / images.mean(dim=(1, 2, 3), keepdim=True))).clamp(0, 1)


def score_report(
    method: str,
    weights: str,
    train: torch.Tensor,
    test: torch.Tensor,
    labels: np.ndarray,
    layers: Sequence[int] | None,
) -> str:
    """AUROC and rho(score, brightness) over the good test images for one fit (layers None: the method's)."""
    chosen = {} if layers is None else {"layers": tuple(layers)}
    detector = create_detector(method, backbone="resnet18", weights=weights, seed=0, **chosen)
    scores = detector.fit(train, device="cpu").predict(test).image_scores.numpy()
    brightness = test.mean(dim=(1, 2, 3)).numpy()
    good = labels == 0
    rho = spearmanr(scores[good], brightness[good])[0]
    return f"image AUROC {100 * roc_auc_score(labels, scores):.1f}, rho(score, brightness | good) {rho:+.2f}"


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--category", default="tile")
    parser.add_argument("--method", default="patchcore", choices=("patchcore", "padim"))
    parser.add_argument("--weights", default="random")
    parser.add_argument("--layers", type=int, nargs="+", default=None, help="default: the method's")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--synthetic-root", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    category = load_mvtec(args.synthetic_root or default_synthetic_root(), args.category)
    train, test = load_images(category.train, args.size), load_images(category.test, args.size)
    labels = np.array([sample.label for sample in category.test])
    print(
        f"{args.category}, {args.method}, weights {args.weights}, layers {args.layers or 'default'}, {args.size} px"
    )
    print("  as photographed:", score_report(args.method, args.weights, train, test, labels, args.layers))
    flat_train, flat_test = flatten_exposure(train), flatten_exposure(test)
    flattened = score_report(args.method, args.weights, flat_train, flat_test, labels, args.layers)
    print("  exposure flattened:", flattened)


if __name__ == "__main__":
    main()
