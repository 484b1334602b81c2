"""Render an IFS to an RGB image (Anderson & Farrell's generator): fused chaos game, framing, colour."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from fractalad.errors import InputError
from fractalad.fractals import kernels
from fractalad.fractals.background import diamond_square
from fractalad.fractals.sampling import coefficients, fixed_point, map_probabilities, singular_values


@dataclass(frozen=True)
class RenderConfig:
    """How one fractal image is drawn; every random choice comes from the render seed."""

    size: int = 256
    n_points: int = 100_000
    graded: bool = True  # hit count / max; False: hit / no hit
    patch: bool = False  # stamp a random non-empty 3x3 mask at every hit
    background: bool = False  # colourised diamond-square noise instead of black
    colour: bool = True  # HSV colour; False: grey levels
    flips: bool = True  # transpose, vflip, hflip, each p = 0.5
    blur: bool = True  # 3x3 Gaussian, sigma ~ U(blur_sigma), p = blur_p
    jitter: bool = True  # one map's 2x3 scaled by U(jitter_range), kept only while contractive
    window: bool = True  # centre += extent * U(+-window_shift), extent *= U(window_scale)
    window_shift: float = 0.2
    window_scale: tuple[float, float] = (0.5, 2.0)
    blur_p: float = 0.5
    blur_sigma: tuple[float, float] = (0.5, 1.0)
    jitter_range: tuple[float, float] = (0.8, 1.1)
    jitter_tries: int = 4

    def __post_init__(self) -> None:
        if self.size < 4:
            raise InputError(f"invalid render size {self.size}: must be at least 4 pixels")
        if self.n_points < 1:
            raise InputError(f"invalid n_points {self.n_points}: must be a positive integer")
        if not 0.0 <= self.blur_p <= 1.0:
            raise InputError(f"invalid blur_p {self.blur_p}: must be a probability in [0, 1]")
        low, high = self.window_scale
        if not 0.0 < low <= high:
            raise InputError(f"invalid window_scale {self.window_scale}: need 0 < low <= high")

    def replace(self, **changes: object) -> RenderConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)


RENDER_PRESETS: dict[str, RenderConfig] = {
    # The paper ran A&F's generator with background and patch off.
    "paper": RenderConfig(),
    # A&F's full setting.
    "af": RenderConfig(patch=True, background=True),
    # FractalDB (Kataoka et al.): grey binary patch rendering, 362 px, 200k points, flips only.
    "fractaldb": RenderConfig(
        size=362,
        n_points=200_000,
        graded=False,
        patch=True,
        colour=False,
        blur=False,
        jitter=False,
        window=False,
    ),
}


def get_render_preset(name: str) -> RenderConfig:
    """The named preset, or InputError listing the known ones."""
    if name not in RENDER_PRESETS:
        raise InputError(f"unknown render preset {name!r}: choose one of {', '.join(sorted(RENDER_PRESETS))}")
    return RENDER_PRESETS[name]


def jitter_system(system: np.ndarray, config: RenderConfig, rng: np.random.Generator) -> np.ndarray:
    """Scale one random map's 2x3 by U(jitter_range); retry while a singular value exceeds 1."""
    # Scaling a map by f scales its singular values by f, so one closed-form call serves every try; the
    # 1e-12 margin covers the last-bit difference between f * s1(A) and s1(f A).
    largest = singular_values(system)[:, 0].tolist()
    for _ in range(config.jitter_tries):
        index = int(rng.integers(len(system)))
        factor = float(rng.uniform(*config.jitter_range))
        if factor * largest[index] <= 1.0 - 1e-12:
            candidate = system.copy()
            candidate[index] *= factor
            return candidate
    return system


def frame(
    bbox: tuple[float, float, float, float], config: RenderConfig, rng: np.random.Generator
) -> tuple[float, float, float, float]:
    """Window (left, top, scale_x, scale_y) from attractor coordinates to pixels; x -> columns, y -> rows."""
    xmin, xmax, ymin, ymax = (float(v) for v in bbox)
    centre_x, centre_y = (xmin + xmax) / 2, (ymin + ymax) / 2
    # A degenerate (point or line) attractor still gets a finite window around it (max() keeps a NaN).
    extent_x = max(xmax - xmin, 1e-9 * max(1.0, abs(centre_x)))
    extent_y = max(ymax - ymin, 1e-9 * max(1.0, abs(centre_y)))
    if config.window:
        shift_x, shift_y = rng.uniform(-config.window_shift, config.window_shift, 2).tolist()
        centre_x, centre_y = centre_x + extent_x * shift_x, centre_y + extent_y * shift_y
        zoom_x, zoom_y = rng.uniform(*config.window_scale, 2).tolist()
        extent_x, extent_y = extent_x * zoom_x, extent_y * zoom_y
    # A 1e-9 margin on both sides keeps the extreme points inside the first/last pixel despite rounding.
    extent_x, extent_y = extent_x * (1.0 + 1e-9), extent_y * (1.0 + 1e-9)
    return centre_x - extent_x / 2, centre_y - extent_y / 2, config.size / extent_x, config.size / extent_y


def chaos_counts(system: np.ndarray, config: RenderConfig, rng: np.random.Generator) -> np.ndarray:
    """Per-pixel hit counts (size, size) int32 of the (jittered, framed) system: chaos game, then binning.

    The counts are a view of the interior of a (size + 2, size + 2) canvas (not contiguous).
    """
    if config.jitter:
        system = jitter_system(system, config, rng)
    coef = coefficients(system)
    table = kernels.build_table(map_probabilities(system))
    x0, y0 = fixed_point(system)
    stream = int(rng.integers(0, 2**63))
    points = np.empty((config.n_points, 2))
    bbox = kernels.chaos_points(coef, table, x0, y0, stream, points)
    window = frame(bbox, config, rng)
    # One-pixel border: the binning pass parks the points outside the window there.
    canvas = np.zeros((config.size + 2, config.size + 2), np.int32)
    if np.isfinite(bbox).all():
        kernels.bin_points(points, *window, canvas)
    return canvas[1:-1, 1:-1]


def patch_mask(rng: np.random.Generator) -> np.ndarray:
    """A random non-empty 3x3 mask (3, 3) uint8 (uniform over the 511 non-empty masks)."""
    code = int(rng.integers(1, 512))
    return ((code >> np.arange(9)) & 1).astype(np.uint8).reshape(3, 3)


def render(system: np.ndarray, config: RenderConfig, seed: int) -> np.ndarray:
    """Render system (N, 2, 3) to an image (size, size, 3) uint8; deterministic in (system, config, seed)."""
    rng = np.random.default_rng(seed)
    counts = chaos_counts(np.asarray(system, np.float64), config, rng)
    if config.patch:
        counts = kernels.stamp_patch(counts, patch_mask(rng))
    foreground = np.array([rng.random(), rng.uniform(0.3, 1.0), rng.uniform(0.5, 1.0)])
    if config.background:
        noise = diamond_square(rng, config.size)
        back = np.array([rng.random(), rng.uniform(0.0, 0.5), rng.uniform(0.3, 1.0), rng.uniform(0.3, 0.8)])
    else:
        noise = np.zeros((0, 0))
        back = np.zeros(4)
    # Colour is per pixel, so flipping the counts and noise (free strided views) before colourising equals
    # flipping the image after it, without copying a (size, size, 3) array through a transposed view.
    if config.flips:
        flags = rng.random(3) < 0.5
        counts, noise = dihedral_flip(counts, flags), dihedral_flip(noise, flags)
    image = np.empty((config.size, config.size, 3), np.uint8)
    kernels.colourise(counts, config.graded, config.colour, foreground, noise, back, image)
    if config.blur and rng.random() < config.blur_p:
        image = kernels.blur3(image, rng.uniform(*config.blur_sigma))
    return image


def dihedral_flip(array: np.ndarray, flags: np.ndarray) -> np.ndarray:
    """Transpose, then vflip, then hflip the first two axes of array (H, W, ...) where flags (3,) bool say so.

    Returns a view (no copy).
    """
    if flags[0]:
        array = array.swapaxes(0, 1)
    if flags[1]:
        array = array[::-1]
    if flags[2]:
        array = array[:, ::-1]
    return array
