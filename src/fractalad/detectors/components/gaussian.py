"""Per-position multivariate Gaussians and batched Mahalanobis distances (PaDiM)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

# Budget for one chunk of (positions, F, F) covariance temporaries: 2**24 floats = 64 MiB.
CHUNK_ELEMENTS = 1 << 24


@torch.no_grad()
def fit_gaussians(
    parts: Sequence[torch.Tensor], regularization: float, chunk_elements: int = CHUNK_ELEMENTS
) -> tuple[torch.Tensor, torch.Tensor]:
    """Batches of embeddings (n_i, F, P) -> mean (F, P), inverse covariance (P, F, F) of cov + reg * I.

    The batches are never concatenated: each chunk of positions (sized to the memory budget) gathers its
    slice from every batch. The inverse comes from a Cholesky factor (the regularised covariance is positive
    definite), with float64 only for chunks where float32 fails.
    """
    n_samples = sum(part.shape[0] for part in parts)
    if n_samples < 2:
        raise ValueError(f"a covariance needs at least 2 training images, got {n_samples}")
    _, n_features, n_positions = parts[0].shape
    mean = sum(part.sum(0) for part in parts) / n_samples  # (F, P)
    inverse = torch.empty(n_positions, n_features, n_features, dtype=torch.float32, device=mean.device)
    chunk = max(1, chunk_elements // (n_features * max(n_features, n_samples)))
    for start in range(0, n_positions, chunk):
        stop = min(start + chunk, n_positions)
        centred = torch.cat([part[:, :, start:stop] for part in parts]) - mean[:, start:stop]  # (N, F, p)
        centred = centred.permute(2, 0, 1)  # (p, N, F)
        covariance = torch.bmm(centred.transpose(1, 2), centred).div_(n_samples - 1)
        covariance.diagonal(dim1=1, dim2=2).add_(regularization)
        inverse[start:stop] = _spd_inverse(covariance)
    return mean, inverse


def _spd_inverse(matrices: torch.Tensor) -> torch.Tensor:
    """Inverse of symmetric positive-definite (p, F, F) matrices via Cholesky; float64 retry if needed."""
    factor, info = torch.linalg.cholesky_ex(matrices)
    if bool((info == 0).all()):
        return torch.cholesky_inverse(factor)
    factor64 = torch.linalg.cholesky(matrices.double())
    return torch.cholesky_inverse(factor64).float()


@torch.no_grad()
def mahalanobis(
    embedding: torch.Tensor, mean: torch.Tensor, inverse: torch.Tensor, chunk: int = 1024
) -> torch.Tensor:
    """embedding (B, F, P), mean (F, P), inverse (P, F, F) -> distances (B, P)."""
    batch, _, n_positions = embedding.shape
    out = torch.empty(batch, n_positions, dtype=embedding.dtype, device=embedding.device)
    for start in range(0, n_positions, chunk):
        stop = min(start + chunk, n_positions)
        delta = (embedding[:, :, start:stop] - mean[:, start:stop]).permute(2, 0, 1)  # (p, B, F)
        squared = (torch.bmm(delta, inverse[start:stop]) * delta).sum(2)  # (p, B)
        out[:, start:stop] = squared.clamp_min_(0).sqrt_().T
    return out
