"""Multi-layer feature maps -> one dense embedding map (resize to the largest map, concatenate)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.nn import functional as F


def concat_layers(features: Sequence[torch.Tensor], mode: str) -> torch.Tensor:
    """Resize maps (B, C_j, h_j, w_j) to the first map's size and concatenate -> (B, sum C_j, h_0, w_0)."""
    size = features[0].shape[-2:]
    resized = [features[0]]
    for feature in features[1:]:
        if mode == "nearest":
            resized.append(F.interpolate(feature, size=size, mode="nearest"))
        else:
            resized.append(F.interpolate(feature, size=size, mode=mode, align_corners=False))
    return torch.cat(resized, dim=1)


def upsample_maps(
    maps: torch.Tensor, size: tuple[int, int], mode: str, align_corners: bool = False
) -> torch.Tensor:
    """(B, 1, h, w) score maps -> (B, 1, H, W) at image size (`align_corners` for the linear modes)."""
    if mode == "nearest":
        return F.interpolate(maps, size=size, mode="nearest")
    return F.interpolate(maps, size=size, mode=mode, align_corners=align_corners)


def pooled_features(features: Sequence[torch.Tensor]) -> torch.Tensor:
    """Layer maps (B, C_j, h_j, w_j) -> global-average-pooled and concatenated, (B, sum C_j)."""
    return torch.cat([feature.mean(dim=(2, 3)) for feature in features], dim=1)
