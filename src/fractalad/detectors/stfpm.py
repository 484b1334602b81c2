"""STFPM (Wang et al., BMVC 2021): a randomly initialised student learns to mimic the frozen teacher's pyramid.

The student is the teacher's architecture with fresh weights; trained on normal images it matches the teacher's
channel-normalised features there and fails elsewhere. Defaults are the official recipe: SGD lr 0.4, momentum
0.9, weight decay 1e-4, batch 32, 100 epochs, the last epoch kept. The official checkpoint rule (lowest mean
loss on a held-out 20 % of the normal training images) is `validation_fraction=0.2`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import torch
from torch.nn import functional as F

from fractalad.backbones.factory import FeatureExtractor, Normalization, create_backbone
from fractalad.detectors.base import (
    BaseDetector,
    Prediction,
    TrainSet,
    check_finite,
    check_images,
    normalization_param,
)
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

# The student's initial weights are drawn from seed + this offset: a random-weight teacher is built from `seed`
# itself, and a student identical to it would have nothing to learn.
STUDENT_SEED_OFFSET = 7919


def layer_distances(teacher: torch.Tensor, student: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) pair -> 0.5 * squared distance of the channel-L2-normalised features, (B, 1, h, w)."""
    difference = F.normalize(teacher, dim=1) - F.normalize(student, dim=1)
    return 0.5 * difference.pow(2).sum(dim=1, keepdim=True)


def pyramid_loss(teacher: Sequence[torch.Tensor], student: Sequence[torch.Tensor]) -> torch.Tensor:
    """Sum over scales of the per-position distance summed over the batch and averaged over positions.

    The official loss sums over the images of a batch (it is not a batch mean), which its learning rate of 0.4
    was tuned with.
    """
    losses = [
        layer_distances(t, s).sum() / (t.shape[-2] * t.shape[-1])
        for t, s in zip(teacher, student, strict=True)
    ]
    return torch.stack(losses).sum()


class STFPM(BaseDetector):
    """Student-teacher feature pyramid matching; anomaly map = product over scales of the distances."""

    name: ClassVar[str] = "stfpm"
    fitted = ("student_",)

    def __init__(
        self,
        backbone: str = "resnet18",
        weights: str = "imagenet",
        layers: Sequence[int] = (1, 2, 3),
        normalization: Normalization | str | None = None,
        epochs: int = 100,
        batch_size: int = 32,
        lr: float = 0.4,
        momentum: float = 0.9,
        weight_decay: float = 1e-4,
        map_upsampling: str = "bilinear",
        validation_fraction: float = 0.0,
        seed: int = 0,
    ) -> None:
        check_training_params(epochs, batch_size, lr, weight_decay, validation_fraction)
        self.backbone = backbone
        self.weights = str(weights)
        self.layers = tuple(int(x) for x in layers)
        self.normalization = normalization_param(normalization)
        self.epochs = int(epochs)
        self.batch_size = int(batch_size)
        self.lr = float(lr)
        self.momentum = float(momentum)
        self.weight_decay = float(weight_decay)
        self.map_upsampling = map_upsampling
        self.validation_fraction = float(validation_fraction)
        self.seed = int(seed)
        self.student_: FeatureExtractor | None = None

    def build(self, extractor: FeatureExtractor) -> None:
        """The student: the teacher's architecture, layers and input normalisation, random init, all trainable."""
        self.student_ = create_backbone(
            extractor.arch,
            "random",
            extractor.layers,
            extractor.normalization,
            seed=self.seed + STUDENT_SEED_OFFSET,
            trainable_stages="all",
        ).eval()  # BatchNorm on running statistics until `train_epochs` trains it, and after loading

    def features(self, images: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """(B, 3, H, W) -> (teacher maps, student maps), each [(B, C_j, H/s_j, W/s_j)]."""
        images = images.to(self.device_)
        return frozen_features(self.extractor_, images, self.device_), self.student_(images)

    def _loss(self, batch: FeatureBatch) -> torch.Tensor:
        return pyramid_loss(batch.features, self.student_(batch.images))

    def _fit(self, train: TrainSet, progress: bool, work_dir: Path | None) -> None:
        """Train the student on the normal images (the teacher stays frozen)."""
        train_part, validation = frozen_splits(
            train,
            self.validation_fraction,
            self.seed,
            self.extractor_,
            self.device_,
            self.batch_size,
            keep_images=True,
        )
        optimizer = build_optimizer(
            "sgd",
            self.student_.parameters(),
            lr=self.lr,
            momentum=self.momentum,
            weight_decay=self.weight_decay,
        )
        record = train_epochs(
            {"student": self.student_},
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
            # The loss sums over a batch's images; per image it is the mean of the image's scores.
            validate=mean_validation_loss(lambda b: self._loss(b) / len(b), self.batch_size, self.device_),
            desc="stfpm",
        )
        self.fit_info_ = fit_info(record, self.validation_fraction, train_part)

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> Prediction:
        """(B, 3, H, W) in [0, 1] -> Prediction(image_scores (B,), anomaly_maps (B, H, W))."""
        extractor = self.require_fitted()
        images = check_images(images)
        teacher, student = self.features(images)
        size = images.shape[-2:]
        maps = torch.ones(images.shape[0], 1, *size, device=self.device_)
        for t, s in zip(teacher, student, strict=True):
            maps = maps * upsample_maps(layer_distances(t, s), size, self.map_upsampling)
        maps = maps[:, 0]  # (B, H, W)
        scores = maps.flatten(1).amax(1)
        check_finite(scores, "STFPM scores", extractor.weights_id)
        return Prediction(image_scores=scores.float().cpu(), anomaly_maps=maps.float().cpu())
