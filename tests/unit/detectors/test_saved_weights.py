"""A saved detector remembers its backbone weights: loading it after the weight file changed is refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fractalad.backbones import create_classifier, save_weights
from fractalad.detectors import create_detector, load_detector
from fractalad.errors import InputError

META = {"arch": "resnet18", "mean": "0.2", "std": "0.5"}


def test_load_refuses_changed_weight_file(tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    save_weights(path, create_classifier("resnet18", 10, seed=1).state_dict(), META)
    detector = create_detector("patchcore", backbone="resnet18", weights=str(path))
    detector.fit([torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))], device="cpu")
    detector.save(tmp_path / "det.safetensors")
    save_weights(path, create_classifier("resnet18", 10, seed=2).state_dict(), META)
    with pytest.raises(InputError, match="now resolve to"):
        load_detector(tmp_path / "det.safetensors")
