"""Parity with Anomalib 2.7.0's PatchCore and PaDiM torch models on the same weights and images."""

from __future__ import annotations

import functools
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from fractalad.backbones import IMAGENET_NORMALIZATION, create_classifier, save_weights
from fractalad.detectors import create_detector, reference
from fractalad.metrics import image_auroc, pixel_auroc

pytestmark = [
    pytest.mark.parity,
    pytest.mark.skipif(
        not reference.anomalib_available(),
        reason="anomalib is not installed (pip install 'fractalad[parity]')",
    ),
]
SIZE = 96
BATCH = 8


def texture(n: int, seed: int) -> torch.Tensor:
    """(n, 3, SIZE, SIZE) in [0, 1]: stripes with a random phase and orientation jitter plus noise."""
    generator = torch.Generator().manual_seed(seed)
    coords = torch.arange(SIZE, dtype=torch.float32)
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    phase = torch.rand(n, 1, 1, 1, generator=generator) * 2 * math.pi
    stripes = 0.5 + 0.25 * torch.sin((xx + yy) * 2 * math.pi / 10 + phase)
    noise = 0.04 * torch.randn(n, 3, SIZE, SIZE, generator=generator)
    return (stripes * torch.tensor([0.9, 0.7, 0.5]).view(1, 3, 1, 1) + noise).clamp(0, 1)


def defects(images: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Paste blobs of varying size and contrast (not all obvious) -> (images, masks)."""
    generator = torch.Generator().manual_seed(seed)
    out, masks = images.clone(), torch.zeros(images.shape[0], SIZE, SIZE)
    for i in range(images.shape[0]):
        side = int(torch.randint(8, 20, (1,), generator=generator))
        top, left = (int(v) for v in torch.randint(4, SIZE - side - 4, (2,), generator=generator))
        strength = float(torch.rand(1, generator=generator)) * 0.4 + 0.5
        patch = out[i, :, top : top + side, left : left + side]
        out[i, :, top : top + side, left : left + side] = (1 - strength) * patch + strength * torch.rand(
            3, side, side, generator=generator
        )
        masks[i, top : top + side, left : left + side] = 1.0
    return out, masks


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory):
    """One random-seeded resnet18 weight file and a small category: 64 train, 24 good + 24 defective test.

    64 training images keep the 10 % coreset large enough that its randomness moves AUROC by < 1 point.
    """
    state = create_classifier("resnet18", 1000, seed=0).state_dict()
    path: Path = tmp_path_factory.mktemp("parity") / "resnet18-random.safetensors"
    meta = {"arch": "resnet18", "mean": "0.485,0.456,0.406", "std": "0.229,0.224,0.225", "source": "test"}
    save_weights(path, state, meta)
    train = texture(64, seed=1)
    bad, bad_masks = defects(texture(24, seed=3), seed=4)
    test = torch.cat([texture(24, seed=2), bad])
    labels = np.array([0] * 24 + [1] * 24)
    masks = torch.cat([torch.zeros(24, SIZE, SIZE), bad_masks]).numpy()
    return state, path, list(train.split(BATCH)), list(test.split(BATCH)), labels, masks


def ours(name: str, path: Path, train, test, **params):
    detector = create_detector(name, backbone="resnet18", weights=str(path), **params).fit(train, device="cpu")
    predictions = [detector.predict(batch) for batch in test]
    scores = torch.cat([p.image_scores for p in predictions])
    maps = torch.cat([p.anomaly_maps for p in predictions])
    return detector, scores, maps


def anomalib_seeded(run, seed: int = 0):
    # Anomalib draws from the global RNG (coreset start, projection); fork it so other tests are unaffected.
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return run()


def test_weights_took_in_both_extractors(setup):
    state, path, train, test, _, _ = setup
    detector, _, _ = ours("padim", path, train[:1], test[:1], n_features=100)
    model = reference.build_padim("resnet18", (1, 2, 3), state, detector.channel_index_)
    images = test[0]
    theirs = reference.extractor_features(model, images, IMAGENET_NORMALIZATION)
    mine = detector.extractor_(images)
    assert len(theirs) == len(mine) == 3
    for a, b in zip(mine, theirs, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    other = create_classifier("resnet18", 1000, seed=9).state_dict()
    random_init = reference.build_padim("resnet18", (1, 2, 3), other, detector.channel_index_)
    assert not torch.allclose(
        reference.extractor_features(random_init, images, IMAGENET_NORMALIZATION)[0], mine[0]
    )


def test_patchcore_scores_match_exactly_without_subsampling(setup):
    state, path, train, test, _, _ = setup
    _, scores, maps = ours("patchcore", path, train[:1], test, coreset_ratio=1.0, map_upsampling="nearest")
    model = reference.build_patchcore("resnet18", (2, 3), state)
    run = anomalib_seeded(
        lambda: reference.run_patchcore(model, train[:1], test, IMAGENET_NORMALIZATION, 1.0)
    )
    torch.testing.assert_close(scores, run.scores, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(maps, run.maps, rtol=1e-4, atol=1e-4)


def test_patchcore_auroc_within_one_point(setup):
    state, path, train, test, labels, masks = setup
    results = {"ours": [], "anomalib": []}
    for seed in (0, 1):  # both sides draw their coreset at random: compare means over the same seeds
        _, scores, maps = ours("patchcore", path, train, test, seed=seed)
        results["ours"].append((image_auroc(scores.numpy(), labels), pixel_auroc(maps.numpy(), masks)))
        model = reference.build_patchcore("resnet18", (2, 3), state)
        run = anomalib_seeded(
            functools.partial(reference.run_patchcore, model, train, test, IMAGENET_NORMALIZATION, 0.1), seed
        )
        results["anomalib"].append(
            (image_auroc(run.scores.numpy(), labels), pixel_auroc(run.maps.numpy(), masks))
        )
    mine, theirs = np.mean(results["ours"], axis=0), np.mean(results["anomalib"], axis=0)
    assert mine[0] > 0.9  # the comparison is only meaningful well away from chance
    assert abs(mine[0] - theirs[0]) <= 0.01, results
    assert abs(mine[1] - theirs[1]) <= 0.01, results


def test_padim_matches(setup):
    state, path, train, test, labels, masks = setup
    detector, scores, maps = ours("padim", path, train, test)
    model = reference.build_padim("resnet18", (1, 2, 3), state, detector.channel_index_)
    run = anomalib_seeded(lambda: reference.run_padim(model, train, test, IMAGENET_NORMALIZATION))
    torch.testing.assert_close(scores, run.scores, rtol=1e-3, atol=1e-3)
    assert abs(image_auroc(scores.numpy(), labels) - image_auroc(run.scores.numpy(), labels)) <= 0.01
    assert abs(pixel_auroc(maps.numpy(), masks) - pixel_auroc(run.maps.numpy(), masks)) <= 0.01
