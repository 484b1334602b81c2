"""First-layer filter grids (the paper's Fig. 2): conv1 kernels of a weight file, ImageNet or random init."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from fractalad.errors import InputError
from fractalad.files import atomic_path

NAMED_WEIGHTS: tuple[str, ...] = ("imagenet", "imagenet-tv", "imagenet-timm", "random")


def first_layer_filters(weights: str | Path, arch: str = "resnet18", seed: int = 0) -> torch.Tensor:
    """conv1 kernels (F, 3, k, k) of a weight file (its own arch) or of `arch` with named weights."""
    if str(weights) in NAMED_WEIGHTS:
        from fractalad.backbones.factory import create_backbone

        state = create_backbone(arch, str(weights), layers=(1,), seed=seed).state_dict()
    else:
        from fractalad.backbones.weights import load_weights

        state = load_weights(weights)[0]
    candidates = [v for k, v in state.items() if k.split(".")[-2:] == ["conv1", "weight"] and v.ndim == 4]
    stem = [v for v in candidates if v.shape[1] == 3]
    if not stem:
        raise InputError(f"{weights}: no first-layer convolution 'conv1.weight' with 3 input channels found")
    return stem[0].detach().float().cpu()


def filter_grid(filters: torch.Tensor, columns: int = 8, scale: int = 8, pad: int = 2) -> np.ndarray:
    """Tile kernels (F, 3, k, k) into an RGB image (H, W, 3) uint8; each kernel min-max scaled on its own."""
    count, _, k, _ = filters.shape
    rows = -(-count // columns)
    cell = k * scale + pad
    grid = np.full((rows * cell + pad, columns * cell + pad, 3), 255, dtype=np.uint8)
    flat = filters.reshape(count, -1)
    low, high = flat.min(1).values.view(-1, 1, 1, 1), flat.max(1).values.view(-1, 1, 1, 1)
    scaled = ((filters - low) / (high - low).clamp_min(1e-12) * 255).round().to(torch.uint8)
    for i, kernel in enumerate(scaled.permute(0, 2, 3, 1).numpy()):
        r, c = divmod(i, columns)
        block = kernel.repeat(scale, 0).repeat(scale, 1)  # nearest-neighbour upscaling keeps pixels crisp
        grid[pad + r * cell : pad + r * cell + k * scale, pad + c * cell : pad + c * cell + k * scale] = block
    return grid


def save_filter_grid(weights: str | Path, out: str | Path, arch: str = "resnet18", seed: int = 0) -> Path:
    """Render the conv1 filter grid of `weights` to a PNG at `out` (atomic write)."""
    out = Path(out)
    grid = filter_grid(first_layer_filters(weights, arch, seed))
    with atomic_path(out) as tmp:
        Image.fromarray(grid).save(tmp, format="PNG")
    return out
