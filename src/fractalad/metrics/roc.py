"""Exact ROC AUC for image scores and for all pixels of a test set (ties count one half)."""

from __future__ import annotations

import numpy as np

from fractalad.errors import InputError
from fractalad.metrics.validation import (
    as_binary,
    as_scores,
    check_both_classes,
    check_map_shape,
    check_same_shape,
)

# The smaller class is ranked in the sorted larger one in chunks so that the int64 rank arrays stay small
# (a VisA category at 256 px has ~13 M pixels).
CHUNK = 1 << 20


def ranks_in_sorted(sorted_values: np.ndarray, queries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per query: number of sorted values strictly below it and number below or equal (both int64, (Q,))."""
    below = np.searchsorted(sorted_values, queries, side="left")
    below_or_equal = np.searchsorted(sorted_values, queries, side="right")
    return below, below_or_equal


def auroc_from_split(positives: np.ndarray, negatives: np.ndarray) -> float:
    """AUC = P(s+ > s-) + P(s+ = s-) / 2, counted exactly.

    The larger class is sorted in place (callers pass copies) and the smaller one ranked in it: NumPy's
    vectorised sort is far faster than binary searches of millions of unordered queries.
    """
    n_pos, n_neg = positives.size, negatives.size
    # 2 * wins + ties, as exact integers (at most 2 * n_pos * n_neg < 2**63).
    twice_wins = 0
    if n_pos > n_neg:
        positives.sort()
        sorted_positives = positives
        for start in range(0, n_neg, CHUNK):
            below, below_or_equal = ranks_in_sorted(sorted_positives, negatives[start : start + CHUNK])
            # Per negative: positives above it count twice, tied ones once.
            twice_wins += 2 * n_pos * below.size - int(below.sum()) - int(below_or_equal.sum())
    else:
        negatives.sort()
        sorted_negatives = negatives
        for start in range(0, n_pos, CHUNK):
            below, below_or_equal = ranks_in_sorted(sorted_negatives, positives[start : start + CHUNK])
            twice_wins += int(below.sum()) + int(below_or_equal.sum())
    return twice_wins / (2.0 * n_pos * n_neg)


def image_auroc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Exact area under the ROC curve of image scores (N,) against labels (N,) in {0, 1}."""
    scores = as_scores(scores, "scores")
    labels = as_binary(labels, "labels")
    if scores.ndim != 1:
        raise InputError(
            f"scores must be one value per image, shape (N,), got {scores.shape}; pool the maps first"
        )
    check_same_shape(scores, labels, "scores", "labels")
    positives, negatives = scores[labels], scores[~labels]
    check_both_classes(positives.size, negatives.size, "labels")
    return auroc_from_split(positives, negatives)


def pixel_auroc(anomaly_maps: np.ndarray, masks: np.ndarray) -> float:
    """Exact ROC AUC over every pixel of every map; maps (N, H, W) float, masks (N, H, W) in {0, 1}."""
    maps = check_map_shape(as_scores(anomaly_maps, "anomaly_maps"), "anomaly_maps")
    truth = check_map_shape(as_binary(masks, "masks"), "masks")
    check_same_shape(maps, truth, "anomaly_maps", "masks")
    positives = maps[truth]
    negatives = maps[~truth]
    check_both_classes(positives.size, negatives.size, "masks")
    return auroc_from_split(positives, negatives)
