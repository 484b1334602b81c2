"""Why does PatchCore's image score sit at chance on the synthetic data? Where its worst patch lies, per category.

For each synthetic category this fits PatchCore (library defaults, resnet18) with the given weights and prints:
- image AUROC (the benchmark's figure);
- defect-patch AUROC: the largest patch distance *inside* each defective image's mask against the largest patch
  distance of each good image. Below 50 means the defect's own patches are less anomalous than the worst normal
  patch of a good image, so no image score built on the patch distances can rank the images;
- the share of defective images whose worst patch lies on the defect;
- Spearman's rho between the good test images' scores and their mean brightness (exposure-driven scores);
- the mean feature norm of the 10 % of patches with the largest norm over that of the median patch (a backbone
  whose features blow up on flat bright regions makes those regions dominate Euclidean distances).

`--lighting` regenerates the data with the same scenes and defects (the same random draws) but other lighting in
`photograph`: `as-shot` (the generator's, gain 0.92-1.08 and a random gradient and vignette per image), `line`
(one gradient and vignette per category, as a fixed camera and light give, and gain 0.98-1.02) or `flat`
(no gain, gradient or vignette); sensor noise is kept in all three.

    python benchmarks/patchcore_diagnosis.py --weights random --lighting as-shot
    python benchmarks/patchcore_diagnosis.py --weights outputs/pq50k/pretrain/tiny/backbone.safetensors
"""

from __future__ import annotations

import argparse
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from unittest import mock

import numpy as np
import torch
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score
from torch.nn import functional as F

from fractalad.data import SYNTHETIC_CATEGORIES, load_category, synthetic
from fractalad.data.images import load_images, load_sample
from fractalad.data.synthetic.shapes import Canvas, expose
from fractalad.detectors import create_detector
from fractalad.detectors.components.knn import nearest_neighbours

LIGHTINGS: tuple[str, ...] = ("as-shot", "line", "flat")
Photograph = Callable[[np.ndarray, Canvas, np.random.Generator], np.ndarray]


def lit_photograph(lighting: str, category: str) -> Photograph:
    """A `photograph` with the generator's random draws in the same order and the chosen lighting."""
    fixed = np.random.default_rng([zlib.crc32(category.encode()), 7])
    line = (fixed.uniform(0.0, 2.0 * np.pi), fixed.uniform(0.0, 0.08), fixed.uniform(0.0, 0.08))

    def photograph(clean: np.ndarray, canvas: Canvas, rng: np.random.Generator) -> np.ndarray:
        gain, angle = rng.uniform(0.92, 1.08), rng.uniform(0.0, 2.0 * np.pi)
        slope, vignette = rng.uniform(0.0, 0.08), rng.uniform(0.0, 0.08)
        if lighting == "line":
            gain, (angle, slope, vignette) = 1.0 + (gain - 1.0) / 4.0, line
        elif lighting == "flat":
            gain, slope, vignette = 1.0, 0.0, 0.0
        return expose(clean, canvas, rng, gain, angle, slope, vignette)

    return photograph


def data_root(out: Path, lighting: str, categories: Sequence[str]) -> Path | None:
    """The synthetic data to use: fractalad's cache for `as-shot`, else generated under out/synthetic-LIGHTING."""
    if lighting == "as-shot":
        return None
    root = out / f"synthetic-{lighting}"
    for category in categories:
        with mock.patch.object(synthetic, "photograph", lit_photograph(lighting, category)):
            synthetic.generate_synthetic(root, categories=(category,))
    return root


def diagnose(category: str, root: Path | None, weights: str, size: int) -> dict[str, float]:
    """The figures above for one category."""
    data = load_category("synthetic", root, category)
    train, test = load_images(data.train, size), load_images(data.test, size)
    masks = torch.stack([load_sample(sample, size)[1] for sample in data.test])  # (N, S, S)
    labels = np.array([sample.label for sample in data.test])
    detector = create_detector("patchcore", backbone="resnet18", weights=weights, seed=0)
    detector.fit(list(train.split(16)), device="cpu")
    scores = torch.cat([detector.predict(batch).image_scores for batch in test.split(16)]).numpy()
    embedding = torch.cat([detector.embed(detector.extractor_, batch) for batch in test.split(16)])
    count, channels, height, width = embedding.shape
    flat = embedding.permute(0, 2, 3, 1).reshape(-1, channels)
    distance = nearest_neighbours(flat, detector.memory_bank_, 1)[0].reshape(count, height * width)
    on_defect = F.adaptive_max_pool2d(masks[:, None], (height, width)).reshape(count, -1) > 0
    good = labels == 0
    worst_normal = distance.amax(1)
    worst_on_defect = torch.where(on_defect, distance, torch.full_like(distance, -1.0)).amax(1)
    defect_patch = np.where(good, worst_normal.numpy(), worst_on_defect.numpy())
    hits = on_defect[torch.arange(count), distance.argmax(1)].numpy()
    norms = flat.norm(dim=1)
    brightness = test.mean(dim=(1, 2, 3)).numpy()
    return {
        "image_auroc": 100 * roc_auc_score(labels, scores),
        "defect_patch_auroc": 100 * roc_auc_score(labels, defect_patch),
        "worst_on_defect": 100 * float(hits[~good].mean()),
        "rho_brightness": float(spearmanr(scores[good], brightness[good])[0]),
        "norm_ratio": float(norms[norms >= norms.quantile(0.9)].mean() / norms.median()),
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default="random")
    parser.add_argument("--lighting", default="as-shot", choices=LIGHTINGS)
    parser.add_argument("--categories", nargs="+", default=list(SYNTHETIC_CATEGORIES))
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--out", type=Path, default=Path("outputs/patchcore-diagnosis"))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    root = data_root(args.out, args.lighting, args.categories)
    print(f"PatchCore, resnet18, weights {args.weights}, lighting {args.lighting}, {args.size} px")
    print(
        "| category | image AUROC | defect-patch AUROC | worst patch on defect % | rho(score, brightness) | "
        "norm top10/median |"
    )
    print("|---|---|---|---|---|---|")
    rows = []
    for category in args.categories:
        row = diagnose(category, root, args.weights, args.size)
        rows.append(row)
        print(
            f"| {category} | {row['image_auroc']:.1f} | {row['defect_patch_auroc']:.1f} | "
            f"{row['worst_on_defect']:.0f} | {row['rho_brightness']:+.2f} | {row['norm_ratio']:.2f} |",
            flush=True,
        )
    mean = {key: float(np.mean([row[key] for row in rows])) for key in rows[0]}
    print(
        f"| mean | {mean['image_auroc']:.1f} | {mean['defect_patch_auroc']:.1f} | {mean['worst_on_defect']:.0f} | "
        f"{mean['rho_brightness']:+.2f} | {mean['norm_ratio']:.2f} |"
    )


if __name__ == "__main__":
    main()
