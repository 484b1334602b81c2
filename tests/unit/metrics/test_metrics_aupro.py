"""AUPRO against the SPECS section 7 vectors and an independent brute-force threshold sweep."""

from __future__ import annotations

import numpy as np
import pytest

from fractalad.errors import InputError
from fractalad.metrics import aupro
from fractalad.metrics.pro import region_weights


def spec_vector_a() -> tuple[np.ndarray, np.ndarray]:
    maps = np.array(
        [
            [[0.9, 0.8, 0.1, 0.0], [0.7, 0.6, 0.2, 0.1], [0.1, 0.2, 0.3, 0.4], [0.0, 0.1, 0.5, 0.95]],
            [
                [0.05, 0.15, 0.25, 0.35],
                [0.45, 0.55, 0.65, 0.75],
                [0.85, 0.12, 0.22, 0.32],
                [0.42, 0.52, 0.62, 0.72],
            ],
        ]
    )
    masks = np.zeros_like(maps, dtype=np.uint8)
    masks[0, :2, :2] = 1
    masks[0, 3, 3] = 1
    return maps, masks


def regions_by_flood_fill(mask: np.ndarray) -> list[list[tuple[int, int]]]:
    """8-connected regions of a 2-D bool mask, found by a plain stack flood fill (independent of scipy)."""
    seen = np.zeros_like(mask, dtype=bool)
    regions = []
    for start in zip(*np.nonzero(mask), strict=True):
        if seen[start]:
            continue
        stack, region = [start], []
        seen[start] = True
        while stack:
            r, c = stack.pop()
            region.append((r, c))
            for dr in (-1, 0, 1):
                for dc in (-1, 0, 1):
                    rr, cc = r + dr, c + dc
                    inside = 0 <= rr < mask.shape[0] and 0 <= cc < mask.shape[1]
                    if inside and mask[rr, cc] and not seen[rr, cc]:
                        seen[rr, cc] = True
                        stack.append((rr, cc))
        regions.append(region)
    return regions


def brute_force_aupro(maps: np.ndarray, masks: np.ndarray, fpr_limit: float) -> float:
    """Threshold sweep over every distinct score, then the MVTec trapezoid with interpolation at the limit."""
    truth = masks.astype(bool)
    regions = [(i, region) for i in range(len(maps)) for region in regions_by_flood_fill(truth[i])]
    negatives = maps[~truth]
    fprs, pros = [0.0], [0.0]
    for t in np.unique(maps)[::-1]:
        fprs.append(float(np.mean(negatives >= t)))
        pros.append(float(np.mean([np.mean([maps[i][p] >= t for p in region]) for i, region in regions])))
    fprs.append(1.0)
    pros.append(1.0)
    area = 0.0
    for k in range(1, len(fprs)):
        x0, x1, y0, y1 = fprs[k - 1], fprs[k], pros[k - 1], pros[k]
        if x0 >= fpr_limit:
            break
        if x1 > fpr_limit:
            y1 = y0 + (y1 - y0) * (fpr_limit - x0) / (x1 - x0)
            x1 = fpr_limit
        area += (x1 - x0) * (y0 + y1) / 2
    return area / fpr_limit


def test_spec_vector_a() -> None:
    maps, masks = spec_vector_a()
    assert aupro(maps, masks, 0.3) == pytest.approx(31 / 36, abs=1e-12)
    assert aupro(maps, masks, 1.0) == pytest.approx(23 / 24, abs=1e-12)


@pytest.mark.parametrize("columns", [[3], [1, 3, 5]])
def test_spec_vector_b(columns: list[int]) -> None:
    maps = (np.arange(2800) / 2800).reshape(400, 7)
    masks = np.zeros_like(maps)
    masks[:, columns] = 1
    assert aupro(maps, masks, 1 / 3) == pytest.approx(1 / 6, abs=1e-3)
    assert aupro(maps[None], masks[None], 1 / 3) == aupro(maps, masks, 1 / 3)


def test_spec_vector_c_diagonal_is_one_region() -> None:
    _, count = region_weights(np.array([[[1, 0], [0, 1]]], dtype=bool))
    assert count == 1
    # A 2x2 block touching a single pixel only at a corner: one region of 5 pixels when 8-connected (PRO 1/5
    # once the single pixel is detected), two regions when 4-connected (PRO 1/2).
    masks = np.zeros((1, 4, 4), dtype=np.uint8)
    masks[0, :2, :2] = 1
    masks[0, 2, 2] = 1
    maps = np.zeros((1, 4, 4))
    maps[0, 2, 2] = 1.0
    assert aupro(maps, masks, 1.0) == pytest.approx((1 / 5 + 1) / 2, abs=1e-12)
    assert aupro(maps, masks, 1.0) == pytest.approx(brute_force_aupro(maps, masks, 1.0), abs=1e-12)


def random_case(rng: np.random.Generator, n: int, size: int, levels: int) -> tuple[np.ndarray, np.ndarray]:
    # Quantised scores create many ties; blobs from thresholded smooth noise create regions of many shapes.
    maps = np.round(rng.random((n, size, size)) * levels) / levels
    noise = rng.random((n, size + 2, size + 2))
    smooth = (noise[:, :-2, 1:-1] + noise[:, 2:, 1:-1] + noise[:, 1:-1, :-2] + noise[:, 1:-1, 2:]) / 4
    masks = (smooth > 0.72).astype(np.uint8)
    maps = maps + 0.3 * masks * rng.random((n, size, size))
    return maps, masks


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("fpr_limit", [0.05, 0.3, 1.0])
def test_matches_brute_force_on_random_data(seed: int, fpr_limit: float) -> None:
    rng = np.random.default_rng(seed)
    maps, masks = random_case(rng, n=3, size=10, levels=[5, 20, 1000][seed % 3])
    if masks.sum() == 0:
        masks[0, 0, 0] = 1
    assert aupro(maps, masks, fpr_limit) == pytest.approx(
        brute_force_aupro(maps, masks, fpr_limit), abs=1e-10
    )


def test_float32_and_float64_agree_and_result_in_unit_interval() -> None:
    rng = np.random.default_rng(7)
    maps, masks = random_case(rng, n=4, size=16, levels=50)
    for fpr_limit in (0.01, 0.3, 1.0):
        value = aupro(maps, masks, fpr_limit)
        assert 0.0 <= value <= 1.0
        assert aupro(maps.astype(np.float32), masks.astype(bool), fpr_limit) == pytest.approx(value, abs=1e-6)
    perfect = masks.astype(np.float64)
    assert aupro(perfect, masks) == pytest.approx(1.0)
    assert aupro(1.0 - perfect, masks) == pytest.approx(0.0)
    assert aupro(np.zeros_like(perfect), masks, 0.3) == pytest.approx(0.15)


def test_invariant_to_monotone_transform() -> None:
    rng = np.random.default_rng(3)
    maps, masks = random_case(rng, n=2, size=12, levels=30)
    assert aupro(np.exp(3 * maps), masks) == pytest.approx(aupro(maps, masks), abs=1e-12)


@pytest.mark.parametrize(
    ("maps", "masks", "limit", "message"),
    [
        (np.zeros((2, 4, 4)), np.zeros((2, 4, 5)), 0.3, "shape"),
        (np.full((1, 2, 2), np.nan), np.eye(2)[None], 0.3, "NaN"),
        (np.array([[[np.inf, 0.0], [0.0, 0.0]]]), np.eye(2)[None], 0.3, "infinite"),
        (np.zeros((1, 2, 2)), np.full((1, 2, 2), 255), 0.3, "binary"),
        (np.zeros((1, 2, 2)), np.zeros((1, 2, 2)), 0.3, "no anomalous"),
        (np.zeros((1, 2, 2)), np.ones((1, 2, 2)), 0.3, "no normal"),
        (np.zeros((1, 2, 2)), np.eye(2)[None], 0.0, "fpr_limit"),
        (np.zeros((1, 2, 2)), np.eye(2)[None], 1.5, "fpr_limit"),
        (np.zeros((1, 1, 2, 2)), np.zeros((1, 1, 2, 2)), 0.3, "(N, H, W)"),
    ],
)
def test_bad_input_raises(maps: np.ndarray, masks: np.ndarray, limit: float, message: str) -> None:
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        aupro(maps, masks, limit)


def test_inputs_are_not_modified() -> None:
    maps, masks = random_case(np.random.default_rng(9), n=2, size=8, levels=10)
    before = maps.copy(), masks.copy()
    aupro(maps, masks)
    assert np.array_equal(maps, before[0]) and np.array_equal(masks, before[1])
