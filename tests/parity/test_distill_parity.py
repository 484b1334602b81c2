"""Parity of Reverse Distillation and STFPM with Anomalib 2.7.0: same weights, initial networks, batches, epochs.

Both sides start from the same teacher weights and the same untrained bottleneck/decoder/student tensors and see
the same shuffled batches, so with Anomalib's hard-coded optimiser settings ours reproduces its scores: STFPM's
(SGD) to 1e-6, RD's to 3 % after 12 steps, because Adam's per-parameter step normalisation amplifies the float
noise of different batchings (2e-3 after 4 steps). RD's scores sit within 3-5 % of each other, so that drift
reorders some of them (rank correlation 0.91 and 0.99) and moves single-seed AUROC by up to 5 points: for RD the
reproduction is judged on the scores and their ranks, not on AUROC. With our
defaults (the original recipes) one deviation remains per method, measured here (3 epochs, 12 steps, random
teacher, 2 seeds, float32 as Anomalib):
- RD: Adam betas (0.5, 0.999) as in RD4AD vs Anomalib's (0.5, 0.99): image AUROC within 1 point;
- STFPM: weight decay 1e-4 as in the official code vs Anomalib's 1e-3. With SGD at lr 0.4 and momentum 0.9 this
  short, unconverged fit is chaotic: the 10x decay moves single-seed AUROC by -8 to +4 points (mean -2.4), so
  the default comparison is held to 5 points and the exact reproduction carries the parity claim.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from fractalad.backbones import create_classifier, save_weights
from fractalad.detectors import create_detector, reference
from fractalad.detectors.base import TrainSet
from fractalad.metrics import image_auroc

pytestmark = [
    pytest.mark.parity,
    pytest.mark.skipif(
        not reference.anomalib_available(),
        reason="anomalib is not installed (pip install 'fractalad[parity]')",
    ),
]
SIZE = 64
EPOCHS = 3
BATCH = 4
N_TEST = 24  # per class: one swapped pair moves AUROC by 1/576
# How far our defaults may sit from Anomalib (mean image AUROC over 2 seeds); see the module docstring.
DEFAULT_TOLERANCE = {"reverse_distillation": 0.02, "stfpm": 0.05}
# Anomalib's hard-coded settings, as our hyper-parameters.
ANOMALIB_KNOBS = {"reverse_distillation": {"betas": (0.5, 0.99)}, "stfpm": {"weight_decay": 1e-3}}
# How closely ours with Anomalib's settings reproduces its scores (measured: 2.7e-2 and 7e-7), and their ranks.
REPRODUCTION_RTOL = {"reverse_distillation": 0.03, "stfpm": 1e-5}
MIN_RANK_CORRELATION = 0.85


def texture(n: int, seed: int) -> torch.Tensor:
    """(n, 3, SIZE, SIZE) in [0, 1]: stripes with a random phase plus noise."""
    generator = torch.Generator().manual_seed(seed)
    coords = torch.arange(SIZE, dtype=torch.float32)
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    phase = torch.rand(n, 1, 1, 1, generator=generator) * 2 * math.pi
    stripes = 0.5 + 0.25 * torch.sin((xx + yy) * 2 * math.pi / 10 + phase)
    noise = 0.04 * torch.randn(n, 3, SIZE, SIZE, generator=generator)
    return (stripes * torch.tensor([0.9, 0.7, 0.5]).view(1, 3, 1, 1) + noise).clamp(0, 1)


def defects(images: torch.Tensor, seed: int) -> torch.Tensor:
    """Blend noise squares of varying size and strength into the images."""
    generator = torch.Generator().manual_seed(seed)
    out = images.clone()
    for i in range(images.shape[0]):
        side = int(torch.randint(10, 17, (1,), generator=generator))
        top, left = (int(v) for v in torch.randint(4, SIZE - side - 4, (2,), generator=generator))
        strength = float(torch.rand(1, generator=generator)) * 0.2 + 0.8
        patch = out[i, :, top : top + side, left : left + side]
        noise = torch.rand(3, side, side, generator=generator)
        out[i, :, top : top + side, left : left + side] = (1 - strength) * patch + strength * noise
    return out


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory):
    """A random-seeded resnet18 weight file and a small category: 16 train, 24 good + 24 defective test."""
    path: Path = tmp_path_factory.mktemp("distill-parity") / "resnet18-random.safetensors"
    meta = {"arch": "resnet18", "mean": "0.485,0.456,0.406", "std": "0.229,0.224,0.225", "source": "test"}
    save_weights(path, create_classifier("resnet18", 1000, seed=0).state_dict(), meta)
    train = TrainSet.from_tensor(texture(16, seed=1))
    test = torch.cat([texture(N_TEST, seed=2), defects(texture(N_TEST, seed=3), seed=4)])
    return path, train, list(test.split(16)), np.array([0] * N_TEST + [1] * N_TEST)


def detector(name: str, path: Path, seed: int, **params):
    return create_detector(
        name, backbone="resnet18", weights=str(path), epochs=EPOCHS, batch_size=BATCH, seed=seed, **params
    )


def scores_of(model, batches) -> torch.Tensor:
    return torch.cat([model.predict(batch).image_scores for batch in batches])


@pytest.mark.parametrize("name", ["reverse_distillation", "stfpm"])
def test_matches_anomalib(setup, name):
    from fractalad.parity.distill import run_anomalib

    path, train, test, labels = setup
    auroc = {"ours": [], "ours with Anomalib's settings": [], "anomalib": []}
    for seed in (0, 1):
        theirs = run_anomalib(detector(name, path, seed), train, test)
        same = detector(name, path, seed, **ANOMALIB_KNOBS[name]).fit(train, device="cpu", precision="fp32")
        same_scores = scores_of(same, test)
        # Same weights, batches and settings: the same scores up to float noise (see the module docstring).
        torch.testing.assert_close(same_scores, theirs.scores, rtol=REPRODUCTION_RTOL[name], atol=1e-6)
        rank_correlation = spearmanr(same_scores.numpy(), theirs.scores.numpy()).statistic
        assert rank_correlation >= MIN_RANK_CORRELATION, (seed, rank_correlation)
        ours = scores_of(detector(name, path, seed).fit(train, device="cpu", precision="fp32"), test)
        auroc["ours"].append(image_auroc(ours.numpy(), labels))
        auroc["ours with Anomalib's settings"].append(image_auroc(same_scores.numpy(), labels))
        auroc["anomalib"].append(image_auroc(theirs.scores.numpy(), labels))
    mean = {key: float(np.mean(values)) for key, values in auroc.items()}
    assert mean["anomalib"] > 0.75, auroc  # the comparison is only meaningful away from chance
    if name == "stfpm":  # exact reproduction: the same ranking, so the same AUROC
        assert mean["ours with Anomalib's settings"] == pytest.approx(mean["anomalib"], abs=1e-9), auroc
    assert abs(mean["ours"] - mean["anomalib"]) <= DEFAULT_TOLERANCE[name], auroc


@pytest.mark.parametrize("name", ["reverse_distillation", "stfpm"])
def test_bf16_autocast_trains_as_float32_does(setup, name):
    """Both train under bf16 autocast by default where bf16 is native. Each epoch's mean training loss at bf16
    stays within 5 % of float32's (measured: within 3.3 %). Image AUROC is too noisy to hold a short fit to: single
    seeds move by up to 10 points either way, and the mean of 12 seeds by about 2 (RESULTS.md, bf16 autocast)."""
    path, train, _, _ = setup
    for seed in (0, 1):
        losses = {}
        for precision in ("fp32", "bf16"):
            fitted = detector(name, path, seed).fit(train, device="cpu", precision=precision)
            losses[precision] = fitted.fit_info_["losses"]
        torch.testing.assert_close(losses["bf16"], losses["fp32"], rtol=0.05, atol=0.0)
        # A fit that learns, not noise around a plateau.
        assert losses["fp32"][-1] < 0.5 * losses["fp32"][0], losses


def test_stfpm_teacher_is_ours_not_a_download(setup):
    from fractalad.parity.distill import build_stfpm

    path, _, test, _ = setup
    ours = detector("stfpm", path, 0)
    model = build_stfpm(ours).eval()
    images = test[0]
    normalised = (images - ours.extractor_.mean) / ours.extractor_.std
    with torch.no_grad():
        theirs = list(model.teacher_model(normalised).values())
        mine = ours.extractor_(images)
        student = list(model.student_model(normalised).values())
        mine_student = ours.student_(images)
    for a, b in zip(mine + mine_student, theirs + student, strict=True):
        torch.testing.assert_close(a, b)
