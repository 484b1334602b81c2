"""PaDiM (Defard et al. 2021): a Gaussian per feature-map position, scored by Mahalanobis distance."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import ClassVar, Self

import torch
from tqdm.auto import tqdm

from fractalad.backbones.factory import FeatureExtractor, Normalization
from fractalad.detectors.base import (
    FittedStateDetector,
    Prediction,
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


class PaDiM(FittedStateDetector):
    """Per-position multivariate Gaussian of a random channel subset of layer1-3 features."""

    name: ClassVar[str] = "padim"

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
        seed: int = 0,
        device: str = "auto",
    ) -> None:
        if n_features is not None and n_features < 1:
            raise InputError(f"n_features must be positive, got {n_features}")
        if regularization <= 0:
            raise InputError(
                f"regularization must be positive (it keeps covariances invertible), got {regularization}"
            )
        super().__init__(
            {
                "backbone": backbone,
                "weights": str(weights),
                "layers": [int(x) for x in layers],
                "normalization": normalization_param(normalization),
                "n_features": n_features,
                "regularization": float(regularization),
                "blur_sigma": float(blur_sigma),
                "layer_resize": layer_resize,
                "map_upsampling": map_upsampling,
                "seed": int(seed),
                "device": device,
            }
        )
        self.channel_index_: torch.Tensor | None = None
        self.mean_: torch.Tensor | None = None
        self.inv_covariance_: torch.Tensor | None = None

    def _channel_index(self, total: int) -> torch.Tensor:
        wanted = self._params["n_features"] or DEFAULT_N_FEATURES.get(self._params["backbone"], total)
        if wanted > total:
            raise InputError(f"n_features={wanted} exceeds the {total} channels of the chosen layers")
        generator = torch.Generator().manual_seed(self._params["seed"])
        return torch.randperm(total, generator=generator)[:wanted]

    def embed(self, extractor: FeatureExtractor, images: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> selected channels of the concatenated maps, (B, F, h, w)."""
        features = extractor(images.to(self.device))
        embedding = concat_layers(features, self._params["layer_resize"])
        check_finite(embedding, "backbone features", extractor.weights_id)
        return embedding.index_select(1, index.to(embedding.device))

    @torch.no_grad()
    def fit(self, train_batches: Iterable[torch.Tensor]) -> Self:
        """Estimate mean and inverse covariance at every feature position from the training images."""
        self.extractor_ = self.channel_index_ = self.mean_ = self.inv_covariance_ = None
        extractor = self._make_extractor()
        index = self._channel_index(sum(extractor.channels))
        parts: list[torch.Tensor] = []
        for batch in tqdm(train_batches, desc="padim features", leave=False):
            embedding = self.embed(extractor, check_images(batch), index)
            parts.append(embedding.flatten(2))  # (B, F, P)
        if sum(p.shape[0] for p in parts) < 2:
            raise InputError("PaDiM.fit needs at least 2 training images to estimate covariances")
        self.mean_, self.inv_covariance_ = fit_gaussians(parts, self._params["regularization"])
        self.channel_index_, self.extractor_ = index, extractor
        return self

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> Prediction:
        """(B, 3, H, W) in [0, 1] -> Prediction(image_scores (B,), anomaly_maps (B, H, W))."""
        if self.extractor_ is None or self.mean_ is None or self.inv_covariance_ is None:
            raise InputError("PaDiM is not fitted; call fit() or load() first")
        images = check_images(images)
        embedding = self.embed(self.extractor_, images, self.channel_index_)
        batch, _, height, width = embedding.shape
        if height * width != self.mean_.shape[1]:
            raise InputError(
                f"PaDiM was fitted on {self.mean_.shape[1]} feature positions but these images give "
                f"{height}x{width}; predict at the training image size"
            )
        distances = mahalanobis(embedding.flatten(2), self.mean_, self.inv_covariance_)  # (B, P)
        maps = upsample_maps(
            distances.reshape(batch, 1, height, width), images.shape[-2:], self._params["map_upsampling"]
        )
        maps = gaussian_blur(maps, self._params["blur_sigma"])[:, 0]
        scores = maps.flatten(1).amax(1)
        check_finite(scores, "PaDiM image scores", self.extractor_.weights_id)
        return Prediction(image_scores=scores.cpu(), anomaly_maps=maps.cpu())

    def _fitted_tensors(self) -> dict[str, torch.Tensor]:
        if self.mean_ is None or self.inv_covariance_ is None or self.channel_index_ is None:
            raise InputError("PaDiM is not fitted; nothing to save")
        return {
            "channel_index": self.channel_index_,
            "mean": self.mean_,
            "inv_covariance": self.inv_covariance_,
        }

    def _restore(self, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
        missing = {"channel_index", "mean", "inv_covariance"} - set(tensors)
        if missing:
            raise InputError(f"PaDiM file lacks tensors {sorted(missing)}; refit and save again")
        self.extractor_ = self._make_extractor()
        self.channel_index_ = tensors["channel_index"]
        self.mean_ = tensors["mean"].to(self.device)
        self.inv_covariance_ = tensors["inv_covariance"].to(self.device)
