"""Where backbone weights come from (torchvision, timm, seeded init, files) and the strict key check."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import timm
import torch
import torchvision
from torch import nn
from torchvision.models.feature_extraction import create_feature_extractor

from fractalad.backbones.weights import file_digest, load_weights
from fractalad.errors import InputError

IMAGENET_STATS: dict[str, str] = {"mean": "0.485,0.456,0.406", "std": "0.229,0.224,0.225"}
# The tags Anomalib loads by default (timm's default pretrained tag for these names).
TIMM_IMAGENET_TAGS: dict[str, str] = {
    "resnet18": "resnet18.a1_in1k",
    "wide_resnet50_2": "wide_resnet50_2.racm_in1k",
}
# Architectures a file's shapes are matched against when its metadata names none.
KNOWN_ARCHS: tuple[str, ...] = (
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "wide_resnet50_2",
    "wide_resnet101_2",
)
CLASSIFIER_PREFIX = "fc."


def _is_torchvision(arch: str) -> bool:
    return arch in torchvision.models.list_models(module=torchvision.models)


def build_model(arch: str, num_classes: int) -> nn.Module:
    """Instantiate a ResNet-like classifier by name: torchvision first, then timm."""
    if _is_torchvision(arch):
        model = torchvision.models.get_model(arch, weights=None, num_classes=num_classes)
    elif arch in timm.list_models():
        model = timm.create_model(arch, pretrained=False, num_classes=num_classes)
    else:
        raise InputError(f"architecture {arch!r} is neither a torchvision nor a timm model name")
    if not all(hasattr(model, f"layer{i}") for i in range(1, 5)):
        raise InputError(f"architecture {arch!r} is not ResNet-like (needs modules layer1 ... layer4)")
    return model


@torch.no_grad()
def init_random(model: nn.Module, generator: torch.Generator) -> None:
    """Re-initialise every layer from `generator` (torchvision's ResNet scheme), not the global RNG."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu", generator=generator)
            if module.bias is not None:
                module.bias.zero_()
        elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm)):
            module.weight.fill_(1.0)
            module.bias.zero_()
        elif isinstance(module, nn.Linear):
            bound = 1.0 / math.sqrt(module.in_features)
            module.weight.uniform_(-bound, bound, generator=generator)
            if module.bias is not None:
                module.bias.uniform_(-bound, bound, generator=generator)
    for buffer_name, buffer in model.named_buffers():
        if buffer_name.endswith("running_mean"):
            buffer.zero_()
        elif buffer_name.endswith("running_var"):
            buffer.fill_(1.0)


def _torchvision_imagenet(arch: str) -> dict[str, torch.Tensor]:
    if not _is_torchvision(arch):
        raise InputError(
            f"torchvision has no ImageNet weights for {arch!r}; use weights='imagenet-timm' or a file"
        )
    enum = torchvision.models.get_model_weights(arch)
    weights = getattr(enum, "IMAGENET1K_V1", None) or enum.DEFAULT
    try:
        return weights.get_state_dict(progress=False, check_hash=True)
    except Exception as error:  # network and cache failures surface as many exception types
        cache = Path(torch.hub.get_dir()) / "checkpoints"
        raise InputError(
            f"torchvision ImageNet weights for {arch} ({weights.url}) are not in {cache} and could not be "
            f"downloaded ({type(error).__name__}); copy the file there or pass weights='random' or a file"
        ) from error


def torchvision_imagenet_cached(arch: str) -> bool:
    """True when torchvision's ImageNet weights for `arch` are already in the local torch hub cache."""
    try:
        weights = torchvision.models.get_model_weights(arch).IMAGENET1K_V1
    except (ValueError, AttributeError):
        return False
    return (Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name).is_file()


def _timm_cached_state(tag: str) -> dict[str, torch.Tensor] | None:
    """The timm checkpoint from the local Hugging Face cache, or None (no network access here)."""
    cfg = timm.models.get_pretrained_cfg(tag)
    repo = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
    if not repo:
        return None
    try:
        from huggingface_hub import hf_hub_download

        path = hf_hub_download(repo, "model.safetensors", local_files_only=True)
    except Exception:  # any cache miss means: fall back to timm's own download
        return None
    state, _ = load_weights(path)
    return state


def _timm_imagenet(arch: str) -> tuple[dict[str, torch.Tensor], str]:
    tag = TIMM_IMAGENET_TAGS.get(arch, arch)
    if "." not in tag:
        default = timm.models.get_pretrained_cfg(tag)
        tag = f"{tag}.{default.tag}" if default is not None and getattr(default, "tag", None) else tag
    cached = _timm_cached_state(tag)
    if cached is not None:
        return cached, tag
    try:
        model = timm.create_model(tag, pretrained=True)
    except Exception as error:  # hub, cache and offline failures surface as many exception types
        raise InputError(
            f"timm ImageNet weights {tag!r} are not in the Hugging Face cache and could not be downloaded "
            f"({type(error).__name__}); pre-fetch them or pass weights='random' or a file"
        ) from error
    return model.state_dict(), tag


def resolve_weights(
    arch: str, weights: str | Path, model: nn.Module, seed: int
) -> tuple[dict[str, torch.Tensor] | None, dict[str, str], str]:
    """(state dict to load or None when `model` was initialised in place, metadata, weights id)."""
    name = str(weights)
    if name == "random":
        init_random(model, torch.Generator().manual_seed(seed))
        return None, dict(IMAGENET_STATS), f"random:seed={seed}"
    if name in ("imagenet", "imagenet-tv"):
        return _torchvision_imagenet(arch), dict(IMAGENET_STATS), "imagenet-tv:IMAGENET1K_V1"
    if name == "imagenet-timm":
        state, tag = _timm_imagenet(arch)
        return state, dict(IMAGENET_STATS), f"imagenet-timm:{tag}"
    path = Path(weights)
    if not path.exists():
        raise FileNotFoundError(
            f"weights {name!r} is neither imagenet, imagenet-tv, imagenet-timm, random nor an existing file"
        )
    state, metadata = load_weights(path)
    file_arch = metadata.get("arch")
    if file_arch and file_arch != arch:
        raise InputError(f"{path} holds {file_arch} weights but architecture {arch} was requested")
    return state, metadata, f"file:{path.name}:sha256={file_digest(path)}"


def _shapes(state: Mapping[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
    return {
        key: tuple(value.shape)
        for key, value in state.items()
        if not key.startswith(CLASSIFIER_PREFIX) and not key.endswith("num_batches_tracked")
    }


def infer_arch(state: Mapping[str, torch.Tensor]) -> str | None:
    """Name the known architecture whose parameter names and shapes equal the state dict's, if any."""
    target = _shapes(state)
    for arch in KNOWN_ARCHS:
        with torch.device("meta"):
            candidate = torchvision.models.get_model(arch, weights=None)
        if _shapes(candidate.state_dict()) == target:
            return arch
    return None


def load_strict(model: nn.Module, state: Mapping[str, torch.Tensor], arch: str, source: str) -> None:
    """Load all non-classifier tensors; any missing, unexpected or reshaped key is an InputError."""
    expected, given = _shapes(model.state_dict()), _shapes(state)
    missing = sorted(set(expected) - set(given))
    unexpected = sorted(set(given) - set(expected))
    reshaped = sorted(k for k in set(expected) & set(given) if expected[k] != given[k])
    if missing or unexpected or reshaped:
        guess = infer_arch(state)
        looks = f"the file looks like {guess}" if guess else "the file matches no known architecture"
        raise InputError(
            f"{source} does not fit {arch}: {len(missing)} missing keys {missing[:3]}, {len(unexpected)} "
            f"unexpected keys {unexpected[:3]}, {len(reshaped)} shape mismatches {reshaped[:3]}; {looks}"
        )
    loadable = {k: v for k, v in state.items() if not k.startswith(CLASSIFIER_PREFIX)}
    result = model.load_state_dict(loadable, strict=False)
    leftover = [k for k in result.missing_keys if not k.startswith(CLASSIFIER_PREFIX)]
    leftover = [k for k in leftover if not k.endswith("num_batches_tracked")]
    if leftover or result.unexpected_keys:
        raise InputError(
            f"{source} left keys unloaded in {arch}: {leftover[:3]} {result.unexpected_keys[:3]}"
        )


def feature_body(model: nn.Module, layers: tuple[int, ...]) -> nn.Module:
    """Graph module returning {'layerN': (B, C, H/s, W/s)} for the requested stages (torch.fx, no hooks)."""
    nodes = {f"layer{layer}": f"layer{layer}" for layer in layers}
    body = create_feature_extractor(model, return_nodes=nodes)
    return body
