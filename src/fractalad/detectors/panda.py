"""PANDA (Reiss et al. 2021): pull normal features together around their initial centre, then score by k-NN.

layer3 and layer4 are fine-tuned with the compactness loss mean ||f(x) - c||^2 / D, where c is the mean pooled
feature of the training images under the *starting* weights, computed once. BatchNorm stays in eval mode for the
whole training (running statistics never move; its affine parameters in layer3/4 do train). After training the
training features are recomputed with the trained network and an image's score is the sum of squared L2
distances to its k = 2 nearest ones. Input: resize to `resize`, centre-crop `crop` (256 / 224).

PANDA itself scores whole images only. The anomaly map applies the same rule per position: each position of
the last chosen layer is scored by its k nearest training positions (all positions of all training images),
the crop's map is extended to the resized frame by repeating its border and brought back to the input size.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn
from torch.nn import functional as F
from torchvision.transforms.v2 import functional as TF
from tqdm.auto import tqdm

from fractalad.backbones.factory import Normalization
from fractalad.detectors.base import (
    BaseDetector,
    Prediction,
    TrainSet,
    check_finite,
    check_images,
    normalization_param,
)
from fractalad.detectors.components.blur import gaussian_blur
from fractalad.detectors.components.embedding import pooled_features, upsample_maps
from fractalad.detectors.components.knn import nearest_neighbours
from fractalad.detectors.components.training import build_optimizer, fingerprint, train_epochs
from fractalad.errors import InputError


class EvalBatchNorm(nn.Module):
    """Wraps a network so that `train()` never puts its BatchNorm layers in training mode."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def train(self, mode: bool = True) -> EvalBatchNorm:
        super().train(mode)
        for module in self.network.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()
        return self


def knn_score(queries: torch.Tensor, bank: torch.Tensor, k: int) -> torch.Tensor:
    """queries (M, D), bank (N, D) -> (M,) sum of squared L2 distances to the k nearest bank rows."""
    distances, _ = nearest_neighbours(queries, bank, k)  # (M, k), Euclidean
    return distances.pow(2).sum(1)


class PANDA(BaseDetector):
    """Compactness fine-tuning of layer3/4 and k-NN scoring on the re-computed training features."""

    name: ClassVar[str] = "panda"
    trainable_stages: ClassVar[tuple[int, ...] | str] = (3, 4)
    fitted = ("extractor_", "center_", "bank_", "map_bank_")

    def __init__(
        self,
        backbone: str = "wide_resnet50_2",
        weights: str = "imagenet",
        layers: Sequence[int] = (4,),
        normalization: Normalization | str | None = None,
        epochs: int = 15,
        batch_size: int = 32,
        lr: float = 1e-2,
        momentum: float = 0.9,
        weight_decay: float = 5e-5,
        clip_grad_norm: float = 1e-3,
        num_neighbors: int = 2,
        resize: int = 256,
        crop: int = 224,
        blur_sigma: float = 4.0,
        seed: int = 0,
    ) -> None:
        for what, value in (("epochs", epochs), ("batch_size", batch_size), ("num_neighbors", num_neighbors),
                            ("resize", resize), ("crop", crop)):
            if int(value) < 1:
                raise InputError(f"{what} must be >= 1, got {value}")
        if crop > resize:
            raise InputError(f"crop ({crop}) must not exceed resize ({resize})")
        if lr <= 0 or weight_decay < 0 or clip_grad_norm <= 0 or not 0 <= momentum < 1:
            raise InputError(
                f"need lr > 0, weight_decay >= 0, clip_grad_norm > 0, 0 <= momentum < 1; "
                f"got {lr}, {weight_decay}, {clip_grad_norm}, {momentum}"
            )
        self.backbone = backbone
        self.weights = str(weights)
        self.layers = tuple(int(x) for x in layers)
        self.normalization = normalization_param(normalization)
        self.epochs = int(epochs)
        self.batch_size = int(batch_size)
        self.lr = float(lr)
        self.momentum = float(momentum)
        self.weight_decay = float(weight_decay)
        self.clip_grad_norm = float(clip_grad_norm)
        self.num_neighbors = int(num_neighbors)
        self.resize = int(resize)
        self.crop = int(crop)
        self.blur_sigma = float(blur_sigma)
        self.seed = int(seed)
        self.center_: torch.Tensor | None = None
        self.bank_: torch.Tensor | None = None
        self.map_bank_: torch.Tensor | None = None

    # -- features -----------------------------------------------------------------------------------------
    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> resized to `resize` and centre-cropped to `crop`, (B, 3, crop, crop)."""
        resized = TF.resize(images.to(self.device_), [self.resize, self.resize], antialias=True)
        return TF.center_crop(resized, [self.crop, self.crop])

    def features(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, H, W) -> pooled features (B, D) and the last layer's map (B, C, h, w) of the prepared crop."""
        maps = self.extractor_(self.prepare(images))
        pooled = pooled_features(maps)
        check_finite(pooled, "backbone features", self.extractor_.weights_id)
        return pooled, maps[-1]

    @torch.no_grad()
    def _collect(self, train: TrainSet, progress: bool, desc: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Pooled features (N, D) and all map positions (N*h*w, C) of the training images, eval mode."""
        self.extractor_.eval()
        pooled, positions = [], []
        total = train.num_batches(self.batch_size)
        for batch in tqdm(train.batches(self.batch_size), total=total, desc=desc, disable=not progress, leave=False):
            features, last = self.features(check_images(batch))
            pooled.append(features)
            positions.append(last.permute(0, 2, 3, 1).reshape(-1, last.shape[1]))
        return torch.cat(pooled), torch.cat(positions)

    # -- training -----------------------------------------------------------------------------------------
    def _fit(self, train: TrainSet, progress: bool, work_dir: Path | None) -> None:
        if len(train) < self.num_neighbors:
            raise InputError(f"PANDA.fit needs at least num_neighbors={self.num_neighbors} training images")
        initial, _ = self._collect(train, progress, "panda initial features")
        center = initial.mean(0)  # (D,): computed once, from the starting weights

        def step_loss(batch: torch.Tensor) -> torch.Tensor:
            pooled, _ = self.features(batch)
            return (pooled.float() - center).pow(2).mean()  # mean over the batch of ||f - c||^2 / D

        network = EvalBatchNorm(self.extractor_)
        optimizer = build_optimizer("sgd", network.parameters(), self.lr, self.weight_decay, self.momentum)
        record = train_epochs(
            {"extractor": network},
            optimizer,
            train,
            step_loss,
            epochs=self.epochs,
            batch_size=self.batch_size,
            seed=self.seed,
            device=self.device_,
            precision=self.precision_,
            progress=progress,
            work_dir=work_dir,
            run_fingerprint=fingerprint(self.get_params(), len(train)),
            clip_grad_norm=self.clip_grad_norm,
            desc="panda",
        )
        self.center_ = center
        self.bank_, self.map_bank_ = self._collect(train, progress, "panda trained features")
        self.fit_info_ = {
            **record.as_info(),
            "finetuned_backbone": True,
            "trainable_stages": list(self.trainable_stages),
            "batchnorm": "eval mode throughout",
        }

    # -- scoring ------------------------------------------------------------------------------------------
    def _maps(self, last: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Per-position k-NN scores (B, C, h, w) -> maps (B, H, W) at input size."""
        batch, channels, height, width = last.shape
        flat = last.permute(0, 2, 3, 1).reshape(-1, channels)
        scores = knn_score(flat, self.map_bank_, self.num_neighbors).reshape(batch, 1, height, width)
        crop_map = upsample_maps(scores, (self.crop, self.crop), "bilinear")
        margin = self.resize - self.crop
        before = round(margin / 2.0)  # where torchvision's center_crop starts the crop
        after = margin - before
        framed = F.pad(crop_map, (before, after, before, after), mode="replicate") if margin else crop_map
        maps = upsample_maps(framed, size, "bilinear")
        return gaussian_blur(maps, self.blur_sigma)[:, 0]

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> Prediction:
        """(B, 3, H, W) in [0, 1] -> Prediction(image_scores (B,), anomaly_maps (B, H, W))."""
        extractor = self.require_fitted()
        images = check_images(images)
        extractor.eval()
        pooled, last = self.features(images)
        scores = knn_score(pooled.float(), self.bank_, self.num_neighbors)
        maps = self._maps(last.float(), tuple(images.shape[-2:]))
        check_finite(scores, "PANDA image scores", extractor.weights_id)
        return Prediction(image_scores=scores.cpu(), anomaly_maps=maps.cpu())
