"""Greedy k-center coreset on a sparse random projection (PatchCore's memory-bank subsampling)."""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numba
import numpy as np
import torch
from tqdm.auto import tqdm

from fractalad.detectors.components import coreset_kernels as kernels
from fractalad.errors import InputError


def jl_min_dim(n_samples: int, eps: float) -> int:
    """Johnson-Lindenstrauss dimension 4 ln(n) / (eps^2/2 - eps^3/3) (284 for n = 102400, eps = 0.9)."""
    return int(4.0 * math.log(n_samples) / (eps**2 / 2.0 - eps**3 / 3.0))


def sparse_projection(n_features: int, n_components: int, generator: torch.Generator) -> torch.Tensor:
    """Achlioptas/Li sparse random matrix (n_features, n_components), density 1/sqrt(n_features)."""
    density = 1.0 / math.sqrt(n_features)
    nonzero = torch.rand(n_features, n_components, generator=generator) < density
    signs = torch.randint(0, 2, (n_features, n_components), generator=generator, dtype=torch.int8) * 2 - 1
    scale = math.sqrt(1.0 / density) / math.sqrt(n_components)
    return nonzero.float() * signs.float() * scale


def project_chunks(chunks: Sequence[torch.Tensor], eps: float, generator: torch.Generator) -> torch.Tensor:
    """Chunks of (n_i, C) rows projected to the JL dimension d, stored column-major: (d, N).

    Unprojected (C, N) when d >= C. The (d, N) layout is what `greedy_coreset` scans.
    """
    n_rows = sum(chunk.shape[0] for chunk in chunks)
    n_features = chunks[0].shape[1]
    dim = jl_min_dim(n_rows, eps)
    matrix = None
    if dim < n_features:
        matrix = sparse_projection(n_features, dim, generator).to(chunks[0].device)
    out = torch.empty(min(dim, n_features), n_rows, device=chunks[0].device)
    start = 0
    for chunk in chunks:
        # (d, C) x (C, n_i): written straight into the column block, no row-major copy kept.
        block = chunk.T if matrix is None else torch.mm(matrix.T, chunk.T)
        out[:, start : start + chunk.shape[0]] = block
        start += chunk.shape[0]
    return out


# Steps per compiled call: the progress bar moves between calls, the loop itself never returns to Python.
STEPS_PER_CALL = 64
# Points per parallel work unit of one step (the running minima of a unit stay in cache while it is scanned).
POINTS_PER_CHUNK = 4096


@torch.no_grad()
def greedy_coreset(
    features_t: torch.Tensor, n_select: int, generator: torch.Generator, progress: bool = False
) -> torch.Tensor:
    """Indices (n_select,) of a farthest-first traversal of the N columns of features_t (d, N).

    The first centre is drawn from generator; each next one is the point farthest from all centres so far
    (first index among equal distances). CPU tensors run the compiled int8-bounded traversal (exact, see
    coreset_kernels); other devices run the plain traversal as one mat-vec per step.
    """
    if features_t.ndim != 2 or features_t.shape[1] == 0:
        raise InputError(
            f"greedy_coreset needs features (d, N) with N >= 1, got shape {tuple(features_t.shape)}"
        )
    n_rows = features_t.shape[1]
    n_select = max(1, min(n_select, n_rows))
    first = int(torch.randint(n_rows, (1,), generator=generator))
    if features_t.device.type != "cpu":
        return traverse_torch(features_t, n_select, first, progress)
    if features_t.dtype != torch.float64:
        features_t = features_t.float()
    selected, _ = traverse_compiled(features_t.detach().contiguous().numpy(), n_select, first, progress)
    return torch.from_numpy(selected)


@dataclass(frozen=True)
class TraversalCounts:
    """What the compiled traversal touched.

    skipped: points passed over by the triangle inequality; exact: exact distances computed; moved: how many
    of those moved a point to the new centre (the others were points the int8 bound could not decide).
    """

    steps: int
    points: int
    skipped: int
    exact: int
    moved: int


def traverse_compiled(
    features: np.ndarray, n_select: int, first: int, progress: bool = False
) -> tuple[np.ndarray, TraversalCounts]:
    """Farthest-first traversal of the columns of features (d, N) float32/float64 from column `first`.

    Besides the (d, N) input it holds a row-major copy (4 B per value, read only for exact distances) and the
    int8 codes twice (1 B per value, read every step; the second copy receives each re-sort): peak memory is
    about 2.5x the projection.
    """
    threads = _ThreadChoice(max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)))
    dim, n = features.shape
    mean = features.mean(axis=1, dtype=np.float64)  # centring keeps the int8 codes' error small
    # Codes and centres padded with zeros to whole 16-lane vectors: no scalar remainder in the per-point dot.
    padded = -(-dim // 16) * 16
    rows, codes = np.empty((n, dim), features.dtype), np.zeros((n, padded), np.int8)
    scale, sq32, code_error = np.empty(n, np.float32), np.empty(n, np.float32), np.empty(n, np.float32)
    sq_norm = np.empty(n)
    kernels.encode(
        features, mean, rows, codes, scale, sq_norm, sq32, code_error, kernels.float32_dot_slack(padded)
    )
    points = _SortedPoints(np.arange(n), codes, scale, sq_norm, sq32, code_error, np.full(n, np.inf))
    centre_codes = np.zeros((n_select, padded), np.int8)
    centre_data = [np.empty(n_select, np.float32) for _ in range(3)]  # scale, squared norm, code error
    to_centres = np.empty(n_select)
    selected = np.empty(n_select, np.int64)
    selected[0] = first
    counts, probe = np.zeros(3, np.int64), np.zeros(2, np.int64)
    bar = tqdm(
        total=n_select, desc="coreset", unit="step", leave=False, mininterval=2.0, disable=not progress
    )
    next_sort = FIRST_SORT
    blocks = points.cut_blocks()
    with bar:
        for start in range(0, n_select, STEPS_PER_CALL):
            if start >= next_sort and probe[1] >= n * SORT_MIN_SKIPPED:
                points.sort()
                blocks = points.cut_blocks()
                next_sort = start + min(SORT_EVERY, max(STEPS_PER_CALL, int(start * (SORT_GROWTH - 1))))
            stop = min(n_select, start + STEPS_PER_CALL)
            threads.start_call()
            kernels.run_steps(
                rows,
                mean,
                points.order,
                points.position,
                points.codes,
                points.scale,
                points.sq_norm,
                points.sq32,
                points.code_error,
                points.min_sq,
                points.owner,
                centre_codes,
                *centre_data,
                to_centres,
                *blocks,
                counts,
                probe,
                selected,
                start,
                stop,
            )
            threads.end_call()
            bar.update(stop - start)
    skipped, exact, moved = counts
    return selected, TraversalCounts(n_select, n, int(skipped), int(exact), int(moved))


# The points are re-sorted by centre after FIRST_SORT steps, then whenever the step count has grown by
# SORT_GROWTH, but at least every SORT_EVERY steps: each point that moves to a new centre splits the block it
# sits in for the block test's purpose (its radius stays that of the block's old centre), so late steps, which
# move few points, still need a fresh order now and then to keep the radii tight.
FIRST_SORT = 64
SORT_GROWTH = 1.25
SORT_EVERY = 1024
# ... and only while the last triangle-inequality check skipped at least this fraction of the points: on
# features without structure (Gaussian ones) nothing is skipped and sorting would be pure cost.
SORT_MIN_SKIPPED = 0.125


class _ThreadChoice:
    """Runs each call of the step kernel on all threads or on one, whichever measured faster.

    Every step ends in a reduction over threads, so a thread that the OS deschedules (another job on the
    cores) stalls the step for a time slice: on a loaded machine one thread beats two by 2-4x, on idle cores
    two beat one. Each count's seconds per call are tracked and the other count is re-tried every
    RETRY_EVERY calls. The selected indices do not depend on the thread count (fixed chunks, ordered ties).
    """

    RETRY_EVERY = 16

    def __init__(self, most: int) -> None:
        self.choices = sorted({1, most})
        self.seconds = {count: 0.0 for count in self.choices}  # latest seconds per call of each count
        self.calls = 0
        self.current = most
        self.started = 0.0

    def start_call(self) -> None:
        if len(self.choices) > 1:
            untried = [count for count in self.choices if self.seconds[count] == 0.0]
            best = min(self.choices, key=lambda count: self.seconds[count])
            other = next(count for count in self.choices if count != best)
            retry = self.calls % self.RETRY_EVERY == self.RETRY_EVERY - 1
            self.current = untried[-1] if untried else other if retry else best
        numba.set_num_threads(self.current)
        self.started = time.perf_counter()

    def end_call(self) -> None:
        if self.calls > 0:  # the first call computes every distance exactly: not comparable with the rest
            self.seconds[self.current] = time.perf_counter() - self.started
        self.calls += 1


class _SortedPoints:
    """The traversal's per-point arrays, kept in one order that `sort` regroups by centre.

    order (N,) maps a position to the original index and position is its inverse; the int8 codes, their
    scale, squared norms, code errors, running minima and centres are stored by position.
    """

    def __init__(
        self,
        order: np.ndarray,
        codes: np.ndarray,
        scale: np.ndarray,
        sq_norm: np.ndarray,
        sq32: np.ndarray,
        code_error: np.ndarray,
        min_sq: np.ndarray,
    ) -> None:
        self.order, self.codes, self.scale, self.sq_norm = order, codes, scale, sq_norm
        self.sq32, self.code_error, self.min_sq = sq32, code_error, min_sq
        self.owner = np.zeros(order.shape[0], np.int32)
        self.position = order.copy()
        self.spare: np.ndarray | None = None  # receives the codes in their next order

    def sort(self) -> None:
        """Regroup the points by (centre, running minimum, original index)."""
        permutation = np.lexsort((self.order, self.min_sq, self.owner))
        if self.spare is None:
            self.spare = np.empty_like(self.codes)
        kernels.gather_rows(self.codes, permutation, self.spare)
        self.codes, self.spare = self.spare, self.codes
        for name in ("order", "scale", "sq_norm", "sq32", "code_error", "min_sq", "owner"):
            setattr(self, name, getattr(self, name)[permutation])
        self.position[self.order] = np.arange(self.order.shape[0])

    def cut_blocks(self) -> tuple[np.ndarray, ...]:
        """(blocks, radii, maxima, their positions, chunk boundaries) of the current order, see cut_blocks."""
        return kernels.cut_blocks(self.owner, self.min_sq, kernels.BLOCK, POINTS_PER_CHUNK)


def traverse_torch(
    features_t: torch.Tensor, n_select: int, first: int, progress: bool = False
) -> torch.Tensor:
    """Plain farthest-first traversal: per step one mat-vec (d, N) and three O(N) updates, no host sync.

    Runs on a centred float64 copy, like the compiled path's exact distances: pooled activations share a large
    offset and clusters sit far from the mean, so |x|^2 - 2 x.c + |c|^2 in float32 would blur distances that
    differ in the 5th digit. The mat-vec stays memory-bound (8 B per value and step).
    """
    features_t = features_t.to(torch.float64, copy=True)  # (d, N), never the caller's tensor
    features_t -= features_t.mean(dim=1, keepdim=True)
    sq_norm = torch.linalg.vector_norm(features_t, dim=0).square_()  # (N,)
    selected = torch.empty(n_select, dtype=torch.long, device=features_t.device)
    selected[0] = first
    min_sq = torch.full_like(sq_norm, math.inf)
    distance = torch.empty_like(sq_norm)
    steps = tqdm(
        range(n_select), desc="coreset", unit="step", leave=False, mininterval=2.0, disable=not progress
    )
    for step in steps:
        new = selected[step : step + 1]  # (1,) index kept on the device
        centre = features_t.index_select(1, new).squeeze(1)  # (d,)
        torch.addmv(sq_norm, features_t.T, centre, alpha=-2.0, out=distance)  # |x|^2 - 2 x.c
        distance.add_(sq_norm.index_select(0, new)).clamp_min_(0.0)
        torch.minimum(min_sq, distance, out=min_sq)
        min_sq.index_fill_(0, new, 0.0)
        if step + 1 < n_select:
            selected[step + 1] = torch.argmax(min_sq)
    return selected.cpu()
