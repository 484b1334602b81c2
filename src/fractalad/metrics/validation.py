"""Input checks shared by the metrics: shapes, finiteness, binary labels, both classes present."""

from __future__ import annotations

import numpy as np

from fractalad.errors import InputError


def as_scores(values: object, name: str) -> np.ndarray:
    """Return `values` as a real array whose dtype keeps every distinct score distinct (no lossy cast)."""
    array = np.asarray(values)
    if array.dtype.kind == "b" or array.dtype.kind in "iu":
        # Integer and boolean scores are exact in float64 up to 2**53, far beyond any score range.
        array = array.astype(np.float64)
    elif array.dtype == np.float16:
        array = array.astype(np.float32)
    elif array.dtype.kind != "f":
        raise InputError(f"{name} must hold real numbers, got dtype {array.dtype}; pass a float array")
    if array.size == 0:
        raise InputError(f"{name} is empty; pass at least one score")
    finite = np.isfinite(array)
    if not finite.all():
        n_nan = int(np.isnan(array).sum())
        n_inf = int(array.size - finite.sum()) - n_nan
        raise InputError(
            f"{name} contains {n_nan} NaN and {n_inf} infinite values; "
            "scores must be finite (check the detector output for overflow or division by zero)"
        )
    return array


def as_binary(values: object, name: str) -> np.ndarray:
    """Return `values` as a bool array, refusing anything other than 0/1 (or False/True)."""
    array = np.asarray(values)
    if array.dtype.kind == "b":
        return array
    if array.dtype.kind not in "iuf":
        raise InputError(f"{name} must be 0/1 or bool, got dtype {array.dtype}")
    is_one = array == 1
    if not np.logical_or(is_one, array == 0).all():
        bad = np.unique(array[np.logical_and(~is_one, array != 0)])[:5]
        raise InputError(
            f"{name} must be binary (0/1 or bool) but contains other values, e.g. {bad.tolist()}; "
            "binarise masks first (mask != 0 for index maps, mask > 127 for 0/255 images)"
        )
    return is_one


def check_same_shape(scores: np.ndarray, labels: np.ndarray, scores_name: str, labels_name: str) -> None:
    """Raise InputError unless both arrays have the same shape."""
    if scores.shape != labels.shape:
        raise InputError(
            f"{scores_name} has shape {scores.shape} but {labels_name} has shape {labels.shape}; "
            "they must match element for element"
        )


def check_map_shape(maps: np.ndarray, name: str) -> np.ndarray:
    """Return maps as (N, H, W); a single (H, W) map becomes N = 1."""
    if maps.ndim == 2:
        return maps[None]
    if maps.ndim != 3:
        raise InputError(f"{name} must have shape (N, H, W) or (H, W), got {maps.shape}")
    return maps


def check_both_classes(n_positive: int, n_negative: int, what: str) -> None:
    """Raise InputError when a ROC curve is undefined because one class is absent."""
    if n_positive == 0:
        raise InputError(
            f"{what} contain no anomalous element; the metric needs at least one anomalous "
            "(label/mask 1) and one normal (0) element"
        )
    if n_negative == 0:
        raise InputError(
            f"{what} contain no normal element; the metric needs at least one anomalous "
            "(label/mask 1) and one normal (0) element"
        )
