"""Detector building blocks against straightforward reference computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fractalad.detectors.components import coreset_kernels
from fractalad.detectors.components.blur import gaussian_blur, gaussian_kernel1d, kernel_size_for
from fractalad.detectors.components.coreset import (
    greedy_coreset,
    jl_min_dim,
    project_chunks,
    sparse_projection,
    traverse_compiled,
    traverse_torch,
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


def coreset_features(kind: str, n: int = 3000, dim: int = 24) -> torch.Tensor:
    """(N, d) float32 points: no structure, tight clusters, or non-negative with a large common offset."""
    generator = torch.Generator().manual_seed(0)
    if kind == "gaussian":
        return torch.randn(n, dim, generator=generator)
    if kind == "clustered":
        centres = 5 * torch.randn(12, dim, generator=generator)
        labels = torch.randint(12, (n,), generator=generator)
        return centres[labels] + 0.3 * torch.randn(n, dim, generator=generator)
    # Like pooled ReLU activations: distances are small next to the norms (hard for expanded distances).
    return 50.0 + torch.rand(n, dim, generator=generator).square()


@pytest.mark.parametrize("kind", ["gaussian", "clustered", "offset"])
def test_greedy_coreset_equals_textbook_traversal(kind: str):
    features = coreset_features(kind)  # float32, as PatchCore projects
    selected = greedy_coreset(features.T.contiguous(), 300, torch.Generator().manual_seed(1))
    assert selected.tolist() == plain_greedy(features.double(), 300, int(selected[0]))
    assert len(set(selected.tolist())) == 300


@pytest.mark.parametrize("kind", ["gaussian", "clustered", "offset"])
def test_device_traversal_equals_textbook_traversal(kind: str):
    features = coreset_features(kind)  # float32 through the mat-vec path, run here on the CPU
    assert traverse_torch(features.T.contiguous(), 200, 17).tolist() == plain_greedy(
        features.double(), 200, 17
    )


def test_int8_bound_holds_and_decides_almost_every_point():
    features = coreset_features("gaussian", 2000, 40).numpy()
    points = features.T.copy()  # (d, N)
    n, dim = features.shape
    mean = points.mean(axis=1, dtype=np.float64)
    rows, codes = np.empty((n, dim), np.float32), np.empty((n, dim), np.int8)
    scale, sq32, error = (np.empty(n, np.float32) for _ in range(3))
    sq_norm = np.empty(n)
    slack = coreset_kernels.float32_dot_slack(dim)
    coreset_kernels.encode(points, mean, rows, codes, scale, sq_norm, sq32, error, slack)
    assert np.array_equal(rows, features)
    centred = features.astype(np.float64) - mean
    np.testing.assert_allclose(sq_norm, (centred**2).sum(1), rtol=1e-12)
    decoded = scale[:, None].astype(np.float64) * codes
    assert np.all(np.linalg.norm(centred - decoded, axis=1) <= error)
    centre = centred[7]
    true = ((centred - centre) ** 2).sum(1)
    coded = sq_norm + sq_norm[7] - 2.0 * scale * (codes.astype(np.float32) @ centre.astype(np.float32))
    margin = 2.0 * np.sqrt(sq_norm[7]) * error
    assert np.all(np.abs(coded - true) <= margin + 1e-4 * true.mean())
    assert np.median(margin[true > 0] / true[true > 0]) < 0.02  # int8 decides all but a few points per step


def test_compiled_traversal_computes_exact_distances_only_where_needed():
    features = coreset_features("gaussian", 6000)
    selected, counts = traverse_compiled(features.T.contiguous().numpy(), 600, 3)
    assert selected.tolist() == plain_greedy(features.double(), 600, 3)
    # Step 0 moves every point; afterwards nearly every exact distance computed moves its point.
    assert counts.moved >= features.shape[0] and counts.exact <= 1.3 * counts.moved
    assert counts.skipped < 0.01 * 6000 * 599  # few centres are twice as far from another as their points
    clustered = coreset_features("clustered", 6000)
    selected, counts = traverse_compiled(clustered.T.contiguous().numpy(), 600, 3)
    assert selected.tolist() == plain_greedy(clustered.double(), 600, 3)
    assert counts.skipped > 0.8 * 6000 * 599  # other clusters are skipped without reading their codes


def test_regrouped_traversal_keeps_the_first_of_equal_maxima():
    # Every point three times, shuffled: each step's farthest distance is shared by three copies, so every pick
    # tests the tie rule (smallest original index) through the re-sorted order and the block test.
    distinct = coreset_features("clustered", 1500)
    order = torch.randperm(4500, generator=torch.Generator().manual_seed(2))
    features = distinct.repeat(3, 1)[order]
    selected, counts = traverse_compiled(features.T.contiguous().numpy(), 1000, 3)
    assert selected.tolist() == plain_greedy(features.double(), 1000, 3)
    assert counts.skipped > 0.8 * 4500 * 999  # the regrouped blocks of other clusters are passed over


def test_traversal_does_not_depend_on_the_thread_count(monkeypatch: pytest.MonkeyPatch):
    from fractalad.detectors.components import coreset

    features = coreset_features("clustered", 20000, 16)
    used: list[int] = []
    start_call = coreset._ThreadChoice.start_call

    def recording_start_call(self: coreset._ThreadChoice) -> None:
        start_call(self)
        used.append(self.current)

    monkeypatch.setattr(coreset._ThreadChoice, "RETRY_EVERY", 2)  # switch counts every other call
    monkeypatch.setattr(coreset._ThreadChoice, "start_call", recording_start_call)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        selected, _ = traverse_compiled(features.T.contiguous().numpy(), 640, 3)
    finally:
        torch.set_num_threads(threads)
    assert selected.tolist() == plain_greedy(features.double(), 640, 3)
    if coreset.numba.config.NUMBA_NUM_THREADS > 1:
        assert set(used) == {1, 2}


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
