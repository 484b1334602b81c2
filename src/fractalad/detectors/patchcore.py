"""PatchCore (Roth et al. 2022): coreset-subsampled memory bank of locally aggregated patch features."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import ClassVar, Self

import torch
from torch.nn import functional as F
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
from fractalad.detectors.components.coreset import greedy_coreset, project_chunks
from fractalad.detectors.components.embedding import concat_layers, upsample_maps
from fractalad.detectors.components.knn import nearest_neighbours
from fractalad.errors import InputError

RESIZE_MODES: tuple[str, ...] = ("bilinear", "nearest", "bicubic")


def rows_from_chunks(chunks: Sequence[torch.Tensor], indices: torch.Tensor) -> torch.Tensor:
    """Rows `indices` (M,) of the virtual concatenation of chunks (n_i, C), without building it."""
    ends = torch.tensor([c.shape[0] for c in chunks]).cumsum(0)
    owner = torch.searchsorted(ends, indices, right=True)
    starts = ends - torch.tensor([c.shape[0] for c in chunks])
    out = torch.empty(indices.numel(), chunks[0].shape[1], dtype=chunks[0].dtype, device=chunks[0].device)
    for chunk_id in torch.unique(owner).tolist():
        where = torch.nonzero(owner == chunk_id).squeeze(1)
        local = (indices[where] - starts[chunk_id]).to(chunks[0].device)
        out[where.to(out.device)] = chunks[chunk_id][local]
    return out


class PatchCore(FittedStateDetector):
    """Nearest-neighbour distance to a memory bank of normal patch features; k-NN re-weighted image score."""

    name: ClassVar[str] = "patchcore"

    def __init__(
        self,
        backbone: str = "wide_resnet50_2",
        weights: str = "imagenet",
        layers: Sequence[int] = (2, 3),
        normalization: Normalization | str | None = None,
        coreset_ratio: float = 0.1,
        num_neighbors: int = 9,
        projection_eps: float = 0.9,
        pool_size: int = 3,
        blur_sigma: float = 4.0,
        layer_resize: str = "bilinear",
        map_upsampling: str = "bilinear",
        seed: int = 0,
        device: str = "auto",
    ) -> None:
        if not 0.0 < coreset_ratio <= 1.0:
            raise InputError(f"coreset_ratio must be in (0, 1], got {coreset_ratio}")
        if num_neighbors < 1 or pool_size < 1 or pool_size % 2 == 0:
            raise InputError(
                f"num_neighbors must be >= 1 and pool_size odd, got {num_neighbors}, {pool_size}"
            )
        if layer_resize not in RESIZE_MODES or map_upsampling not in RESIZE_MODES:
            raise InputError(f"layer_resize and map_upsampling must be one of {RESIZE_MODES}")
        super().__init__(
            {
                "backbone": backbone,
                "weights": str(weights),
                "layers": [int(x) for x in layers],
                "normalization": normalization_param(normalization),
                "coreset_ratio": float(coreset_ratio),
                "num_neighbors": int(num_neighbors),
                "projection_eps": float(projection_eps),
                "pool_size": int(pool_size),
                "blur_sigma": float(blur_sigma),
                "layer_resize": layer_resize,
                "map_upsampling": map_upsampling,
                "seed": int(seed),
                "device": device,
            }
        )
        self.memory_bank_: torch.Tensor | None = None

    def embed(self, extractor: FeatureExtractor, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> locally aggregated, concatenated patch features (B, C, h, w)."""
        size = self._params["pool_size"]
        features = extractor(images.to(self.device))
        pooled = [F.avg_pool2d(f, size, stride=1, padding=size // 2) for f in features]
        embedding = concat_layers(pooled, self._params["layer_resize"])
        check_finite(embedding, "backbone features", extractor.weights_id)
        return embedding

    @torch.no_grad()
    def fit(self, train_batches: Iterable[torch.Tensor]) -> Self:
        """Collect patch features of all training images and keep a greedy k-center coreset of them."""
        self.extractor_, self.memory_bank_ = None, None
        extractor = self._make_extractor()
        chunks: list[torch.Tensor] = []
        for batch in tqdm(train_batches, desc="patchcore features", leave=False):
            embedding = self.embed(extractor, check_images(batch))
            chunks.append(embedding.permute(0, 2, 3, 1).reshape(-1, embedding.shape[1]))
        if not chunks:
            raise InputError("PatchCore.fit got no training images")
        generator = torch.Generator().manual_seed(self._params["seed"])
        projected = project_chunks(chunks, self._params["projection_eps"], generator)  # (d, N)
        n_select = max(1, int(projected.shape[1] * self._params["coreset_ratio"]))
        selected = greedy_coreset(projected, n_select, generator)
        del projected
        self.memory_bank_ = rows_from_chunks(chunks, selected).contiguous()
        self.extractor_ = extractor
        return self

    def _require_fitted(self) -> tuple[FeatureExtractor, torch.Tensor]:
        if self.extractor_ is None or self.memory_bank_ is None:
            raise InputError("PatchCore is not fitted; call fit() or load() first")
        return self.extractor_, self.memory_bank_

    def _image_scores(
        self, patch: torch.Tensor, location: torch.Tensor, embedding: torch.Tensor
    ) -> torch.Tensor:
        """Max patch distance re-weighted by how isolated its nearest bank entry is (PatchCore eq. 7)."""
        bank = self.memory_bank_
        if self._params["num_neighbors"] == 1:
            return patch.amax(1)
        rows = torch.arange(patch.shape[0], device=patch.device)
        worst = patch.argmax(1)  # (B,)
        score = patch[rows, worst]
        feature = embedding[rows, worst]  # (B, C)
        neighbour = bank[location[rows, worst]]  # (B, C)
        _, support = nearest_neighbours(neighbour, bank, self._params["num_neighbors"])  # (B, k)
        distances = torch.linalg.vector_norm(feature.unsqueeze(1) - bank[support], dim=2)  # (B, k)
        weights = 1.0 - torch.softmax(distances, dim=1)[:, 0]
        return weights * score

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> Prediction:
        """(B, 3, H, W) in [0, 1] -> Prediction(image_scores (B,), anomaly_maps (B, H, W))."""
        extractor, bank = self._require_fitted()
        images = check_images(images)
        embedding = self.embed(extractor, images)
        batch, channels, height, width = embedding.shape
        flat = embedding.permute(0, 2, 3, 1).reshape(-1, channels)
        distance, index = nearest_neighbours(flat, bank, 1)
        patch = distance[:, 0].reshape(batch, height * width)
        location = index[:, 0].reshape(batch, height * width)
        scores = self._image_scores(patch, location, flat.reshape(batch, height * width, channels))
        maps = upsample_maps(
            patch.reshape(batch, 1, height, width), images.shape[-2:], self._params["map_upsampling"]
        )
        maps = gaussian_blur(maps, self._params["blur_sigma"])[:, 0]
        check_finite(scores, "PatchCore image scores", extractor.weights_id)
        return Prediction(image_scores=scores.cpu(), anomaly_maps=maps.cpu())

    def _fitted_tensors(self) -> dict[str, torch.Tensor]:
        _, bank = self._require_fitted()
        return {"memory_bank": bank}

    def _restore(self, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
        if "memory_bank" not in tensors:
            raise InputError("PatchCore file has no 'memory_bank' tensor; refit and save again")
        self.extractor_ = self._make_extractor()
        self.memory_bank_ = tensors["memory_bank"].to(self.device)

    def __repr__(self) -> str:
        fitted = "unfitted" if self.memory_bank_ is None else f"bank={tuple(self.memory_bank_.shape)}"
        return f"PatchCore({self._params['backbone']}, {self._params['weights']}, {fitted})"
