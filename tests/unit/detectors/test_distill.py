"""Reverse Distillation and STFPM: decoder layout per architecture, losses, map fusion, student and teacher."""

from __future__ import annotations

import math

import pytest
import torch

from fractalad.backbones.factory import create_backbone
from fractalad.detectors import create_detector
from fractalad.detectors.components.decoders import OCBE, ResNetDecoder, describe_teacher
from fractalad.detectors.components.embedding import upsample_maps
from fractalad.detectors.reverse_distillation import cosine_loss, distance_maps
from fractalad.detectors.stfpm import STUDENT_SEED_OFFSET, layer_distances, pyramid_loss
from fractalad.errors import InputError

# (arch, block family is bottleneck, width per group, blocks per stage 1-3)
ARCHS = [
    ("resnet18", False, 64, (2, 2, 2)),
    ("resnet34", False, 64, (3, 4, 6)),
    ("resnet50", True, 64, (3, 4, 6)),
    ("wide_resnet50_2", True, 128, (3, 4, 6)),
    pytest.param("wide_resnet101_2", True, 128, (3, 4, 23), marks=pytest.mark.slow),
]


@pytest.mark.parametrize(("arch", "bottleneck", "base_width", "blocks"), ARCHS)
def test_decoder_rebuilds_the_teachers_maps(arch, bottleneck, base_width, blocks):
    teacher = create_backbone(arch, "random", (1, 2, 3))
    layout = describe_teacher(teacher)
    assert (layout.bottleneck, layout.base_width, layout.blocks) == (bottleneck, base_width, blocks)
    images = torch.rand(2, 3, 64, 96)  # non-square: heights and widths are followed separately
    with torch.no_grad():
        features = teacher(images)
        code = OCBE(layout).eval()(features)
        decoded = ResNetDecoder(layout).eval()(code)
    # The bottleneck code has twice the deepest channels at half its size.
    assert code.shape == (2, 2 * teacher.channels[-1], 2, 3)
    assert [d.shape for d in decoded] == [f.shape for f in features]


def test_rd_refuses_sizes_the_decoder_cannot_rebuild(fitted_pair):
    rd, _ = fitted_pair
    with pytest.raises(InputError, match=r"divisible by 32 .* got \(64, 48\)"):
        rd.predict(torch.rand(1, 3, 64, 48))


def test_teacher_layers_must_be_fusable(normal_train):
    with pytest.raises(InputError, match="at least 2 teacher layers"):
        create_detector("reverse_distillation", backbone="resnet18", weights="random", layers=(3,)).fit(
            normal_train, device="cpu"
        )


def test_rd_loss_compares_whole_flattened_maps():
    # Two positions whose channel vectors point the same way in teacher and decoder (per-position cosine 1)
    # but with different lengths: only the whole-map cosine sees the difference, 1 - 3 / sqrt(10).
    teacher = torch.tensor([1.0, 0.0, 0.0, 1.0]).view(1, 2, 1, 2)
    decoded = torch.tensor([1.0, 0.0, 0.0, 2.0]).view(1, 2, 1, 2)
    assert float(cosine_loss([teacher], [decoded])) == pytest.approx(1 - 3 / math.sqrt(10), abs=1e-6)
    assert float(distance_maps([teacher], [decoded])[0].abs().max()) == pytest.approx(0.0, abs=1e-6)
    # Scales add; images average: an opposite map costs 2, an equal one 0, so the batch mean is 1 per scale.
    t = torch.randn(2, 3, 4, 4)
    d = torch.stack([t[0], -t[1]])
    assert float(cosine_loss([t, t], [d, d])) == pytest.approx(2.0, abs=1e-5)


def test_stfpm_loss_sums_images_and_averages_positions():
    teacher = torch.zeros(2, 2, 2, 3)
    teacher[:, 0] = 1.0
    student = torch.zeros(2, 2, 2, 3)
    student[:, 1] = 1.0  # orthogonal everywhere: 0.5 * |e0 - e1|^2 = 1 per position
    assert torch.allclose(layer_distances(teacher, student), torch.ones(2, 1, 2, 3))
    # per scale: (2 images x 6 positions x 1) / 6 positions = 2; two scales add to 4
    assert float(pyramid_loss([teacher, teacher], [student, student])) == pytest.approx(4.0)


@pytest.fixture(scope="module")
def fitted_pair(normal_train):
    train = normal_train[0]
    rd = create_detector(
        "reverse_distillation", backbone="resnet18", weights="random", epochs=1, batch_size=2
    )
    stfpm = create_detector("stfpm", backbone="resnet18", weights="random", epochs=1, batch_size=2)
    return rd.fit(train, device="cpu"), stfpm.fit(train, device="cpu")


def test_rd_map_is_the_blurred_sum_over_scales(fitted_pair, test_images):
    rd, _ = fitted_pair
    images = test_images[1][:2]
    per_scale = distance_maps(*rd.reconstruct(images))
    expected = sum(upsample_maps(d, (64, 64), "bilinear", align_corners=True) for d in per_scale)
    rd.blur_sigma = 0.0
    try:
        prediction = rd.predict(images)
    finally:
        rd.blur_sigma = 4.0
    torch.testing.assert_close(prediction.anomaly_maps, expected[:, 0])
    torch.testing.assert_close(prediction.image_scores, expected.flatten(1).amax(1))
    blurred = rd.predict(images).anomaly_maps
    assert blurred.std() < prediction.anomaly_maps.std()  # sigma 4 smooths


def test_stfpm_map_is_the_product_over_scales(fitted_pair, test_images):
    _, stfpm = fitted_pair
    images = test_images[1][:2]
    with torch.no_grad():
        teacher, student = stfpm.features(images)
    per_scale = [upsample_maps(layer_distances(t, s), (64, 64), "bilinear") for t, s in zip(teacher, student)]
    expected = per_scale[0] * per_scale[1] * per_scale[2]
    prediction = stfpm.predict(images)
    torch.testing.assert_close(prediction.anomaly_maps, expected[:, 0])
    assert not torch.allclose(prediction.anomaly_maps, sum(per_scale)[:, 0])


def test_stfpm_student_is_seeded_random_and_teacher_stays_frozen(fitted_pair):
    _, stfpm = fitted_pair
    fresh_teacher = create_backbone("resnet18", "random", (1, 2, 3), seed=0)
    for name, value in fresh_teacher.state_dict().items():
        assert torch.equal(stfpm.extractor_.state_dict()[name], value), name
    assert not any(p.requires_grad for p in stfpm.extractor_.parameters())
    start = create_backbone("resnet18", "random", (1, 2, 3), seed=STUDENT_SEED_OFFSET).state_dict()
    trained = stfpm.student_.state_dict()
    assert stfpm.student_.arch == "resnet18" and trained.keys() == start.keys()
    assert all(p.requires_grad for p in stfpm.student_.parameters())
    assert not torch.equal(trained["body.conv1.weight"], start["body.conv1.weight"])  # it trained
    assert not torch.equal(start["body.conv1.weight"], fresh_teacher.state_dict()["body.conv1.weight"])
    # The student's initial weights are a function of the detector's seed.
    other = create_detector("stfpm", backbone="resnet18", weights="random", seed=3)
    other.build(create_backbone("resnet18", "random", (1, 2, 3), seed=3))
    assert torch.equal(
        other.student_.state_dict()["body.conv1.weight"],
        create_backbone("resnet18", "random", (1, 2, 3), seed=3 + STUDENT_SEED_OFFSET).state_dict()[
            "body.conv1.weight"
        ],
    )


def test_validation_split_selects_the_epoch_with_the_lowest_loss(normal_train):
    detector = create_detector(
        "stfpm", backbone="resnet18", weights="random", epochs=3, batch_size=4, validation_fraction=0.25
    ).fit(normal_train, device="cpu")
    info = detector.fit_info_
    scores = info["validation_scores"]
    assert info["epochs_run"] == 3 and len(scores) == 3
    assert info["selected_epoch"] == 1 + min(range(3), key=scores.__getitem__)
    assert info["selection_rule"] == "lowest mean validation loss on 25% of the normal training images"
    plain = create_detector("stfpm", backbone="resnet18", weights="random", epochs=1).fit(
        normal_train[0], device="cpu"
    )
    assert plain.fit_info_["selection_rule"] == "last epoch" and plain.fit_info_["validation_scores"] == []


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("stfpm", {"epochs": 0}, "epochs must be >= 1"),
        ("stfpm", {"batch_size": 0}, "batch_size must be >= 1"),
        ("stfpm", {"lr": -0.1}, "lr must be positive"),
        ("stfpm", {"weight_decay": -1e-4}, "weight_decay must be >= 0"),
        ("reverse_distillation", {"validation_fraction": 1.0}, r"validation_fraction must be in \[0, 1\)"),
        ("reverse_distillation", {"betas": (0.5, 1.5)}, r"betas must be two numbers in \[0, 1\)"),
    ],
)
def test_bad_hyper_parameters_are_refused(name, params, message):
    with pytest.raises(InputError, match=message):
        create_detector(name, **params)


def test_stfpm_fit_resumes_from_its_work_folder(normal_train, test_images, tmp_path):
    def make():
        return create_detector("stfpm", backbone="resnet18", weights="random", epochs=2, batch_size=4)

    reference = make().fit(normal_train, device="cpu")
    make().fit(normal_train, device="cpu", work_dir=tmp_path)
    assert (tmp_path / "train-state.pt").is_file()
    # A new process finding the finished checkpoint restores the trained student instead of training again.
    resumed = make()

    def no_training(batch):
        raise AssertionError("the finished fit was trained again")

    resumed._loss = no_training
    resumed.fit(normal_train, device="cpu", work_dir=tmp_path)
    assert torch.equal(
        resumed.predict(test_images[1]).image_scores, reference.predict(test_images[1]).image_scores
    )
    assert resumed.fit_info_["losses"] == reference.fit_info_["losses"]
