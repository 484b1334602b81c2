"""Compiled farthest-first traversal: int8 codes bound every distance, exact float64 only where unsure.

One step of the traversal must look at every point, so its cost is the bytes it reads. The (d, N) float32
projection is read once, into centred per-point int8 codes (N, d) row-major: 1 byte per value instead of 4.
For each point p and new centre c the coded distance

    D~ = |x_p|^2 + |c|^2 - 2 s_p (q_p . c)           (s_p q_p ~ x_p - mean, centred coordinates)

differs from the true squared distance by at most 2 |c| e_p plus float32 rounding, where the bound
e_p >= |x_p - s_p q_p| is measured exactly when the codes are made (Cauchy-Schwarz). Only when D~ minus that
margin could still beat the point's running minimum is its exact float64 distance computed, from a row-major
copy of the float32 features (contiguous, ~4d bytes). So the selected indices are those of the exact
traversal, and a step reads d + 20 bytes per point plus the exact rows of the points that (nearly all) do
move to the new centre.

Points whose current centre a is far from the new centre (d(a, c) >= 2 d(p, a), triangle inequality) cannot be
claimed and are skipped without reading their codes; the step only checks this when the last check paid for
the centre-to-centre distances it needs.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

UNIT = 2.0**-24  # float32 unit roundoff
CODE_MAX = 127.0
# Re-check whether triangle-inequality skipping pays at least this often (steps).
PROBE_EVERY = 32
# Skipping pays when it saves more code bytes than the centre-to-centre distances cost (4 B x d per centre).
PRUNE_GAIN = 6


def float32_dot_slack(dim: int) -> float:
    """Relative error bound of a float32 dot product of length dim (any summation order, input rounding)."""
    gamma = dim * UNIT / (1.0 - dim * UNIT)
    return gamma + 4.0 * UNIT


@njit(cache=True, parallel=True)
def encode(features, mean, rows, codes, scale, sq_norm, sq32, code_error, slack):  # pragma: no cover
    """Row-major copy and centred int8 codes of the columns of features (d, N).

    Writes rows (N, d) (the same values as features.T), codes (N, >= d) int8 (columns past d are left as they
    are: zero padding), scale (N,), centred squared norms in float64 and float32, and per-point bounds
    e_p >= |x_p - mean - scale_p codes_p| widened by the float32 dot rounding (slack).
    """
    dim, n = features.shape
    block = 64  # consecutive columns: the strided reads of one block share cache lines
    for b in prange((n + block - 1) // block):
        for p in range(b * block, min(n, b * block + block)):
            amax, sq = 0.0, 0.0
            for j in range(dim):
                rows[p, j] = features[j, p]
                value = np.float64(features[j, p]) - mean[j]
                amax = max(amax, abs(value))
                sq += value * value
            step = np.float64(np.float32(amax / CODE_MAX))
            scale[p] = step
            error, decoded = 0.0, 0.0
            for j in range(dim):
                value = np.float64(rows[p, j]) - mean[j]
                code = 0.0 if step == 0.0 else min(CODE_MAX, max(-CODE_MAX, np.rint(value / step)))
                codes[p, j] = np.int8(code)
                error += (value - step * code) ** 2
                decoded += (step * code) ** 2
            sq_norm[p] = sq
            sq32[p] = np.float32(sq)
            code_error[p] = np.float32((math.sqrt(error) + slack * math.sqrt(decoded)) * (1.0 + 8.0 * UNIT))


@njit(cache=True, fastmath=True)
def _row_dot(rows, p, vector32):  # pragma: no cover
    """float32 rows[p] . vector; any summation order (fastmath) is covered by the error bounds."""
    total = np.float32(0.0)
    for j in range(vector32.shape[0]):
        total += vector32[j] * np.float32(rows[p, j])
    return total


@njit(cache=True, fastmath=True)
def _exact_sq_distance(rows, mean, p, centre, sq_p, sq_c):  # pragma: no cover
    """Squared distance of point p to the centred centre, in float64 from the float32 features."""
    dot = 0.0
    for j in range(centre.shape[0]):
        dot += (np.float64(rows[p, j]) - mean[j]) * centre[j]
    return max(0.0, sq_p + sq_c - 2.0 * dot)


@njit(cache=True)
def _may_be_closer(p, centre32, c_sq, c_norm, best, codes, scale, sq32, code_error):  # pragma: no cover
    """False when the int8 bound proves d(p, c)^2 >= best; True when only the exact distance can tell."""
    rounding = 16.0 * UNIT * (sq32[p] + c_sq)
    coarse = sq32[p] + c_sq - 2.0 * scale[p] * _row_dot(codes, p, centre32)
    return coarse - 2.0 * c_norm * code_error[p] - rounding < best


@njit(cache=True)
def _scan_points(  # pragma: no cover
    lo,
    hi,
    step,
    prune,
    centre,
    centre32,
    c_sq,
    c_norm,
    rows,
    mean,
    codes,
    scale,
    sq_norm,
    sq32,
    code_error,
    min_sq,
    owner,
    to_centres,
):
    """Update the running minima of points lo..hi-1 for the new centre; (max, its first index, counts)."""
    best, best_at, skipped, exact, moved = -1.0, -1, 0, 0, 0
    for p in range(lo, hi):
        m = min_sq[p]
        if m > 0.0:
            if prune and to_centres[owner[p]] >= 4.0 * m * (1.0 + 1e-9):
                skipped += 1
            elif m == np.inf or _may_be_closer(p, centre32, c_sq, c_norm, m, codes, scale, sq32, code_error):
                exact += 1
                distance = _exact_sq_distance(rows, mean, p, centre, sq_norm[p], c_sq)
                if distance < m:
                    m = distance
                    min_sq[p] = distance
                    owner[p] = step
                    moved += 1
        if m > best:
            best, best_at = m, p
    return best, best_at, skipped, exact, moved


@njit(cache=True, parallel=True)
def run_steps(  # pragma: no cover
    rows,
    mean,
    codes,
    scale,
    sq_norm,
    sq32,
    code_error,
    min_sq,
    owner,
    centres,
    centre_sq,
    to_centres,
    selected,
    chunk_best,
    chunk_index,
    chunk_counts,
    probe,
    start,
    stop,
):
    """Traversal steps start..stop-1: selected[step] becomes a centre, selected[step + 1] the farthest point.

    min_sq (N,) float64 running minima (inf before step 0); owner (N,) int32 each point's centre; centres
    (K, d) float32 and centre_sq (K,) the centred centres; probe (3,) int64 = (step of the last triangle-
    inequality check, points it skipped, total skipped so far); chunk_counts (n_chunks, 3) int64 += (points
    skipped, exact distances, points moved); chunk_best / chunk_index (n_chunks,) hold each chunk's maximum.
    """
    n, dim = rows.shape
    n_chunks = chunk_best.shape[0]
    chunk = (n + n_chunks - 1) // n_chunks
    centre = np.empty(dim)
    lanes = centres.shape[1]  # d, or d padded with zeros
    dot_slack = 2.0 * (lanes * UNIT / (1.0 - lanes * UNIT)) + 32.0 * UNIT
    for step in range(start, stop):
        new = selected[step]
        for j in range(dim):
            centre[j] = np.float64(rows[new, j]) - mean[j]
            centres[step, j] = np.float32(centre[j])
        c_sq = sq_norm[new]
        centre_sq[step] = c_sq
        c_norm = math.sqrt(c_sq) * (1.0 + 8.0 * UNIT)
        min_sq[new] = 0.0
        prune = step > 0 and (step - probe[0] >= PROBE_EVERY or probe[1] > PRUNE_GAIN * step)
        centre32 = centres[step]
        if prune:  # lower bounds on d(centre a, new centre)^2
            for a in prange(step):
                total = centre_sq[a] + c_sq
                to_centres[a] = total - 2.0 * np.float64(_row_dot(centres, a, centre32)) - dot_slack * total
        for ci in prange(n_chunks):
            best, best_at, skipped, exact, moved = _scan_points(
                ci * chunk,
                min(n, ci * chunk + chunk),
                step,
                prune,
                centre,
                centre32,
                c_sq,
                c_norm,
                rows,
                mean,
                codes,
                scale,
                sq_norm,
                sq32,
                code_error,
                min_sq,
                owner,
                to_centres,
            )
            chunk_best[ci], chunk_index[ci] = best, best_at
            chunk_counts[ci, 0] += skipped
            chunk_counts[ci, 1] += exact
            chunk_counts[ci, 2] += moved
        best, best_at, skipped_now = -1.0, 0, 0
        for ci in range(n_chunks):  # first maximum over chunks in order: the first index among equal maxima
            skipped_now += chunk_counts[ci, 0]
            if chunk_best[ci] > best:
                best, best_at = chunk_best[ci], chunk_index[ci]
        if prune:
            probe[0], probe[1] = step, skipped_now - probe[2]
        probe[2] = skipped_now
        if step + 1 < selected.shape[0]:
            selected[step + 1] = best_at
