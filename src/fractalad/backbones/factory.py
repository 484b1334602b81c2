"""The one backbone factory: ResNet-like torchvision/timm models as frozen multi-layer feature extractors."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from fractalad.backbones import sources
from fractalad.errors import InputError

WEIGHT_CHOICES: tuple[str, ...] = ("imagenet", "imagenet-tv", "imagenet-timm", "random")


@dataclass(frozen=True)
class Normalization:
    """Per-channel input statistics applied before the first convolution."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def __post_init__(self) -> None:
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise InputError(
                f"normalization needs 3 means and 3 positive stds, got mean={self.mean} std={self.std}"
            )

    def as_text(self) -> str:
        """`'m,m,m/s,s,s'` — the form stored in results and accepted back by `parse_normalization`."""
        return ",".join(f"{v:g}" for v in self.mean) + "/" + ",".join(f"{v:g}" for v in self.std)


IMAGENET_NORMALIZATION = Normalization(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
FRACTAL_NORMALIZATION = Normalization(mean=(0.2, 0.2, 0.2), std=(0.5, 0.5, 0.5))
IDENTITY_NORMALIZATION = Normalization(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
NAMED_NORMALIZATIONS: dict[str, Normalization] = {
    "imagenet": IMAGENET_NORMALIZATION,
    "fractal": FRACTAL_NORMALIZATION,
    "none": IDENTITY_NORMALIZATION,
}


def _floats3(text: str, what: str) -> tuple[float, float, float]:
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError as error:
        raise InputError(f"{what} {text!r} is not a comma-separated list of numbers") from error
    if len(values) == 1:
        values = values * 3
    if len(values) != 3:
        raise InputError(f"{what} {text!r} needs 1 or 3 numbers, got {len(values)}")
    return (values[0], values[1], values[2])


def parse_normalization(value: Normalization | str) -> Normalization:
    """Accept a Normalization, a name (imagenet, fractal, none) or `'mean/std'` text such as `'0.2/0.5'`."""
    if isinstance(value, Normalization):
        return value
    key = value.strip().lower()
    if key in NAMED_NORMALIZATIONS:
        return NAMED_NORMALIZATIONS[key]
    if "/" in key:
        mean_text, std_text = key.split("/", 1)
        return Normalization(_floats3(mean_text, "mean"), _floats3(std_text, "std"))
    raise InputError(
        f"normalization {value!r} is unknown; use one of {sorted(NAMED_NORMALIZATIONS)} or 'mean/std' numbers"
    )


def normalization_from_metadata(metadata: dict[str, str], source: str) -> Normalization:
    """Read the mean/std a weight file was trained with from its metadata."""
    if "mean" not in metadata or "std" not in metadata:
        raise InputError(
            f"{source} stores no mean/std metadata; pass normalization='imagenet' or 'fractal' explicitly"
        )
    return Normalization(
        _floats3(metadata["mean"], f"{source} mean"), _floats3(metadata["std"], f"{source} std")
    )


class FeatureExtractor(nn.Module):
    """Frozen extractor: images (B, 3, H, W) in [0, 1] -> one (B, C_j, H/s_j, W/s_j) per layer."""

    def __init__(
        self,
        body: nn.Module,
        arch: str,
        layers: tuple[int, ...],
        normalization: Normalization,
        weights_id: str,
    ) -> None:
        super().__init__()
        self.body = body
        self.arch = arch
        self.layers = layers
        self.normalization = normalization
        self.weights_id = weights_id
        self.register_buffer("mean", torch.tensor(normalization.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(normalization.std).view(1, 3, 1, 1), persistent=False)
        self.trainable_stages: tuple[int, ...] | str = ()
        self.set_trainable(())
        self.channels, self.strides = self._probe(64)

    def _stage_modules(self, stages: tuple[int, ...] | str) -> list[nn.Module]:
        if stages == "all":
            return [self.body]
        return [getattr(self.body, f"layer{stage}") for stage in stages]

    def set_trainable(self, stages: Sequence[int] | str) -> FeatureExtractor:
        """Unfreeze backbone stages 1..4 (or "all", the stem included) for methods that fine-tune; () freezes."""
        if stages != "all":
            stages = tuple(int(stage) for stage in stages)
            missing = [s for s in stages if not hasattr(self.body, f"layer{s}")]
            if missing:
                raise InputError(
                    f"cannot train stages {missing} of {self.arch}: the extractor only runs up to "
                    f"layer{max(self.layers)}; add them to the layers"
                )
        self.trainable_stages = stages
        for parameter in self.body.parameters():
            parameter.requires_grad_(False)
        for module in self._stage_modules(stages):
            for parameter in module.parameters():
                parameter.requires_grad_(True)
        return self.train(bool(stages))

    def train(self, mode: bool = True) -> FeatureExtractor:
        # Frozen stages keep BatchNorm in eval even when a surrounding module switches to train().
        super().train(False)
        if mode and self.trainable_stages:
            self.training = True
            for module in self._stage_modules(self.trainable_stages):
                module.train(True)
        return self

    @torch.no_grad()
    def _probe(self, size: int) -> tuple[list[int], list[int]]:
        features = self.forward(torch.zeros(1, 3, size, size))
        return [f.shape[1] for f in features], [size // f.shape[-1] for f in features]

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """(B, 3, H, W) in [0, 1] -> list of (B, C_j, H/s_j, W/s_j)."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise InputError(f"backbone input must be (B, 3, H, W), got shape {tuple(images.shape)}")
        outputs = self.body((images - self.mean) / self.std)
        if isinstance(outputs, dict):
            return [outputs[f"layer{layer}"] for layer in self.layers]
        return list(outputs)


def _check_layers(layers: Sequence[int]) -> tuple[int, ...]:
    result = tuple(int(layer) for layer in layers)
    if not result or len(set(result)) != len(result) or not all(1 <= layer <= 4 for layer in result):
        raise InputError(f"layers {list(layers)} must be distinct integers from 1 to 4 (layer1 ... layer4)")
    return result


def create_classifier(arch: str, num_classes: int, seed: int = 0, head_stage: int = 4) -> nn.Module:
    """Classifier with torchvision key names (timm for archs torchvision lacks), seeded random init.

    `head_stage=3` classifies from layer3's pooled output: layer4 becomes an identity (no parameters, no
    compute) and `fc` reads layer3's channels. Every other parameter equals the `head_stage=4` model's of the
    same seed, so `initial_stage_state` can restore the missing layer4 exactly.
    """
    if num_classes < 1:
        raise InputError(f"num_classes must be positive, got {num_classes}")
    if head_stage not in (3, 4):
        raise InputError(f"head_stage must be 3 or 4, got {head_stage}")
    model = sources.build_model(arch, num_classes=num_classes)
    generator = torch.Generator().manual_seed(seed)
    sources.init_random(model, generator)
    if head_stage == 3:
        if not isinstance(getattr(model, "fc", None), nn.Linear):
            raise InputError(f"architecture {arch!r} has no linear `fc` head to move onto layer3")
        model.layer4 = nn.Identity()
        model.fc = nn.Linear(stage_channels(model.layer3), num_classes)
        sources.init_random(model.fc, generator)
    return model


def stage_channels(stage: nn.Module) -> int:
    """Output channels of a ResNet stage: those of its last block's last BatchNorm."""
    norms = [m for m in stage.modules() if isinstance(m, nn.BatchNorm2d)]
    if not norms:
        raise InputError("cannot tell a stage's output channels: it has no BatchNorm2d")
    return norms[-1].num_features


def initial_stage_state(arch: str, num_classes: int, seed: int, stage: int) -> dict[str, torch.Tensor]:
    """The seeded initial parameters and buffers of `layer{stage}`, as `create_classifier` draws them."""
    prefix = f"layer{stage}."
    state = create_classifier(arch, num_classes, seed=seed).state_dict()
    return {k: v for k, v in state.items() if k.startswith(prefix)}


def create_backbone(
    arch: str,
    weights: str | Path = "imagenet",
    layers: Sequence[int] = (2, 3),
    normalization: Normalization | str | None = None,
    seed: int = 0,
    trainable_stages: Sequence[int] | str = (),
) -> FeatureExtractor:
    """Build `arch`, load `weights` strictly, and wrap it as a FeatureExtractor (frozen but `trainable_stages`)."""
    layer_tuple = _check_layers(layers)
    model = sources.build_model(arch, num_classes=1000)
    state, metadata, weights_id = sources.resolve_weights(arch, weights, model, seed)
    if state is not None:
        sources.load_strict(model, state, arch, weights_id)
    if metadata.get("head_stage") == "3" and 4 in layer_tuple:
        warnings.warn(
            f"{weights_id} was pre-trained with its classifier on layer3 (head_stage 3): layer4 holds its "
            "seeded initial values, not learnt features; read layers 1-3 or pre-train with head_stage=4",
            stacklevel=2,
        )
    if normalization is None:
        norm = normalization_from_metadata(metadata, weights_id)
    else:
        norm = parse_normalization(normalization)
    body = sources.feature_body(model, layer_tuple)
    extractor = FeatureExtractor(body, arch, layer_tuple, norm, weights_id)
    return extractor.set_trainable(trainable_stages)
