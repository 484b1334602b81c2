"""Qualitative figures: image | ground truth | anomaly-map overlay, one row per test image (paper Fig. 7)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from fractalad.files import atomic_path


def pick_examples(labels: np.ndarray, count: int) -> list[int]:
    """Indices of up to `count` test images: mostly anomalous ones, at least one good one when present."""
    anomalous = [int(i) for i in np.flatnonzero(labels == 1)]
    good = [int(i) for i in np.flatnonzero(labels == 0)]
    n_good = min(len(good), max(1, count // 3)) if good else 0
    chosen = anomalous[: count - n_good] + good[:n_good]
    return chosen[:count]


def save_overlay(
    path: str | Path,
    image: np.ndarray,
    mask: np.ndarray,
    anomaly_map: np.ndarray,
    value_range: tuple[float, float],
    title: str = "",
) -> None:
    """Write one PNG: image (3, H, W) in [0, 1] | mask (H, W) | map (H, W) over the image."""
    path = Path(path)
    rgb = np.clip(np.transpose(image, (1, 2, 0)), 0.0, 1.0)
    figure, axes = plt.subplots(1, 3, figsize=(9, 3.2))
    axes[0].imshow(rgb)
    axes[0].set_title("image")
    axes[1].imshow(mask, cmap="gray", vmin=0, vmax=1)
    axes[1].set_title("ground truth")
    axes[2].imshow(rgb)
    shown = axes[2].imshow(anomaly_map, cmap="jet", alpha=0.5, vmin=value_range[0], vmax=value_range[1])
    axes[2].set_title("anomaly map")
    figure.colorbar(shown, ax=axes[2], fraction=0.046, pad=0.04)
    for axis in axes:
        axis.axis("off")
    if title:
        figure.suptitle(title, fontsize=9)
    try:
        with atomic_path(path) as tmp:
            figure.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    finally:
        plt.close(figure)


def save_overlays(
    out_dir: str | Path,
    images: Sequence[np.ndarray],
    masks: np.ndarray,
    maps: np.ndarray,
    names: Sequence[str],
    value_range: tuple[float, float],
) -> list[Path]:
    """One overlay PNG per selected image; images (3, H, W) each, masks/maps (N, H, W)."""
    written = []
    for image, mask, anomaly_map, name in zip(images, masks, maps, names, strict=True):
        target = Path(out_dir) / f"{name}.png"
        save_overlay(target, image, mask, anomaly_map, value_range, title=name)
        written.append(target)
    return written
