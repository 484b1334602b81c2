"""Detector protocol, registry and the shared save/load/params machinery (safetensors + JSON, no pickle)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol, Self, runtime_checkable

import torch
from safetensors import SafetensorError, safe_open

from fractalad import __version__
from fractalad.backbones.factory import FeatureExtractor, Normalization, create_backbone, parse_normalization
from fractalad.backbones.weights import write_safetensors
from fractalad.errors import InputError

FILE_FORMAT = "fractalad-detector/1"


@dataclass(frozen=True)
class Prediction:
    """Scores for a batch: image_scores (B,), anomaly_maps (B, H, W) at input size; higher = anomalous."""

    image_scores: torch.Tensor
    anomaly_maps: torch.Tensor


@runtime_checkable
class Detector(Protocol):
    """What every anomaly detector offers; see DESIGN.md 'Contracts'."""

    def fit(self, train_batches: Iterable[torch.Tensor]) -> Self: ...

    def predict(self, images: torch.Tensor) -> Prediction: ...

    def save(self, path: str | Path) -> None: ...

    @classmethod
    def load(cls, path: str | Path) -> Self: ...

    def get_params(self) -> dict[str, Any]: ...


def read_detector_file(
    path: str | Path,
) -> tuple[str, dict[str, Any], dict[str, torch.Tensor], dict[str, str]]:
    """(detector name, params, fitted tensors, raw metadata) from a file written by `save`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"detector file {path} does not exist")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = dict(handle.metadata() or {})
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except (SafetensorError, OSError) as error:
        raise InputError(f"{path}: not a fractalad detector file ({error})") from error
    if metadata.get("format") != FILE_FORMAT:
        raise InputError(
            f"{path}: format {metadata.get('format')!r} is not {FILE_FORMAT!r}; refit and save again"
        )
    return metadata["detector"], json.loads(metadata["params"]), tensors, metadata


def normalization_param(value: Normalization | str | None) -> str | None:
    """JSON-friendly form of a normalization argument (None = the one stored with the weights)."""
    if value is None:
        return None
    if isinstance(value, Normalization):
        return value.as_text()
    parse_normalization(value)
    return value


class FittedStateDetector:
    """Shared base: hyper-parameters in `_params`, fitted tensors via `_fitted_tensors` / `_restore`."""

    name: ClassVar[str]

    def __init__(self, params: Mapping[str, Any]) -> None:
        self._params = dict(params)
        self.device = resolve_device(self._params["device"])
        self.extractor_: FeatureExtractor | None = None

    def _make_extractor(self) -> FeatureExtractor:
        """The detector's backbone from the one backbone factory, on the detector's device."""
        p = self._params
        extractor = create_backbone(p["backbone"], p["weights"], p["layers"], p["normalization"], p["seed"])
        return extractor.to(self.device)

    def get_params(self) -> dict[str, Any]:
        """Hyper-parameters; `type(self)(**params)` builds an equivalent unfitted detector."""
        return dict(self._params)

    def _fitted_tensors(self) -> dict[str, torch.Tensor]:
        raise InputError(f"{type(self).__name__} does not define its fitted state")

    def _restore(self, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
        raise InputError(f"{type(self).__name__} cannot restore fitted state")

    def _weights_id(self) -> str:
        return self.extractor_.weights_id if self.extractor_ is not None else ""

    def save(self, path: str | Path) -> None:
        """Write params (JSON) and fitted tensors (safetensors) to `path`, atomically."""
        path = Path(path)
        tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in self._fitted_tensors().items()}
        metadata = {
            "format": FILE_FORMAT,
            "detector": self.name,
            "params": json.dumps(self._params, sort_keys=True),
            "weights_id": self._weights_id(),
            "fractalad_version": __version__,
        }
        write_safetensors(path, tensors, metadata)

    @classmethod
    def load(cls, path: str | Path) -> Self:
        """Rebuild the detector from `path`; its backbone is recreated from the saved params."""
        name, params, tensors, metadata = read_detector_file(path)
        if name != cls.name:
            raise InputError(f"{path} holds a {name!r} detector, not {cls.name!r}")
        detector = cls(**params)
        detector._restore(tensors, metadata)
        saved_id, current_id = metadata.get("weights_id", ""), detector._weights_id()
        if saved_id != current_id:
            raise InputError(
                f"{path} was fitted with weights {saved_id!r} but they now resolve to {current_id!r}; "
                "restore the original weight file or refit"
            )
        return detector


def resolve_device(device: str) -> torch.device:
    """'auto' picks CUDA when available."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def check_finite(tensor: torch.Tensor, what: str, weights_id: str) -> None:
    """NaN/inf features or scores usually mean broken weights; fail with a message naming them."""
    if not bool(torch.isfinite(tensor).all()):
        raise InputError(
            f"{what} contain NaN or inf values (backbone weights {weights_id}); check the weight file "
            "(a diverged pre-training run?) and that images are finite floats in [0, 1]"
        )


def check_images(images: torch.Tensor) -> torch.Tensor:
    """Validate a (B, 3, H, W) float batch in [0, 1]."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise InputError(f"images must be a (B, 3, H, W) tensor, got {shape}")
    if not images.is_floating_point():
        raise InputError(f"images must be float in [0, 1], got dtype {images.dtype}")
    return images
