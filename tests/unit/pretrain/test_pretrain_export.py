"""Exported backbones: no classifier, provenance metadata, same features in torchvision, timm, fractalad."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import timm
import torch
import torchvision
from torchvision.models.feature_extraction import create_feature_extractor

from fractalad.backbones.factory import create_backbone, create_classifier
from fractalad.backbones.weights import load_weights
from fractalad.errors import InputError
from fractalad.pretrain import checkpoints as ckpt
from fractalad.pretrain.export import export_backbone
from fractalad.pretrain.train import pretrain


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, toy, make_config) -> Path:
    out = tmp_path_factory.mktemp("run")
    pretrain(make_config("epochs=1"), out, dataset=toy(4, 16, 32))
    return out


def _trained_model(run: Path) -> torch.nn.Module:
    model = torchvision.models.resnet18(num_classes=4)
    model.load_state_dict(ckpt.load_checkpoint(run / "last.pt")["model"])
    return model.eval()


def _images() -> torch.Tensor:
    return torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))  # (B, 3, H, W)


def test_export_drops_classifier_and_records_provenance(run: Path, tmp_path: Path) -> None:
    path = export_backbone(run / "best.pt", tmp_path / "b.safetensors")
    state, meta = load_weights(path)
    full = ckpt.load_checkpoint(run / "best.pt")["model"]
    assert set(state) == {k for k in full if not k.startswith("fc.")}
    assert all(torch.equal(state[k], full[k]) for k in state)
    assert meta["arch"] == "resnet18" and meta["mean"] == "0.2,0.2,0.2" and meta["std"] == "0.5,0.5,0.5"
    assert meta["preset"] == "tiny" and meta["epochs"] == "1" and meta["source"] == "fractalad-pretrain"
    assert meta["fractalad_version"] and json.loads(meta["config"])["num_classes"] == 4
    assert "systems_sha256" in meta


def test_export_without_normalisation_records_identity(tmp_path: Path, toy, make_config) -> None:
    pretrain(make_config("epochs=1", "mean=null", "std=null"), tmp_path, dataset=toy(4, 16, 32))
    meta = load_weights(tmp_path / "backbone.safetensors")[1]
    assert meta["mean"] == "0.0,0.0,0.0" and meta["std"] == "1.0,1.0,1.0"


def test_torchvision_loads_with_only_fc_missing_and_same_features(run: Path) -> None:
    state, _ = load_weights(run / "backbone.safetensors")
    model = torchvision.models.resnet18()
    result = model.load_state_dict(state, strict=False)
    assert sorted(result.missing_keys) == ["fc.bias", "fc.weight"] and not result.unexpected_keys
    trained = _trained_model(run)
    nodes = {"layer2": "layer2", "layer3": "layer3", "flatten": "pooled"}
    with torch.no_grad():
        ours = create_feature_extractor(model.eval(), nodes)(_images())
        reference = create_feature_extractor(trained, nodes)(_images())
    assert all(torch.equal(ours[k], reference[k]) for k in nodes.values())


def test_timm_loads_the_safetensors_offline_with_same_features(run: Path) -> None:
    path = run / "backbone.safetensors"
    model = timm.create_model(
        "resnet18", pretrained=True, pretrained_cfg_overlay={"file": str(path)}, num_classes=0
    ).eval()
    state, _ = load_weights(path)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in state.items())
    trained = _trained_model(run)
    trained.fc = torch.nn.Identity()
    with torch.no_grad():
        assert torch.allclose(model(_images()), trained(_images()), atol=1e-6)


def test_fractalad_backbone_uses_stored_normalisation(run: Path) -> None:
    extractor = create_backbone("resnet18", run / "backbone.safetensors", layers=(2, 3))
    trained = _trained_model(run)
    body = create_feature_extractor(trained, {"layer2": "a", "layer3": "b"})
    with torch.no_grad():
        ours = extractor(_images())
        reference = body((_images() - 0.2) / 0.5)
    assert torch.allclose(ours[0], reference["a"], atol=1e-5) and torch.allclose(
        ours[1], reference["b"], atol=1e-5
    )


def test_export_rejects_non_checkpoints(run: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not a fractalad pre-training checkpoint|cannot be read"):
        export_backbone(run / "backbone.safetensors", tmp_path / "x.safetensors")


def test_head_stage_3_trains_without_layer4_and_exports_its_seeded_init(
    tmp_path: Path, toy, make_config
) -> None:
    pretrain(make_config("epochs=1", "head_stage=3", "seed=5"), tmp_path, dataset=toy(4, 16, 32))
    trained = ckpt.load_checkpoint(tmp_path / "last.pt")["model"]
    assert not any(k.startswith("layer4.") for k in trained) and trained["fc.weight"].shape == (4, 256)
    state, meta = load_weights(tmp_path / "backbone.safetensors")
    assert meta["head_stage"] == "3"
    # A whole torchvision backbone: the trained stages as trained, layer4 as the seed-5 classifier drew it.
    missing = torchvision.models.resnet18().load_state_dict(state, strict=False).missing_keys
    assert sorted(missing) == ["fc.bias", "fc.weight"]
    initial = create_classifier("resnet18", 4, seed=5).state_dict()
    assert all(torch.equal(state[k], initial[k]) for k in state if k.startswith("layer4."))
    assert all(torch.equal(state[k], trained[k]) for k in trained if not k.startswith("fc."))
    assert not torch.equal(state["layer3.0.conv1.weight"], initial["layer3.0.conv1.weight"])
    with pytest.warns(UserWarning, match="layer4 holds its seeded initial values"):
        create_backbone("resnet18", tmp_path / "backbone.safetensors", layers=(3, 4))
