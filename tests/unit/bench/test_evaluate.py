"""run_one on a tiny synthetic category: its numbers agree with a direct fit and predict, its artefacts with
its result; no masks means no pixel metrics; broken weights fail in one line."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from fractalad.backbones import create_classifier, save_weights
from fractalad.bench.artifacts import read_examples
from fractalad.bench.evaluate import RunOptions, run_one
from fractalad.bench.grid import single_run_spec
from fractalad.data import load_category
from fractalad.data.images import AnomalyImageDataset, load_images
from fractalad.detectors import create_detector, load_detector
from fractalad.detectors.base import TrainSet
from fractalad.errors import InputError
from fractalad.metrics import image_auroc
from fractalad.provenance import file_sha256

PADIM = {"backbone": "resnet18", "weights": "random", "n_features": 40}


def test_run_one_agrees_with_a_direct_fit_and_predict(synthetic_root: Path, tmp_path: Path) -> None:
    spec = single_run_spec("synthetic", synthetic_root, "tile", "padim", PADIM, 64)
    options = RunOptions(
        batch_size=4, examples=3, artifacts_dir=tmp_path / "art", model_file=tmp_path / "m.st"
    )
    result = run_one(spec, "cpu", options)
    category = load_category("synthetic", synthetic_root, "tile")
    detector = create_detector("padim", **spec.detector_params())
    detector.fit(TrainSet(AnomalyImageDataset(category.train, 64)), device="cpu")
    direct = detector.predict(load_images(category.test, 64)).image_scores.numpy()
    labels = np.array([s.label for s in category.test])
    np.testing.assert_allclose(result.scores, direct, rtol=1e-5, atol=1e-6)
    assert result.labels == tuple(labels.tolist())
    assert result.image_auroc == pytest.approx(image_auroc(direct, labels), abs=1e-9)
    assert (result.n_train, result.n_test, result.positives) == (6, 7, 4)
    assert result.weights_resolved == "random:seed=0" and result.provenance["device"].startswith("cpu")
    # Artefacts: every score in scores.csv, two anomalous and one good example, hashes that match the files.
    files = {Path(a.path).name: options.artifacts_dir / a.path for a in result.artifacts}
    assert all(file_sha256(files[Path(a.path).name]) == a.sha256 for a in result.artifacts)
    with open(files["scores.csv"]) as handle:
        rows = list(csv.DictReader(handle))
    assert [float(r["score"]) for r in rows] == list(result.scores)
    examples = read_examples(files["examples.npz"])
    assert examples["images"].shape == (3, 64, 64, 3) and examples["masks"][:2].any(axis=(1, 2)).all()
    assert not examples["masks"][2].any()
    saved = load_detector(tmp_path / "m.st").predict(load_images(category.test, 64)).image_scores.numpy()
    np.testing.assert_allclose(saved, direct, rtol=1e-5, atol=1e-6)


def test_without_masks_pixel_metrics_are_none_and_image_auroc_unchanged(
    synthetic_root: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "tile"
    shutil.copytree(synthetic_root / "tile", folder, ignore=shutil.ignore_patterns("ground_truth"))
    unmasked = run_one(single_run_spec("folder", folder, "tile", "padim", PADIM, 64), "cpu")
    masked = run_one(single_run_spec("synthetic", synthetic_root, "tile", "padim", PADIM, 64), "cpu")
    assert unmasked.pixel_auroc is None and unmasked.aupro is None and masked.pixel_auroc is not None
    assert unmasked.image_auroc == pytest.approx(masked.image_auroc, abs=1e-9)


def test_nan_weights_give_a_clear_error(synthetic_root: Path, tmp_path: Path) -> None:
    state = create_classifier("resnet18", 10).state_dict()
    state["conv1.weight"] = torch.full_like(state["conv1.weight"], float("nan"))
    path = tmp_path / "diverged.safetensors"
    save_weights(path, state, {"arch": "resnet18", "mean": "0.2", "std": "0.5"})
    params = {"backbone": "resnet18", "weights": str(path)}
    spec = single_run_spec("synthetic", synthetic_root, "tile", "patchcore", params, 64)
    with pytest.raises(InputError, match="NaN or inf.*diverged.safetensors"):
        run_one(spec, "cpu")
