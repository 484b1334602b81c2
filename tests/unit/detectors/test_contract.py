"""Contract suite run against every registered detector (tiny images, random-weight resnet18)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fractalad.detectors import create_detector, detector_class, detector_params, list_detectors, load_detector
from fractalad.detectors.base import Prediction
from fractalad.errors import InputError

# Small, fast settings per detector; every key is a real hyper-parameter of that detector.
FAST_PARAMS: dict[str, dict] = {
    "patchcore": {"layers": (2, 3), "coreset_ratio": 0.25},
    "padim": {"layers": (1, 2, 3), "n_features": 50},
    "cutpaste": {
        "mode": "patch", "epochs": 1, "steps_per_epoch": 2, "batch_size": 4,
        "patch_size": 32, "patch_stride": 8, "fit_stride": 16, "window_sigma": 8.0,
    },
    "panda": {"epochs": 1, "batch_size": 4, "resize": 64, "crop": 56},
    "fastflow": {"input_size": 64, "flow_steps": 4, "epochs": 1, "batch_size": 4},
    "cflow": {"epochs": 1, "sub_epochs": 1, "batch_size": 4, "fiber_batch_size": 16, "coupling_blocks": 2},
    "reverse_distillation": {"epochs": 5, "batch_size": 4},
    "stfpm": {"epochs": 1, "batch_size": 4},
}


def make(name: str):
    return create_detector(
        name, backbone="resnet18", weights="random", seed=0, **FAST_PARAMS.get(name, {})
    )


@pytest.fixture(scope="module", params=list_detectors())
def fitted(request, normal_train):
    # float32 on every machine: under "auto" the trained methods would take bf16 only where the CPU has AMX, and
    # the contract must not depend on the hardware (bf16 accuracy is held by the parity tests).
    return request.param, make(request.param).fit(normal_train, device="cpu", precision="fp32")


def test_registry_lists_builtins():
    assert {"patchcore", "padim"} <= set(list_detectors())


def test_predict_shapes_dtypes_finite(fitted, test_images):
    _, detector = fitted
    normal, _, _ = test_images
    prediction = detector.predict(normal)
    assert isinstance(prediction, Prediction)
    assert prediction.image_scores.shape == (4,)
    assert prediction.anomaly_maps.shape == (4, 64, 64)
    assert prediction.image_scores.dtype == torch.float32 and prediction.anomaly_maps.dtype == torch.float32
    assert torch.isfinite(prediction.image_scores).all() and torch.isfinite(prediction.anomaly_maps).all()


def test_defect_scores_higher_and_is_localised(fitted, test_images):
    _, detector = fitted
    normal, defective, masks = test_images
    good, bad = detector.predict(normal), detector.predict(defective)
    assert bad.image_scores.min() > good.image_scores.max()
    inside = bad.anomaly_maps[masks > 0].mean()
    outside = bad.anomaly_maps[masks == 0].mean()
    assert inside > outside


def test_save_load_identical(fitted, test_images, tmp_path: Path):
    name, detector = fitted
    path = tmp_path / f"{name}.safetensors"
    detector.save(path)
    restored = load_detector(path)
    assert type(restored) is type(detector) and restored.get_params() == detector.get_params()
    _, defective, _ = test_images
    a, b = detector.predict(defective), restored.predict(defective)
    assert torch.equal(a.image_scores, b.image_scores)
    assert torch.equal(a.anomaly_maps, b.anomaly_maps)


def test_get_params_rebuilds_equivalent_detector(fitted, normal_train, test_images):
    name, detector = fitted
    clone = create_detector(name, **detector.get_params())
    with pytest.raises(InputError, match="not fitted"):
        clone.predict(test_images[0])
    clone.fit(normal_train, device="cpu", precision="fp32")
    assert torch.equal(
        clone.predict(test_images[1]).image_scores, detector.predict(test_images[1]).image_scores
    )


def test_fit_discards_earlier_state(fitted, normal_train, test_images):
    name, _ = fitted
    detector = make(name).fit([test_images[1]], device="cpu")
    refit = detector.fit(normal_train, device="cpu")
    fresh = make(name).fit(normal_train, device="cpu")
    assert torch.equal(refit.predict(test_images[0]).image_scores, fresh.predict(test_images[0]).image_scores)


def test_rejects_bad_input(fitted):
    _, detector = fitted
    with pytest.raises(InputError, match=r"\(B, 3, H, W\)"):
        detector.predict(torch.zeros(3, 64, 64))
    with pytest.raises(InputError, match="no training images|at least 2"):
        make(fitted[0]).fit([], device="cpu")


def test_unknown_detector_and_params():
    with pytest.raises(InputError, match="unknown detector"):
        create_detector("nope")
    with pytest.raises(InputError, match=r"unknown \['not_a_param'\]; valid ones are \['backbone'"):
        create_detector("patchcore", not_a_param=1)


@pytest.mark.parametrize("name", list_detectors())
def test_params_are_exactly_the_init_arguments(name):
    detector = detector_class(name)(**FAST_PARAMS.get(name, {}))
    params = detector.get_params()
    assert list(params) == detector_params(name)
    assert "device" not in params
    for key, value in FAST_PARAMS.get(name, {}).items():
        assert params[key] == (list(value) if isinstance(value, tuple) else value)
