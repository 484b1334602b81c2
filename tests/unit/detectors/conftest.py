"""Tiny synthetic images for detector tests: a regular texture, and the same with a pasted defect."""

from __future__ import annotations

import math

import pytest
import torch

SIZE = 64


def texture(n: int, seed: int, size: int = SIZE) -> torch.Tensor:
    """(n, 3, size, size) in [0, 1]: diagonal stripes with a random phase per image plus mild noise."""
    generator = torch.Generator().manual_seed(seed)
    coords = torch.arange(size, dtype=torch.float32)
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    phase = torch.rand(n, 1, 1, 1, generator=generator) * 2 * math.pi
    stripes = 0.5 + 0.25 * torch.sin((xx + yy) * 2 * math.pi / 8 + phase)
    colour = torch.tensor([1.0, 0.8, 0.6]).view(1, 3, 1, 1)
    noise = 0.03 * torch.randn(n, 3, size, size, generator=generator)
    return (stripes * colour + noise).clamp(0, 1)


def paste_defect(images: torch.Tensor, seed: int, side: int = 14) -> tuple[torch.Tensor, torch.Tensor]:
    """Copy of images with a random-noise square pasted at a random spot -> (images, masks (n, H, W))."""
    generator = torch.Generator().manual_seed(seed)
    out = images.clone()
    masks = torch.zeros(images.shape[0], images.shape[2], images.shape[3])
    for i in range(images.shape[0]):
        top, left = (int(v) for v in torch.randint(8, images.shape[-1] - side - 8, (2,), generator=generator))
        out[i, :, top : top + side, left : left + side] = torch.rand(3, side, side, generator=generator)
        masks[i, top : top + side, left : left + side] = 1.0
    return out, masks


@pytest.fixture(scope="module")
def normal_train() -> list[torch.Tensor]:
    """Two batches of 4 normal training images (re-iterable list)."""
    images = texture(8, seed=1)
    return [images[:4], images[4:]]


@pytest.fixture(scope="module")
def test_images() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(normal (4, 3, 64, 64), defective (4, 3, 64, 64), defect masks (4, 64, 64))."""
    normal = texture(4, seed=2)
    defective, masks = paste_defect(texture(4, seed=3), seed=4)
    return normal, defective, masks
