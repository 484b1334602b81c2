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

Points whose centre a is far from the new centre (d(a, c) >= 2 d(p, a), triangle inequality) cannot be
claimed. Skipping them only saves memory traffic if their codes are not between the codes that are read, so
the points are kept grouped: every so often they are re-sorted by (centre, distance to it), and the sorted order
is cut into blocks of at most BLOCK points of one centre. A block whose centre a and radius r (its largest
distance to a when it was cut) satisfy d(a, c) >= 2 r is skipped whole; its points may since have moved to
other centres, but each p in it still has d(p, c) >= d(a, c) - d(p, a) >= r >= its running minimum. The
centre-to-centre lower bounds come from the centres' own int8 codes (1 B per value and centre), and the step
only computes them when the last check paid for them. The arrays that describe points are in this sorted order
(`order[i]` is the original index of position i); the float32 rows stay in the original order.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

UNIT = 2.0**-24  # float32 unit roundoff
CODE_MAX = 127.0
# Re-check whether triangle-inequality skipping pays at least this often (steps).
PROBE_EVERY = 32
# Skipping pays when it saves more code bytes than the centre-to-centre bounds cost (d bytes per centre, like a
# point's codes, plus the float work): require twice as many skipped points as centres.
PRUNE_GAIN = 2
# Points per block: small enough that a block's radius is close to its points' distances, large enough that
# the per-block test and maximum cost little against the block's codes.
BLOCK = 32


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
def _scan_chunk(  # pragma: no cover
    first_block,
    end_block,
    blocks,
    block_radius,
    block_best,
    block_at,
    step,
    prune,
    centre,
    centre32,
    c_sq,
    c_norm,
    rows,
    mean,
    order,
    codes,
    scale,
    sq_norm,
    sq32,
    code_error,
    min_sq,
    owner,
    to_centres,
):
    """Update the running minima in blocks first_block..end_block-1 for the new centre.

    Returns the chunk's (max, its position, points skipped, exact distances, points moved). Among equal
    maxima the point with the smallest original index wins, as in the unsorted traversal.
    """
    best, best_at, skipped, exact, moved = -1.0, 0, 0, 0, 0
    for b in range(first_block, end_block):
        lo, hi = blocks[b, 0], blocks[b, 1]
        if prune and to_centres[blocks[b, 2]] >= 4.0 * block_radius[b] * (1.0 + 1e-9):
            skipped += hi - lo
        else:
            top, top_at, tied = -1.0, lo, False
            for p in range(lo, hi):
                m = min_sq[p]
                if m > 0.0:
                    if prune and to_centres[owner[p]] >= 4.0 * m * (1.0 + 1e-9):
                        skipped += 1
                    elif m == np.inf or _may_be_closer(
                        p, centre32, c_sq, c_norm, m, codes, scale, sq32, code_error
                    ):
                        exact += 1
                        distance = _exact_sq_distance(rows, mean, order[p], centre, sq_norm[p], c_sq)
                        if distance < m:
                            m = distance
                            min_sq[p] = distance
                            owner[p] = step
                            moved += 1
                if m > top:
                    top, top_at, tied = m, p, False
                elif m == top:
                    tied = True
            if tied:  # equal maxima (duplicate points): the smallest original index, in a second pass
                for p in range(lo, hi):
                    if min_sq[p] == top and order[p] < order[top_at]:
                        top_at = p
            block_best[b], block_at[b] = top, top_at
        value, where = block_best[b], block_at[b]
        if value > best or (value == best and order[where] < order[best_at]):
            best, best_at = value, where
    return best, best_at, skipped, exact, moved


@njit(cache=True, parallel=True)
def _centre_bounds(  # pragma: no cover
    step, centre32, c_sq, c_norm, centre_codes, centre_scale, centre_sq32, centre_error, out
):
    """out[a] <= d(centre a, new centre)^2 for a < step, from the centres' int8 codes (the points' bound)."""
    for a in prange(step):
        rounding = 16.0 * UNIT * (centre_sq32[a] + c_sq)
        coarse = centre_sq32[a] + c_sq - 2.0 * centre_scale[a] * _row_dot(centre_codes, a, centre32)
        out[a] = coarse - 2.0 * c_norm * centre_error[a] - rounding


@njit(cache=True, parallel=True)
def run_steps(  # pragma: no cover
    rows,
    mean,
    order,
    position,
    codes,
    scale,
    sq_norm,
    sq32,
    code_error,
    min_sq,
    owner,
    centre_codes,
    centre_scale,
    centre_sq32,
    centre_error,
    to_centres,
    blocks,
    block_radius,
    block_best,
    block_at,
    chunk_blocks,
    counts,
    probe,
    selected,
    start,
    stop,
):
    """Traversal steps start..stop-1: selected[step] becomes a centre, selected[step + 1] the farthest point.

    Point arrays are in sorted order (order: position -> original index, position: its inverse); min_sq
    running minima (inf before step 0), owner each point's centre (a step number). centre_* (K, ...) are the
    centres' codes and code data, to_centres (K,) scratch. blocks (n_blocks, 3) int64 = (first position, end,
    centre when cut); block_radius its largest running minimum then; block_best / block_at each block's current
    maximum and its position. chunk_blocks (n_chunks + 1,) splits the blocks into parallel work units;
    counts (3,) int64 += (points skipped, exact distances, points moved). probe (2,) int64 = (step of the last
    triangle-inequality check, points it skipped).
    """
    dim = rows.shape[1]
    lanes = codes.shape[1]  # d, or d padded with zeros
    n_chunks = chunk_blocks.shape[0] - 1
    centre = np.empty(dim)
    centre32 = np.zeros(lanes, np.float32)
    chunk_best, chunk_at = np.empty(n_chunks), np.empty(n_chunks, np.int64)
    chunk_counts = np.empty((n_chunks, 3), np.int64)
    for step in range(start, stop):
        new = selected[step]
        at = position[new]
        for j in range(dim):
            centre[j] = np.float64(rows[new, j]) - mean[j]
            centre32[j] = np.float32(centre[j])
        for j in range(lanes):
            centre_codes[step, j] = codes[at, j]
        centre_scale[step], centre_sq32[step], centre_error[step] = scale[at], sq32[at], code_error[at]
        c_sq = sq_norm[at]
        c_norm = math.sqrt(c_sq) * (1.0 + 8.0 * UNIT)
        min_sq[at] = 0.0
        prune = step > 0 and (step - probe[0] >= PROBE_EVERY or probe[1] > PRUNE_GAIN * step)
        if prune:
            _centre_bounds(
                step,
                centre32,
                c_sq,
                c_norm,
                centre_codes,
                centre_scale,
                centre_sq32,
                centre_error,
                to_centres,
            )
        for ci in prange(n_chunks):
            best, best_at, skipped, exact, moved = _scan_chunk(
                chunk_blocks[ci],
                chunk_blocks[ci + 1],
                blocks,
                block_radius,
                block_best,
                block_at,
                step,
                prune,
                centre,
                centre32,
                c_sq,
                c_norm,
                rows,
                mean,
                order,
                codes,
                scale,
                sq_norm,
                sq32,
                code_error,
                min_sq,
                owner,
                to_centres,
            )
            chunk_best[ci], chunk_at[ci] = best, best_at
            chunk_counts[ci, 0], chunk_counts[ci, 1], chunk_counts[ci, 2] = skipped, exact, moved
        best, best_at = -1.0, 0
        for ci in range(n_chunks):
            value, where = chunk_best[ci], chunk_at[ci]
            if value > best or (value == best and order[where] < order[best_at]):
                best, best_at = value, where
        step_counts = chunk_counts.sum(axis=0)
        counts += step_counts
        if prune:
            probe[0], probe[1] = step, step_counts[0]
        if step + 1 < selected.shape[0]:
            selected[step + 1] = order[best_at]


@njit(cache=True, parallel=True)
def gather_rows(source, index, out):  # pragma: no cover
    """out[i] = source[index[i]] for 2-D arrays (the int8 codes in their new order)."""
    for i in prange(index.shape[0]):
        for j in range(source.shape[1]):
            out[i, j] = source[index[i], j]


@njit(cache=True)
def cut_blocks(owner, min_sq, block_size, points_per_chunk):  # pragma: no cover
    """Blocks of points sorted by (centre, running minimum, original index).

    Returns blocks (n_blocks, 3) = (first position, end, centre) of at most block_size points of one centre,
    their radii (largest running minimum), their maxima and positions (the first, so the smallest original
    index among equal maxima), and chunk boundaries (n_chunks + 1,) of about points_per_chunk points.
    """
    n = owner.shape[0]
    blocks = np.empty((n // block_size + 1 + n, 3), np.int64)  # at most one block per point
    count, lo = 0, 0
    for p in range(1, n + 1):
        if p == n or owner[p] != owner[lo] or p - lo == block_size:
            blocks[count, 0], blocks[count, 1], blocks[count, 2] = lo, p, owner[lo]
            count, lo = count + 1, p
    blocks = blocks[:count].copy()
    radius, at = np.empty(count), np.empty(count, np.int64)
    for b in range(count):
        radius[b], at[b] = -1.0, blocks[b, 0]
        for p in range(blocks[b, 0], blocks[b, 1]):
            if min_sq[p] > radius[b]:
                radius[b], at[b] = min_sq[p], p
    chunks = [0]
    filled = 0
    for b in range(count):
        filled += blocks[b, 1] - blocks[b, 0]
        if filled >= points_per_chunk or b == count - 1:
            chunks.append(b + 1)
            filled = 0
    return blocks, radius, radius.copy(), at, np.array(chunks, np.int64)
