"""Torch renderer: same attractor as the numba renderer, shapes/ranges, determinism, device batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fractalad.fractals import sampling
from fractalad.fractals.render import RENDER_PRESETS, RenderConfig, render
from fractalad.fractals.systems import pack_systems
from fractalad.fractals.torch_render import (
    DeviceFractalBatches,
    pack_probabilities,
    random_crops,
    render_batch,
)

PLAIN = RenderConfig(
    size=64, n_points=40_000, colour=False, flips=False, blur=False, jitter=False, window=False
)


def _batch(systems: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    maps, _ = pack_systems(systems)
    return torch.tensor(maps), torch.tensor(pack_probabilities(systems, maps.shape[1]))


@pytest.fixture(scope="module")
def systems() -> list[np.ndarray]:
    return sampling.sample_systems(4, 21, 2, 5)


def test_same_attractor_as_numba(systems: list[np.ndarray]) -> None:
    maps, probabilities = _batch(systems)
    ours = render_batch(maps, probabilities, PLAIN, torch.Generator().manual_seed(0), "cpu", chains=256)
    for index, system in enumerate(systems):
        numba_image = render(system, PLAIN, 3)[..., 0].astype(np.float64)
        torch_image = ours[index, 0].numpy().astype(np.float64)
        occupied_a, occupied_b = numba_image > 0, torch_image > 0
        iou = (occupied_a & occupied_b).sum() / (occupied_a | occupied_b).sum()
        # Normalised densities (graded values) of the same system and framing correlate strongly.
        correlation = np.corrcoef(numba_image.ravel(), torch_image.ravel())[0, 1]
        assert iou > 0.6 and correlation > 0.6, (index, iou, correlation)


@pytest.mark.parametrize("preset", ["paper", "af"])
def test_shapes_ranges_determinism(preset: str, systems: list[np.ndarray]) -> None:
    config = RENDER_PRESETS[preset].replace(size=32, n_points=4_000)
    maps, probabilities = _batch(systems)
    first = render_batch(maps, probabilities, config, torch.Generator().manual_seed(1), "cpu", chains=64)
    again = render_batch(maps, probabilities, config, torch.Generator().manual_seed(1), "cpu", chains=64)
    assert first.shape == (4, 3, 32, 32) and first.dtype == torch.float32
    assert float(first.min()) >= 0.0 and float(first.max()) <= 1.0 and float(first.max()) > 0.2
    assert torch.equal(first, again)


def test_random_crops_pick_windows() -> None:
    images = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    crops = random_crops(images, 5, torch.Generator().manual_seed(0))
    assert crops.shape == (2, 3, 5, 5)
    for b in range(2):
        top = int((crops[b, 0, 0, 0] - images[b, 0, 0, 0]) // 8)
        left = int((crops[b, 0, 0, 0] - images[b, 0, 0, 0]) % 8)
        assert torch.equal(crops[b], images[b, :, top : top + 5, left : left + 5])


def test_device_batches_classes_and_ranks(systems: list[np.ndarray]) -> None:
    config = RENDER_PRESETS["paper"].replace(size=24, n_points=1_000)
    batches = DeviceFractalBatches(systems, 2, 4, config, seed=3, batch_size=2, crop=16, chains=32)
    everything = list(batches)
    assert len(everything) == len(batches) == 4
    labels = torch.cat([y for _, y in everything])
    assert sorted(labels.tolist()) == [0, 0, 0, 0, 1, 1, 1, 1]
    assert everything[0][0].shape == (2, 3, 16, 16)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(everything, batches))
    shards = [
        DeviceFractalBatches(systems, 2, 4, config, 3, 2, 16, rank=r, world_size=2, chains=32) for r in (0, 1)
    ]
    assert torch.equal(next(iter(shards[1]))[0], everything[1][0])
    batches.set_epoch(1)
    assert not torch.equal(next(iter(batches))[0], everything[0][0])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu_statistics(systems: list[np.ndarray]) -> None:
    maps, probabilities = _batch(systems)
    cuda = render_batch(
        maps, probabilities, PLAIN, torch.Generator("cuda").manual_seed(0), "cuda", chains=256
    )
    cpu = render_batch(maps, probabilities, PLAIN, torch.Generator().manual_seed(0), "cpu", chains=256)
    assert cuda.device.type == "cuda" and cuda.shape == cpu.shape
    for index in range(len(systems)):
        a, b = cuda[index, 0].cpu() > 0, cpu[index, 0] > 0
        assert (a & b).sum() / (a | b).sum() > 0.6
