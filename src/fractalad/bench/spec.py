"""What a run is: a frozen RunSpec whose canonical JSON hashes to its run_id (SPECS.md §11), and the
expansion of a grid file into RunSpecs.

Identity fields say what was computed (data by its file list, weights by content hash, every resolved
hyper-parameter); location fields say where inputs live on this machine (dataset root, weight path, the
grid's label for the weights) and are left out of the hash, so moving or renaming files keeps run ids.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fractalad.data.records import Category, Sample
from fractalad.errors import InputError
from fractalad.provenance import weights_sha256

# Bump when the evaluation itself changes (metric definitions, resizing, subset drawing): old rows then
# have other run ids and are never mixed with new ones.
PROTOCOL_VERSION = 1
LOCATION = {"location": True}
# Hyper-parameters a grid sets at the top level (one axis each), never per method.
GRID_LEVEL_PARAMS: tuple[str, ...] = ("backbone", "weights", "layers", "normalization", "seed")
RUNTIME_PARAMS: tuple[str, ...] = ("device",)


def canonical_json(value: Any) -> str:
    """Sorted keys, no spaces: the same value always gives the same bytes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)


@dataclass(frozen=True)
class RunSpec:
    """One run of one detector on one dataset category with one set of weights and one seed."""

    dataset: str
    category: str
    data_hash: str  # SHA-256 of the sorted relative paths of the training subset and the test images
    few_shot: int | None  # k normal training images; None = the full training split
    method: str
    params: str  # canonical JSON of the method's resolved hyper-parameters, GRID_LEVEL_PARAMS excluded
    backbone: str
    weights_id: str  # "sha256:<hex>" of a weight file, "imagenet-tv", "imagenet-timm:<tag>", "random:<seed>"
    layers: tuple[int, ...]
    normalization: str | None  # None = the statistics stored with the weights
    size: int
    seed: int  # detector seed, random-weights seed and few-shot subset seed
    protocol: int = PROTOCOL_VERSION
    root: str | None = field(default=None, metadata=LOCATION)
    weights: str = field(default="", metadata=LOCATION)  # the weights argument given to the backbone factory
    weights_label: str = field(default="", metadata=LOCATION)

    def identity(self) -> dict[str, Any]:
        """The fields that define the run (locations left out), JSON-ready."""
        values = {}
        for spec_field in dataclasses.fields(self):
            if not spec_field.metadata.get("location"):
                value = getattr(self, spec_field.name)
                values[spec_field.name] = list(value) if isinstance(value, tuple) else value
        return values

    @property
    def run_id(self) -> str:
        return hashlib.sha256(canonical_json(self.identity()).encode()).hexdigest()

    def detector_params(self) -> dict[str, Any]:
        """Keyword arguments of `create_detector(self.method, ...)` (the device is given at fit time)."""
        return {
            **json.loads(self.params),
            "backbone": self.backbone,
            "weights": self.weights,
            "layers": self.layers,
            "normalization": self.normalization,
            "seed": self.seed,
        }

    def to_json(self) -> str:
        return canonical_json({k: list(v) if isinstance(v, tuple) else v for k, v in self.__dict__.items()})

    @classmethod
    def from_json(cls, text: str) -> RunSpec:
        values = json.loads(text)
        values["layers"] = tuple(values["layers"])
        return cls(**values)


def relative_name(sample: Sample, root: Path) -> str:
    """A sample's path relative to its category folder (the name used in hashes and artefacts)."""
    path = Path(sample.image_path)
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.name


def few_shot_subset(train: Sequence[Sample], root: Path, k: int | None, seed: int) -> tuple[Sample, ...]:
    """k training images drawn with a seeded generator; for one seed the k = 2 subset lies inside k = 4.

    Nesting comes from taking prefixes of one seeded permutation of the sorted file list (SPECS.md §12).
    """
    if k is None:
        return tuple(train)
    if k < 1 or k > len(train):
        raise InputError(f"few-shot k={k} must lie in 1..{len(train)} (the training images of {root})")
    ordered = sorted(train, key=lambda s: relative_name(s, root))
    order = np.random.default_rng(seed).permutation(len(ordered))
    return tuple(ordered[int(i)] for i in order[:k])


def data_hash(category: Category, train: Sequence[Sample]) -> str:
    """SHA-256 of the sorted relative train and test file lists (labels and masks included)."""
    lines = sorted(f"train:{relative_name(s, category.root)}" for s in train)
    lines += sorted(
        f"test:{relative_name(s, category.root)}:{s.label}:{s.mask_path is not None}" for s in category.test
    )
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()


def weights_identity(weights: str, arch: str, seed: int) -> str:
    """The content identity of a weights argument: a renamed file keeps it, an edited file changes it."""
    if weights == "random":
        return f"random:{seed}"
    if weights in ("imagenet", "imagenet-tv"):
        return "imagenet-tv"
    if weights == "imagenet-timm":
        from fractalad.backbones.sources import TIMM_IMAGENET_TAGS

        return f"imagenet-timm:{TIMM_IMAGENET_TAGS.get(arch, arch)}"
    path = Path(weights).expanduser()
    if not path.is_file():
        raise InputError(
            f"weights {weights!r} is neither imagenet, imagenet-tv, imagenet-timm, random nor an existing "
            "file; "
            "pre-train it first (fractalad pretrain) or fix the path"
        )
    return f"sha256:{weights_sha256(path)}"
