"""Compiled chaos-game kernels: counter RNG, map-choice tables, point / canvas passes, colour, blur.

The chaos game is the hot loop of every fractal image. It runs in one compiled loop: maps are chosen through
a lookup table from a splitmix64 counter stream (so the iterates are a pure function of the seed), the affine
maps are applied from an (N, 6) coefficient table, and the iterates go to a point buffer that the canvas pass
bins once the bounding box (and so the frame) is known.
"""

from __future__ import annotations

import numpy as np
from numba import njit

GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_S27 = np.uint64(27)
_S30 = np.uint64(30)
_S31 = np.uint64(31)


@njit(cache=True, inline="always")
def _mix(z: np.uint64) -> np.uint64:
    """splitmix64 finaliser: a counter becomes a well-mixed 64-bit random word."""
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    return z ^ (z >> _S31)


TABLE_BITS = 12
TABLE_SIZE = 1 << TABLE_BITS


@njit(cache=True)
def build_table(probabilities: np.ndarray) -> np.ndarray:
    """Map-choice lookup table (4096,) uint8: map i fills about p_i * 4096 slots (largest-remainder rounding).

    One table load per point is the cheapest exact-enough choice: probabilities are quantised to 1/4096
    (an alias table is exact but its two dependent loads and compare made the whole step ~2.5x slower).
    """
    n = probabilities.size
    ideal = probabilities * TABLE_SIZE
    slots = np.floor(ideal).astype(np.int64)
    remainder = ideal - slots
    for _ in range(TABLE_SIZE - slots.sum()):
        best = np.argmax(remainder)
        slots[best] += 1
        remainder[best] = -1.0
    table = np.empty(TABLE_SIZE, np.uint8)
    position = 0
    for i in range(n):
        for _ in range(slots[i]):
            table[position] = i
            position += 1
    return table


_WORD_MASK = np.uint64(TABLE_SIZE - 1)
_WORD_SHIFT = np.uint64(TABLE_BITS)
CHAINS = 4
CHOICES_PER_WORD = 5  # 5 x 12 table bits of each 64-bit word


@njit(cache=True, inline="always")
def _step(coef: np.ndarray, k: np.uint8, x: float, y: float) -> tuple[float, float]:
    return coef[k, 0] * x + coef[k, 1] * y + coef[k, 4], coef[k, 2] * x + coef[k, 3] * y + coef[k, 5]


@njit(cache=True, inline="always")
def _lo(a: float, b: float) -> float:
    # A plain select compiles to minsd; builtin min() adds NaN handling the hot loop does not need.
    return a if a < b else b


@njit(cache=True, inline="always")
def _hi(a: float, b: float) -> float:
    return a if a > b else b


# The chaos game runs as four independent chains of the same system, all started at the fixed point of map 1
# (on the attractor), advanced together in one loop: their dependent multiply-adds overlap, so the loop is
# bound by throughput rather than by one chain's latency. Chain c draws word b from counter 4 b + c + 1 of the
# splitmix64 stream of the seed, and each word feeds five map choices (12 bits each), so one mix serves five
# points. Every iterate is written to a point buffer, so the canvas pass bins stored points instead of
# replaying the chaos game.
@njit(cache=True)
def chaos_points(
    coef: np.ndarray, table: np.ndarray, x0: float, y0: float, seed: int, points: np.ndarray
) -> tuple[float, float, float, float]:
    """Fill points (n, 2) float64 with n iterates; returns their bounding box (xmin, xmax, ymin, ymax)."""
    n = points.shape[0]
    state = np.uint64(seed)
    xa, ya, xb, yb, xc, yc, xd, yd = x0, y0, x0, y0, x0, y0, x0, y0
    xmin, xmax, ymin, ymax = np.inf, -np.inf, np.inf, -np.inf
    j = 0
    for _ in range(n // (CHAINS * CHOICES_PER_WORD)):
        state += GOLDEN
        wa = _mix(state)
        state += GOLDEN
        wb = _mix(state)
        state += GOLDEN
        wc = _mix(state)
        state += GOLDEN
        wd = _mix(state)
        for _ in range(CHOICES_PER_WORD):
            xa, ya = _step(coef, table[wa & _WORD_MASK], xa, ya)
            xb, yb = _step(coef, table[wb & _WORD_MASK], xb, yb)
            xc, yc = _step(coef, table[wc & _WORD_MASK], xc, yc)
            xd, yd = _step(coef, table[wd & _WORD_MASK], xd, yd)
            wa >>= _WORD_SHIFT
            wb >>= _WORD_SHIFT
            wc >>= _WORD_SHIFT
            wd >>= _WORD_SHIFT
            points[j, 0], points[j, 1] = xa, ya
            points[j + 1, 0], points[j + 1, 1] = xb, yb
            points[j + 2, 0], points[j + 2, 1] = xc, yc
            points[j + 3, 0], points[j + 3, 1] = xd, yd
            j += CHAINS
            xmin = _lo(xmin, _lo(_lo(xa, xb), _lo(xc, xd)))
            xmax = _hi(xmax, _hi(_hi(xa, xb), _hi(xc, xd)))
            ymin = _lo(ymin, _lo(_lo(ya, yb), _lo(yc, yd)))
            ymax = _hi(ymax, _hi(_hi(ya, yb), _hi(yc, yd)))
    # The last n mod 20 points continue chain a on the following counters.
    word = np.uint64(0)
    for t in range(n - j):
        if t % CHOICES_PER_WORD == 0:
            state += GOLDEN
            word = _mix(state)
        xa, ya = _step(coef, table[word & _WORD_MASK], xa, ya)
        word >>= _WORD_SHIFT
        points[j + t, 0], points[j + t, 1] = xa, ya
        xmin, xmax, ymin, ymax = _lo(xmin, xa), _hi(xmax, xa), _lo(ymin, ya), _hi(ymax, ya)
    return xmin, xmax, ymin, ymax


@njit(cache=True, inline="always")
def _cell(v: float, last: float) -> np.intp:
    """Clamp v to [0, last] (NaN -> 0) and truncate: a branch-free cell index."""
    v = v if v > 0.0 else 0.0  # noqa: FURB136  (this order sends NaN to 0; max() would keep it)
    return np.intp(v if v < last else last)  # noqa: FURB136


@njit(cache=True)
def bin_points(
    points: np.ndarray, left: float, top: float, scale_x: float, scale_y: float, canvas: np.ndarray
) -> None:
    """Add one hit per point (n, 2) to canvas (H + 2, W + 2) int32, whose interior [1:-1, 1:-1] is the window.

    Points outside the window (and NaN) are clamped onto the one-pixel border instead of being tested, so
    the loop has no data-dependent branch (a window that clips the attractor made those tests mispredict).
    """
    flat = canvas.ravel()
    stride = canvas.shape[1]
    last_x = float(canvas.shape[1] - 1)
    last_y = float(canvas.shape[0] - 1)
    for i in range(points.shape[0]):
        ix = _cell((points[i, 0] - left) * scale_x + 1.0, last_x)
        iy = _cell((points[i, 1] - top) * scale_y + 1.0, last_y)
        flat[iy * stride + ix] += 1


@njit(cache=True)
def chaos_fill(
    coef: np.ndarray,
    table: np.ndarray,
    x0: float,
    y0: float,
    seed: int,
    n_points: int,
    size: int,
    min_fill: float,
) -> float:
    """Fraction of a size x size bitmap hit by n_points iterates (bbox framing); stops early if hopeless."""
    points = np.empty((n_points, 2))
    xmin, xmax, ymin, ymax = chaos_points(coef, table, x0, y0, seed, points)
    if not (np.isfinite(xmin) and np.isfinite(xmax) and np.isfinite(ymin) and np.isfinite(ymax)):
        return 0.0
    if xmax - xmin <= 0.0 or ymax - ymin <= 0.0:
        return 0.0
    scale_x = size / ((xmax - xmin) * (1.0 + 1e-9))
    scale_y = size / ((ymax - ymin) * (1.0 + 1e-9))
    needed = int(np.ceil(min_fill * size * size))
    bitmap = np.zeros((size, size), np.uint8)
    filled = 0
    for i in range(n_points):
        # Each point fills at most one new pixel: give up as soon as the target is out of reach.
        if filled + n_points - i < needed:
            break
        filled += _mark(bitmap, points[i, 0], points[i, 1], xmin, ymin, scale_x, scale_y)
    return filled / (size * size)


@njit(cache=True, inline="always")
def _mark(bitmap: np.ndarray, x: float, y: float, left: float, top: float, sx: float, sy: float) -> int:
    fx = (x - left) * sx
    fy = (y - top) * sy
    if fx >= 0.0 and fy >= 0.0 and fx < bitmap.shape[1] and fy < bitmap.shape[0]:
        iy = int(fy)
        ix = int(fx)
        if bitmap[iy, ix] == 0:
            bitmap[iy, ix] = 1
            return 1
    return 0


@njit(cache=True)
def stamp_patch(counts: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Stamp the 3x3 mask at every hit: counts (H, W) int32 -> (H, W) int32, clipped at the borders."""
    height, width = counts.shape
    out = np.zeros_like(counts)
    for i in range(height):
        for j in range(width):
            c = counts[i, j]
            if c == 0:
                continue
            for di in range(3):
                ii = i + di - 1
                if ii < 0 or ii >= height:
                    continue
                for dj in range(3):
                    jj = j + dj - 1
                    if mask[di, dj] and 0 <= jj < width:
                        out[ii, jj] += c
    return out


@njit(cache=True, inline="always")
def _hsv_to_rgb(h: float, s: float, v: float) -> tuple[float, float, float]:
    h6 = (h - np.floor(h)) * 6.0
    sector = int(h6)
    f = h6 - sector
    p = v * (1.0 - s)
    q = v * (1.0 - s * f)
    t = v * (1.0 - s * (1.0 - f))
    if sector == 0:
        return v, t, p
    if sector == 1:
        return q, v, p
    if sector == 2:
        return p, v, t
    if sector == 3:
        return p, q, v
    if sector == 4:
        return t, p, v
    return v, p, q


@njit(cache=True)
def colourise(
    counts: np.ndarray,
    graded: bool,
    colour: bool,
    fg: np.ndarray,
    noise: np.ndarray,
    bg: np.ndarray,
    out: np.ndarray,
) -> None:
    """Counts (H, W) -> out (H, W, 3) uint8; fg = (hue shift, sat, val); bg = (hue, hue range, sat, val).

    A pixel's value is count / max (graded) or 1 (binary). Colour: HSV, hue = value + shift on a black
    (or noise) background; grey: the value itself. noise (H, W) in [0, 1], or an empty array for black.
    """
    height, width = counts.shape
    peak = max(counts.max(), 1)
    has_bg = noise.shape[0] == height
    # A pixel's colour depends only on its count: tabulate counts 1..peak once instead of per pixel.
    levels = peak if graded else 1
    table = np.empty((levels + 1, 3), np.uint8)
    for c in range(1, levels + 1):
        value = c / peak if graded else 1.0
        if colour:
            r, g, b = _hsv_to_rgb(value + fg[0], fg[1], fg[2])
        else:
            r, g, b = value, value, value
        table[c, 0] = np.uint8(r * 255.0 + 0.5)
        table[c, 1] = np.uint8(g * 255.0 + 0.5)
        table[c, 2] = np.uint8(b * 255.0 + 0.5)
    for i in range(height):
        for j in range(width):
            c = counts[i, j]
            if c > 0:
                k = c if graded else 1
                out[i, j, 0] = table[k, 0]
                out[i, j, 1] = table[k, 1]
                out[i, j, 2] = table[k, 2]
            elif has_bg:
                level = noise[i, j]
                r, g, b = _hsv_to_rgb(bg[0] + bg[1] * level, bg[2], bg[3] * level)
                out[i, j, 0] = np.uint8(r * 255.0 + 0.5)
                out[i, j, 1] = np.uint8(g * 255.0 + 0.5)
                out[i, j, 2] = np.uint8(b * 255.0 + 0.5)
            else:
                out[i, j, 0] = 0
                out[i, j, 1] = 0
                out[i, j, 2] = 0


@njit(cache=True)
def blur3(image: np.ndarray, sigma: float) -> np.ndarray:
    """3x3 Gaussian blur (separable, edge pixels replicated): (H, W, 3) uint8 -> (H, W, 3) uint8."""
    weight = np.exp(-1.0 / (2.0 * sigma * sigma))
    side = np.float32(weight / (1.0 + 2.0 * weight))
    mid = np.float32(1.0) - np.float32(2.0) * side
    half = np.float32(0.5)
    height, width, channels = image.shape
    row = width * channels
    inner = row - 2 * channels
    flat = image.reshape(height, row)
    out = np.empty((height, row), np.uint8)
    # Rows are flattened to (W * C); one float32 row of the vertical pass feeds the horizontal pass.
    tmp = np.empty(row, np.float32)
    left, centre, right = tmp[:inner], tmp[channels : channels + inner], tmp[2 * channels :]
    # Unsigned trip counts and shifted views index every loop by its counter alone: numba then drops the
    # negative-index wraparound and LLVM vectorises both passes (~8x faster than indexing t[k - channels]).
    for i in range(height):
        up, here, down = flat[max(i - 1, 0)], flat[i], flat[min(i + 1, height - 1)]
        for k in range(np.uintp(row)):
            tmp[k] = side * (np.float32(up[k]) + np.float32(down[k])) + mid * np.float32(here[k])
        o = out[i]
        for k in range(channels):
            o[k] = np.uint8((side + mid) * tmp[k] + side * tmp[k + channels] + half)
            e = row - channels + k
            o[e] = np.uint8((side + mid) * tmp[e] + side * tmp[e - channels] + half)
        middle = o[channels : channels + inner]
        for k in range(np.uintp(inner)):
            middle[k] = np.uint8(side * (left[k] + right[k]) + mid * centre[k] + half)
    return out.reshape(height, width, channels)


@njit(cache=True, inline="always")
def _signed_unit(z: np.uint64) -> float:
    """Top 53 bits of a random word -> U(-1, 1)."""
    return (z >> np.uint64(11)) * (2.0 / 9007199254740992.0) - 1.0


@njit(cache=True)
def diamond_square_grid(n: int, decay: float, seed: int) -> np.ndarray:
    """Diamond-square noise (n, n), n = 2^k + 1; the noise amplitude is multiplied by decay per level."""
    grid = np.zeros((n, n))
    state = np.uint64(seed)
    for i in (0, n - 1):
        for j in (0, n - 1):
            state += GOLDEN
            grid[i, j] = _signed_unit(_mix(state))
    step = n - 1
    scale = 1.0
    while step > 1:
        half = step // 2
        for i in range(half, n, step):
            for j in range(half, n, step):
                state += GOLDEN
                corners = grid[i - half, j - half] + grid[i - half, j + half] + grid[i + half, j - half]
                grid[i, j] = (corners + grid[i + half, j + half]) / 4 + scale * _signed_unit(_mix(state))
        # Edge midpoints: their neighbours at distance `half` are corners and centres, never each other.
        for i in range(0, n, half):
            for j in range(half if (i // half) % 2 == 0 else 0, n, step):
                total = 0.0
                count = 0
                for di, dj in ((-half, 0), (half, 0), (0, -half), (0, half)):
                    if 0 <= i + di < n and 0 <= j + dj < n:
                        total += grid[i + di, j + dj]
                        count += 1
                state += GOLDEN
                grid[i, j] = total / count + scale * _signed_unit(_mix(state))
        step = half
        scale *= decay
    return grid
