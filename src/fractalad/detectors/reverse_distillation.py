"""Reverse Distillation (Deng & Li, CVPR 2022): a decoder learns to rebuild the frozen teacher's features.

The teacher's layer maps are fused and squeezed through a one-class bottleneck (OCBE) and decoded back to every
layer; on normal images the decoder learns to match the teacher, so where they disagree (1 - cosine over
channels) the image is anomalous. Defaults are the RD4AD recipe: Adam 0.005 with betas (0.5, 0.999), batch 16,
200 epochs, the last epoch kept, per-scale maps upsampled (bilinear, corners aligned) and summed, Gaussian sigma 4, image score = max.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import torch
from torch.nn import functional as F

from fractalad.backbones.factory import FeatureExtractor, Normalization
from fractalad.detectors.base import (
    BaseDetector,
    Prediction,
    TrainSet,
    check_finite,
    check_images,
    normalization_param,
)
from fractalad.detectors.components.blur import gaussian_blur
from fractalad.detectors.components.decoders import OCBE, ResNetDecoder, describe_teacher
from fractalad.detectors.components.embedding import upsample_maps
from fractalad.detectors.components.feature_cache import FeatureBatch, frozen_features
from fractalad.detectors.components.training import (
    build_optimizer,
    check_training_params,
    fingerprint,
    fit_info,
    frozen_splits,
    mean_validation_loss,
    train_epochs,
)
from fractalad.errors import InputError


def cosine_loss(teacher: Sequence[torch.Tensor], decoded: Sequence[torch.Tensor]) -> torch.Tensor:
    """Sum over scales of the batch mean of 1 - cos between each image's whole flattened maps (RD4AD's loss).

    The original compares each (C * h * w) map as one vector; the per-position form of the paper trains worse.
    """
    losses = [
        (1 - F.cosine_similarity(t.flatten(1), d.flatten(1), dim=1)).mean()
        for t, d in zip(teacher, decoded, strict=True)
    ]
    return torch.stack(losses).sum()


def distance_maps(teacher: Sequence[torch.Tensor], decoded: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Per scale 1 - cos over channels at every position: [(B, 1, h_j, w_j)]."""
    return [1 - F.cosine_similarity(t, d, dim=1).unsqueeze(1) for t, d in zip(teacher, decoded, strict=True)]


class ReverseDistillation(BaseDetector):
    """Frozen teacher -> OCBE bottleneck -> de-ResNet decoder; anomaly = teacher/decoder disagreement."""

    name: ClassVar[str] = "reverse_distillation"
    fitted = ("bottleneck_", "decoder_")

    def __init__(
        self,
        backbone: str = "wide_resnet50_2",
        weights: str = "imagenet",
        layers: Sequence[int] = (1, 2, 3),
        normalization: Normalization | str | None = None,
        epochs: int = 200,
        batch_size: int = 16,
        lr: float = 0.005,
        betas: Sequence[float] = (0.5, 0.999),
        weight_decay: float = 0.0,
        blur_sigma: float = 4.0,
        map_upsampling: str = "bilinear",
        align_corners: bool = True,
        validation_fraction: float = 0.0,
        seed: int = 0,
    ) -> None:
        check_training_params(epochs, batch_size, lr, weight_decay, validation_fraction)
        if len(tuple(betas)) != 2 or not all(0.0 <= b < 1.0 for b in betas):
            raise InputError(f"betas must be two numbers in [0, 1), got {list(betas)}")
        self.backbone = backbone
        self.weights = str(weights)
        self.layers = tuple(int(x) for x in layers)
        self.normalization = normalization_param(normalization)
        self.epochs = int(epochs)
        self.batch_size = int(batch_size)
        self.lr = float(lr)
        self.betas = tuple(float(b) for b in betas)
        self.weight_decay = float(weight_decay)
        self.blur_sigma = float(blur_sigma)
        self.map_upsampling = map_upsampling
        self.align_corners = bool(align_corners)
        self.validation_fraction = float(validation_fraction)
        self.seed = int(seed)
        self.bottleneck_: OCBE | None = None
        self.decoder_: ResNetDecoder | None = None

    def build(self, extractor: FeatureExtractor) -> None:
        """OCBE and decoder sized from the teacher's channels, strides and block family."""
        layout = describe_teacher(extractor)
        # Built in eval mode (BatchNorm on running statistics) so that a loaded detector predicts as it was
        # saved; `train_epochs` switches them to training mode while fitting.
        self.bottleneck_ = OCBE(layout).eval()
        self.decoder_ = ResNetDecoder(layout).eval()

    def check_size(self, images: torch.Tensor) -> None:
        """Refuse image sides the decoder cannot rebuild every map for."""
        multiple = 2 * self.extractor_.strides[-1]  # the bottleneck halves the deepest map once more
        if images.shape[-2] % multiple or images.shape[-1] % multiple:
            raise InputError(
                f"reverse distillation with layers {list(self.layers)} needs image sides divisible by {multiple} "
                f"so that the decoder can rebuild every map, got {tuple(images.shape[-2:])}; resize (e.g. 256)"
            )

    def reconstruct(self, images: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """(B, 3, H, W) -> (teacher maps, decoded maps), each [(B, C_j, H/s_j, W/s_j)]."""
        self.check_size(images)
        teacher = frozen_features(self.extractor_, images, self.device_)
        return teacher, self.decoder_(self.bottleneck_(teacher))

    def _loss(self, batch: FeatureBatch) -> torch.Tensor:
        return cosine_loss(batch.features, self.decoder_(self.bottleneck_(batch.features)))

    def _fit(self, train: TrainSet, progress: bool, work_dir: Path | None) -> None:
        """Train bottleneck and decoder on the normal images (the teacher stays frozen)."""
        self.check_size(next(iter(train.batches(1))))
        train_part, validation = frozen_splits(
            train, self.validation_fraction, self.seed, self.extractor_, self.device_, self.batch_size
        )
        modules = {"bottleneck": self.bottleneck_, "decoder": self.decoder_}
        parameters = [p for module in modules.values() for p in module.parameters()]
        optimizer = build_optimizer(
            "adam", parameters, lr=self.lr, weight_decay=self.weight_decay, betas=self.betas
        )
        record = train_epochs(
            modules,
            optimizer,
            train_part,
            self._loss,
            epochs=self.epochs,
            batch_size=self.batch_size,
            seed=self.seed,
            device=self.device_,
            precision=self.precision_,
            progress=progress,
            work_dir=work_dir,
            run_fingerprint=fingerprint(self.get_params(), len(train)),
            validation=validation,
            validate=mean_validation_loss(self._loss, self.batch_size, self.device_),
            desc="reverse distillation",
        )
        self.fit_info_ = fit_info(record, self.validation_fraction, train_part)

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> Prediction:
        """(B, 3, H, W) in [0, 1] -> Prediction(image_scores (B,), anomaly_maps (B, H, W))."""
        extractor = self.require_fitted()
        images = check_images(images)
        teacher, decoded = self.reconstruct(images)
        size = images.shape[-2:]
        per_scale = distance_maps(teacher, decoded)
        maps = sum(upsample_maps(d, size, self.map_upsampling, self.align_corners) for d in per_scale)
        maps = gaussian_blur(maps, self.blur_sigma)[:, 0]  # (B, H, W)
        scores = maps.flatten(1).amax(1)
        check_finite(scores, "reverse distillation scores", extractor.weights_id)
        return Prediction(image_scores=scores.float().cpu(), anomaly_maps=maps.float().cpu())
