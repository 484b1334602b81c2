"""Dense patches of an image and their scores put back as a pixel map (CutPaste's localisation variant).

`dense_patches` and `fold_patches` are exact inverses on the pixels the patches cover: folding each patch's own
pixels with any positive weights gives the image back. Scores are folded through a Gaussian window centred on
each patch (receptive-field up-sampling), so a pixel's value is the weighted mean of the patches that cover it.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from fractalad.errors import InputError


def grid_shape(height: int, width: int, size: int, stride: int) -> tuple[int, int]:
    """Rows and columns of size x size patches at `stride` in a height x width image."""
    if size > min(height, width):
        raise InputError(f"patch size {size} exceeds the {height}x{width} image; use a smaller patch_size")
    return (height - size) // stride + 1, (width - size) // stride + 1


def dense_patches(images: torch.Tensor, size: int, stride: int) -> torch.Tensor:
    """(B, C, H, W) -> (B, L, C, size, size), L = rows x columns in row-major order."""
    batch, channels, height, width = images.shape
    rows, cols = grid_shape(height, width, size, stride)
    windows = images.unfold(2, size, stride).unfold(3, size, stride)  # (B, C, rows, cols, size, size)
    return windows.permute(0, 2, 3, 1, 4, 5).reshape(batch, rows * cols, channels, size, size)


def gaussian_window(size: int, sigma: float, device: torch.device | None = None) -> torch.Tensor:
    """(size, size) Gaussian centred on the patch (sigma in pixels); sigma <= 0 gives a flat window."""
    if sigma <= 0:
        return torch.ones(size, size, device=device)
    x = torch.arange(size, dtype=torch.float32, device=device) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g[:, None] * g[None, :]


def fold_patches(
    patches: torch.Tensor, output: tuple[int, int], stride: int, window: torch.Tensor
) -> torch.Tensor:
    """(B, L, C, size, size) patch values -> (B, C, H, W): window-weighted mean of the patches over each pixel.

    Pixels that no patch covers (a right/bottom margin narrower than the stride) take the nearest covered value.
    """
    batch, count, channels, size, _ = patches.shape
    height, width = output
    rows, cols = grid_shape(height, width, size, stride)
    if count != rows * cols:
        raise InputError(f"{count} patches do not tile a {height}x{width} image at stride {stride}")
    covered = ((rows - 1) * stride + size, (cols - 1) * stride + size)
    weighted = (patches * window).reshape(batch, count, channels * size * size).transpose(1, 2)
    weights = window.expand(1, count, size, size).reshape(1, count, size * size).transpose(1, 2)
    total = F.fold(weighted, covered, size, stride=stride)  # (B, C, h, w)
    norm = F.fold(weights, covered, size, stride=stride)  # (1, 1, h, w)
    folded = total / norm.clamp_min(torch.finfo(total.dtype).tiny)
    pad = (0, width - covered[1], 0, height - covered[0])
    return F.pad(folded, pad, mode="replicate") if any(pad) else folded


def scores_to_map(
    scores: torch.Tensor, output: tuple[int, int], size: int, stride: int, sigma: float
) -> torch.Tensor:
    """(B, L) patch scores in row-major grid order -> (B, H, W) map by Gaussian receptive-field up-sampling."""
    batch, count = scores.shape
    window = gaussian_window(size, sigma, scores.device)
    patches = scores.reshape(batch, count, 1, 1, 1).expand(batch, count, 1, size, size)
    return fold_patches(patches, output, stride, window)[:, 0]
