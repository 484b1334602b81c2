"""Diamond-square noise backgrounds: a compiled loop for NumPy, a slicing-only version shared with torch."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from fractalad.fractals.kernels import diamond_square_grid


def grid_size(size: int) -> int:
    """Smallest 2^k + 1 >= size (diamond-square needs that grid)."""
    return 2 ** max(1, math.ceil(math.log2(max(size - 1, 1)))) + 1


def diamond_square_fill(grid: Any, noise: Callable[[tuple[int, ...]], Any], decay: Any) -> Any:
    """Fill grid (..., n, n) (corners already set) level by level; noise(shape) ~ U(-1, 1); returns grid.

    decay (scalar or broadcastable (..., 1, 1)) scales the noise amplitude from one level to the next.
    """
    n = grid.shape[-1]
    step = n - 1
    scale = decay * 0 + 1.0
    while step > 1:
        half = step // 2
        centre = (
            grid[..., 0:-1:step, 0:-1:step]
            + grid[..., 0:-1:step, step::step]
            + grid[..., step::step, 0:-1:step]
            + grid[..., step::step, step::step]
        ) / 4
        grid[..., half::step, half::step] = centre + scale * noise(tuple(centre.shape))
        centres = grid[..., half::step, half::step]
        # Edge midpoints on horizontal edges: left/right corners always, the centres above/below when inside.
        rows = grid[..., 0::step, 0:-1:step] + grid[..., 0::step, step::step]
        count = rows * 0 + 2.0
        rows[..., 1:, :] += centres
        count[..., 1:, :] += 1
        rows[..., :-1, :] += centres
        count[..., :-1, :] += 1
        grid[..., 0::step, half::step] = rows / count + scale * noise(tuple(rows.shape))
        # Vertical edges: corners above/below always, centres left/right when inside.
        cols = grid[..., 0:-1:step, 0::step] + grid[..., step::step, 0::step]
        count = cols * 0 + 2.0
        cols[..., :, 1:] += centres
        count[..., :, 1:] += 1
        cols[..., :, :-1] += centres
        count[..., :, :-1] += 1
        grid[..., half::step, 0::step] = cols / count + scale * noise(tuple(cols.shape))
        step = half
        scale = scale * decay
    return grid


def diamond_square(rng: np.random.Generator, size: int) -> np.ndarray:
    """Diamond-square noise (size, size) float64 in [0, 1] with a random roughness (compiled loop)."""
    decay = rng.uniform(0.4, 0.7)
    grid = diamond_square_grid(grid_size(size), decay, int(rng.integers(0, 2**63)))[:size, :size]
    low, high = grid.min(), grid.max()
    return (grid - low) / max(high - low, 1e-12)
