"""Overlay PNGs of a run's example maps: image | ground truth | anomaly map over the image, one per test image."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from fractalad.bench.artifacts import read_examples
from fractalad.report.png import save_figure


def save_overlay(
    path: str | Path,
    image: np.ndarray,
    mask: np.ndarray,
    anomaly_map: np.ndarray,
    value_range: tuple[float, float],
    title: str = "",
) -> Path:
    """Write one PNG: image (H, W, 3) uint8 | mask (H, W) | map (H, W) over the image."""
    figure, axes = plt.subplots(1, 3, figsize=(9, 3.2))
    axes[0].imshow(image)
    axes[0].set_title("image")
    axes[1].imshow(mask, cmap="gray", vmin=0, vmax=1)
    axes[1].set_title("ground truth")
    axes[2].imshow(image)
    shown = axes[2].imshow(anomaly_map, cmap="jet", alpha=0.5, vmin=value_range[0], vmax=value_range[1])
    axes[2].set_title("anomaly map")
    figure.colorbar(shown, ax=axes[2], fraction=0.046, pad=0.04)
    for axis in axes:
        axis.axis("off")
    if title:
        figure.suptitle(title, fontsize=9)
    return save_figure(figure, path, dpi=100)


def file_stem(name: str) -> str:
    """'test/crack/000.png' -> 'test_crack_000': a test image's relative path as a flat file name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(Path(name).with_suffix("")))


def save_example_overlays(examples_file: str | Path, out_dir: str | Path) -> list[Path]:
    """One overlay PNG per image of a run's examples.npz; one colour range shared by all its maps."""
    examples = read_examples(examples_file)
    maps = examples["maps"]  # (N, H, W) float32
    if len(maps) == 0:
        return []
    value_range = (float(maps.min()), float(maps.max()))
    return [
        save_overlay(
            Path(out_dir) / f"{i:03d}_{file_stem(name)}.png", image, mask, anomaly_map, value_range, name
        )
        for i, (image, mask, anomaly_map, name) in enumerate(
            zip(examples["images"], examples["masks"], maps, examples["names"].tolist(), strict=True)
        )
    ]
