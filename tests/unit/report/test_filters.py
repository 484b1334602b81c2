"""First-layer filter grids: layout, per-kernel scaling, sources (files and named weights), errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fractalad.backbones.factory import create_classifier
from fractalad.backbones.weights import save_weights
from fractalad.errors import InputError
from fractalad.report.filters import filter_grid, first_layer_filters, save_filter_grid


def test_grid_layout_and_per_kernel_scaling() -> None:
    filters = torch.zeros(3, 3, 2, 2)
    filters[0, 0, 0, 0] = 5.0  # one bright pixel in red
    filters[1] = torch.arange(12.0).view(3, 2, 2) * -1e-3  # tiny values still span the full range
    grid = filter_grid(filters, columns=2, scale=3, pad=1)
    cell = 2 * 3 + 1
    assert grid.shape == (2 * cell + 1, 2 * cell + 1, 3) and grid.dtype == np.uint8
    first = grid[1 : 1 + 6, 1 : 1 + 6]
    assert (first[:3, :3, 0] == 255).all() and (first[3:, :, 0] == 0).all()
    second = grid[1 : 1 + 6, 1 + cell : 1 + cell + 6]
    assert second.max() == 255 and second.min() == 0
    assert (grid[1 + cell :, 1 + cell :] == 255).all()  # empty slot stays background


def test_filters_from_file_and_random(tmp_path: Path) -> None:
    model = create_classifier("resnet18", 10, seed=3)
    save_weights(tmp_path / "w.safetensors", model.state_dict(), {"arch": "resnet18"})
    from_file = first_layer_filters(tmp_path / "w.safetensors")
    assert torch.equal(from_file, model.conv1.weight.detach())
    random = first_layer_filters("random", arch="resnet18", seed=3)
    assert random.shape == (64, 3, 7, 7)
    out = save_filter_grid(tmp_path / "w.safetensors", tmp_path / "figs" / "f.png")
    assert Image.open(out).size == (8 * 58 + 2, 8 * 58 + 2)


def test_file_without_stem_conv(tmp_path: Path) -> None:
    save_weights(tmp_path / "x.safetensors", {"other.weight": torch.zeros(2, 2)}, {"arch": "resnet18"})
    with pytest.raises(InputError, match="conv1.weight"):
        first_layer_filters(tmp_path / "x.safetensors")
