"""The frozen-feature cache: a cached fit is the same computation as one that recomputes features per batch."""

from __future__ import annotations

import pytest
import torch
from conftest import texture

from fractalad.backbones.factory import create_backbone
from fractalad.detectors import create_detector
from fractalad.detectors.base import TrainSet
from fractalad.detectors.components import feature_cache
from fractalad.detectors.components.feature_cache import FrozenFeatures, frozen_features

# 8 images in batches of 3: shuffled, unequal batches (3, 3, 2), so a wrong order or a wrong remainder shows.
# (No batch of one: oneDNN computes a lone 64 px image's convolutions by another kernel, which differs from the
# batched result in the last bits; for batches of two or more a feature map does not depend on its batch-mates.)
CASES = {
    "fastflow": {"input_size": 64, "flow_steps": 2},
    "cflow": {"sub_epochs": 1, "fiber_batch_size": 16, "coupling_blocks": 2},
    "reverse_distillation": {"backbone": "resnet18"},
    "stfpm": {},
}


def fit(name: str, cache_fraction: float, monkeypatch: pytest.MonkeyPatch, **extra):
    monkeypatch.setattr(feature_cache, "CACHE_MEMORY_FRACTION", cache_fraction)
    params = {
        "backbone": "resnet18",
        "weights": "random",
        "epochs": 2,
        "batch_size": 3,
        **CASES[name],
        **extra,
    }
    return create_detector(name, **params).fit(texture(8, seed=1), device="cpu")


@pytest.mark.parametrize("name", sorted(CASES))
def test_cached_fit_equals_recomputed_fit(name, monkeypatch):
    cached = fit(name, 0.5, monkeypatch)
    recomputed = fit(name, 0.0, monkeypatch)  # a zero budget: features recomputed for every batch
    assert cached.fit_info_["feature_cache"].startswith("cached")
    assert recomputed.fit_info_["feature_cache"].startswith("recomputed per batch")
    assert cached.fit_info_["losses"] == recomputed.fit_info_["losses"]
    mine, theirs = cached.state_tensors(), recomputed.state_tensors()
    assert mine.keys() == theirs.keys()
    for key in mine:
        assert torch.equal(mine[key], theirs[key]), key


def test_cached_validation_split_selects_the_same_epoch(monkeypatch):
    cached = fit("stfpm", 0.5, monkeypatch, validation_fraction=0.25)
    recomputed = fit("stfpm", 0.0, monkeypatch, validation_fraction=0.25)
    assert cached.fit_info_["validation_scores"] == recomputed.fit_info_["validation_scores"]
    assert cached.fit_info_["selected_epoch"] == recomputed.fit_info_["selected_epoch"]


def test_cached_batches_follow_the_trainset_order():
    images = texture(8, seed=1)
    extractor = create_backbone("resnet18", "random", (1, 2), seed=0)
    train = TrainSet.from_tensor(images)
    cache = FrozenFeatures(train, extractor, torch.device("cpu"), batch_size=4, keep_images=True)
    assert cache.cached
    generator_a, generator_b = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    expected = list(train.batches(3, shuffle=True, generator=generator_a))
    got = list(cache.batches(3, shuffle=True, generator=generator_b))
    assert [len(b) for b in got] == [3, 3, 2]
    for image_batch, feature_batch in zip(expected, got, strict=True):
        assert torch.equal(feature_batch.images, image_batch)
        for a, b in zip(feature_batch.features, frozen_features(extractor, image_batch, torch.device("cpu"))):
            assert torch.equal(a, b)


def test_budget_too_small_keeps_nothing():
    extractor = create_backbone("resnet18", "random", (1,), seed=0)
    train = TrainSet.from_tensor(texture(4, seed=1))
    # One 64 px image's layer1 map is 64 x 16 x 16 float32 = 64 KiB; four need 256 KiB.
    small = FrozenFeatures(
        train, extractor, torch.device("cpu"), batch_size=2, budget_bytes=4 * 64 * 1024 - 1
    )
    exact = FrozenFeatures(train, extractor, torch.device("cpu"), batch_size=2, budget_bytes=4 * 64 * 1024)
    assert not small.cached and small.cache is None
    assert exact.cached and exact.cache_bytes == 4 * 64 * 1024
    assert small.describe().startswith("recomputed per batch") and exact.describe().startswith("cached")
