"""Backbone factory: shapes, seeded random init, checkpoint loading, normalisation and strict key checks."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision.models._api

from fractalad.backbones import (
    FRACTAL_NORMALIZATION,
    IMAGENET_NORMALIZATION,
    Normalization,
    create_backbone,
    create_classifier,
    parse_normalization,
    save_weights,
    sources,
)
from fractalad.errors import InputError


@pytest.fixture(scope="module")
def resnet18_random() -> torch.nn.Module:
    return create_backbone("resnet18", "random", layers=(1, 2, 3, 4), seed=0)


def fractal_checkpoint(
    path: Path, seed: int, arch: str = "resnet18", **metadata: str
) -> dict[str, torch.Tensor]:
    """Write a classifier checkpoint like pre-training exports, with DDP prefixes the writer must strip."""
    state = create_classifier(arch, num_classes=7, seed=seed).state_dict()
    meta = {"arch": arch, "mean": "0.2,0.2,0.2", "std": "0.5,0.5,0.5", "source": "test"} | metadata
    save_weights(path, {f"module.{k}": v for k, v in state.items()}, meta)
    return state


def test_channels_and_strides_match_outputs(resnet18_random):
    images = torch.rand(2, 3, 96, 128)
    outputs = resnet18_random(images)
    assert resnet18_random.channels == [64, 128, 256, 512]
    assert resnet18_random.strides == [4, 8, 16, 32]
    for out, channels, stride in zip(outputs, resnet18_random.channels, resnet18_random.strides, strict=True):
        assert out.shape == (2, channels, 96 // stride, 128 // stride)


def test_layer_subset_and_order():
    extractor = create_backbone("resnet18", "random", layers=(3, 2))
    out = extractor(torch.rand(1, 3, 64, 64))
    assert [o.shape[1] for o in out] == [256, 128] == extractor.channels


def test_frozen_and_stays_eval(resnet18_random):
    assert not any(p.requires_grad for p in resnet18_random.parameters())
    resnet18_random.train()
    assert not resnet18_random.training
    resnet18_random.set_trainable("all")
    assert resnet18_random.training and all(p.requires_grad for p in resnet18_random.parameters())
    resnet18_random.set_trainable(())
    assert not resnet18_random.training


def test_trainable_stages_train_alone():
    extractor = create_backbone("resnet18", "random", layers=(2, 3), trainable_stages=(3,))
    trainable = {name.split(".")[0] for name, p in extractor.body.named_parameters() if p.requires_grad}
    assert trainable == {"layer3"}
    extractor.train()
    assert extractor.body.layer3.training and not extractor.body.layer2.training
    assert not extractor.body.bn1.training
    with pytest.raises(InputError, match="only runs up to layer3"):
        extractor.set_trainable((4,))


def test_random_weights_are_seed_deterministic():
    images = torch.rand(1, 3, 64, 64)
    a = create_backbone("resnet18", "random", layers=(2,), seed=3)(images)[0]
    b = create_backbone("resnet18", "random", layers=(2,), seed=3)(images)[0]
    c = create_backbone("resnet18", "random", layers=(2,), seed=4)(images)[0]
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_checkpoint_changes_weights_and_applies_stored_normalisation(tmp_path: Path):
    path = tmp_path / "fractal.safetensors"
    state = fractal_checkpoint(path, seed=11)
    loaded = create_backbone("resnet18", path, layers=(2,))
    assert loaded.normalization == FRACTAL_NORMALIZATION
    assert loaded.weights_id.startswith("file:fractal.safetensors:sha256=")
    body = dict(loaded.body.named_parameters())
    assert torch.equal(body["layer2.0.conv1.weight"], state["layer2.0.conv1.weight"])
    images = torch.rand(1, 3, 64, 64)
    random = create_backbone("resnet18", "random", layers=(2,))
    assert not torch.allclose(loaded(images)[0], random(images)[0])


def test_normalisation_override_reproduces_imagenet_runs(tmp_path: Path):
    path = tmp_path / "fractal.safetensors"
    fractal_checkpoint(path, seed=1)
    images = torch.rand(1, 3, 64, 64)
    stored = create_backbone("resnet18", path, layers=(2,))
    override = create_backbone("resnet18", path, layers=(2,), normalization="imagenet")
    assert override.normalization == IMAGENET_NORMALIZATION
    # The extractor normalises: shifting the input by the mean difference reproduces the other output.
    assert not torch.allclose(stored(images)[0], override(images)[0])
    manual = create_backbone("resnet18", path, layers=(2,), normalization="none")
    normalised = (images - 0.2) / 0.5
    assert torch.allclose(manual(normalised)[0], stored(images)[0], atol=1e-5)


def test_wrong_architecture_is_refused_naming_both(tmp_path: Path):
    path = tmp_path / "r18.safetensors"
    fractal_checkpoint(path, seed=0)
    with pytest.raises(InputError, match="resnet18.*resnet34|resnet34.*resnet18"):
        create_backbone("resnet34", path)


def test_wrong_architecture_without_metadata_is_inferred_from_shapes(tmp_path: Path):
    path = tmp_path / "r18.pt"
    torch.save(create_classifier("resnet18", 10).state_dict(), path)
    with pytest.raises(InputError, match="does not fit resnet34.*looks like resnet18"):
        create_backbone("resnet34", path, normalization="imagenet")


def test_missing_and_unexpected_keys_are_refused(tmp_path: Path):
    state = create_classifier("resnet18", 10).state_dict()
    state.pop("layer4.1.bn2.weight")
    state["extra.weight"] = torch.zeros(1)
    path = tmp_path / "broken.safetensors"
    save_weights(path, state, {"mean": "0.2", "std": "0.5"})
    with pytest.raises(InputError, match=r"1 missing keys \['layer4.1.bn2.weight'\].*1 unexpected keys"):
        create_backbone("resnet18", path)


def test_classifier_head_of_any_size_is_ignored(tmp_path: Path):
    path = tmp_path / "head.safetensors"
    fractal_checkpoint(path, seed=0)  # 7-class head vs the 1000-class model built for extraction
    assert create_backbone("resnet18", path, layers=(4,)).channels == [512]


def test_file_without_normalisation_metadata_needs_explicit_choice(tmp_path: Path):
    path = tmp_path / "plain.safetensors"
    save_weights(path, create_classifier("resnet18", 5).state_dict(), {"arch": "resnet18"})
    with pytest.raises(InputError, match="no mean/std metadata"):
        create_backbone("resnet18", path)
    assert create_backbone("resnet18", path, normalization="fractal").normalization == FRACTAL_NORMALIZATION


def test_bad_names_and_layers():
    with pytest.raises(InputError, match="neither a torchvision nor a timm"):
        create_backbone("no_such_net", "random")
    with pytest.raises(InputError, match="not ResNet-like"):
        create_backbone("vit_tiny_patch16_224", "random")
    with pytest.raises(InputError, match="layers"):
        create_backbone("resnet18", "random", layers=(0, 5))
    with pytest.raises(
        FileNotFoundError, match="neither imagenet, imagenet-tv, imagenet-timm, random nor an existing file"
    ):
        create_backbone("resnet18", "imagenet-2")


def test_timm_resnet_like_arch_is_supported():
    extractor = create_backbone("resnet10t", "random", layers=(2, 3))
    out = extractor(torch.rand(1, 3, 64, 64))
    assert [o.shape[1] for o in out] == extractor.channels and extractor.strides == [8, 16]


def test_imagenet_timm_loads_mocked_checkpoint_with_torchvision_names(monkeypatch):
    reference = create_classifier("resnet18", 1000, seed=5).state_dict()
    monkeypatch.setattr(sources, "_timm_cached_state", lambda tag: dict(reference))
    extractor = create_backbone("resnet18", "imagenet-timm", layers=(1,))
    assert extractor.weights_id == "imagenet-timm:resnet18.a1_in1k"
    assert extractor.normalization == IMAGENET_NORMALIZATION
    assert torch.equal(dict(extractor.body.named_parameters())["conv1.weight"], reference["conv1.weight"])


def test_imagenet_unavailable_offline_is_a_clear_error(monkeypatch, tmp_path: Path):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))

    def offline(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", offline)
    with pytest.raises(InputError, match="torchvision ImageNet weights for resnet18"):
        create_backbone("resnet18", "imagenet")


def test_parse_normalization_forms():
    assert parse_normalization("0.2/0.5") == FRACTAL_NORMALIZATION
    assert parse_normalization(IMAGENET_NORMALIZATION.as_text()) == IMAGENET_NORMALIZATION
    with pytest.raises(InputError):
        parse_normalization("weird")
    with pytest.raises(InputError):
        Normalization((0.0, 0.0, 0.0), (1.0, 0.0, 1.0))


@pytest.mark.parametrize(("arch", "channels"), [("resnet18", 256), ("resnet50", 1024)])
def test_head_stage_3_classifies_from_layer3_with_the_same_seeded_trunk(arch: str, channels: int) -> None:
    head3 = create_classifier(arch, num_classes=6, seed=2, head_stage=3)
    head4 = create_classifier(arch, num_classes=6, seed=2).state_dict()
    state = head3.state_dict()
    assert not any(k.startswith("layer4.") for k in state) and head3.fc.in_features == channels
    assert all(torch.equal(v, head4[k]) for k, v in state.items() if not k.startswith("fc."))
    assert head3(torch.rand(2, 3, 48, 48)).shape == (2, 6)
    with pytest.raises(InputError, match="head_stage must be 3 or 4"):
        create_classifier(arch, num_classes=6, head_stage=2)
