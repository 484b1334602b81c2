"""Compiled chaos-game kernels: counter RNG, alias tables, bounding-box / canvas passes, colour, blur.

The chaos game is the hot loop of every fractal image. It runs fused in one compiled loop: the map is chosen
through a lookup table from a splitmix64 counter stream (so a pass can be replayed exactly from its seed), the
affine map is applied from a (N, 6) coefficient table and no coordinate buffer is ever allocated.
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
_TABLE_SHIFT = np.uint64(64 - TABLE_BITS)


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


@njit(cache=True, inline="always")
def _lo(a: float, b: float) -> float:
    # A plain select compiles to minsd; builtin min() adds NaN handling the hot loop does not need.
    return a if a < b else b


@njit(cache=True, inline="always")
def _hi(a: float, b: float) -> float:
    return a if a > b else b


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
    xmin, xmax, ymin, ymax = chaos_bbox(coef, table, x0, y0, seed, n_points)
    if not (np.isfinite(xmin) and np.isfinite(xmax) and np.isfinite(ymin) and np.isfinite(ymax)):
        return 0.0
    if xmax - xmin <= 0.0 or ymax - ymin <= 0.0:
        return 0.0
    scale_x = size / ((xmax - xmin) * (1.0 + 1e-9))
    scale_y = size / ((ymax - ymin) * (1.0 + 1e-9))
    needed = int(np.ceil(min_fill * size * size))
    bitmap = np.zeros((size, size), np.uint8)
    state = np.uint64(seed)
    xa, ya, xb, yb, xc, yc, xd, yd = x0, y0, x0, y0, x0, y0, x0, y0
    filled = 0
    groups = n_points // 4
    for g in range(groups):
        # Each point fills at most one new pixel: give up as soon as the target is out of reach.
        if filled + 4 * (groups - g) < needed:
            break
        state, xa, ya, xb, yb, xc, yc, xd, yd = _step4(coef, table, state, xa, ya, xb, yb, xc, yc, xd, yd)
        filled += _mark(bitmap, xa, ya, xmin, ymin, scale_x, scale_y)
        filled += _mark(bitmap, xb, yb, xmin, ymin, scale_x, scale_y)
        filled += _mark(bitmap, xc, yc, xmin, ymin, scale_x, scale_y)
        filled += _mark(bitmap, xd, yd, xmin, ymin, scale_x, scale_y)
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
