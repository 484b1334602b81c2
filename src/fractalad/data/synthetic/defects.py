"""Defect painters shared by the synthetic scenes, and the exact ground-truth mask of a defect.

Amplitudes are deliberately small (7-50 % of the local intensity, times Scene.contrast) and sizes a few
pixels to a few percent of the image: detecting them should need good local features, not a brightness
threshold.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from fractalad.data.synthetic.shapes import (
    REF_PX,
    Canvas,
    bezier,
    blob_sdf,
    coverage,
    sdf_polyline,
    window,
)

# A pixel belongs to the defect when the clean scene changed by more than this (0..1 intensity).
MASK_THRESHOLD = 0.012
MIN_MASK_PIXELS_AT_256 = 8

Render = Callable[[dict[str, Any], np.ndarray, np.ndarray, float], tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class Scene:
    """One good scene: its parameters, clean render (H, W, 3), support (H, W) where defects may lie."""

    params: dict[str, Any]
    canvas: Canvas
    image: np.ndarray
    support: np.ndarray
    render: Render
    contrast: float = 1.0  # scales the intensity change of surface defects (1 = the default difficulty)

    def rerender(
        self, params: dict[str, Any], dy: np.ndarray | None = None, dx: np.ndarray | None = None
    ) -> np.ndarray:
        """Render other parameters, optionally at coordinates displaced by (dy, dx) (scene units)."""
        y = self.canvas.y if dy is None else self.canvas.y + dy
        x = self.canvas.x if dx is None else self.canvas.x + dx
        return self.render(params, y, x, self.canvas.px)[0]


def pick_point(scene: Scene, rng: np.random.Generator, margin_px: float = 10.0) -> tuple[float, float]:
    """A random (y, x) on the support, at least margin_px (reference pixels) inside it and the image."""
    support = scene.support > 0.5
    margin = max(int(round(margin_px * REF_PX / scene.canvas.px)), 1)
    inner = ndimage.binary_erosion(support, iterations=margin, border_value=0)
    candidates = np.flatnonzero(inner if inner.any() else support)
    index = candidates[rng.integers(candidates.size)]
    row, col = divmod(int(index), scene.canvas.size)
    return float(scene.canvas.y[row, col]), float(scene.canvas.x[row, col])


def blend(image: np.ndarray, alpha: np.ndarray, target: np.ndarray, where: tuple[slice, slice]) -> np.ndarray:
    """Copy of image with target mixed in by alpha inside the window `where`."""
    out = image.copy()
    patch = out[where]
    out[where] = patch + alpha[:, :, None] * (target - patch)
    return out


def stroke(
    scene: Scene, image: np.ndarray, points: np.ndarray, width_px: float, change: Callable
) -> np.ndarray:
    """Draw a polyline of width_px reference pixels whose pixels become change(old pixels)."""
    centre, reach = points.mean(axis=0), float(np.abs(points - points.mean(axis=0)).max()) + 6 * REF_PX
    where = window(scene.canvas.size, scene.canvas.px, float(centre[0]), float(centre[1]), reach)
    distance = sdf_polyline(scene.canvas.y[where], scene.canvas.x[where], points)
    alpha = coverage(distance - 0.5 * width_px * REF_PX, scene.canvas.px)
    return blend(image, alpha, change(image[where]), where)


def spot(
    scene: Scene, image: np.ndarray, rng: np.random.Generator, radius_px: float, change: Callable
) -> np.ndarray:
    """Irregular blob of about radius_px reference pixels (soft rim); its pixels become change(old pixels)."""
    cy, cx = pick_point(scene, rng)
    radius = radius_px * REF_PX
    where = window(scene.canvas.size, scene.canvas.px, cy, cx, 1.6 * radius + 4 * REF_PX)
    harmonics = np.stack([rng.uniform(0.0, 0.18, 3), rng.uniform(0.0, 2 * np.pi, 3)], axis=1)
    sdf = blob_sdf(scene.canvas.y[where] - cy, scene.canvas.x[where] - cx, radius, harmonics)
    # A rim of a few pixels: stains and spots fade out instead of having cut edges.
    alpha = np.clip(0.5 - sdf / (3.0 * REF_PX), 0.0, 1.0).astype(np.float32)
    return blend(image, alpha, change(image[where]), where)


def random_curve(scene: Scene, rng: np.random.Generator, length_px: tuple[float, float]) -> np.ndarray:
    """A gently bent (Bezier) curve of random length and direction starting on the support; (24, 2)."""
    start = np.array(pick_point(scene, rng))
    angle = rng.uniform(0, 2 * np.pi)
    length = rng.uniform(*length_px) * REF_PX
    end = start + length * np.array([np.sin(angle), np.cos(angle)])
    control = (start + end) / 2 + rng.normal(0, 0.25 * length, 2)
    return bezier(start, control, end)


def jagged_path(scene: Scene, rng: np.random.Generator, length_px: tuple[float, float]) -> np.ndarray:
    """A crack-like random walk with persistent direction; (K, 2)."""
    start = np.array(pick_point(scene, rng))
    steps = int(rng.integers(6, 12))
    step = rng.uniform(*length_px) * REF_PX / steps
    heading = rng.uniform(0, 2 * np.pi) + np.cumsum(rng.normal(0, 0.5, steps))
    moves = step * np.stack([np.sin(heading), np.cos(heading)], axis=1)
    return np.vstack([start, start + np.cumsum(moves, axis=0)])


def scratch(scene: Scene, rng: np.random.Generator) -> np.ndarray:
    """Thin bright or dark curved line, contrast 8-18 %."""
    sign = rng.choice([-1.0, 1.0])
    amount = rng.uniform(0.08, 0.18) * sign * scene.contrast
    points = random_curve(scene, rng, (14, 40))
    return stroke(scene, scene.image, points, rng.uniform(1.0, 2.0), lambda old: np.clip(old + amount, 0, 1))


def crack(scene: Scene, rng: np.random.Generator) -> np.ndarray:
    """Thin dark jagged line, 18-40 % darker."""
    factor = 1.0 - min(rng.uniform(0.18, 0.40) * scene.contrast, 1.0)
    points = jagged_path(scene, rng, (12, 34))
    return stroke(scene, scene.image, points, rng.uniform(1.0, 1.8), lambda old: old * factor)


def hole(scene: Scene, rng: np.random.Generator) -> np.ndarray:
    """Small dark pit, radius 2.5-6 px, 25-50 % darker."""
    factor = 1.0 - min(rng.uniform(0.25, 0.50) * scene.contrast, 1.0)
    return spot(scene, scene.image, rng, rng.uniform(2.5, 6.0), lambda old: old * factor)


def stain(scene: Scene, rng: np.random.Generator) -> np.ndarray:
    """Contamination: a soft blob, radius 6-16 px, slightly darker and tinted (8-16 %)."""
    tint = np.array([rng.uniform(0.6, 1.0), rng.uniform(0.5, 0.9), rng.uniform(0.3, 0.8)], dtype=np.float32)
    amount = min(rng.uniform(0.08, 0.16) * scene.contrast, 1.0)
    return spot(scene, scene.image, rng, rng.uniform(6.0, 16.0), lambda old: old * (1 - amount * tint))


def colour_spot(scene: Scene, rng: np.random.Generator) -> np.ndarray:
    """Hue shift of 7-14 % at constant grey level, radius 4-10 px: invisible in luminance."""
    direction = rng.normal(size=3)
    direction -= direction.mean()
    direction = (direction / np.linalg.norm(direction)).astype(np.float32)
    amount = rng.uniform(0.07, 0.14) * scene.contrast
    return spot(
        scene, scene.image, rng, rng.uniform(4.0, 10.0), lambda old: np.clip(old + amount * direction, 0, 1)
    )


def local_warp(
    scene: Scene, rng: np.random.Generator, amplitude_px: tuple[float, float], radius_px: tuple[float, float]
) -> np.ndarray:
    """Re-render with coordinates pushed by a Gaussian bump (a bent edge, a pulled thread, a dent)."""
    cy, cx = pick_point(scene, rng, margin_px=0.0)
    radius = rng.uniform(*radius_px) * REF_PX
    amplitude = rng.uniform(*amplitude_px) * REF_PX
    angle = rng.uniform(0, 2 * np.pi)
    weight = np.exp(-((scene.canvas.y - cy) ** 2 + (scene.canvas.x - cx) ** 2) / (2 * radius**2))
    return scene.rerender(
        scene.params, amplitude * np.sin(angle) * weight, amplitude * np.cos(angle) * weight
    )


def defect_mask(good: np.ndarray, defective: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels whose clean value changed, closed and hole-filled into solid regions."""
    changed = np.abs(defective - good).max(axis=2) > MASK_THRESHOLD
    closed = ndimage.binary_closing(changed, structure=np.ones((3, 3), bool), border_value=0)
    return ndimage.binary_fill_holes(closed | changed)
