"""One run: fit a detector on a category's (few-shot) training images, score the test split, measure it."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from fractalad.bench.artifacts import (
    describe_files,
    pick_examples,
    run_folder,
    write_examples,
    write_scores,
)
from fractalad.bench.result import RunResult
from fractalad.bench.spec import RunSpec, few_shot_subset, relative_name
from fractalad.data import load_category
from fractalad.data.images import AnomalyImageDataset
from fractalad.data.records import Category, Sample
from fractalad.detectors import create_detector
from fractalad.detectors.base import BaseDetector, TrainSet, resolve_device
from fractalad.errors import InputError
from fractalad.metrics import aupro, image_auroc, pixel_auroc
from fractalad.provenance import PeakMemory, run_provenance


@dataclass(frozen=True)
class RunOptions:
    """How a run executes, not what it computes, so none of it is in the RunSpec.

    Like the device, `precision` ("auto", "fp32", "bf16": the trained methods' autocast, see `BaseDetector.fit`)
    moves results only by float rounding; the precision a fit ran at is recorded in its `fit_info`.
    """

    batch_size: int = 16
    precision: str = "auto"
    num_workers: int = 0
    examples: int = 6  # test images whose maps are kept for the qualitative figure
    progress: bool = False
    artifacts_dir: Path | None = None
    model_file: Path | None = None  # where to save the fitted detector (`detect --save-model`)


@dataclass(frozen=True)
class TestOutputs:
    """The detector's outputs over the whole test split, in test order."""

    scores: np.ndarray  # (N,) float32
    maps: np.ndarray  # (N, H, W) float32
    masks: np.ndarray  # (N, H, W) uint8
    labels: np.ndarray  # (N,) int64
    seconds: float


def fit_detector(spec: RunSpec, train: Sequence[Sample], device: str, options: RunOptions) -> BaseDetector:
    """Create the spec's detector and fit it; the device is a runtime argument, never a hyper-parameter.

    Trained methods keep resumable state in the run's artefact folder, so a killed run resumes its epochs.
    """
    detector = create_detector(spec.method, **spec.detector_params())
    work_dir = run_folder(options.artifacts_dir, spec.run_id) / "work" if options.artifacts_dir else None
    train_set = TrainSet(AnomalyImageDataset(train, spec.size), options.num_workers)
    return detector.fit(
        train_set, device=device, progress=options.progress, work_dir=work_dir, precision=options.precision
    )


def predict_test(detector: BaseDetector, category: Category, size: int, options: RunOptions) -> TestOutputs:
    """Score every test image in batches; NaN or inf outputs are refused (broken weights)."""
    scores, maps, masks, labels = [], [], [], []
    seconds = 0.0
    loader = DataLoader(
        AnomalyImageDataset(category.test, size),
        batch_size=options.batch_size,
        num_workers=options.num_workers,
    )
    for batch in tqdm(loader, desc=f"predict {category.name}", leave=False, disable=not options.progress):
        start = time.perf_counter()
        prediction = detector.predict(batch["image"])
        seconds += time.perf_counter() - start
        scores.append(prediction.image_scores.float().cpu().numpy())
        maps.append(prediction.anomaly_maps.float().cpu().numpy())
        masks.append((batch["mask"].numpy() > 0.5).astype(np.uint8))
        labels.append(batch["label"].numpy())
    outputs = TestOutputs(
        np.concatenate(scores),
        np.concatenate(maps),
        np.concatenate(masks),
        np.concatenate(labels).astype(np.int64),
        seconds,
    )
    for array, what in ((outputs.scores, "image scores"), (outputs.maps, "anomaly maps")):
        if not np.isfinite(array).all():
            raise InputError(f"{what} contain NaN or inf; the detector or its backbone weights are broken")
    return outputs


def load_run_data(spec: RunSpec) -> tuple[Category, tuple[Sample, ...]]:
    """The spec's category and training subset, checked against the data hash the spec was made from."""
    from fractalad.bench.spec import data_hash

    category = load_category(spec.dataset, spec.root, spec.category)
    if not category.train:
        raise InputError(f"category {category.name!r} at {category.root} has no training images")
    if {s.label for s in category.test} != {0, 1}:
        raise InputError(f"category {category.name!r} needs good and anomalous test images for AUROC")
    train = few_shot_subset(category.train, category.root, spec.few_shot, spec.seed)
    if data_hash(category, train) != spec.data_hash:
        raise InputError(
            f"the files of {spec.dataset}/{spec.category} under {category.root} changed since the grid was "
            "expanded (data hash differs); expand the grid again"
        )
    return category, train


def write_artifacts(spec: RunSpec, category: Category, outputs: TestOutputs, options: RunOptions) -> tuple:
    """scores.csv and examples.npz of the run (nothing when no artefact folder is set)."""
    if options.artifacts_dir is None:
        return ()
    folder = run_folder(options.artifacts_dir, spec.run_id)
    names = [relative_name(s, category.root) for s in category.test]
    written = [write_scores(folder, names, outputs.labels, outputs.scores)]
    chosen = pick_examples(outputs.labels, options.examples)
    if chosen:
        dataset = AnomalyImageDataset([category.test[i] for i in chosen], spec.size)
        images = np.stack(
            [(dataset[j]["image"].permute(1, 2, 0).numpy() * 255).round() for j in range(len(chosen))]
        )
        written.append(
            write_examples(
                folder, [names[i] for i in chosen], images, outputs.masks[chosen], outputs.maps[chosen]
            )
        )
    return describe_files(options.artifacts_dir, written)


def run_one(spec: RunSpec, device: str = "cpu", options: RunOptions | None = None) -> RunResult:
    """Fit, predict, measure and describe one run. Peak memory is this run's own (RSS reset, CUDA reset).

    `device` may be "auto"; it is resolved here so memory and provenance name the device actually used.
    """
    options = options or RunOptions()
    device = str(resolve_device(device))
    category, train = load_run_data(spec)
    memory = PeakMemory()
    memory.start(device)
    start = time.perf_counter()
    detector = fit_detector(spec, train, device, options)
    fit_seconds = time.perf_counter() - start
    outputs = predict_test(detector, category, spec.size, options)
    memory.stop(device)
    if options.model_file is not None:
        detector.save(options.model_file)
    pixel, pro = None, None
    if category.has_masks:
        pixel, pro = pixel_auroc(outputs.maps, outputs.masks), aupro(outputs.maps, outputs.masks)
    extractor = detector.extractor_
    return RunResult(
        spec=spec,
        image_auroc=image_auroc(outputs.scores, outputs.labels),
        pixel_auroc=pixel,
        aupro=pro,
        n_train=len(train),
        n_test=len(category.test),
        positives=int(outputs.labels.sum()),
        fit_seconds=fit_seconds,
        predict_seconds=outputs.seconds,
        images_per_second=len(category.test) / max(outputs.seconds, 1e-9),
        peak_rss_mb=memory.rss_mb,
        peak_gpu_mb=memory.gpu_mb,
        rss_scope=memory.rss_scope,
        scores=tuple(float(s) for s in outputs.scores),
        labels=tuple(int(v) for v in outputs.labels),
        weights_resolved=extractor.weights_id,
        normalization_used=extractor.normalization.as_text(),
        fit_info=dict(getattr(detector, "fit_info_", {}) or {}),
        artifacts=write_artifacts(spec, category, outputs, options),
        provenance=run_provenance(device),
    )
