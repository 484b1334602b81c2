"""PaDiM (Defard et al. 2021): a Gaussian per feature-map position, scored by Mahalanobis distance."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import torch
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
from fractalad.detectors.components.blur import gaussian_blur
from fractalad.detectors.components.embedding import concat_layers, upsample_maps
from fractalad.detectors.components.gaussian import fit_gaussians, mahalanobis
from fractalad.errors import InputError

# Random channel subset sizes of the PaDiM paper / Anomalib.
DEFAULT_N_FEATURES: dict[str, int] = {"resnet18": 100, "wide_resnet50_2": 550}


class PaDiM(BaseDetector):
    """Per-position multivariate Gaussian of a random channel subset of layer1-3 features."""

    name: ClassVar[str] = "padim"

    fitted = ("channel_index_", "mean_", "inv_covariance_")

    def __init__(
        self,
        backbone: str = "resnet18",
        weights: str = "imagenet",
        layers: Sequence[int] = (1, 2, 3),
        normalization: Normalization | str | None = None,
        n_features: int | None = None,
        regularization: float = 0.01,
        blur_sigma: float = 4.0,
        layer_resize: str = "nearest",
        map_upsampling: str = "bilinear",
        batch_size: int = 16,
        seed: int = 0,
    ) -> None:
        if n_features is not None and n_features < 1:
            raise InputError(f"n_features must be positive, got {n_features}")
        if regularization <= 0:
            raise InputError(
                f"regularization must be positive (it keeps covariances invertible), got {regularization}"
            )
        if batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {batch_size}")
        self.backbone = backbone
        self.weights = str(weights)
        self.layers = tuple(int(x) for x in layers)
        self.normalization = normalization_param(normalization)
        self.n_features = n_features
        self.regularization = float(regularization)
        self.blur_sigma = float(blur_sigma)
        self.layer_resize = layer_resize
        self.map_upsampling = map_upsampling
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.channel_index_: torch.Tensor | None = None
        self.mean_: torch.Tensor | None = None
        self.inv_covariance_: torch.Tensor | None = None

    def _channel_index(self, total: int) -> torch.Tensor:
        wanted = self.n_features or DEFAULT_N_FEATURES.get(self.backbone, total)
        if wanted > total:
            raise InputError(f"n_features={wanted} exceeds the {total} channels of the chosen layers")
        generator = torch.Generator().manual_seed(self.seed)
        return torch.randperm(total, generator=generator)[:wanted]

    def embed(self, extractor: FeatureExtractor, images: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> selected channels of the concatenated maps, (B, F, h, w)."""
        features = extractor(images.to(self.device_))
        embedding = concat_layers(features, self.layer_resize)
        check_finite(embedding, "backbone features", extractor.weights_id)
        return embedding.index_select(1, index.to(embedding.device))

    @torch.no_grad()
    def _fit(self, train: TrainSet, progress: bool, work_dir: Path | None) -> None:
        """Estimate mean and inverse covariance at every feature position from the training images."""
        if len(train) < 2:
            raise InputError("PaDiM.fit needs at least 2 training images to estimate covariances")
        extractor = self.extractor_
        index = self._channel_index(sum(extractor.channels))
        parts: list[torch.Tensor] = []
        batches = train.batches(self.batch_size)
        total = train.num_batches(self.batch_size)
        for batch in tqdm(batches, desc="padim features", total=total, disable=not progress, leave=False):
            embedding = self.embed(extractor, check_images(batch), index)
            parts.append(embedding.flatten(2))  # (B, F, P)
        self.mean_, self.inv_covariance_ = fit_gaussians(parts, self.regularization)
        self.channel_index_ = index

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> Prediction:
        """(B, 3, H, W) in [0, 1] -> Prediction(image_scores (B,), anomaly_maps (B, H, W))."""
        extractor = self.require_fitted()
        images = check_images(images)
        embedding = self.embed(extractor, images, self.channel_index_)
        batch, _, height, width = embedding.shape
        if height * width != self.mean_.shape[1]:
            raise InputError(
                f"PaDiM was fitted on {self.mean_.shape[1]} feature positions but these images give "
                f"{height}x{width}; predict at the training image size"
            )
        distances = mahalanobis(embedding.flatten(2), self.mean_, self.inv_covariance_)  # (B, P)
        maps = upsample_maps(distances.reshape(batch, 1, height, width), images.shape[-2:], self.map_upsampling)
        maps = gaussian_blur(maps, self.blur_sigma)[:, 0]
        scores = maps.flatten(1).amax(1)
        check_finite(scores, "PaDiM image scores", extractor.weights_id)
        return Prediction(image_scores=scores.cpu(), anomaly_maps=maps.cpu())
