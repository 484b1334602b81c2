"""FastFlow and C-Flow specifics: shapes from the backbone's report, training-fitted constants, schedules."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from conftest import paste_defect, texture

from fractalad.detectors import create_detector
from fractalad.detectors.cflow import CFlow, cflow_lr_factor
from fractalad.detectors.components.feature_cache import frozen_features
from fractalad.detectors.components.flows import log_likelihood, positional_encoding_2d
from fractalad.detectors.fastflow import FastFlow
from fractalad.errors import InputError

CFLOW_FAST = {"epochs": 1, "sub_epochs": 1, "batch_size": 4, "fiber_batch_size": 16, "coupling_blocks": 2}


@pytest.fixture(scope="module")
def cflow() -> CFlow:
    detector = CFlow(backbone="resnet18", weights="random", **CFLOW_FAST)
    return detector.fit(texture(8, seed=1), device="cpu")


def test_positional_code_known_values():
    code = positional_encoding_2d(8, height=3, width=5)  # half = 4: frequencies 1 and 1e-2
    columns, rows = torch.arange(5.0), torch.arange(3.0)
    torch.testing.assert_close(code[0], torch.sin(columns).expand(3, 5))
    torch.testing.assert_close(code[1], torch.cos(columns).expand(3, 5))
    torch.testing.assert_close(code[2], torch.sin(columns * 1e-2).expand(3, 5))
    torch.testing.assert_close(code[4], torch.sin(rows)[:, None].expand(3, 5))
    torch.testing.assert_close(code[7], torch.cos(rows * 1e-2)[:, None].expand(3, 5))
    with pytest.raises(ValueError, match="divisible by 4"):
        positional_encoding_2d(6, 2, 2)


def test_log_likelihood_is_standard_normal_density_plus_log_det():
    z = torch.tensor([[0.0, 0.0], [1.0, -2.0]])
    expected = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(1) + torch.tensor([0.5, -1.0])
    torch.testing.assert_close(log_likelihood(z, torch.tensor([0.5, -1.0])), expected)


def test_cflow_constants_are_fitted_on_training_images(cflow: CFlow):
    train = texture(8, seed=1)
    per_layer = cflow.layer_log_likelihoods(frozen_features(cflow.extractor_, train, cflow.device_))
    torch.testing.assert_close(cflow.log_likelihood_max_, torch.stack([m.amax() for m in per_layer]))
    # m is the largest summed likelihood over training pixels, so training maps bottom out at exactly 0.
    maps = cflow.predict(train).anomaly_maps
    assert maps.min().abs() < 1e-5 and maps.min() >= -1e-5


def test_cflow_scores_do_not_depend_on_batch_composition(cflow: CFlow):
    normal = texture(3, seed=2)
    defective, _ = paste_defect(texture(3, seed=3), seed=4)
    together = cflow.predict(torch.cat([normal, defective]))
    alone = torch.cat([cflow.predict(image[None]).image_scores for image in torch.cat([normal, defective])])
    torch.testing.assert_close(together.image_scores, alone, rtol=1e-5, atol=1e-5)
    assert together.image_scores[3:].min() > together.image_scores[:3].max()


def test_cflow_epochs_count_meta_epochs_and_selection_is_recorded():
    detector = CFlow(
        backbone="resnet18", weights="random", validation_fraction=0.25, **{**CFLOW_FAST, "sub_epochs": 2}
    )
    info = detector.fit(texture(8, seed=1), device="cpu").fit_info_
    assert info["epochs_run"] == 1 and info["sub_epochs_run"] == 2
    rule = "lowest mean validation loss on 25% of the normal training images"
    assert info["selection_rule"] == rule and len(info["validation_scores"]) == 2
    best = min(range(2), key=lambda i: info["validation_scores"][i]) + 1
    assert info["selected_sub_epoch"] == best and info["selected_epoch"] == 1


def test_cflow_lr_schedule_matches_official_shape():
    factor = lambda t: cflow_lr_factor(t, 8, 25, 2, 0.1, 1e-3)
    cosine = lambda e: 1e-3 + (1 - 1e-3) * (1 + math.cos(math.pi * e / 25)) / 2
    assert factor(0) == pytest.approx(0.1)
    assert factor(8) == pytest.approx(0.1 + 0.5 * (cosine(2) - 0.1))  # half-way through the warm-up
    assert factor(16) == pytest.approx(cosine(2)) and factor(23) == pytest.approx(cosine(2))
    assert factor(24 * 8) == pytest.approx(cosine(24))
    assert all(factor(t) >= factor(t + 8) for t in range(16, 24 * 8))


def test_fastflow_layernorm_and_flows_follow_reported_channels_and_strides():
    # wide_resnet101_2's layer1-3 (outside Anomalib's FastFlow whitelist), reported by the extractor.
    extractor = SimpleNamespace(channels=[256, 512, 1024], strides=[4, 8, 16])
    detector = FastFlow(backbone="wide_resnet101_2", input_size=64, flow_steps=1)
    detector.build(extractor)
    assert [tuple(norm.normalized_shape) for norm in detector.norms_] == [
        (256, 16, 16),
        (512, 8, 8),
        (1024, 4, 4),
    ]
    for norm, flow, shape in zip(
        detector.norms_, detector.flows_, [(256, 16, 16), (512, 8, 8), (1024, 4, 4)]
    ):
        z, log_jac = flow(norm(torch.randn(2, *shape)))
        assert z.shape == (2, *shape) and log_jac.shape == (2,)
    with pytest.raises(InputError, match="not a multiple of the backbone stride 16"):
        FastFlow(input_size=72).build(extractor)
    with pytest.raises(InputError, match="input_size must be positive"):
        FastFlow(input_size=0)


def test_cflow_flows_follow_resnet50_channels():
    detector = CFlow(
        backbone="resnet50",
        weights="random",
        coupling_blocks=1,
        permute_soft=False,
        **{k: v for k, v in CFLOW_FAST.items() if k != "coupling_blocks"},
    )
    detector.fit(texture(4, seed=1), device="cpu")
    assert [flow.shapes[0] for flow in detector.flows_] == [(512,), (1024,), (2048,)]
    prediction = detector.predict(texture(2, seed=5))
    assert prediction.anomaly_maps.shape == (2, 64, 64) and torch.isfinite(prediction.image_scores).all()


def test_fastflow_refuses_images_of_another_size():
    detector = create_detector(
        "fastflow", backbone="resnet18", weights="random", input_size=64, flow_steps=1, epochs=1
    )
    with pytest.raises(InputError, match=r"built for 64x64 images .* got \(96, 96\); resize the images"):
        detector.fit(texture(2, seed=1, size=96), device="cpu")


def test_fastflow_takes_its_input_size_from_the_training_images(tmp_path):
    params = {"backbone": "resnet18", "weights": "random", "flow_steps": 1, "epochs": 1, "batch_size": 4}
    train = texture(4, seed=1, size=96)
    derived = create_detector("fastflow", **params).fit(train, device="cpu")
    explicit = create_detector("fastflow", input_size=96, **params).fit(train, device="cpu")
    assert derived.get_params()["input_size"] is None
    assert derived.input_size_.tolist() == [96, 96]
    mine, theirs = derived.state_tensors(), explicit.state_tensors()
    assert all(torch.equal(mine[key], theirs[key]) for key in theirs)  # same initial draw, same training
    path = tmp_path / "fastflow.safetensors"
    derived.save(path)
    loaded = FastFlow.load(path, device="cpu")
    probe = texture(2, seed=5, size=96)
    torch.testing.assert_close(loaded.predict(probe).anomaly_maps, derived.predict(probe).anomaly_maps)
    with pytest.raises(InputError, match=r"built for 96x96 images .* got \(64, 64\); resize the images to 96x96"):
        loaded.predict(texture(1, seed=6, size=64))


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("fastflow", {"epochs": 0}, "epochs must be >= 1"),
        ("fastflow", {"validation_fraction": 1.0}, r"validation_fraction must be in \[0, 1\)"),
        ("cflow", {"condition_dim": 30}, "multiple of 4"),
        ("cflow", {"lr_warmup_factor": 0.0}, "lr_warmup_factor"),
    ],
)
def test_bad_hyper_parameters_are_refused(name, params, message):
    with pytest.raises(InputError, match=message):
        create_detector(name, **params)


def test_cflow_killed_fit_resumes_to_the_uninterrupted_result(tmp_path, monkeypatch):
    train = texture(8, seed=1)
    params = {**CFLOW_FAST, "sub_epochs": 2, "batch_size": 8}
    uninterrupted = CFlow(backbone="resnet18", weights="random", **params).fit(train, device="cpu")
    original, calls = CFlow.fibre_losses, []

    def dies_in_second_sub_epoch(self, images, generator):
        calls.append(1)
        if len(calls) == 2:  # one image batch per sub-epoch: the second call starts sub-epoch 2
            raise KeyboardInterrupt
        return original(self, images, generator)

    monkeypatch.setattr(CFlow, "fibre_losses", dies_in_second_sub_epoch)
    with pytest.raises(KeyboardInterrupt):
        CFlow(backbone="resnet18", weights="random", **params).fit(train, device="cpu", work_dir=tmp_path)
    monkeypatch.setattr(CFlow, "fibre_losses", original)
    resumed = CFlow(backbone="resnet18", weights="random", **params).fit(
        train, device="cpu", work_dir=tmp_path
    )
    probe = texture(2, seed=7)
    torch.testing.assert_close(resumed.predict(probe).anomaly_maps, uninterrupted.predict(probe).anomaly_maps)
