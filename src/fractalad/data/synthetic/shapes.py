"""Drawing primitives for the synthetic scenes: coordinate grids, lattice noise, signed distances, lighting.

Scenes are functions of continuous coordinates in [-1, 1] (y down, x right), so a local displacement of
the coordinates (a bent edge, a shifted tile) re-renders the scene exactly, and any image size shows the
same scene.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# One pixel of the 256 px reference image in scene units; defect sizes are given in these pixels.
REF_PX = 2.0 / 256.0


@dataclass(frozen=True)
class Canvas:
    """Pixel-centre coordinates of an image: y, x (H, W) float32 in [-1, 1]; px = one pixel in scene units."""

    y: np.ndarray
    x: np.ndarray
    px: float

    @property
    def size(self) -> int:
        return int(self.y.shape[0])


def make_canvas(size: int) -> Canvas:
    """Canvas for a size x size image."""
    centres = ((np.arange(size, dtype=np.float32) + 0.5) / size) * 2.0 - 1.0
    y, x = np.meshgrid(centres, centres, indexing="ij")
    return Canvas(y=y, x=x, px=2.0 / size)


class LatticeNoise:
    """Smooth value noise on a periodic random lattice, evaluated at any coordinates; values in [-1, 1]."""

    def __init__(self, rng: np.random.Generator, cells: int = 64) -> None:
        self.table = rng.uniform(-1.0, 1.0, (cells, cells)).astype(np.float32)

    def __call__(self, y: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Noise at lattice coordinates (y, x): one lattice cell per unit; same shape as y."""
        cells = self.table.shape[0]
        y0, x0 = np.floor(y), np.floor(x)
        ty, tx = smoothstep(y - y0), smoothstep(x - x0)
        iy, ix = y0.astype(np.int64) % cells, x0.astype(np.int64) % cells
        iy1, ix1 = (iy + 1) % cells, (ix + 1) % cells
        top = self.table[iy, ix] * (1 - tx) + self.table[iy, ix1] * tx
        bottom = self.table[iy1, ix] * (1 - tx) + self.table[iy1, ix1] * tx
        return (top * (1 - ty) + bottom * ty).astype(np.float32)

    def fractal(self, y: np.ndarray, x: np.ndarray, octaves: int = 3) -> np.ndarray:
        """Sum of octaves (frequency x2, amplitude /2), normalised to about [-1, 1]."""
        total = np.zeros_like(y, dtype=np.float32)
        for octave in range(octaves):
            scale = float(2**octave)
            # Offsets decorrelate the octaves that share one lattice.
            total += self(y * scale + 17.3 * octave, x * scale + 5.1 * octave) / scale
        return total / (2.0 - 2.0 ** (1 - octaves))


def smoothstep(t: np.ndarray) -> np.ndarray:
    return t * t * (3.0 - 2.0 * t)


def coverage(sdf: np.ndarray, px: float) -> np.ndarray:
    """Anti-aliased inside-ness (1 inside, 0 outside, linear over one pixel) of a signed distance field."""
    return np.clip(0.5 - sdf / px, 0.0, 1.0).astype(np.float32)


def rotate(y: np.ndarray, x: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates in a frame rotated by `angle` radians (rotating the scene by +angle)."""
    c, s = np.float32(np.cos(angle)), np.float32(np.sin(angle))
    return c * y - s * x, s * y + c * x


def sdf_box(y: np.ndarray, x: np.ndarray, half_h: float, half_w: float) -> np.ndarray:
    """Signed distance to an axis-aligned box centred at the origin."""
    qy, qx = np.abs(y) - half_h, np.abs(x) - half_w
    outside = np.hypot(np.maximum(qy, 0.0), np.maximum(qx, 0.0))
    return outside + np.minimum(np.maximum(qy, qx), 0.0)


def sdf_hexagon(y: np.ndarray, x: np.ndarray, apothem: float) -> np.ndarray:
    """Signed distance (max-of-planes, exact inside) to a regular hexagon with flat sides at +-y."""
    ay, ax = np.abs(y), np.abs(x)
    return np.maximum(ay, ax * np.float32(np.sqrt(3) / 2) + ay * np.float32(0.5)) - apothem


def sdf_polyline(y: np.ndarray, x: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Unsigned distance to a polyline; points (K, 2) as (y, x)."""
    best = np.full(y.shape, np.inf, dtype=np.float32)
    for (ay, ax), (by, bx) in zip(points[:-1], points[1:], strict=True):
        dy, dx = by - ay, bx - ax
        length2 = max(dy * dy + dx * dx, 1e-12)
        t = np.clip(((y - ay) * dy + (x - ax) * dx) / length2, 0.0, 1.0)
        np.minimum(best, np.hypot(y - ay - t * dy, x - ax - t * dx), out=best)
    return best


def bezier(start: np.ndarray, control: np.ndarray, end: np.ndarray, n: int = 24) -> np.ndarray:
    """(n, 2) points of a quadratic Bezier curve."""
    t = np.linspace(0.0, 1.0, n)[:, None]
    return (1 - t) ** 2 * start + 2 * (1 - t) * t * control + t**2 * end


def blob_sdf(y: np.ndarray, x: np.ndarray, radius: float, harmonics: np.ndarray) -> np.ndarray:
    """Signed distance-like field of an irregular blob at the origin; harmonics (K, 2) amplitudes/phases."""
    r = np.hypot(y, x)
    theta = np.arctan2(y, x)
    edge = np.ones_like(r)
    for k, (amplitude, phase) in enumerate(harmonics, start=2):
        edge += amplitude * np.cos(k * theta + phase)
    return r - radius * edge


def window(size: int, px: float, cy: float, cx: float, reach: float) -> tuple[slice, slice]:
    """Pixel slices covering the square of half-size `reach` around (cy, cx); keeps drawing local and fast."""
    lo_y, hi_y = int((cy - reach + 1) / px) - 1, int((cy + reach + 1) / px) + 2
    lo_x, hi_x = int((cx - reach + 1) / px) - 1, int((cx + reach + 1) / px) + 2
    return slice(max(lo_y, 0), min(max(hi_y, 0), size)), slice(max(lo_x, 0), min(max(hi_x, 0), size))


def photograph(clean: np.ndarray, canvas: Canvas, rng: np.random.Generator) -> np.ndarray:
    """(H, W, 3) float scene -> uint8 photo: random gain, light gradient, vignetting and sensor noise."""
    gain = rng.uniform(0.92, 1.08)
    angle = rng.uniform(0.0, 2.0 * np.pi)
    slope, vignette = rng.uniform(0.0, 0.08), rng.uniform(0.0, 0.08)
    return expose(clean, canvas, rng, gain, angle, slope, vignette)


def expose(
    clean: np.ndarray,
    canvas: Canvas,
    rng: np.random.Generator,
    gain: float,
    angle: float,
    slope: float,
    vignette: float,
) -> np.ndarray:
    """The photo of `clean` under the given lighting, with sensor noise drawn from rng."""
    light = gain * (1.0 + slope * (canvas.x * np.cos(angle) + canvas.y * np.sin(angle)))
    light = light - vignette * 0.5 * (canvas.x**2 + canvas.y**2)
    sigma = rng.uniform(0.006, 0.016)
    noise = rng.standard_normal(clean.shape, dtype=np.float32) * np.float32(sigma)
    photo = clean * light[:, :, None].astype(np.float32) + noise
    return np.clip(np.rint(photo * 255.0), 0, 255).astype(np.uint8)
