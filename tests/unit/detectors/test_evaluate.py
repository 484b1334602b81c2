"""evaluate(), the `fractalad detect` command, overlays and error paths on a tiny synthetic category."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from fractalad.backbones import create_classifier, save_weights
from fractalad.cli import main
from fractalad.data.mvtec import load_mvtec
from fractalad.data.records import Category
from fractalad.data.synthetic import generate_synthetic
from fractalad.detectors import create_detector, load_detector
from fractalad.detectors.evaluate import evaluate
from fractalad.errors import InputError

CATEGORY = "tile"


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synthetic")
    return generate_synthetic(root, categories=[CATEGORY], size=64, n_train=6, n_test_good=3, n_test_defect=4)


def test_evaluate_reports_metrics_timings_and_outputs(synthetic_root: Path):
    category = load_mvtec(synthetic_root, CATEGORY)
    detector = create_detector("padim", backbone="resnet18", weights="random", n_features=40)
    result = evaluate(detector, category, size=64, batch_size=4, device="cpu")
    assert (
        result.scores.shape == (7,) and result.maps.shape == (7, 64, 64) and result.masks.shape == (7, 64, 64)
    )
    assert result.labels.tolist() == [s.label for s in category.test]
    assert (
        0.0 <= result.image_auroc <= 1.0 and 0.0 <= result.pixel_auroc <= 1.0 and 0.0 <= result.aupro <= 1.0
    )
    assert result.fit_seconds > 0 and result.predict_seconds > 0 and result.peak_rss_mb > 50
    assert set(result.summary()) == {
        "image_auroc",
        "pixel_auroc",
        "aupro",
        "fit_seconds",
        "predict_seconds",
        "peak_rss_mb",
    }


def test_evaluate_without_masks_skips_pixel_metrics(synthetic_root: Path):
    category = load_mvtec(synthetic_root, CATEGORY)
    unmasked = tuple(type(s)(s.image_path, s.label, None, s.defect_type) for s in category.test)
    detector = create_detector("patchcore", backbone="resnet18", weights="random")
    result = evaluate(detector, Category(category.name, category.root, category.train, unmasked), size=64)
    assert result.pixel_auroc is None and result.aupro is None and 0.0 <= result.image_auroc <= 1.0


def test_nan_weights_give_a_clear_error(synthetic_root: Path, tmp_path: Path):
    state = create_classifier("resnet18", 10).state_dict()
    state["conv1.weight"] = torch.full_like(state["conv1.weight"], float("nan"))
    path = tmp_path / "diverged.safetensors"
    save_weights(path, state, {"arch": "resnet18", "mean": "0.2", "std": "0.5"})
    detector = create_detector("patchcore", backbone="resnet18", weights=str(path))
    with pytest.raises(InputError, match="NaN or inf.*diverged.safetensors"):
        evaluate(detector, load_mvtec(synthetic_root, CATEGORY), size=64)


def test_load_refuses_changed_weight_file(tmp_path: Path):
    path = tmp_path / "w.safetensors"
    save_weights(
        path,
        create_classifier("resnet18", 10, seed=1).state_dict(),
        {"arch": "resnet18", "mean": "0.2", "std": "0.5"},
    )
    detector = create_detector("patchcore", backbone="resnet18", weights=str(path))
    detector.fit([torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))], device="cpu")
    detector.save(tmp_path / "det.safetensors")
    save_weights(
        path,
        create_classifier("resnet18", 10, seed=2).state_dict(),
        {"arch": "resnet18", "mean": "0.2", "std": "0.5"},
    )
    with pytest.raises(InputError, match="now resolve to"):
        load_detector(tmp_path / "det.safetensors")


def test_detect_command_writes_metrics_and_overlays(synthetic_root: Path, tmp_path: Path):
    out = tmp_path / "run"
    code = main(
        [
            "detect",
            "--dataset",
            "synthetic",
            "--root",
            str(synthetic_root),
            "--category",
            CATEGORY,
            "--method",
            "patchcore",
            "--backbone",
            "resnet18",
            "--weights",
            "random",
            "--layers",
            "2",
            "3",
            "--normalization",
            "imagenet",
            "--size",
            "64",
            "--overlays",
            "3",
            "--save-model",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    payload = json.loads((out / "metrics.json").read_text())
    assert payload["weights_id"] == "random:seed=0"
    assert payload["normalization"] == "0.485,0.456,0.406/0.229,0.224,0.225"
    assert payload["params"]["layers"] == [2, 3] and payload["params"]["normalization"] == "imagenet"
    assert {"torch", "torchvision", "timm", "fractalad"} <= set(payload["versions"])
    assert 0.0 <= payload["metrics"]["image_auroc"] <= 1.0 and payload["metrics"]["pixel_auroc"] is not None
    assert len(payload["overlays"]) == 3 and all((out / p).stat().st_size > 1000 for p in payload["overlays"])
    restored = load_detector(out / "detector.safetensors")
    assert restored.get_params()["backbone"] == "resnet18"


def test_detect_command_bad_input_is_one_line(synthetic_root: Path, tmp_path: Path, capsys):
    code = main(
        [
            "detect",
            "--dataset",
            "synthetic",
            "--root",
            str(synthetic_root),
            "--category",
            CATEGORY,
            "--method",
            "padim",
            "--backbone",
            "resnet18",
            "--weights",
            str(tmp_path / "missing.safetensors"),
            "--size",
            "64",
            "--out",
            str(tmp_path / "o"),
        ]
    )
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("fractalad detect: error:") and "missing.safetensors" in err[-1]
    assert not np.any([line.startswith("Traceback") for line in err])
