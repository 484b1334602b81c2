"""Greedy k-center coreset on a sparse random projection (PatchCore's memory-bank subsampling)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from tqdm.auto import tqdm


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


# Below this fraction of candidate points, gathering them beats one pass over all N x d values.
GATHER_FRACTION = 0.25


@torch.no_grad()
def greedy_coreset(features_t: torch.Tensor, n_select: int, generator: torch.Generator) -> torch.Tensor:
    """Indices (n_select,) of a farthest-first traversal of the N columns of features_t (d, N).

    Distances are squared and expanded (|x|^2 - 2 x.c + |c|^2), so one step is a single vector-matrix
    product over the features plus O(N) updates ((d, N) makes that product about twice as fast as (N, d)
    on CPU). Points the new centre cannot claim are skipped by the triangle inequality: with a = a point's
    current centre, d(a, c) >= 2 d(p, a) implies d(p, c) >= d(p, a); once clusters are tight a step only
    touches the few remaining candidates.
    """
    n_rows = features_t.shape[1]
    n_select = max(1, min(n_select, n_rows))
    first = int(torch.randint(n_rows, (1,), generator=generator))
    sq_norm = torch.linalg.vector_norm(features_t, dim=0).square_()  # (N,), no (d, N) temporary
    selected = torch.empty(n_select, dtype=torch.long)
    centres = torch.empty(n_select, features_t.shape[0], dtype=features_t.dtype, device=features_t.device)
    centre_sq = torch.empty(n_select, dtype=features_t.dtype, device=features_t.device)
    selected[0], centres[0], centre_sq[0] = first, features_t[:, first], sq_norm[first]
    min_sq = (sq_norm + sq_norm[first]).sub_(centres[0] @ features_t, alpha=2.0).clamp_min_(0)
    owner = torch.zeros(n_rows, dtype=torch.long, device=features_t.device)
    for step in tqdm(range(1, n_select), desc="coreset", leave=False, mininterval=2.0):
        new = int(torch.argmax(min_sq))
        centres[step], centre_sq[step], selected[step] = features_t[:, new], sq_norm[new], new
        centre, c_sq = centres[step], centre_sq[step]
        to_centres = torch.addmv(centre_sq[:step] + c_sq, centres[:step], centre, alpha=-2.0)  # (step,)
        candidates = torch.nonzero(to_centres[owner] < 4.0 * min_sq).squeeze(1)
        if candidates.numel() < GATHER_FRACTION * n_rows:
            gathered = features_t.index_select(1, candidates)  # (d, M)
            distance = (sq_norm[candidates] + c_sq).sub_(centre @ gathered, alpha=2.0)
            closer = distance < min_sq[candidates]
            moved = candidates[closer]
            min_sq[moved] = distance[closer].clamp_min_(0)
        else:
            distance = (sq_norm + c_sq).sub_(centre @ features_t, alpha=2.0)
            closer = distance < min_sq
            moved = torch.nonzero(closer).squeeze(1)
            min_sq = torch.where(closer, distance.clamp_min_(0), min_sq)
        owner[moved] = step
        min_sq[new] = 0.0
    return selected
