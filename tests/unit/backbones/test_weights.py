"""Weight files: safetensors round trip, prefix stripping, torch.load(weights_only) and refusals."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from fractalad import __version__
from fractalad.backbones.weights import load_weights, save_weights, strip_prefixes
from fractalad.errors import InputError


def test_round_trip_strips_wrapper_prefixes(tmp_path: Path):
    state = {"module._orig_mod.conv.weight": torch.arange(6.0).view(2, 3), "_orig_mod.bn.bias": torch.ones(2)}
    path = tmp_path / "w.safetensors"
    save_weights(path, state, {"arch": "resnet18", "mean": "0.2,0.2,0.2"})
    tensors, metadata = load_weights(path)
    assert set(tensors) == {"conv.weight", "bn.bias"}
    assert torch.equal(tensors["conv.weight"], state["module._orig_mod.conv.weight"])
    assert metadata["arch"] == "resnet18" and metadata["fractalad_version"] == __version__
    assert not list(tmp_path.glob("*.tmp"))


def test_shared_storage_is_saved(tmp_path: Path):
    base = torch.arange(4.0)
    save_weights(tmp_path / "s.safetensors", {"a": base, "b": base[:2]}, {})
    tensors, _ = load_weights(tmp_path / "s.safetensors")
    assert torch.equal(tensors["b"], torch.tensor([0.0, 1.0]))


def test_torch_file_with_nested_state_dict(tmp_path: Path):
    path = tmp_path / "w.pt"
    torch.save({"state_dict": {"x": torch.zeros(2)}, "metadata": {"arch": "resnet18"}}, path)
    tensors, metadata = load_weights(path)
    assert list(tensors) == ["x"] and metadata == {"arch": "resnet18"}


def test_pickled_objects_are_refused(tmp_path: Path):
    path = tmp_path / "evil.pt"
    with open(path, "wb") as handle:
        pickle.dump({"x": object()}, handle)
    with pytest.raises(InputError, match="not a plain weight file") as caught:
        load_weights(path)
    assert "weights_only" not in str(caught.value)  # never relay torch's advice to unpickle


def test_unknown_suffix_missing_file_and_garbage(tmp_path: Path):
    (tmp_path / "w.txt").write_text("x")
    with pytest.raises(InputError, match="unknown weight file type"):
        load_weights(tmp_path / "w.txt")
    with pytest.raises(FileNotFoundError):
        load_weights(tmp_path / "absent.safetensors")
    (tmp_path / "bad.safetensors").write_bytes(b"not a file")
    with pytest.raises(InputError, match="not a readable safetensors"):
        load_weights(tmp_path / "bad.safetensors")


def test_strip_prefixes_nested():
    assert strip_prefixes("module._orig_mod.module.layer1.0.conv1.weight") == "layer1.0.conv1.weight"
