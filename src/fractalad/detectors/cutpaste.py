"""CutPaste (Li et al. 2021): fine-tune the whole backbone to tell normal images from CutPaste / scar ones.

After training, a Gaussian (Ledoit-Wolf shrinkage) is fitted on L2-normalised pooled features of the *clean*
training images; the score of an image is its squared Mahalanobis distance (-2 log density + const).

Two modes:
- "image" (default): trained on whole images. Image score = density of the pooled features. The anomaly map
  comes from a second Ledoit-Wolf Gaussian fitted on every feature-map position of the clean training images
  (L2-normalised, last chosen layer's resolution), scored per position, up-sampled and blurred like PaDiM's.
- "patch" (the paper's localisation variant): trained on random patch_size crops; every patch at
  `patch_stride` is scored by the patch density and the scores are spread back over their pixels through a
  Gaussian window (receptive-field up-sampling). Image score = maximum of that map.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from fractalad.backbones.factory import FeatureExtractor, Normalization
from fractalad.detectors.base import (
    BaseDetector,
    Prediction,
    TrainSet,
    check_finite,
    check_images,
    normalization_param,
)
from fractalad.detectors.components.augment import VARIANTS, make_views, random_crops
from fractalad.detectors.components.blur import gaussian_blur
from fractalad.detectors.components.density import fit_ledoit_wolf, mahalanobis_squared
from fractalad.detectors.components.embedding import concat_layers, pooled_features, upsample_maps
from fractalad.detectors.components.patches import dense_patches, scores_to_map
from fractalad.detectors.components.training import build_optimizer, fingerprint, train_epochs
from fractalad.errors import InputError

MODES: tuple[str, ...] = ("image", "patch")
# Patches pushed through the network at once when scoring densely (bounds activation memory).
PATCH_CHUNK = 256


class ProjectionHead(nn.Module):
    """Pooled features (B, C) -> Linear-BN-ReLU(width) -> embedding (B, dim) -> class logits (B, classes)."""

    def __init__(self, channels: int, width: int, dim: int, classes: int) -> None:
        super().__init__()
        self.project = nn.Sequential(
            nn.Linear(channels, width), nn.BatchNorm1d(width), nn.ReLU(inplace=True), nn.Linear(width, dim)
        )
        self.classify = nn.Linear(dim, classes)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.classify(self.project(pooled))


class StepClock(nn.Module):
    """Optimiser steps taken so far, as a buffer so that the training checkpoint carries it across a resume."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("steps", torch.zeros((), dtype=torch.int64))

    def tick(self) -> int:
        step = int(self.steps)
        self.steps += 1
        return step


class Cycled(Dataset):
    """`length` images cycling through the decoded `images` (N, 3, H, W): one shuffled pass = `length / batch` steps.

    The images are held in memory because one epoch visits each of them `length / N` times (256 steps x 32
    originals over a few hundred images): decoding and resizing them from disk on every visit costs more than
    the optimiser step itself on a GPU.
    """

    def __init__(self, images: torch.Tensor, length: int) -> None:
        self.images, self.length = images, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.images[index % self.images.shape[0]]


def decode_all(train: TrainSet, batch_size: int) -> torch.Tensor:
    """Every training image, decoded once and checked: (N, 3, H, W) float32 in [0, 1] on the CPU."""
    return torch.cat([check_images(batch) for batch in train.batches(batch_size)])


def pooled_unit(maps: Sequence[torch.Tensor]) -> torch.Tensor:
    """Layer maps -> L2-normalised pooled features (B, C): what the image density models."""
    return F.normalize(pooled_features(maps), dim=1)


def positions_unit(maps: Sequence[torch.Tensor]) -> torch.Tensor:
    """Layer maps -> L2-normalised features per position of the first map's grid (B, C, h, w)."""
    return F.normalize(concat_layers(maps, "bilinear"), dim=1)


class CutPaste(BaseDetector):
    """Self-supervised CutPaste fine-tuning, scored by a Ledoit-Wolf Gaussian on clean training features."""

    name: ClassVar[str] = "cutpaste"
    trainable_stages: ClassVar[tuple[int, ...] | str] = "all"
    fitted = ("extractor_", "head_", "mean_", "precision_", "map_mean_", "map_precision_")

    def __init__(
        self,
        backbone: str = "resnet18",
        weights: str = "imagenet",
        layers: Sequence[int] = (4,),
        normalization: Normalization | str | None = None,
        variant: str = "3way",
        mode: str = "image",
        epochs: int = 40,
        steps_per_epoch: int = 256,
        batch_size: int = 32,
        lr: float = 0.03,
        momentum: float = 0.9,
        weight_decay: float = 3e-5,
        head_width: int = 512,
        embedding_dim: int = 128,
        patch_size: int = 64,
        patch_stride: int = 4,
        fit_stride: int = 32,
        window_sigma: float = 16.0,
        blur_sigma: float = 4.0,
        seed: int = 0,
    ) -> None:
        if variant not in VARIANTS:
            raise InputError(f"variant {variant!r} is unknown; use one of {sorted(VARIANTS)}")
        if mode not in MODES:
            raise InputError(f"mode {mode!r} is unknown; use one of {list(MODES)}")
        for what, value in (("epochs", epochs), ("steps_per_epoch", steps_per_epoch), ("batch_size", batch_size),
                            ("head_width", head_width), ("embedding_dim", embedding_dim),
                            ("patch_size", patch_size), ("patch_stride", patch_stride), ("fit_stride", fit_stride)):
            if int(value) < 1:
                raise InputError(f"{what} must be >= 1, got {value}")
        if lr <= 0 or weight_decay < 0 or not 0 <= momentum < 1:
            raise InputError(f"need lr > 0, weight_decay >= 0, 0 <= momentum < 1; got {lr}, {weight_decay}, {momentum}")
        self.backbone = backbone
        self.weights = str(weights)
        self.layers = tuple(int(x) for x in layers)
        self.normalization = normalization_param(normalization)
        self.variant = variant
        self.mode = mode
        self.epochs = int(epochs)
        self.steps_per_epoch = int(steps_per_epoch)
        self.batch_size = int(batch_size)
        self.lr = float(lr)
        self.momentum = float(momentum)
        self.weight_decay = float(weight_decay)
        self.head_width = int(head_width)
        self.embedding_dim = int(embedding_dim)
        self.patch_size = int(patch_size)
        self.patch_stride = int(patch_stride)
        self.fit_stride = int(fit_stride)
        self.window_sigma = float(window_sigma)
        self.blur_sigma = float(blur_sigma)
        self.seed = int(seed)
        self.head_: ProjectionHead | None = None
        self.mean_: torch.Tensor | None = None
        self.precision_: torch.Tensor | None = None
        self.map_mean_: torch.Tensor | None = None
        self.map_precision_: torch.Tensor | None = None

    def build(self, extractor: FeatureExtractor) -> None:
        classes = len(VARIANTS[self.variant])
        self.head_ = ProjectionHead(sum(extractor.channels), self.head_width, self.embedding_dim, classes)

    # -- training -----------------------------------------------------------------------------------------
    def _step_loss(self, clock: StepClock):
        def step_loss(batch: torch.Tensor) -> torch.Tensor:
            # Each step's augmentations come from a generator seeded by (seed, step): resumable, reproducible.
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + clock.tick())
            if self.mode == "patch":
                batch = random_crops(batch, self.patch_size, generator)
            views, labels = make_views(batch, self.variant, generator)  # (V*B, 3, h, w), (V*B,)
            logits = self.head_(pooled_features(self.extractor_(views)))
            return F.cross_entropy(logits.float(), labels)

        return step_loss

    def _train(self, images: torch.Tensor, progress: bool, work_dir: Path | None) -> dict:
        """Fine-tune on views of `images` (N, 3, H, W), decoded once; returns the TrainingRecord's info."""
        extractor, clock = self.extractor_, StepClock()
        cycled = TrainSet(Cycled(images, self.steps_per_epoch * self.batch_size))
        parameters = [*extractor.parameters(), *self.head_.parameters()]
        optimizer = build_optimizer("sgd", parameters, self.lr, self.weight_decay, self.momentum)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=self.epochs)
        record = train_epochs(
            {"extractor": extractor, "head": self.head_, "clock": clock},
            optimizer,
            cycled,
            self._step_loss(clock),
            epochs=self.epochs,
            batch_size=self.batch_size,
            seed=self.seed,
            device=self.device_,
            precision=self.precision_,
            progress=progress,
            work_dir=work_dir,
            run_fingerprint=fingerprint(self.get_params(), images.shape[0]),
            scheduler=scheduler,
            desc="cutpaste",
        )
        return record.as_info()

    def _fit(self, train: TrainSet, progress: bool, work_dir: Path | None) -> None:
        if len(train) < 2:
            raise InputError("CutPaste.fit needs at least 2 training images to fit its Gaussian density")
        images = decode_all(train, self.batch_size)
        info = self._train(images, progress, work_dir)
        self.extractor_.eval()
        self.head_.eval()
        self._fit_density(TrainSet.from_tensor(images), progress)
        self.fit_info_ = {
            **info,
            "finetuned_backbone": True,
            "trainable_stages": "all",
            "optimizer_steps": self.epochs * self.steps_per_epoch,
            "density": "ledoit-wolf gaussian on clean training images",
        }

    # -- features and density -----------------------------------------------------------------------------
    def layer_maps(self, images: torch.Tensor) -> list[torch.Tensor]:
        """(B, 3, H, W) -> the chosen layers' maps (B, C_j, h_j, w_j), checked for NaN/inf."""
        maps = self.extractor_(images.to(self.device_))
        for feature in maps:
            check_finite(feature, "backbone features", self.extractor_.weights_id)
        return maps

    def image_features(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> L2-normalised pooled features (B, C)."""
        return pooled_unit(self.layer_maps(images))

    def position_features(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> L2-normalised features at every feature-map position (B, C, h, w)."""
        return positions_unit(self.layer_maps(images))

    def patch_features(self, images: torch.Tensor, stride: int) -> torch.Tensor:
        """(B, 3, H, W) -> L2-normalised pooled features of every patch at `stride`, (B, L, C)."""
        patches = dense_patches(images.to(self.device_), self.patch_size, stride)  # (B, L, 3, p, p)
        flat = patches.reshape(-1, *patches.shape[2:])
        parts = [self.image_features(flat[i : i + PATCH_CHUNK]) for i in range(0, flat.shape[0], PATCH_CHUNK)]
        return torch.cat(parts).reshape(patches.shape[0], patches.shape[1], -1)

    @torch.no_grad()
    def _fit_density(self, train: TrainSet, progress: bool) -> None:
        """Gaussians on the un-augmented training images (the known trap is fitting them on augmented ones)."""
        units: list[torch.Tensor] = []
        positions: list[torch.Tensor] = []
        batches = tqdm(train.batches(self.batch_size), total=train.num_batches(self.batch_size),
                       desc="cutpaste density", disable=not progress, leave=False)
        for batch in batches:
            batch = check_images(batch)
            if self.mode == "patch":
                units.append(self.patch_features(batch, self.fit_stride).flatten(0, 1))
            else:
                layer_maps = self.layer_maps(batch)
                units.append(pooled_unit(layer_maps))
                maps = positions_unit(layer_maps)
                positions.append(maps.permute(0, 2, 3, 1).reshape(-1, maps.shape[1]))
        self.mean_, self.precision_ = fit_ledoit_wolf(torch.cat(units))
        if self.mode == "patch":
            # One patch density scores both the map and (through the map's maximum) the image.
            self.map_mean_, self.map_precision_ = self.mean_, self.precision_
        else:
            self.map_mean_, self.map_precision_ = fit_ledoit_wolf(torch.cat(positions))

    # -- scoring ------------------------------------------------------------------------------------------
    def _patch_map(self, images: torch.Tensor) -> torch.Tensor:
        maps = []
        for image in images:
            features = self.patch_features(image[None], self.patch_stride)[0]  # (L, C)
            scores = mahalanobis_squared(features, self.map_mean_, self.map_precision_)
            maps.append(scores_to_map(scores[None], image.shape[-2:], self.patch_size, self.patch_stride,
                                      self.window_sigma))
        return torch.cat(maps)

    def _position_map(self, layer_maps: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        features = positions_unit(layer_maps)  # (B, C, h, w)
        batch, channels, height, width = features.shape
        flat = features.permute(0, 2, 3, 1).reshape(-1, channels)
        scores = mahalanobis_squared(flat, self.map_mean_, self.map_precision_).reshape(batch, 1, height, width)
        maps = upsample_maps(scores, size, "bilinear")
        return gaussian_blur(maps, self.blur_sigma)[:, 0]

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> Prediction:
        """(B, 3, H, W) in [0, 1] -> Prediction(image_scores (B,), anomaly_maps (B, H, W))."""
        extractor = self.require_fitted()
        images = check_images(images).to(self.device_)
        extractor.eval()
        if self.mode == "patch":
            maps = self._patch_map(images)
            scores = maps.flatten(1).amax(1)
        else:
            layer_maps = self.layer_maps(images)  # one forward pass for both the score and the map
            scores = mahalanobis_squared(pooled_unit(layer_maps), self.mean_, self.precision_)
            maps = self._position_map(layer_maps, tuple(images.shape[-2:]))
        check_finite(scores, "CutPaste image scores", extractor.weights_id)
        return Prediction(image_scores=scores.float().cpu(), anomaly_maps=maps.float().cpu())
