"""The renderer as it was before the point-buffer kernels (commit 0c706ec), kept so that benchmarks/render.py
times the previous and the current renderer side by side in one process.

Previous scheme: four chains on one interleaved splitmix64 counter stream, one 64-bit mix per point, a
bounding-box pass, then a full replay of the same stream into the canvas with a bounds test per point; the
image is flipped through a transposed copy and blurred with loops numba did not vectorise.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from fractalad.fractals import kernels
from fractalad.fractals.kernels import GOLDEN, _hi, _lo, _mix
from fractalad.fractals.render import RenderConfig
from fractalad.fractals.sampling import coefficients, fixed_point, map_probabilities, singular_values

_TABLE_SHIFT = np.uint64(64 - kernels.TABLE_BITS)


@njit(cache=True, inline="always")
def _choose(z: np.uint64, table: np.ndarray) -> np.uint8:
    return table[z >> _TABLE_SHIFT]


@njit(cache=True, inline="always")
def _step(coef: np.ndarray, k: np.uint64, x: float, y: float) -> tuple[float, float]:
    return coef[k, 0] * x + coef[k, 1] * y + coef[k, 4], coef[k, 2] * x + coef[k, 3] * y + coef[k, 5]


# Four interleaved chains, all started at the same point of the attractor, hide the latency of the serial
# x -> w(x) dependency (the loop would otherwise wait on two dependent multiply-adds per point). Point i uses
# counter i of the splitmix64 stream, so a pass replays exactly from its seed. The bbox, count and fill passes
# share _step4 so they walk the very same stream; inlined, its tuple stays in registers (no measurable cost).
@njit(cache=True, inline="always")
def _step4(
    coef: np.ndarray,
    table: np.ndarray,
    state: np.uint64,
    xa: float,
    ya: float,
    xb: float,
    yb: float,
    xc: float,
    yc: float,
    xd: float,
    yd: float,
) -> tuple[np.uint64, float, float, float, float, float, float, float, float]:
    """One step of each of the four chains on the next four counters; returns (state, xa, ya, ..., yd)."""
    s0 = state + GOLDEN
    s1 = s0 + GOLDEN
    s2 = s1 + GOLDEN
    state = s2 + GOLDEN
    xa, ya = _step(coef, _choose(_mix(s0), table), xa, ya)
    xb, yb = _step(coef, _choose(_mix(s1), table), xb, yb)
    xc, yc = _step(coef, _choose(_mix(s2), table), xc, yc)
    xd, yd = _step(coef, _choose(_mix(state), table), xd, yd)
    return state, xa, ya, xb, yb, xc, yc, xd, yd


@njit(cache=True)
def chaos_bbox(
    coef: np.ndarray, table: np.ndarray, x0: float, y0: float, seed: int, n_points: int
) -> tuple[float, float, float, float]:
    """Pass 1: bounding box (xmin, xmax, ymin, ymax) of n_points iterates; coef (N, 6) = a b c d e f."""
    state = np.uint64(seed)
    xa, ya, xb, yb, xc, yc, xd, yd = x0, y0, x0, y0, x0, y0, x0, y0
    xmin = np.inf
    xmax = -np.inf
    ymin = np.inf
    ymax = -np.inf
    for _ in range(n_points // 4):
        state, xa, ya, xb, yb, xc, yc, xd, yd = _step4(coef, table, state, xa, ya, xb, yb, xc, yc, xd, yd)
        xmin = _lo(xmin, _lo(_lo(xa, xb), _lo(xc, xd)))
        xmax = _hi(xmax, _hi(_hi(xa, xb), _hi(xc, xd)))
        ymin = _lo(ymin, _lo(_lo(ya, yb), _lo(yc, yd)))
        ymax = _hi(ymax, _hi(_hi(ya, yb), _hi(yc, yd)))
    for _ in range(n_points % 4):
        state += GOLDEN
        xa, ya = _step(coef, _choose(_mix(state), table), xa, ya)
        xmin = _lo(xmin, xa)
        xmax = _hi(xmax, xa)
        ymin = _lo(ymin, ya)
        ymax = _hi(ymax, ya)
    return xmin, xmax, ymin, ymax


@njit(cache=True, inline="always")
def _plot(
    flat: np.ndarray,
    width: float,
    height: float,
    x: float,
    y: float,
    left: float,
    top: float,
    sx: float,
    sy: float,
) -> None:
    fx = (x - left) * sx
    fy = (y - top) * sy
    # NaN fails every comparison, so diverging systems simply draw nothing.
    if fx >= 0.0 and fy >= 0.0 and fx < width and fy < height:
        flat[np.intp(fy) * np.intp(width) + np.intp(fx)] += 1


@njit(cache=True)
def chaos_count(
    coef: np.ndarray,
    table: np.ndarray,
    x0: float,
    y0: float,
    seed: int,
    n_points: int,
    left: float,
    top: float,
    scale_x: float,
    scale_y: float,
    counts: np.ndarray,
) -> None:
    """Pass 2: replay the same stream and add one hit per point inside the window to counts (H, W) int32."""
    flat = counts.ravel()
    width = float(counts.shape[1])
    height = float(counts.shape[0])
    state = np.uint64(seed)
    xa, ya, xb, yb, xc, yc, xd, yd = x0, y0, x0, y0, x0, y0, x0, y0
    for _ in range(n_points // 4):
        state, xa, ya, xb, yb, xc, yc, xd, yd = _step4(coef, table, state, xa, ya, xb, yb, xc, yc, xd, yd)
        _plot(flat, width, height, xa, ya, left, top, scale_x, scale_y)
        _plot(flat, width, height, xb, yb, left, top, scale_x, scale_y)
        _plot(flat, width, height, xc, yc, left, top, scale_x, scale_y)
        _plot(flat, width, height, xd, yd, left, top, scale_x, scale_y)
    for _ in range(n_points % 4):
        state += GOLDEN
        xa, ya = _step(coef, _choose(_mix(state), table), xa, ya)
        _plot(flat, width, height, xa, ya, left, top, scale_x, scale_y)


@njit(cache=True)
def blur3(image: np.ndarray, sigma: float) -> np.ndarray:
    """3x3 Gaussian blur (separable, edge pixels replicated): (H, W, 3) uint8 -> (H, W, 3) uint8."""
    side = np.float32(
        np.exp(-1.0 / (2.0 * sigma * sigma)) / (1.0 + 2.0 * np.exp(-1.0 / (2.0 * sigma * sigma)))
    )
    mid = np.float32(1.0) - 2 * side
    height, width, channels = image.shape
    row = width * channels
    flat = image.reshape(height, row)
    # Rows are flattened to (W * C) so both passes are contiguous, vectorisable loops.
    tmp = np.empty((height, row), np.float32)
    for i in range(height):
        up = flat[max(i - 1, 0)]
        here = flat[i]
        down = flat[min(i + 1, height - 1)]
        t = tmp[i]
        for k in range(row):
            t[k] = side * (np.float32(up[k]) + np.float32(down[k])) + mid * np.float32(here[k])
    out = np.empty((height, row), np.uint8)
    half = np.float32(0.5)
    for i in range(height):
        t = tmp[i]
        o = out[i]
        for k in range(channels):
            o[k] = np.uint8((side + mid) * t[k] + side * t[k + channels] + half)
            e = row - channels + k
            o[e] = np.uint8((side + mid) * t[e] + side * t[e - channels] + half)
        for k in range(channels, row - channels):
            o[k] = np.uint8(side * (t[k - channels] + t[k + channels]) + mid * t[k] + half)
    return out.reshape(height, width, channels)


def jitter_system(system: np.ndarray, config: RenderConfig, rng: np.random.Generator) -> np.ndarray:
    """Scale one random map's 2x3 by U(jitter_range); retry while a singular value exceeds 1."""
    for _ in range(config.jitter_tries):
        index = int(rng.integers(len(system)))
        factor = rng.uniform(*config.jitter_range)
        candidate = system.copy()
        candidate[index] *= factor
        if singular_values(candidate[index : index + 1]).max() <= 1.0:
            return candidate
    return system


def frame(
    bbox: tuple[float, float, float, float], config: RenderConfig, rng: np.random.Generator
) -> tuple[float, float, float, float]:
    """Window (left, top, scale_x, scale_y) from attractor coordinates to pixels; x -> columns, y -> rows."""
    xmin, xmax, ymin, ymax = bbox
    centre = np.array([(xmin + xmax) / 2, (ymin + ymax) / 2])
    extent = np.array([xmax - xmin, ymax - ymin])
    # A degenerate (point or line) attractor still gets a finite window around it.
    extent = np.maximum(extent, 1e-9 * np.maximum(1.0, np.abs(centre)))
    if config.window:
        centre = centre + extent * rng.uniform(-config.window_shift, config.window_shift, 2)
        extent = extent * rng.uniform(*config.window_scale, 2)
    # A 1e-9 margin on both sides keeps the extreme points inside the first/last pixel despite rounding.
    extent = extent * (1.0 + 1e-9)
    scale = config.size / extent
    left, top = centre - extent / 2
    return float(left), float(top), float(scale[0]), float(scale[1])


def dihedral_flip(image: np.ndarray, flags: np.ndarray) -> np.ndarray:
    """Transpose, then vflip, then hflip where flags (3,) bool says so: (H, W, C) -> contiguous array."""
    if flags[0]:
        image = image.transpose(1, 0, 2)
    if flags[1]:
        image = image[::-1]
    if flags[2]:
        image = image[:, ::-1]
    return np.ascontiguousarray(image)


def chaos_counts(system: np.ndarray, config: RenderConfig, rng: np.random.Generator) -> np.ndarray:
    """Per-pixel hit counts (size, size) int32: bounding-box pass, then a replay into the canvas."""
    if config.jitter:
        system = jitter_system(system, config, rng)
    coef = coefficients(system)
    table = kernels.build_table(map_probabilities(system))
    x0, y0 = fixed_point(system)
    stream = int(rng.integers(0, 2**63))
    bbox = chaos_bbox(coef, table, x0, y0, stream, config.n_points)
    window = frame(bbox, config, rng)
    counts = np.zeros((config.size, config.size), np.int32)
    if np.isfinite(bbox).all():
        chaos_count(coef, table, x0, y0, stream, config.n_points, *window, counts)
    return counts


def render(system: np.ndarray, config: RenderConfig, seed: int) -> np.ndarray:
    """The previous render() for presets without patch and background (paper): (size, size, 3) uint8."""
    rng = np.random.default_rng(seed)
    counts = chaos_counts(np.asarray(system, np.float64), config, rng)
    foreground = np.array([rng.random(), rng.uniform(0.3, 1.0), rng.uniform(0.5, 1.0)])
    image = np.empty((config.size, config.size, 3), np.uint8)
    kernels.colourise(counts, config.graded, config.colour, foreground, np.zeros((0, 0)), np.zeros(4), image)
    if config.flips:
        image = dihedral_flip(image, rng.random(3) < 0.5)
    if config.blur and rng.random() < config.blur_p:
        image = blur3(image, rng.uniform(*config.blur_sigma))
    return image
