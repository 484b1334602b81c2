"""Gaussian smoothing of anomaly maps (separable, reflect border — the kornia filter Anomalib uses)."""

from __future__ import annotations

import torch
from torch.nn import functional as F


def kernel_size_for(sigma: float) -> int:
    """Odd kernel width covering +-4 sigma: 2 * int(4 sigma + 0.5) + 1 (33 for sigma 4)."""
    return 2 * int(4.0 * sigma + 0.5) + 1


def gaussian_kernel1d(sigma: float, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Normalised 1-D Gaussian, (K,)."""
    size = kernel_size_for(sigma)
    x = torch.arange(size, dtype=torch.float64) - size // 2
    kernel = torch.exp(-(x**2) / (2.0 * sigma**2))
    return (kernel / kernel.sum()).to(dtype)


def gaussian_blur(maps: torch.Tensor, sigma: float) -> torch.Tensor:
    """Blur (B, H, W) or (B, 1, H, W) maps; returns the same shape. sigma <= 0 returns the input."""
    if sigma <= 0:
        return maps
    squeeze = maps.ndim == 3
    x = maps.unsqueeze(1) if squeeze else maps
    kernel = gaussian_kernel1d(sigma, x.dtype).to(x.device)
    pad = kernel.numel() // 2
    # Reflect padding needs pad < size; tiny maps fall back to replicating the border.
    mode = "reflect" if pad < min(x.shape[-2:]) else "replicate"
    x = F.pad(x, (pad, pad, pad, pad), mode=mode)
    x = F.conv2d(x, kernel.view(1, 1, 1, -1))
    x = F.conv2d(x, kernel.view(1, 1, -1, 1))
    return x.squeeze(1) if squeeze else x
