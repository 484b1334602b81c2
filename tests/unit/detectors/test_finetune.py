"""CutPaste and PANDA: the known mistakes of the two methods that fine-tune the backbone."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from conftest import paste_defect, texture
from sklearn.covariance import LedoitWolf

from fractalad.detectors import create_detector
from fractalad.detectors import cutpaste as cutpaste_module
from fractalad.detectors.base import TrainSet, read_detector_file
from fractalad.detectors.components import augment
from fractalad.detectors.components.density import fit_ledoit_wolf, mahalanobis_squared
from fractalad.detectors.components.patches import dense_patches, fold_patches, gaussian_window, scores_to_map
from fractalad.errors import InputError

TINY_CUTPASTE = {"epochs": 1, "steps_per_epoch": 2, "batch_size": 4}
TINY_PATCH = {**TINY_CUTPASTE, "mode": "patch", "patch_size": 32, "patch_stride": 8, "fit_stride": 16}
TINY_PANDA = {"epochs": 1, "batch_size": 4, "resize": 64, "crop": 56}


def cutpaste(**params):
    return create_detector("cutpaste", backbone="resnet18", weights="random", seed=0, **params)


def panda(**params):
    return create_detector("panda", backbone="resnet18", weights="random", seed=0, **params)


# -- augmentations ------------------------------------------------------------------------------------------
def test_cutpaste_ranges_hold_and_are_covered_over_many_draws():
    generator = torch.Generator().manual_seed(0)
    draws = [augment.draw_cutpaste(256, 256, generator) for _ in range(3000)]
    areas = torch.tensor([d.area for d in draws])
    log_aspects = torch.tensor([math.log(d.aspect) for d in draws])
    assert 0.02 <= areas.min() < 0.022 and 0.148 < areas.max() <= 0.15
    assert math.log(0.3) <= log_aspects.min() < math.log(0.33) and math.log(3.0) < log_aspects.max() <= math.log(3.3)
    # log-uniform: the log-aspect is uniform, so its mean is the midpoint of the log range (~0, not ~0.5).
    assert abs(float(log_aspects.mean()) - (math.log(0.3) + math.log(3.3)) / 2) < 0.05
    for d in draws[:200]:
        assert d.width * d.height == pytest.approx(d.area * 256 * 256, rel=0.05)
        assert d.width / d.height == pytest.approx(d.aspect, rel=0.1)


def test_scar_ranges_hold_and_are_covered_over_many_draws():
    generator = torch.Generator().manual_seed(1)
    draws = [augment.draw_scar(generator) for _ in range(3000)]
    widths = {d.width for d in draws}
    lengths = {d.length for d in draws}
    angles = torch.tensor([d.angle for d in draws])
    assert min(widths) == 2 and max(widths) == 16
    assert min(lengths) == 10 and max(lengths) == 25
    assert -45 <= angles.min() < -44 and 44 < angles.max() <= 45


def test_augmentations_change_only_the_pasted_pixels_and_are_seeded():
    image = texture(1, seed=5, size=128)[0]
    for kind, function in augment.AUGMENTATIONS.items():
        out, mask = function(image, torch.Generator().manual_seed(3))
        again, _ = function(image, torch.Generator().manual_seed(3))
        assert torch.equal(out, again), kind
        assert torch.equal(out[:, ~mask], image[:, ~mask]), kind
        assert (out[:, mask] != image[:, mask]).any(), kind
    _, mask = augment.cutpaste(image, torch.Generator().manual_seed(4))
    assert 0.02 * 128 * 128 * 0.9 <= mask.sum() <= 0.15 * 128 * 128 * 1.1
    _, scar = augment.cutpaste_scar(image, torch.Generator().manual_seed(4))
    assert 2 * 10 * 0.7 <= scar.sum() <= 16 * 25 * 1.3


def test_views_are_labelled_per_variant():
    images = texture(3, seed=6, size=32)
    for variant, kinds in augment.VARIANTS.items():
        views, labels = augment.make_views(images, variant, torch.Generator().manual_seed(0))
        assert views.shape == (3 * len(kinds), 3, 32, 32)
        assert labels.tolist() == [k for k in range(len(kinds)) for _ in range(3)]
        assert torch.equal(views[:3], images)  # the normal view is the untouched original


# -- patches: unfold / fold ---------------------------------------------------------------------------------
def test_patch_unfold_fold_maps_a_toy_tensor_back_to_itself():
    toy = torch.arange(2 * 3 * 13 * 17, dtype=torch.float32).reshape(2, 3, 13, 17)
    patches = dense_patches(toy, 5, 4)  # grid 3 x 4, covers 13 x 17 exactly
    assert patches.shape == (2, 12, 3, 5, 5)
    assert torch.equal(patches[1, 1 * 4 + 2], toy[1, :, 4:9, 8:13])  # row-major (row 1, column 2)
    for window in (torch.ones(5, 5), gaussian_window(5, 1.5)):
        assert torch.allclose(fold_patches(patches, (13, 17), 4, window), toy, rtol=1e-6, atol=1e-3)


def test_a_patch_score_lands_on_its_own_patch_not_the_transposed_one():
    rows, cols, size, stride = 3, 5, 8, 4  # a 16 x 24 image: transposing row and column would be visible
    scores = torch.zeros(1, rows * cols)
    scores[0, 2 * cols + 1] = 1.0  # row 2, column 1 -> pixels [8, 16) x [4, 12)
    heat = scores_to_map(scores, (16, 24), size, stride, sigma=2.0)[0]
    peak = divmod(int(heat.argmax()), 24)
    assert 8 <= peak[0] < 16 and 4 <= peak[1] < 12


# -- density ------------------------------------------------------------------------------------------------
def test_ledoit_wolf_density_works_with_fewer_samples_than_dimensions():
    features = torch.randn(6, 40, generator=torch.Generator().manual_seed(0))
    mean, precision = fit_ledoit_wolf(features)
    reference = LedoitWolf().fit(features.double().numpy())
    query = torch.randn(3, 40, generator=torch.Generator().manual_seed(1))
    expected = torch.from_numpy(reference.mahalanobis(query.double().numpy())).float()
    assert torch.allclose(mahalanobis_squared(query, mean, precision), expected, rtol=1e-4)
    with pytest.raises(InputError, match="at least 2"):
        fit_ledoit_wolf(features[:1])


@pytest.fixture(scope="module")
def image_mode_cutpaste():
    return cutpaste(**TINY_CUTPASTE).fit(texture(8, seed=1), device="cpu")


def test_density_is_fitted_on_clean_training_features(image_mode_cutpaste):
    detector, train = image_mode_cutpaste, texture(8, seed=1)
    with torch.no_grad():
        clean = detector.image_features(train)
        positions = detector.position_features(train).permute(0, 2, 3, 1).reshape(-1, clean.shape[1])
    mean, precision = fit_ledoit_wolf(clean)
    assert torch.allclose(detector.mean_, mean, atol=1e-6)
    assert torch.allclose(detector.precision_, precision, rtol=1e-4, atol=1e-3)
    assert torch.allclose(detector.map_mean_, fit_ledoit_wolf(positions)[0], atol=1e-6)
    with torch.no_grad():
        augmented, _ = augment.make_views(train, "3way", torch.Generator().manual_seed(0))
        assert not torch.allclose(detector.mean_, detector.image_features(augmented).mean(0), atol=1e-4)


def test_image_mode_scores_a_defect_higher(image_mode_cutpaste):
    defective, _ = paste_defect(texture(4, seed=3), seed=4)
    good, bad = image_mode_cutpaste.predict(texture(4, seed=2)), image_mode_cutpaste.predict(defective)
    assert bad.image_scores.min() > good.image_scores.max()
    assert bad.anomaly_maps.shape == (4, 64, 64)


def test_saved_state_holds_the_finetuned_backbone_under_the_starting_weights_id(image_mode_cutpaste, tmp_path):
    path = tmp_path / "cutpaste.safetensors"
    image_mode_cutpaste.save(path)
    _, _, tensors, metadata = read_detector_file(path)
    start = image_mode_cutpaste.make_extractor().state_dict()
    key = "body.conv1.weight"  # the stem: CutPaste trains the whole network
    assert not torch.equal(tensors[f"extractor.{key}"], start[key])
    assert metadata["weights_id"] == image_mode_cutpaste.extractor_.weights_id
    assert '"finetuned_backbone": true' in metadata["fit_info"]


def test_killed_cutpaste_fit_resumes_to_the_uninterrupted_result(tmp_path: Path, monkeypatch):
    train, images = texture(6, seed=1), texture(2, seed=2)
    params = {**TINY_PATCH, "epochs": 2}
    reference = cutpaste(**params).fit(train, device="cpu").predict(images)
    calls = {"n": 0}
    real = cutpaste_module.make_views

    def dies_in_epoch_two(*args):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(cutpaste_module, "make_views", dies_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        cutpaste(**params).fit(train, device="cpu", work_dir=tmp_path)
    monkeypatch.setattr(cutpaste_module, "make_views", real)
    resumed = cutpaste(**params).fit(train, device="cpu", work_dir=tmp_path).predict(images)
    assert torch.equal(resumed.image_scores, reference.image_scores)


class CountingImages(torch.utils.data.Dataset):
    """A dataset that counts its reads, standing in for images decoded from disk on every access."""

    def __init__(self, images: torch.Tensor) -> None:
        self.images, self.reads = images, 0

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> torch.Tensor:
        self.reads += 1
        return self.images[index]


def test_cutpaste_decodes_each_training_image_once_per_fit():
    # 3 epochs x 2 steps x 4 originals = 24 visits of 4 images: all served from memory after one read each.
    dataset = CountingImages(texture(4, seed=1))
    cutpaste(**{**TINY_CUTPASTE, "epochs": 3}).fit(TrainSet(dataset), device="cpu")
    assert dataset.reads == 4


def test_bad_hyper_parameters_are_one_line_errors():
    with pytest.raises(InputError, match="variant '4way' is unknown"):
        cutpaste(variant="4way")
    with pytest.raises(InputError, match="mode 'pixel' is unknown"):
        cutpaste(mode="pixel")
    with pytest.raises(InputError, match="steps_per_epoch must be >= 1"):
        cutpaste(steps_per_epoch=0)
    with pytest.raises(InputError, match="patch size 80 exceeds"):
        cutpaste(**{**TINY_PATCH, "patch_size": 80}).fit(texture(2, seed=1), device="cpu")
    with pytest.raises(InputError, match="crop .* must not exceed resize"):
        panda(resize=224, crop=256)


# -- PANDA --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fitted_panda():
    # A large lr (with the 1e-3 gradient-norm clip) so that one epoch visibly moves the trained stages.
    return panda(**TINY_PANDA, lr=1.0).fit(texture(8, seed=1), device="cpu")


def test_panda_keeps_batchnorm_statistics_and_trains_only_layer3_and_layer4(fitted_panda):
    start = fitted_panda.make_extractor().state_dict()
    trained = fitted_panda.extractor_.state_dict()
    statistics = [k for k in start if k.endswith(("running_mean", "running_var"))]
    assert statistics and all(torch.equal(start[k], trained[k]) for k in statistics)
    assert not torch.equal(start["body.layer4.1.conv2.weight"], trained["body.layer4.1.conv2.weight"])
    assert not torch.equal(start["body.layer3.0.conv1.weight"], trained["body.layer3.0.conv1.weight"])
    assert torch.equal(start["body.layer2.0.conv1.weight"], trained["body.layer2.0.conv1.weight"])


def test_panda_centre_is_the_mean_of_the_initial_features(fitted_panda):
    train = texture(8, seed=1)
    initial = panda(**TINY_PANDA, lr=1.0)
    initial.device_, initial.extractor_ = torch.device("cpu"), fitted_panda.make_extractor().eval()
    with torch.no_grad():
        expected = initial.features(train)[0].mean(0)
    assert torch.allclose(fitted_panda.center_, expected, atol=1e-6)
    assert not torch.allclose(fitted_panda.bank_.mean(0), expected, atol=1e-6)  # trained features moved


def test_panda_scores_are_sums_of_squared_distances_to_the_two_nearest(fitted_panda):
    defective, _ = paste_defect(texture(4, seed=3), seed=4)
    with torch.no_grad():
        features = fitted_panda.features(defective)[0]
    squared = torch.cdist(features.double(), fitted_panda.bank_.double()).pow(2)
    expected = squared.topk(2, dim=1, largest=False).values.sum(1).float()
    assert torch.allclose(fitted_panda.predict(defective).image_scores, expected, rtol=1e-4)
