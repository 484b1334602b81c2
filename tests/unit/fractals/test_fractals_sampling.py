"""Sampler invariants and statistics against a straightforward reference written here."""

from __future__ import annotations

import numpy as np
import pytest

from fractalad.errors import InputError
from fractalad.fractals import sampling


def _reference_sigma_system(rng: np.random.Generator, n_min: int, n_max: int) -> tuple[np.ndarray, float]:
    """Direct transcription of SPECS 1 with explicit matrices: (system (N, 2, 3), alpha)."""
    n = int(rng.integers(n_min, n_max + 1))
    alpha = rng.uniform((5 + n) / 2, (6 + n) / 2)
    p, q = alpha, alpha - 3 * n + 3
    pairs = []
    for _ in range(n - 1):
        s1 = rng.uniform(max(0, q / 3), min(1, p))
        q, p = q - s1, p - s1
        s2 = rng.uniform(max(0, q / 2), min(s1, p / 2))
        q, p = q - 2 * s2 + 3, p - 2 * s2
        pairs.append((s1, s2))
    s2 = rng.uniform(max(0, (p - 1) / 2), p / 3)
    pairs.append((p - 2 * s2, s2))
    maps = []
    for s1, s2 in pairs:
        t, f = rng.uniform(-np.pi, np.pi, 2)
        rot_t = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
        rot_f = np.array([[np.cos(f), -np.sin(f)], [np.sin(f), np.cos(f)]])
        d = np.diag(rng.choice([-1.0, 1.0], 2))
        e = np.diag(rng.choice([-1.0, 1.0], 2))
        linear = rot_t @ d @ np.diag([s1, s2]) @ rot_f @ e
        maps.append(np.column_stack([linear, rng.uniform(-1, 1, 2)]))
    return np.stack(maps), alpha


@pytest.mark.parametrize("preset", ["paper", "code"])
def test_sigma_factor_invariants(preset: str) -> None:
    n_min, n_max = sampling.SIGMA_PRESETS[preset]
    rng = np.random.default_rng(0)
    for _ in range(300):
        system = sampling.sample_sigma_factor(rng, n_min, n_max)
        n = len(system)
        assert system.shape == (n, 2, 3) and system.dtype == np.float64
        assert n_min <= n <= n_max
        sv = np.linalg.svd(system[:, :, :2], compute_uv=False)
        assert (sv <= 1 + 1e-12).all() and (sv >= 0).all()
        alpha = (sv[:, 0] + 2 * sv[:, 1]).sum()
        assert (5 + n) / 2 - 1e-9 <= alpha <= (6 + n) / 2 + 1e-9
        assert np.abs(system[:, :, 2]).max() <= 1
        probabilities = sampling.map_probabilities(system)
        assert probabilities.min() >= 0 and probabilities.sum() == pytest.approx(1.0)


def test_closed_form_singular_values_match_numpy() -> None:
    system = np.random.default_rng(1).uniform(-1, 1, (50, 2, 3))
    np.testing.assert_allclose(
        sampling.singular_values(system), np.linalg.svd(system[:, :, :2], compute_uv=False), atol=1e-12
    )


def test_statistics_match_reference() -> None:
    ours = [sampling.sample_sigma_factor(np.random.default_rng([7, i])) for i in range(3000)]
    ref_rng = np.random.default_rng(99)
    reference = [_reference_sigma_system(ref_rng, 2, 8) for _ in range(3000)]

    def alpha(system: np.ndarray) -> float:
        sv = np.linalg.svd(system[:, :, :2], compute_uv=False)
        return float((sv[:, 0] + 2 * sv[:, 1]).sum())

    hist_ours = np.bincount([len(s) for s in ours], minlength=9)[2:] / 3000
    hist_ref = np.bincount([len(s) for s, _ in reference], minlength=9)[2:] / 3000
    np.testing.assert_allclose(hist_ours, hist_ref, atol=0.03)
    np.testing.assert_allclose(hist_ours, 1 / 7, atol=0.03)
    assert np.mean([alpha(s) for s in ours]) == pytest.approx(np.mean([a for _, a in reference]), abs=0.08)
    first_s1_ours = np.mean([np.linalg.svd(s[0, :, :2], compute_uv=False)[0] for s in ours])
    first_s1_ref = np.mean([np.linalg.svd(s[0, :, :2], compute_uv=False)[0] for s, _ in reference])
    assert first_s1_ours == pytest.approx(first_s1_ref, abs=0.03)
    det_ours = np.mean([np.linalg.det(s[:, :, :2]).mean() for s in ours])
    assert abs(det_ours) < 0.02  # independent sign flips make determinants symmetric around 0


def test_fixed_point_is_fixed_by_first_map() -> None:
    system = sampling.sample_sigma_factor(np.random.default_rng(3))
    x, y = sampling.fixed_point(system)
    image = system[0, :, :2] @ np.array([x, y]) + system[0, :, 2]
    np.testing.assert_allclose(image, [x, y], atol=1e-10)


def test_coefficients_layout() -> None:
    system = np.arange(12, dtype=float).reshape(2, 2, 3)
    # w(x, y) = (a x + b y + e, c x + d y + f)
    np.testing.assert_array_equal(sampling.coefficients(system)[0], [0, 1, 3, 4, 2, 5])


def test_sample_systems_prefix_and_errors() -> None:
    long, short = sampling.sample_systems(5, 11), sampling.sample_systems(3, 11)
    for a, b in zip(long, short):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(InputError, match="n_min=5, n_max=3"):
        sampling.sample_systems(2, 0, 5, 3)
    with pytest.raises(InputError, match="invalid system count -2"):
        sampling.sample_systems(-2, 0)


def test_fractaldb_weight_rows() -> None:
    rows = sampling.fractaldb_weight_rows()
    assert rows.shape == (25, 6)
    np.testing.assert_array_equal(rows[0], np.ones(6))
    changed = {(int(np.flatnonzero(r != 1)[0]), float(r[r != 1][0])) for r in rows[1:]}
    assert changed == {(p, f) for p in range(6) for f in (0.2, 0.6, 1.4, 1.8)}
    system = np.ones((3, 2, 3))
    row = np.ones(6)
    row[4] = 0.2  # parameter e: the x translation
    weighted = sampling.apply_weight_row(system, row)
    np.testing.assert_array_equal(weighted[:, 0, 2], 0.2)
    assert weighted.sum() == pytest.approx(3 * 5 + 3 * 0.2)
    assert len(sampling.expand_fractaldb([system, system])) == 50


def test_fractaldb_candidates_and_fill_rate_reference() -> None:
    for index in range(20):
        system, _ = sampling.fractaldb_candidate(5, index)
        assert 2 <= len(system) <= 7 and np.abs(system).max() <= 1
    # Sierpinski triangle: the kernel's fill rate must agree with a plain numpy chaos game.
    sierpinski = np.array(
        [[[0.5, 0, 0], [0, 0.5, 0]], [[0.5, 0, 0.5], [0, 0.5, 0]], [[0.5, 0, 0], [0, 0.5, 0.5]]]
    )
    rng = np.random.default_rng(0)
    points = np.empty((60_000, 2))
    x = np.zeros(2)
    for i, k in enumerate(rng.integers(0, 3, len(points))):
        x = sierpinski[k, :, :2] @ x + sierpinski[k, :, 2]
        points[i] = x
    lo, hi = points.min(0), points.max(0)
    pixels = np.minimum(((points - lo) / (hi - lo) * 64).astype(int), 63)
    reference = len(np.unique(pixels[:, 1] * 64 + pixels[:, 0])) / 64**2
    assert sampling.fill_rate(sierpinski, 3, 60_000, 64) == pytest.approx(reference, abs=0.02)


def test_fractaldb_search_independent_of_workers() -> None:
    serial = sampling.sample_fractaldb(3, seed=4, workers=1, progress=False)
    parallel = sampling.sample_fractaldb(3, seed=4, workers=2, chunk=16, progress=False)
    assert len(serial) == len(parallel) == 3
    for a, b in zip(serial, parallel):
        np.testing.assert_array_equal(a, b)
        assert sampling.fill_rate(a, 0, 100_000, 512) >= 0.15
    with pytest.raises(InputError, match="invalid category count 0"):
        sampling.sample_fractaldb(0, seed=0)
