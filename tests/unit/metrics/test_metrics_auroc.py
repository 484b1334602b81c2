"""Image and pixel AUROC against a brute-force pairwise count (ties count one half)."""

from __future__ import annotations

import numpy as np
import pytest

from fractalad.errors import InputError
from fractalad.metrics import image_auroc, pixel_auroc, roc


def pairwise_auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    positives = scores[labels == 1][:, None]
    negatives = scores[labels == 0][None, :]
    return float(((positives > negatives) + 0.5 * (positives == negatives)).mean())


@pytest.mark.parametrize("seed", range(8))
def test_image_auroc_matches_pairwise_count(seed: int) -> None:
    rng = np.random.default_rng(seed)
    # Mostly negatives or mostly positives: both ranking directions of auroc_from_split are exercised.
    labels = (rng.random(60) < (0.2 if seed % 2 else 0.8)).astype(int)
    labels[:2] = [0, 1]
    scores = np.round(rng.normal(size=60) + labels, decimals=seed % 3)  # few decimals = many ties
    assert image_auroc(scores, labels) == pytest.approx(pairwise_auroc(scores, labels), abs=1e-12)


def test_image_auroc_known_values() -> None:
    assert image_auroc(np.array([0.1, 0.2, 0.3, 0.4]), np.array([0, 0, 1, 1])) == 1.0
    assert image_auroc(np.array([0.4, 0.3, 0.2, 0.1]), np.array([0, 0, 1, 1])) == 0.0
    assert image_auroc(np.array([0.5, 0.5, 0.5]), np.array([0, 1, 1])) == 0.5
    assert image_auroc(np.array([1, 2, 3]), np.array([True, False, True])) == 0.5


def test_pixel_auroc_matches_pairwise_count_and_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(11)
    masks = (rng.random((3, 9, 9)) > 0.8).astype(np.uint8)
    maps = np.round(rng.random((3, 9, 9)) + 0.4 * masks, 1).astype(np.float32)
    expected = pairwise_auroc(maps.ravel(), masks.ravel())
    assert pixel_auroc(maps, masks) == pytest.approx(expected, abs=1e-12)
    monkeypatch.setattr(roc, "CHUNK", 7)  # many chunks must give the same integer counts
    assert pixel_auroc(maps, masks) == pytest.approx(expected, abs=1e-12)
    assert pixel_auroc(maps[0], masks[0]) == pytest.approx(pairwise_auroc(maps[0].ravel(), masks[0].ravel()))


@pytest.mark.parametrize(
    ("scores", "labels", "message"),
    [
        (np.zeros(3), np.array([0, 1]), "shape"),
        (np.array([0.1, np.nan]), np.array([0, 1]), "NaN"),
        (np.array([0.1, 0.2]), np.array([0, 2]), "binary"),
        (np.array([0.1, 0.2]), np.array([1, 1]), "no normal"),
        (np.array([0.1, 0.2]), np.array([0, 0]), "no anomalous"),
        (np.zeros((2, 2)), np.zeros((2, 2)), "one value per image"),
        (np.array(["a", "b"]), np.array([0, 1]), "real numbers"),
    ],
)
def test_image_auroc_bad_input(scores: np.ndarray, labels: np.ndarray, message: str) -> None:
    with pytest.raises(InputError, match=message):
        image_auroc(scores, labels)


def test_pixel_auroc_bad_input() -> None:
    with pytest.raises(InputError, match="shape"):
        pixel_auroc(np.zeros((2, 4, 4)), np.zeros((2, 4, 3)))
    with pytest.raises(InputError, match="no anomalous"):
        pixel_auroc(np.zeros((2, 4, 4)), np.zeros((2, 4, 4)))
    with pytest.raises(InputError, match="binary"):
        pixel_auroc(np.zeros((1, 2, 2)), np.full((1, 2, 2), 0.5))


def test_inputs_are_not_modified() -> None:
    rng = np.random.default_rng(5)
    maps = rng.random((2, 6, 6)).astype(np.float32)
    masks = (rng.random((2, 6, 6)) > 0.5).astype(np.uint8)
    scores, labels = maps[:, 0, 0].copy(), np.array([0, 1])
    before = (maps.copy(), masks.copy(), scores.copy())
    pixel_auroc(maps, masks)
    image_auroc(scores, labels)
    assert np.array_equal(maps, before[0]) and np.array_equal(masks, before[1])
    assert np.array_equal(scores, before[2])
