"""PatchCore (Roth et al. 2022): coreset-subsampled memory bank of locally aggregated patch features."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import torch
from torch.nn import functional as F
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


class PatchCore(BaseDetector):
    """Nearest-neighbour distance to a memory bank of normal patch features; k-NN re-weighted image score."""

    name: ClassVar[str] = "patchcore"

    fitted = ("memory_bank_",)

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
        batch_size: int = 16,
        seed: int = 0,
    ) -> None:
        if batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {batch_size}")
        if not 0.0 < coreset_ratio <= 1.0:
            raise InputError(f"coreset_ratio must be in (0, 1], got {coreset_ratio}")
        if num_neighbors < 1 or pool_size < 1 or pool_size % 2 == 0:
            raise InputError(
                f"num_neighbors must be >= 1 and pool_size odd, got {num_neighbors}, {pool_size}"
            )
        if layer_resize not in RESIZE_MODES or map_upsampling not in RESIZE_MODES:
            raise InputError(f"layer_resize and map_upsampling must be one of {RESIZE_MODES}")
        self.backbone = backbone
        self.weights = str(weights)
        self.layers = tuple(int(x) for x in layers)
        self.normalization = normalization_param(normalization)
        self.coreset_ratio = float(coreset_ratio)
        self.num_neighbors = int(num_neighbors)
        self.projection_eps = float(projection_eps)
        self.pool_size = int(pool_size)
        self.blur_sigma = float(blur_sigma)
        self.layer_resize = layer_resize
        self.map_upsampling = map_upsampling
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.memory_bank_: torch.Tensor | None = None

    def embed(self, extractor: FeatureExtractor, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> locally aggregated, concatenated patch features (B, C, h, w)."""
        size = self.pool_size
        features = extractor(images.to(self.device_))
        pooled = [F.avg_pool2d(f, size, stride=1, padding=size // 2) for f in features]
        embedding = concat_layers(pooled, self.layer_resize)
        check_finite(embedding, "backbone features", extractor.weights_id)
        return embedding

    @torch.no_grad()
    def _fit(self, train: TrainSet, progress: bool, work_dir: Path | None) -> None:
        """Collect patch features of all training images and keep a greedy k-center coreset of them."""
        extractor = self.extractor_
        chunks: list[torch.Tensor] = []
        batches = train.batches(self.batch_size)
        total = train.num_batches(self.batch_size)
        for batch in tqdm(batches, desc="patchcore features", total=total, disable=not progress, leave=False):
            embedding = self.embed(extractor, check_images(batch))
            chunks.append(embedding.permute(0, 2, 3, 1).reshape(-1, embedding.shape[1]))
        generator = torch.Generator().manual_seed(self.seed)
        projected = project_chunks(chunks, self.projection_eps, generator)  # (d, N)
        n_select = max(1, int(projected.shape[1] * self.coreset_ratio))
        selected = greedy_coreset(projected, n_select, generator, progress)
        del projected
        self.memory_bank_ = rows_from_chunks(chunks, selected).contiguous()

    def _image_scores(
        self, patch: torch.Tensor, location: torch.Tensor, embedding: torch.Tensor
    ) -> torch.Tensor:
        """Max patch distance re-weighted by how isolated its nearest bank entry is (PatchCore eq. 7)."""
        bank = self.memory_bank_
        if self.num_neighbors == 1:
            return patch.amax(1)
        rows = torch.arange(patch.shape[0], device=patch.device)
        worst = patch.argmax(1)  # (B,)
        score = patch[rows, worst]
        feature = embedding[rows, worst]  # (B, C)
        neighbour = bank[location[rows, worst]]  # (B, C)
        _, support = nearest_neighbours(neighbour, bank, self.num_neighbors)  # (B, k)
        distances = torch.linalg.vector_norm(feature.unsqueeze(1) - bank[support], dim=2)  # (B, k)
        weights = 1.0 - torch.softmax(distances, dim=1)[:, 0]
        return weights * score

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> Prediction:
        """(B, 3, H, W) in [0, 1] -> Prediction(image_scores (B,), anomaly_maps (B, H, W))."""
        extractor = self.require_fitted()
        bank = self.memory_bank_
        images = check_images(images)
        embedding = self.embed(extractor, images)
        batch, channels, height, width = embedding.shape
        flat = embedding.permute(0, 2, 3, 1).reshape(-1, channels)
        distance, index = nearest_neighbours(flat, bank, 1)
        patch = distance[:, 0].reshape(batch, height * width)
        location = index[:, 0].reshape(batch, height * width)
        scores = self._image_scores(patch, location, flat.reshape(batch, height * width, channels))
        maps = upsample_maps(patch.reshape(batch, 1, height, width), images.shape[-2:], self.map_upsampling)
        maps = gaussian_blur(maps, self.blur_sigma)[:, 0]
        check_finite(scores, "PatchCore image scores", extractor.weights_id)
        return Prediction(image_scores=scores.cpu(), anomaly_maps=maps.cpu())
