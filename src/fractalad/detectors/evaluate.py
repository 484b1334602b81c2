"""Fit a detector on a category's training images and measure it on the test split."""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from fractalad.data.images import AnomalyImageDataset
from fractalad.data.records import Category, Sample
from fractalad.detectors.base import BaseDetector, TrainSet
from fractalad.errors import InputError
from fractalad.metrics import aupro, image_auroc, pixel_auroc


@dataclass(frozen=True)
class Evaluation:
    """Metrics (pixel ones None without masks), timings, peak RSS and the raw outputs of one run."""

    image_auroc: float
    pixel_auroc: float | None
    aupro: float | None
    fit_seconds: float
    predict_seconds: float
    peak_rss_mb: float
    scores: np.ndarray  # (N,) float32
    labels: np.ndarray  # (N,) int64
    maps: np.ndarray  # (N, H, W) float32
    masks: np.ndarray  # (N, H, W) uint8
    paths: tuple[str, ...]

    def summary(self) -> dict[str, float | None]:
        """The scalar fields, JSON-ready."""
        return {
            "image_auroc": self.image_auroc,
            "pixel_auroc": self.pixel_auroc,
            "aupro": self.aupro,
            "fit_seconds": self.fit_seconds,
            "predict_seconds": self.predict_seconds,
            "peak_rss_mb": self.peak_rss_mb,
        }


def train_set(samples: Sequence[Sample], size: int, num_workers: int = 0) -> TrainSet:
    """The training images of a category as a TrainSet, decoded on the fly at `size` px."""
    return TrainSet(AnomalyImageDataset(samples, size), num_workers)


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, MiB (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0


def _check_finite(array: np.ndarray, what: str) -> None:
    if not np.isfinite(array).all():
        raise InputError(f"{what} contain NaN or inf; the detector or its backbone weights are broken")


def evaluate(
    detector: BaseDetector,
    category: Category,
    size: int = 256,
    batch_size: int = 16,
    num_workers: int = 0,
    device: str = "auto",
    progress: bool = False,
    work_dir: Path | None = None,
) -> Evaluation:
    """Fit on category.train, predict category.test in batches; image AUROC; pixel metrics with masks."""
    if not category.train:
        raise InputError(f"category {category.name!r} at {category.root} has no training images")
    labels_all = [s.label for s in category.test]
    if set(labels_all) != {0, 1}:
        raise InputError(f"category {category.name!r} needs good and anomalous test images for AUROC")
    start = time.perf_counter()
    detector.fit(train_set(category.train, size, num_workers), device=device, progress=progress, work_dir=work_dir)
    fit_seconds = time.perf_counter() - start
    scores, maps, masks, labels, paths = [], [], [], [], []
    predict_seconds = 0.0
    test = DataLoader(AnomalyImageDataset(category.test, size), batch_size=batch_size, num_workers=num_workers)
    for batch in tqdm(test, desc=f"predict {category.name}", disable=not progress, leave=False):
        start = time.perf_counter()
        prediction = detector.predict(batch["image"])
        predict_seconds += time.perf_counter() - start
        scores.append(prediction.image_scores.float().numpy())
        maps.append(prediction.anomaly_maps.float().numpy())
        masks.append((batch["mask"].numpy() > 0.5).astype(np.uint8))
        labels.append(batch["label"].numpy())
        paths.extend(batch["path"])
    score_array, map_array = np.concatenate(scores), np.concatenate(maps)
    _check_finite(score_array, "image scores")
    _check_finite(map_array, "anomaly maps")
    label_array, mask_array = np.concatenate(labels).astype(np.int64), np.concatenate(masks)
    pixel, pro = None, None
    if category.has_masks:
        pixel, pro = pixel_auroc(map_array, mask_array), aupro(map_array, mask_array)
    return Evaluation(
        image_auroc=image_auroc(score_array, label_array),
        pixel_auroc=pixel,
        aupro=pro,
        fit_seconds=fit_seconds,
        predict_seconds=predict_seconds,
        peak_rss_mb=peak_rss_mb(),
        scores=score_array,
        labels=label_array,
        maps=map_array,
        masks=mask_array,
        paths=tuple(paths),
    )
