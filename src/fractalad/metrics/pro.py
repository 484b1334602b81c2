"""Exact area under the per-region-overlap (PRO) curve up to an FPR limit (MVTec AD definition)."""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from fractalad.errors import InputError
from fractalad.metrics.roc import CHUNK, ranks_in_sorted
from fractalad.metrics.validation import (
    as_binary,
    as_scores,
    check_both_classes,
    check_map_shape,
    check_same_shape,
)

EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


def region_weights(truth: np.ndarray) -> tuple[np.ndarray, int]:
    """Per defect pixel 1 / size of its 8-connected region, in `truth[truth]` order; and the region count.

    truth: (N, H, W) bool. Returns ((P,) float64, number of regions over all images).
    """
    parts: list[np.ndarray] = []
    n_regions = 0
    for mask in truth:
        if not mask.any():
            continue
        labelled, count = ndimage.label(mask, structure=EIGHT_CONNECTED)
        sizes = np.bincount(labelled.ravel(), minlength=count + 1)
        parts.append(1.0 / sizes[labelled[mask]])
        n_regions += count
    return np.concatenate(parts), n_regions


def split_at_limit(negatives: np.ndarray, crossing: int) -> tuple[np.ndarray, int, int, int]:
    """Partition the normal-pixel scores (in place) at the one where the FPR reaches the limit.

    crossing: rank (1 = highest) of that score. Returns (scores >= it, sorted ascending; how many lie below
    the sorted part; number of scores < it; number of scores <= it). Only the top part is sorted: O(n) plus
    the top fraction's sort instead of sorting every pixel.
    """
    below = negatives.size - crossing
    negatives.partition(below)
    top = np.sort(negatives[below:])
    threshold = top[0]
    tied_below = int(np.count_nonzero(negatives[:below] == threshold))
    return top, below, below - tied_below, below + int(np.searchsorted(top, threshold, side="right"))


def weighted_sums(
    positives: np.ndarray, weights: np.ndarray, top: np.ndarray, below: int, at_or_below: int
) -> tuple[float, float, float]:
    """Sums over defect pixels for the area above the crossing tie run and the PRO values around it.

    Returns (sum of w * (#normal in (t, s] + #normal in (t, s)), sum of w over s > t, sum of w over s >= t)
    with t = top[0] the crossing score; `below` normal scores lie under `top`, `at_or_below` are <= t.
    """
    threshold = top[0]
    area_sum = above = at_or_above = 0.0
    for start in range(0, positives.size, CHUNK):
        scores = positives[start : start + CHUNK]
        chunk_weights = weights[start : start + CHUNK]
        lower, lower_or_equal = ranks_in_sorted(top, scores)
        # Only normal pixels ranked above the crossing run contribute whole FPR steps.
        counts = np.maximum(below + lower_or_equal - at_or_below, 0) + np.maximum(
            below + lower - at_or_below, 0
        )
        area_sum += float(np.dot(chunk_weights, counts))
        above += float(chunk_weights[scores > threshold].sum())
        at_or_above += float(chunk_weights[scores >= threshold].sum())
    return area_sum, above, at_or_above


def aupro(anomaly_maps: np.ndarray, masks: np.ndarray, fpr_limit: float = 0.3) -> float:
    """Normalised area under the PRO curve for FPR in [0, fpr_limit], exact (SPECS section 7), in [0, 1].

    anomaly_maps: (N, H, W) float, higher = more anomalous; masks: (N, H, W) in {0, 1}.
    The curve has one point per distinct score (the last point of each tie run) and starts at (0, 0); an
    FPR step of tied normal pixels is a straight segment, so integrating it pixel by pixel is exact.
    """
    if not 0.0 < float(fpr_limit) <= 1.0:
        raise InputError(f"fpr_limit must be in (0, 1], got {fpr_limit}; the usual value is 0.3")
    maps = check_map_shape(as_scores(anomaly_maps, "anomaly_maps"), "anomaly_maps")
    truth = check_map_shape(as_binary(masks, "masks"), "masks")
    check_same_shape(maps, truth, "anomaly_maps", "masks")
    positives = maps[truth]
    check_both_classes(positives.size, maps.size - positives.size, "masks")
    negatives = maps[~truth]
    n_neg = negatives.size
    crossing = min(max(math.ceil(fpr_limit * n_neg), 1), n_neg)
    top, below, first, last = split_at_limit(negatives, crossing)
    weights, n_regions = region_weights(truth)
    area_sum, above, at_or_above = weighted_sums(positives, weights, top, below, last)
    # The crossing run spans FPR [fpr_start, fpr_end] on a straight segment; cut it at the limit.
    fpr_start, fpr_end = (n_neg - last) / n_neg, (n_neg - first) / n_neg
    pro_start, pro_end = above / n_regions, at_or_above / n_regions
    width = max(fpr_limit - fpr_start, 0.0)
    pro_at_limit = pro_start + (pro_end - pro_start) * width / (fpr_end - fpr_start)
    area = area_sum / (2.0 * n_neg * n_regions) + width * (pro_start + pro_at_limit) / 2.0
    return float(min(max(area / fpr_limit, 0.0), 1.0))
