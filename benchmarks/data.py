"""Data-pipeline figures in one run: synthetic generation time, loading throughput, exact metrics vs a sweep.

1. Generation of the default synthetic set (6 categories x 110 images at 256 px) on one process.
2. Images/s of AnomalyImageDataset through a DataLoader with 0 and with 2 workers (ratio 2 / 0), on the
   synthetic 256 px images and on 96 of them saved again at 1024 px (MVTec-sized decode + resize).
3. aupro and pixel_auroc on a VisA-sized array (200 x 256 x 256) against a naive 200-threshold sweep
   (and sklearn's roc_auc_score), as time ratios plus the sweep's error.

    python benchmarks/data.py                       # everything, data in a temporary folder
    python benchmarks/data.py --root /tmp/syn --skip-generation
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from scipy import ndimage
from sklearn.metrics import roc_auc_score

from fractalad.data import SYNTHETIC_CATEGORIES, AnomalyImageDataset, Sample, generate_synthetic, load_mvtec
from fractalad.metrics import aupro, pixel_auroc


def time_generation(root: Path) -> float:
    start = time.perf_counter()
    generate_synthetic(root)
    return time.perf_counter() - start


def synthetic_samples(root: Path) -> list[Sample]:
    return [s for name in SYNTHETIC_CATEGORIES for c in [load_mvtec(root, name)] for s in c.train + c.test]


def upscaled_copies(samples: list[Sample], folder: Path, count: int, side: int) -> list[Sample]:
    """The first `count` images saved again at side x side px, like MVTec AD's 700-1024 px photos."""
    folder.mkdir(parents=True, exist_ok=True)
    copies = []
    for index, sample in enumerate(samples[:count]):
        target = folder / f"{index:04d}.png"
        Image.open(sample.image_path).resize((side, side), Image.Resampling.BICUBIC).save(target)
        copies.append(Sample(target, 0, None, "good"))
    return copies


def loading_rate(samples: list[Sample], workers: int, size: int, batch_size: int) -> float:
    """Images/s decoding and resizing the samples through a DataLoader."""
    loader = torch.utils.data.DataLoader(
        AnomalyImageDataset(samples, size=size),
        batch_size=batch_size,
        num_workers=workers,
        persistent_workers=False,
    )
    start, count = time.perf_counter(), 0
    for batch in loader:
        count += batch["image"].shape[0]
    return count / (time.perf_counter() - start)


def visa_sized_case(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(200, 256, 256) float32 maps and bool masks: half the images carry a few blob defects."""
    rng = np.random.default_rng(seed)
    maps = rng.random((200, 256, 256), dtype=np.float32)
    masks = np.zeros(maps.shape, dtype=bool)
    yy, xx = np.mgrid[:256, :256]
    for i in range(100, 200):
        for _ in range(int(rng.integers(1, 4))):
            cy, cx, r = rng.integers(20, 236), rng.integers(20, 236), rng.integers(3, 20)
            masks[i] |= (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    maps[masks] += 0.25
    return maps, masks


def sweep_aupro(maps: np.ndarray, masks: np.ndarray, thresholds: int, fpr_limit: float = 0.3) -> float:
    """The naive way: binarise at evenly spaced thresholds, measure FPR and per-region overlap each time."""
    regions = np.zeros(masks.shape, dtype=np.int64)
    offset = 0
    for i, mask in enumerate(masks):
        labelled, count = ndimage.label(mask, structure=np.ones((3, 3)))
        regions[i] = np.where(labelled > 0, labelled + offset, 0)
        offset += count
    region_ids = regions[masks]
    sizes = np.bincount(region_ids, minlength=offset + 1)[1:]
    negatives, positives = maps[~masks], maps[masks]
    fprs, pros = [], []
    for t in np.linspace(maps.max(), maps.min(), thresholds):
        fprs.append(np.count_nonzero(negatives >= t) / negatives.size)
        hits = np.bincount(region_ids, weights=positives >= t, minlength=offset + 1)[1:]
        pros.append(float(np.mean(hits / sizes)))
    fprs, pros = np.array(fprs), np.array(pros)
    keep = fprs <= fpr_limit
    return float(np.trapezoid(pros[keep], fprs[keep]) / fpr_limit)


def sweep_auroc(maps: np.ndarray, masks: np.ndarray, thresholds: int) -> float:
    negatives, positives = maps[~masks], maps[masks]
    tpr = [
        np.count_nonzero(positives >= t) / positives.size
        for t in np.linspace(maps.max(), maps.min(), thresholds)
    ]
    fpr = [
        np.count_nonzero(negatives >= t) / negatives.size
        for t in np.linspace(maps.max(), maps.min(), thresholds)
    ]
    return float(np.trapezoid([0.0, *tpr, 1.0], [0.0, *fpr, 1.0]))


def timed(fn, *args) -> tuple[float, float]:
    start = time.perf_counter()
    value = fn(*args)
    return value, time.perf_counter() - start


def metric_figures(thresholds: int) -> None:
    maps, masks = visa_sized_case(0)
    print(f"metrics on {maps.shape} float32 ({masks.sum()} defect pixels):")
    exact, t_exact = timed(aupro, maps, masks)
    naive, t_naive = timed(sweep_aupro, maps, masks, thresholds)
    print(
        f"  aupro exact {exact:.6f} in {t_exact:.2f} s; {thresholds}-threshold sweep {naive:.6f} in "
        f"{t_naive:.2f} s -> exact is {t_naive / t_exact:.1f}x faster, sweep error {abs(naive - exact):.2e}"
    )
    exact, t_exact = timed(pixel_auroc, maps, masks)
    naive, t_naive = timed(sweep_auroc, maps, masks, thresholds)
    reference, t_sklearn = timed(roc_auc_score, masks.ravel(), maps.ravel())
    print(
        f"  pixel_auroc exact {exact:.6f} in {t_exact:.2f} s; sweep {naive:.6f} in {t_naive:.2f} s -> "
        f"{t_naive / t_exact:.1f}x; sklearn {reference:.6f} in {t_sklearn:.2f} s -> "
        f"{t_sklearn / t_exact:.1f}x"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--root", default=None, help="synthetic data folder (default: a temporary folder)")
    parser.add_argument("--skip-generation", action="store_true", help="reuse data already in --root")
    parser.add_argument("--size", type=int, default=256, help="load size in pixels (default 256)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--thresholds", type=int, default=200)
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(args.root or scratch)
        if not args.skip_generation:
            print(f"generation of the default synthetic set: {time_generation(root):.1f} s")
        samples = synthetic_samples(root)
        large = upscaled_copies(samples, Path(scratch) / "large", 96, 1024)
        for name, chosen in ((f"{len(samples)} synthetic 256 px", samples), ("96 upscaled 1024 px", large)):
            rate0 = loading_rate(chosen, 0, args.size, args.batch_size)
            rate2 = loading_rate(chosen, 2, args.size, args.batch_size)
            print(
                f"loading {name} images at {args.size} px: {rate0:.0f} img/s (0 workers), "
                f"{rate2:.0f} img/s (2 workers), ratio {rate2 / rate0:.2f}"
            )
    metric_figures(args.thresholds)


if __name__ == "__main__":
    main()
