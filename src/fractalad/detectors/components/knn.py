"""Exact nearest neighbours in chunks, so the distance matrix never exceeds a fixed memory budget."""

from __future__ import annotations

import torch

# Elements of one (queries x bank) distance block: 2**24 floats = 64 MiB.
BLOCK_ELEMENTS = 1 << 24


def nearest_neighbours(
    queries: torch.Tensor, bank: torch.Tensor, k: int = 1, block_elements: int = BLOCK_ELEMENTS
) -> tuple[torch.Tensor, torch.Tensor]:
    """Euclidean k-NN of queries (M, C) in bank (K, C) -> distances (M, k) ascending, indices (M, k)."""
    k = min(k, bank.shape[0])
    bank_sq = bank.pow(2).sum(1)  # (K,)
    rows = max(1, block_elements // max(1, bank.shape[0]))
    distances, indices = [], []
    for start in range(0, queries.shape[0], rows):
        chunk = queries[start : start + rows]
        # ||q||^2 - 2 q.b + ||b||^2, clamped against rounding below zero.
        block = torch.addmm(bank_sq.unsqueeze(0), chunk, bank.T, alpha=-2.0)
        block.add_(chunk.pow(2).sum(1, keepdim=True)).clamp_min_(0)
        if k == 1:
            value, index = block.min(1, keepdim=True)
        else:
            value, index = block.topk(k, dim=1, largest=False)
        distances.append(value.sqrt_())
        indices.append(index)
    return torch.cat(distances), torch.cat(indices)
