"""Preview grids of rendered fractals (like the paper's Fig. 8)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from fractalad.files import atomic_path
from fractalad.fractals.render import RenderConfig, render


def render_grid(
    systems: Sequence[np.ndarray], config: RenderConfig, seed: int, columns: int = 8, gap: int = 2
) -> np.ndarray:
    """One render per system, tiled row by row on a white grid: (rows * (size + gap) + gap, ..., 3) uint8."""
    if len(systems) == 0:
        raise ValueError("render_grid needs at least one system")
    columns = max(1, min(columns, len(systems)))
    rows = -(-len(systems) // columns)
    step = config.size + gap
    grid = np.full((rows * step + gap, columns * step + gap, 3), 255, np.uint8)
    seeds = np.random.SeedSequence(seed).generate_state(len(systems), np.uint64)
    for index, system in enumerate(systems):
        row, col = divmod(index, columns)
        top, left = gap + row * step, gap + col * step
        grid[top : top + config.size, left : left + config.size] = render(
            system, config, int(seeds[index] >> 1)
        )
    return grid


def save_preview(
    path: str | Path, systems: Sequence[np.ndarray], config: RenderConfig, seed: int, columns: int = 8
) -> Path:
    """Render the grid and write it as a PNG atomically; returns the path."""
    path = Path(path)
    with atomic_path(path) as tmp:
        Image.fromarray(render_grid(systems, config, seed, columns)).save(tmp, format="PNG")
    return path
