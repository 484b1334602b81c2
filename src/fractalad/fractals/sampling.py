"""IFS samplers: sigma-factor (Anderson & Farrell 2022) and FractalDB (Kataoka et al. 2020).

A system is an array (N, 2, 3) float64: [:, :, :2] is the linear part A_i, [:, :, 2] the translation b_i.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor

import numpy as np
from tqdm.auto import tqdm

from fractalad.errors import InputError
from fractalad.fractals import kernels

SIGMA_PRESETS: dict[str, tuple[int, int]] = {"paper": (2, 8), "code": (2, 4)}
FRACTALDB_N_RANGE: tuple[int, int] = (2, 7)
FRACTALDB_WEIGHT_FACTORS: tuple[float, ...] = (0.2, 0.6, 1.4, 1.8)
# Acceptance test of a FractalDB candidate: >= 20 % of a 512 x 512 canvas filled by 100k points.
FRACTALDB_FILL = {"min_fill": 0.2, "n_points": 100_000, "size": 512}


def check_n_range(n_min: int, n_max: int) -> None:
    """Raise InputError unless 1 <= n_min <= n_max."""
    if n_min < 1 or n_max < n_min:
        raise InputError(
            f"invalid map-count range n_min={n_min}, n_max={n_max}: need 1 <= n_min <= n_max "
            f"(the paper uses 2..8, its code 2..4)"
        )


def _sigma_singular_values(rng: np.random.Generator, n: int, alpha: float) -> np.ndarray:
    """Singular-value pairs (N, 2) with sum(s1 + 2 s2) = alpha and 0 <= s2 <= s1 <= 1, drawn map by map."""
    values = np.empty((n, 2))
    p = alpha
    q = alpha - 3 * n + 3
    for i in range(n - 1):
        s1 = rng.uniform(max(0.0, q / 3), min(1.0, p))
        q -= s1
        p -= s1
        s2 = rng.uniform(max(0.0, q / 2), min(s1, p / 2))
        q = q - 2 * s2 + 3
        p -= 2 * s2
        values[i] = s1, s2
    s2 = rng.uniform(max(0.0, (p - 1) / 2), p / 3)
    values[n - 1] = p - 2 * s2, s2
    return values


def _rotation(angle: np.ndarray) -> np.ndarray:
    """Rotation matrices (..., 2, 2) for angles (...)."""
    c, s = np.cos(angle), np.sin(angle)
    return np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)


def sample_sigma_factor(rng: np.random.Generator, n_min: int = 2, n_max: int = 8) -> np.ndarray:
    """One sigma-factor system (N, 2, 3) float64, N ~ U{n_min..n_max}, alpha exact by construction."""
    check_n_range(n_min, n_max)
    n = int(rng.integers(n_min, n_max + 1))
    alpha = rng.uniform((5 + n) / 2, (6 + n) / 2)
    sv = _sigma_singular_values(rng, n, alpha)
    theta = rng.uniform(-np.pi, np.pi, n)
    phi = rng.uniform(-np.pi, np.pi, n)
    d_signs = rng.choice([-1.0, 1.0], size=(n, 2))
    e_signs = rng.choice([-1.0, 1.0], size=(n, 2))
    middle = np.zeros((n, 2, 2))
    middle[:, 0, 0] = d_signs[:, 0] * sv[:, 0]
    middle[:, 1, 1] = d_signs[:, 1] * sv[:, 1]
    # A = R(theta) D Sigma R(phi) E; D Sigma is diagonal, E flips the columns of R(phi).
    linear = _rotation(theta) @ middle @ (_rotation(phi) * e_signs[:, None, :])
    system = np.empty((n, 2, 3))
    system[:, :, :2] = linear
    system[:, :, 2] = rng.uniform(-1.0, 1.0, (n, 2))
    return system


def sample_systems(count: int, seed: int, n_min: int = 2, n_max: int = 8) -> list[np.ndarray]:
    """Draw `count` sigma-factor systems; system i comes from its own stream (seed, i), so prefixes agree."""
    if count < 1:
        raise InputError(f"invalid system count {count}: must be a positive integer")
    check_n_range(n_min, n_max)
    return [
        sample_sigma_factor(np.random.default_rng(np.random.SeedSequence([seed, i])), n_min, n_max)
        for i in range(count)
    ]


def map_probabilities(system: np.ndarray) -> np.ndarray:
    """Map probabilities (N,) float64, |det A_i| normalised (uniform if every determinant is 0)."""
    det = np.abs(system[:, 0, 0] * system[:, 1, 1] - system[:, 0, 1] * system[:, 1, 0])
    total = det.sum()
    if not np.isfinite(total) or total <= 0.0:
        return np.full(len(system), 1.0 / len(system))
    return det / total


def singular_values(system: np.ndarray) -> np.ndarray:
    """Singular values (N, 2) of every linear part, largest first (closed form for 2x2)."""
    a, b = system[:, 0, 0], system[:, 0, 1]
    c, d = system[:, 1, 0], system[:, 1, 1]
    s_sum = np.hypot(a + d, c - b)
    s_diff = np.hypot(a - d, c + b)
    return np.stack([(s_sum + s_diff) / 2, np.abs(s_sum - s_diff) / 2], -1)


def fixed_point(system: np.ndarray) -> tuple[float, float]:
    """Fixed point of map 1, (I - A_1)^-1 b_1: it lies on the attractor, so no burn-in is needed."""
    a = np.eye(2) - system[0, :, :2]
    det = a[0, 0] * a[1, 1] - a[0, 1] * a[1, 0]
    b = system[0, :, 2]
    if abs(det) < 1e-12:
        return float(b[0]), float(b[1])
    return float((a[1, 1] * b[0] - a[0, 1] * b[1]) / det), float((a[0, 0] * b[1] - a[1, 0] * b[0]) / det)


def coefficients(system: np.ndarray) -> np.ndarray:
    """Kernel layout (N, 6) float64: a b c d e f with w(x, y) = (a x + b y + e, c x + d y + f)."""
    s = system
    return np.stack([s[:, 0, 0], s[:, 0, 1], s[:, 1, 0], s[:, 1, 1], s[:, 0, 2], s[:, 1, 2]], 1)


def fill_rate(
    system: np.ndarray, seed: int, n_points: int = 100_000, size: int = 512, min_fill: float = 0.0
) -> float:
    """Fraction of a size x size canvas hit by the system's chaos game (exact when >= min_fill)."""
    table = kernels.build_table(map_probabilities(system))
    x0, y0 = fixed_point(system)
    return float(kernels.chaos_fill(coefficients(system), table, x0, y0, seed, n_points, size, min_fill))


def fractaldb_candidate(seed: int, index: int, n_min: int = 2, n_max: int = 7) -> tuple[np.ndarray, int]:
    """Candidate `index` of a FractalDB search: system (N, 2, 3), parameters ~ U(-1, 1), and its seed."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, index]))
    n = int(rng.integers(n_min, n_max + 1))
    params = rng.uniform(-1.0, 1.0, (n, 6))
    system = params[:, [0, 1, 4, 2, 3, 5]].reshape(n, 2, 3)
    return system, int(rng.integers(0, 2**63))


def process_context() -> multiprocessing.context.BaseContext:
    """Start method for worker pools: fork where available, spawn otherwise.

    Workers only run numpy and numba kernels (never torch), so fork is safe here; it also needs no
    `if __name__ == "__main__"` guard in the caller's script and skips re-importing the package per worker.
    """
    return multiprocessing.get_context(
        "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    )


def _search_chunk(
    seed: int, start: int, stop: int, n_range: tuple[int, int], n_points: int, size: int, min_fill: float
) -> list[tuple[int, np.ndarray]]:
    """Accepted candidates (index, system) among indices start..stop-1."""
    accepted = []
    for index in range(start, stop):
        system, render_seed = fractaldb_candidate(seed, index, *n_range)
        if fill_rate(system, render_seed, n_points, size, min_fill) >= min_fill:
            accepted.append((index, system))
    return accepted


def sample_fractaldb(
    count: int,
    seed: int,
    workers: int | None = None,
    n_min: int = 2,
    n_max: int = 7,
    n_points: int = 100_000,
    size: int = 512,
    min_fill: float = 0.2,
    chunk: int = 64,
    progress: bool = True,
) -> list[np.ndarray]:
    """FractalDB search: the first `count` candidates (by index) whose fill rate reaches min_fill.

    Candidates are seeded from (seed, index) and taken in index order: the result does not depend on workers.
    """
    if count < 1:
        raise InputError(f"invalid category count {count}: must be a positive integer")
    check_n_range(n_min, n_max)
    workers = max(1, workers if workers is not None else (os.cpu_count() or 1))
    args = ((n_min, n_max), n_points, size, min_fill)
    found: list[np.ndarray] = []
    bar = tqdm(total=count, desc="FractalDB search", unit="category", disable=not progress)
    if workers == 1:
        start = 0
        while len(found) < count:
            hits = _search_chunk(seed, start, start + chunk, *args)
            found.extend(system for _, system in hits[: count - len(found)])
            bar.update(min(len(hits), bar.total - bar.n))
            start += chunk
    else:
        found = _search_parallel(count, seed, workers, chunk, args, bar)
    bar.close()
    return found[:count]


def _search_parallel(
    count: int, seed: int, workers: int, chunk: int, args: tuple, bar: tqdm
) -> list[np.ndarray]:
    """Run chunks in a process pool, consuming results strictly in chunk order."""
    found: list[np.ndarray] = []
    # Compile (or load) the kernels once here so that forked workers inherit them instead of each compiling.
    fill_rate(np.array([[[0.5, 0.0, 0.0], [0.0, 0.5, 0.0]]]), 0, 16, 8)
    context = process_context()
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        pending: dict[int, Future] = {}
        next_chunk = 0
        for next_chunk in range(workers * 4):
            pending[next_chunk] = pool.submit(
                _search_chunk, seed, next_chunk * chunk, (next_chunk + 1) * chunk, *args
            )
        consumed = 0
        while len(found) < count:
            hits = pending.pop(consumed).result()
            found.extend(system for _, system in hits[: count - len(found)])
            bar.update(min(len(hits), bar.total - bar.n))
            consumed += 1
            next_chunk += 1
            pending[next_chunk] = pool.submit(
                _search_chunk, seed, next_chunk * chunk, (next_chunk + 1) * chunk, *args
            )
        for future in pending.values():
            future.cancel()
    return found


def fractaldb_weight_rows() -> np.ndarray:
    """The 25 FractalDB weight rows (25, 6) over (a, b, c, d, e, f): identity, then parameter x factor."""
    rows = [np.ones(6)]
    for param in range(6):
        for factor in FRACTALDB_WEIGHT_FACTORS:
            row = np.ones(6)
            row[param] = factor
            rows.append(row)
    return np.stack(rows)


def apply_weight_row(system: np.ndarray, row: np.ndarray) -> np.ndarray:
    """Scale parameter (a, b, c, d, e, f) of every map by row (6,): system (N, 2, 3) -> (N, 2, 3)."""
    weights = np.array([[row[0], row[1], row[4]], [row[2], row[3], row[5]]])
    return system * weights


def expand_fractaldb(systems: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Each category's 25 weighted variants, category-major: C systems -> 25 C systems (use with S = 25 C)."""
    rows = fractaldb_weight_rows()
    return [apply_weight_row(system, row) for system in systems for row in rows]
