"""The detector contract: Prediction, TrainSet, and the base class every detector builds on.

One convention carries every method, gradient-free or trained:
- hyper-parameters are `__init__` arguments stored as attributes of the same name, and `get_params()` reads them
  back through the signature (sklearn's rule), so they are written once;
- the device, progress display and work folder are arguments of `fit`, never hyper-parameters;
- fitted state lives in attributes ending in `_`; those named in `fitted` (tensors, or trained sub-networks whose
  `state_dict` is written under the attribute's prefix) go into one safetensors file with the params as JSON, and
  `load` rebuilds the untrained sub-networks through the same `build` hook that `fit` uses before filling them.
"""

from __future__ import annotations

import inspect
import json
import math
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self

import torch
from safetensors import SafetensorError, safe_open
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset, TensorDataset

from fractalad import __version__, devices
from fractalad.backbones.factory import FeatureExtractor, Normalization, create_backbone, parse_normalization
from fractalad.backbones.weights import write_safetensors
from fractalad.errors import InputError

FILE_FORMAT = "fractalad-detector/2"


@dataclass(frozen=True)
class Prediction:
    """Scores for a batch: image_scores (B,), anomaly_maps (B, H, W) at input size; higher = anomalous."""

    image_scores: torch.Tensor
    anomaly_maps: torch.Tensor


def _image_of(item: Any) -> torch.Tensor:
    if isinstance(item, Mapping):
        return item["image"]
    if isinstance(item, (tuple, list)):
        return item[0]
    return item


def _collate_images(items: list[Any]) -> torch.Tensor:
    return torch.stack([_image_of(item) for item in items])


class TrainSet:
    """Normal training images: sized, re-iterable in batches, split with an explicit seed.

    Items of `dataset` are (3, H, W) float tensors in [0, 1], or mappings / tuples whose "image" / first entry is.
    """

    def __init__(self, dataset: Dataset, num_workers: int = 0) -> None:
        self.dataset = dataset
        self.num_workers = num_workers

    @classmethod
    def from_tensor(cls, images: torch.Tensor) -> TrainSet:
        """A TrainSet over the (N, 3, H, W) tensor `images`."""
        return cls(TensorDataset(images))

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def num_batches(self, batch_size: int) -> int:
        """How many batches `batches(batch_size)` yields."""
        return math.ceil(len(self) / batch_size)

    def batches(
        self, batch_size: int, shuffle: bool = False, generator: torch.Generator | None = None
    ) -> Iterator[torch.Tensor]:
        """(B, 3, H, W) batches; shuffling draws only from `generator` (required when shuffling)."""
        if batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {batch_size}")
        if shuffle and generator is None:
            raise ValueError("shuffling a TrainSet needs an explicit torch.Generator")
        loader = DataLoader(
            self.dataset,
            batch_size=batch_size,
            shuffle=shuffle,
            generator=generator,
            num_workers=self.num_workers,
            collate_fn=_collate_images,
        )
        yield from loader

    def split(self, fraction: float, seed: int) -> tuple[TrainSet, TrainSet]:
        """(train part, validation part) with round(fraction * N) images drawn by `seed` for validation."""
        if not 0.0 < fraction < 1.0:
            raise InputError(f"validation fraction must be in (0, 1), got {fraction}")
        n_val = round(fraction * len(self))
        if n_val < 1 or n_val >= len(self):
            raise InputError(
                f"a validation fraction of {fraction} of {len(self)} training images leaves no images for one "
                "side; use more images or another fraction"
            )
        order = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed)).tolist()
        validation, train = sorted(order[:n_val]), sorted(order[n_val:])
        return (
            TrainSet(Subset(self.dataset, train), self.num_workers),
            TrainSet(Subset(self.dataset, validation), self.num_workers),
        )


def as_trainset(train: TrainSet | torch.Tensor | Sequence[torch.Tensor]) -> TrainSet:
    """Accept a TrainSet, an (N, 3, H, W) tensor or a list of batch tensors; refuse one-shot iterators."""
    if isinstance(train, TrainSet):
        return train
    if isinstance(train, torch.Tensor):
        return TrainSet.from_tensor(check_images(train))
    if isinstance(train, (list, tuple)):
        if not train:
            raise InputError("no training images were given")
        return TrainSet.from_tensor(torch.cat([check_images(batch) for batch in train]))
    raise InputError(
        f"training data must be a TrainSet, an image tensor or a list of batches, not {type(train).__name__}: "
        "a one-shot iterator would silently train a single epoch"
    )


def resolve_device(device: str | torch.device) -> torch.device:
    """A torch.device, or a name checked by the one device check ('auto' picks CUDA when available)."""
    return device if isinstance(device, torch.device) else devices.resolve_device(device)


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


def normalization_param(value: Normalization | str | None) -> str | None:
    """JSON-friendly form of a normalization argument (None = the one stored with the weights)."""
    if value is None:
        return None
    if isinstance(value, Normalization):
        return value.as_text()
    parse_normalization(value)
    return value


def init_params(cls: type) -> list[str]:
    """Names of the hyper-parameters of detector class `cls` (its `__init__` arguments)."""
    return [name for name in inspect.signature(cls.__init__).parameters if name != "self"]


def _state_key(attribute: str) -> str:
    return attribute.rstrip("_")


class BaseDetector(ABC):
    """Shared machinery: params from the signature, device/backbone setup, and the save/load convention."""

    name: ClassVar[str]
    fitted: ClassVar[tuple[str, ...]] = ()
    # Backbone stages fine-tuned by the method ("all" = the whole network); () keeps it frozen.
    trainable_stages: ClassVar[tuple[int, ...] | str] = ()

    backbone: str
    weights: str
    layers: Sequence[int]
    normalization: str | None
    seed: int

    def get_params(self) -> dict[str, Any]:
        """Hyper-parameters; `type(self)(**params)` builds an equivalent unfitted detector."""
        return {name: _plain(getattr(self, name)) for name in init_params(type(self))}

    # -- setup shared by fit and load ---------------------------------------------------------------------
    def make_extractor(self) -> FeatureExtractor:
        """The detector's backbone from the one backbone factory."""
        return create_backbone(
            self.backbone,
            self.weights,
            self.layers,
            self.normalization,
            self.seed,
            trainable_stages=self.trainable_stages,
        )

    def build(self, extractor: FeatureExtractor) -> None:
        """Create the untrained sub-networks from the backbone's channels/strides (trained methods override)."""

    def _setup(self, device: str | torch.device) -> FeatureExtractor:
        for attribute in (*self.fitted, "extractor_"):
            setattr(self, attribute, None)
        self.device_ = resolve_device(device)
        self.fit_info_: dict[str, Any] = {}
        extractor = self.make_extractor().to(self.device_)
        self.extractor_ = extractor
        # Module constructors draw initial weights from the global RNG: seed it inside a fork so that the
        # sub-networks are a function of `seed` while the caller's RNG state is left as it was.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.build(extractor)
        for attribute in self.fitted:
            value = getattr(self, attribute, None)
            if isinstance(value, nn.Module):
                value.to(self.device_)
        return extractor

    # -- the contract -------------------------------------------------------------------------------------
    def fit(
        self,
        train: TrainSet | torch.Tensor | Sequence[torch.Tensor],
        *,
        device: str | torch.device = "auto",
        progress: bool = False,
        work_dir: str | Path | None = None,
        precision: str = "auto",
    ) -> Self:
        """Fit on normal images, discarding earlier state; `work_dir` holds resumable training state.

        `precision` applies to trained sub-networks: "auto" trains under bf16 autocast where the device computes
        bf16 natively (a CUDA GPU, a CPU with AMX) and in float32 elsewhere; "fp32" or "bf16" force one. At bf16
        every trained method's image AUROC was measured within seed noise of float32's (benchmarks/RESULTS.md).
        """
        train_set = as_trainset(train)
        if len(train_set) == 0:
            raise InputError(f"{type(self).__name__}.fit got no training images")
        self._setup(device)
        self.precision_ = devices.resolve_precision(precision, self.device_)
        self._fit(train_set, progress, Path(work_dir) if work_dir is not None else None)
        return self

    @abstractmethod
    def _fit(self, train: TrainSet, progress: bool, work_dir: Path | None) -> None:
        """Fit the method's state on `train`; the backbone and untrained sub-networks are already built."""

    @abstractmethod
    def predict(self, images: torch.Tensor) -> Prediction:
        """(B, 3, H, W) in [0, 1] -> Prediction(image_scores (B,), anomaly_maps (B, H, W))."""

    def require_fitted(self) -> FeatureExtractor:
        """The extractor, after checking that every fitted attribute is set."""
        extractor = getattr(self, "extractor_", None)
        missing = [a for a in self.fitted if getattr(self, a, None) is None]
        if extractor is None or missing:
            raise InputError(f"{type(self).__name__} is not fitted; call fit() or load() first")
        return extractor

    # -- persistence --------------------------------------------------------------------------------------
    def state_tensors(self) -> dict[str, torch.Tensor]:
        """Every fitted tensor under its file key (`memory_bank`, `flows.0.weight`, ...)."""
        self.require_fitted()
        tensors: dict[str, torch.Tensor] = {}
        for attribute in self.fitted:
            value = getattr(self, attribute)
            key = _state_key(attribute)
            if isinstance(value, nn.Module):
                for name, tensor in value.state_dict().items():
                    tensors[f"{key}.{name}"] = tensor
            else:
                tensors[key] = value
        return {k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}

    def _restore(self, tensors: dict[str, torch.Tensor], source: Path) -> None:
        for attribute in self.fitted:
            key = _state_key(attribute)
            current = getattr(self, attribute, None)
            if isinstance(current, nn.Module):
                prefix = f"{key}."
                state = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
                result = current.load_state_dict(state, strict=False)
                if result.missing_keys or result.unexpected_keys:
                    raise InputError(
                        f"{source}: saved {key!r} does not fit this {type(self).__name__} "
                        f"(missing {result.missing_keys[:3]}, unexpected {result.unexpected_keys[:3]}); refit"
                    )
            elif key in tensors:
                setattr(self, attribute, tensors[key].to(self.device_))
            else:
                raise InputError(f"{source} has no {key!r} tensor for {type(self).__name__}; refit and save")

    def save(self, path: str | Path) -> None:
        """Write params (JSON), fit info and fitted tensors (safetensors) to `path`, atomically."""
        extractor = self.require_fitted()
        metadata = {
            "format": FILE_FORMAT,
            "detector": self.name,
            "params": json.dumps(self.get_params(), sort_keys=True),
            "fit_info": json.dumps(self.fit_info_, sort_keys=True),
            "weights_id": extractor.weights_id,
            "fractalad_version": __version__,
        }
        write_safetensors(Path(path), self.state_tensors(), metadata)

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "auto") -> Self:
        """Rebuild the detector from `path`: backbone from the saved params, then the fitted state."""
        path = Path(path)
        name, params, tensors, metadata = read_detector_file(path)
        if name != cls.name:
            raise InputError(f"{path} holds a {name!r} detector, not {cls.name!r}")
        detector = cls(**params)
        extractor = detector._setup(device)
        saved_id = metadata.get("weights_id", "")
        if saved_id != extractor.weights_id:
            raise InputError(
                f"{path} was fitted with weights {saved_id!r} but they now resolve to "
                f"{extractor.weights_id!r}; restore the original weight file or refit"
            )
        detector._restore(tensors, path)
        detector.fit_info_ = json.loads(metadata.get("fit_info", "{}"))
        return detector

    def __repr__(self) -> str:
        state = "fitted" if getattr(self, "extractor_", None) is not None else "unfitted"
        return f"{type(self).__name__}({self.backbone}, {self.weights}, {state})"


def _plain(value: Any) -> Any:
    """JSON-friendly hyper-parameter values (tuples become lists, as they come back from JSON)."""
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def read_detector_file(
    path: str | Path,
) -> tuple[str, dict[str, Any], dict[str, torch.Tensor], dict[str, str]]:
    """(detector name, params, fitted tensors, raw metadata) from a file written by `save`."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"detector file {path} does not exist")
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
