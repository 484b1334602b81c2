"""Anomalib's PatchCore / PaDiM torch models driven with our weights, for parity tests and benchmarks.

Needs the optional `parity` extra (anomalib==2.7.0), imported lazily: the library works without it.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from fractalad.backbones.factory import Normalization
from fractalad.errors import InputError


@dataclass(frozen=True)
class ReferenceRun:
    """Anomalib outputs on the test images: scores (N,), maps (N, H, W), wall-clock seconds."""

    scores: torch.Tensor
    maps: torch.Tensor
    fit_seconds: float
    predict_seconds: float


def anomalib_available() -> bool:
    """True when anomalib can be imported."""
    return importlib.util.find_spec("anomalib") is not None


def load_into_extractor(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load `state` (torchvision names) into Anomalib's TimmFeatureExtractor, all of its tensors."""
    target = model.feature_extractor.feature_extractor
    wanted = target.state_dict()
    missing = sorted(set(wanted) - set(state))
    if missing:
        raise InputError(
            f"weights lack {len(missing)} tensors Anomalib's extractor needs, e.g. {missing[:3]}"
        )
    target.load_state_dict({key: state[key] for key in wanted}, strict=True)


def _normalise(images: torch.Tensor, normalization: Normalization) -> torch.Tensor:
    mean = torch.tensor(normalization.mean).view(1, 3, 1, 1)
    std = torch.tensor(normalization.std).view(1, 3, 1, 1)
    return (images - mean) / std


@torch.no_grad()
def _run(
    model: nn.Module,
    finish_fit: Callable[[], object],
    train_batches: Iterable[torch.Tensor],
    test_images: Sequence[torch.Tensor],
    normalization: Normalization,
) -> ReferenceRun:
    start = time.perf_counter()
    model.train()
    for batch in train_batches:
        model(_normalise(batch, normalization))
    finish_fit()
    fit_seconds = time.perf_counter() - start
    model.eval()
    scores, maps = [], []
    start = time.perf_counter()
    for batch in test_images:
        output = model(_normalise(batch, normalization))
        scores.append(output.pred_score.reshape(-1))
        maps.append(output.anomaly_map.reshape(batch.shape[0], *batch.shape[-2:]))
    predict_seconds = time.perf_counter() - start
    return ReferenceRun(torch.cat(scores), torch.cat(maps), fit_seconds, predict_seconds)


def build_patchcore(backbone: str, layers: Sequence[int], state: dict[str, torch.Tensor]) -> nn.Module:
    """Anomalib PatchcoreModel with `state` loaded into its extractor."""
    from anomalib.models.image.patchcore.torch_model import PatchcoreModel

    model = PatchcoreModel(
        layers=[f"layer{i}" for i in layers], backbone=backbone, pre_trained=False, num_neighbors=9
    )
    load_into_extractor(model, state)
    return model


def build_padim(
    backbone: str, layers: Sequence[int], state: dict[str, torch.Tensor], channel_index: torch.Tensor
) -> nn.Module:
    """Anomalib PadimModel with `state` loaded and its random channel subset set to `channel_index`."""
    from anomalib.models.image.padim.torch_model import PadimModel

    model = PadimModel(
        backbone=backbone,
        layers=[f"layer{i}" for i in layers],
        pre_trained=False,
        n_features=len(channel_index),
    )
    load_into_extractor(model, state)
    model.idx = channel_index.clone()
    return model


def run_patchcore(
    model: nn.Module,
    train_batches: Iterable[torch.Tensor],
    test_images: Sequence[torch.Tensor],
    normalization: Normalization,
    coreset_ratio: float = 0.1,
) -> ReferenceRun:
    """Fit (collect embeddings + k-center coreset) and predict with Anomalib's PatchcoreModel."""
    return _run(
        model, lambda: model.subsample_embedding(coreset_ratio), train_batches, test_images, normalization
    )


def run_padim(
    model: nn.Module,
    train_batches: Iterable[torch.Tensor],
    test_images: Sequence[torch.Tensor],
    normalization: Normalization,
) -> ReferenceRun:
    """Fit (Gaussians) and predict with Anomalib's PadimModel."""
    return _run(model, model.fit, train_batches, test_images, normalization)


def extractor_features(
    model: nn.Module, images: torch.Tensor, normalization: Normalization
) -> list[torch.Tensor]:
    """Anomalib's extractor outputs for images in [0, 1], in layer order."""
    with torch.no_grad():
        features = model.feature_extractor(_normalise(images, normalization))
    return list(features.values())
