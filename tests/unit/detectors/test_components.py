"""Detector building blocks against straightforward reference computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fractalad.detectors.components.blur import gaussian_blur, gaussian_kernel1d, kernel_size_for
from fractalad.detectors.components.coreset import (
    greedy_coreset,
    jl_min_dim,
    project_chunks,
    sparse_projection,
)
from fractalad.detectors.components.gaussian import fit_gaussians, mahalanobis
from fractalad.detectors.components.knn import nearest_neighbours
from fractalad.detectors.patchcore import rows_from_chunks


def plain_greedy(features: torch.Tensor, n_select: int, first: int) -> list[int]:
    """Textbook farthest-first traversal (what Anomalib's KCenterGreedy computes)."""
    selected = [first]
    distance = torch.linalg.vector_norm(features - features[first], dim=1)
    for _ in range(n_select - 1):
        index = int(torch.argmax(distance))
        selected.append(index)
        distance = torch.minimum(distance, torch.linalg.vector_norm(features - features[index], dim=1))
    return selected


@pytest.mark.parametrize("kind", ["gaussian", "clustered"])
def test_greedy_coreset_equals_textbook_traversal(kind: str):
    generator = torch.Generator().manual_seed(0)
    if kind == "gaussian":
        features = torch.randn(3000, 16, generator=generator, dtype=torch.float64)
    else:
        centres = 5 * torch.randn(12, 16, generator=generator, dtype=torch.float64)
        labels = torch.randint(12, (3000,), generator=generator)
        features = centres[labels] + 0.3 * torch.randn(3000, 16, generator=generator, dtype=torch.float64)
    selected = greedy_coreset(features.T.contiguous(), 300, torch.Generator().manual_seed(1))
    assert selected.tolist() == plain_greedy(features, 300, int(selected[0]))
    assert len(set(selected.tolist())) == 300


def test_greedy_coreset_covers_clusters_and_is_seeded():
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    points = centres.repeat_interleave(50, 0) + 0.01 * torch.randn(
        150, 2, generator=torch.Generator().manual_seed(0)
    )
    picked = greedy_coreset(points.T.contiguous(), 3, torch.Generator().manual_seed(5))
    assert sorted(int(i) // 50 for i in picked) == [0, 1, 2]
    again = greedy_coreset(points.T.contiguous(), 3, torch.Generator().manual_seed(5))
    assert torch.equal(picked, again)


def test_projection_dimension_and_sparsity():
    assert jl_min_dim(102400, 0.9) == 284  # 4 ln(102400) / (0.405 - 0.243)
    matrix = sparse_projection(400, 50, torch.Generator().manual_seed(0))
    density = (matrix != 0).float().mean().item()
    assert abs(density - 1 / 20) < 0.01
    magnitudes = torch.unique(matrix.abs())
    assert magnitudes[0] == 0.0 and len(magnitudes) == 2
    assert magnitudes[1].item() == pytest.approx(np.sqrt(20) / np.sqrt(50))
    chunks = [torch.randn(100, 400), torch.randn(60, 400)]
    projected = project_chunks(chunks, 0.9, torch.Generator().manual_seed(0))
    assert projected.shape == (jl_min_dim(160, 0.9), 160)  # column-major (d, N)
    matrix = sparse_projection(400, jl_min_dim(160, 0.9), torch.Generator().manual_seed(0))
    torch.testing.assert_close(projected.T, torch.cat(chunks) @ matrix, rtol=1e-4, atol=1e-4)
    small = [torch.randn(10, 8)]
    assert torch.equal(project_chunks(small, 0.9, torch.Generator()), small[0].T)  # d >= C: no projection


def test_rows_from_chunks_matches_concatenation():
    chunks = [torch.randn(5, 3), torch.randn(2, 3), torch.randn(7, 3)]
    indices = torch.tensor([13, 0, 6, 5, 7, 4])
    assert torch.equal(rows_from_chunks(chunks, indices), torch.cat(chunks)[indices])


def test_nearest_neighbours_match_cdist_in_small_blocks():
    generator = torch.Generator().manual_seed(0)
    queries, bank = torch.randn(37, 8, generator=generator), torch.randn(50, 8, generator=generator)
    reference = torch.cdist(queries, bank)
    distance, index = nearest_neighbours(queries, bank, k=3, block_elements=100)  # forces 2-row blocks
    expected, expected_index = reference.topk(3, dim=1, largest=False)
    torch.testing.assert_close(distance, expected, rtol=1e-4, atol=1e-4)
    assert torch.equal(index, expected_index)
    single, single_index = nearest_neighbours(queries, bank, k=1)
    assert single.shape == (37, 1) and torch.equal(single_index[:, 0], reference.argmin(1))


def test_blur_kernel_and_mass():
    assert kernel_size_for(4.0) == 33
    kernel = gaussian_kernel1d(4.0)
    assert kernel.shape == (33,) and abs(kernel.sum().item() - 1) < 1e-6 and int(kernel.argmax()) == 16
    maps = torch.zeros(1, 64, 64)
    maps[0, 32, 32] = 1.0
    blurred = gaussian_blur(maps, 4.0)
    assert blurred.shape == maps.shape
    assert abs(blurred.sum().item() - 1.0) < 1e-4  # mass kept away from the border
    assert torch.allclose(blurred[0], blurred[0].T, atol=1e-7) and int(blurred.argmax()) == 32 * 64 + 32
    constant = torch.full((2, 1, 20, 20), 3.0)
    torch.testing.assert_close(gaussian_blur(constant, 4.0), constant)  # replicate border on tiny maps
    assert gaussian_blur(maps, 0.0) is maps


def test_gaussians_match_numpy_and_mahalanobis():
    generator = torch.Generator().manual_seed(0)
    embeddings = torch.randn(30, 5, 7, generator=generator) * torch.linspace(0.5, 2.0, 5).view(1, 5, 1)
    # 60 elements force one position per chunk; split(7) feeds uneven batches.
    mean, inverse = fit_gaussians(list(embeddings.split(7)), 0.01, chunk_elements=60)
    for position in (0, 6):
        x = embeddings[:, :, position].double().numpy()
        cov = np.cov(x, rowvar=False) + 0.01 * np.eye(5)
        np.testing.assert_allclose(inverse[position].numpy(), np.linalg.inv(cov), rtol=1e-4, atol=1e-5)
    queries = torch.randn(3, 5, 7, generator=generator)
    distances = mahalanobis(queries, mean, inverse, chunk=3)
    delta = (queries[1, :, 4] - mean[:, 4]).double()
    expected = torch.sqrt(delta @ inverse[4].double() @ delta)
    assert distances.shape == (3, 7) and abs(distances[1, 4].item() - expected.item()) < 1e-4
