"""Pre-training data: IFS systems, the on-the-fly and the fixed-image fractal datasets, a resumable sampler."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from fractalad.errors import InputError
from fractalad.files import atomic_path
from fractalad.pretrain.augment import SampleAugment, to_uint8
from fractalad.pretrain.config import PretrainConfig


class ResumableSampler(Sampler[tuple[int, int]]):
    """DistributedSampler replacement that yields `(epoch, index)` and can start mid-epoch.

    The epoch's order is a permutation derived from (seed, epoch) only; rank r takes positions r, r + W, ...
    of the first `used` entries (the tail that does not fill a global batch is dropped).
    `set_epoch(epoch, start)` skips the first `start` samples of this rank's share, which is how a resumed run
    continues exactly.
    """

    def __init__(self, dataset_size: int, used: int, seed: int, num_replicas: int = 1, rank: int = 0) -> None:
        if used % num_replicas != 0 or used > dataset_size:
            raise ValueError(
                f"used={used} must be <= dataset_size={dataset_size} and divisible by {num_replicas}"
            )
        self.dataset_size, self.used, self.seed = dataset_size, used, seed
        self.num_replicas, self.rank = num_replicas, rank
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Select the epoch's permutation and skip this rank's first `start` samples of it."""
        self.epoch, self.start = epoch, start

    def indices(self) -> np.ndarray:
        """This rank's dataset indices for the current epoch, before skipping.  # (used / W,)"""
        rng = np.random.default_rng([self.seed, self.epoch, 0x5A3F])
        order = rng.permutation(self.dataset_size)[: self.used]
        return order[self.rank :: self.num_replicas]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        for index in self.indices()[self.start :]:
            yield self.epoch, int(index)

    def __len__(self) -> int:
        return self.used // self.num_replicas - self.start


class EpochIndexedDataset(Dataset):
    """Wraps a dataset with `set_epoch` so that `(epoch, idx)` keys reach persistent workers' copies too."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset
        self._epoch: int | None = None

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> Any:
        epoch, index = key
        if epoch != self._epoch and hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)
        self._epoch = epoch
        return self.dataset[index]


def _worker_init(worker_id: int) -> None:
    # Rendering is single-threaded numba/numpy; extra torch threads in workers would fight the trainer.
    torch.set_num_threads(1)


def make_loader(
    dataset: Dataset, sampler: ResumableSampler, micro_batch: int, workers: int, pin_memory: bool
) -> DataLoader:
    """DataLoader over `(epoch, idx)` keys; workers persist across epochs as the epoch travels in the key."""
    return DataLoader(
        EpochIndexedDataset(dataset),
        batch_size=micro_batch,
        sampler=sampler,
        num_workers=workers,
        persistent_workers=workers > 0,
        pin_memory=pin_memory,
        drop_last=True,
        worker_init_fn=_worker_init if workers > 0 else None,
        prefetch_factor=4 if workers > 0 else None,
    )


def render_config(config: PretrainConfig) -> Any:
    """The fractals RenderConfig of `config`: the named preset at the configured size and point count."""
    from fractalad.fractals.render import RENDER_PRESETS

    if config.render_preset not in RENDER_PRESETS:
        raise InputError(
            f"render_preset={config.render_preset!r} is unknown; choose one of {', '.join(RENDER_PRESETS)}"
        )
    changes: dict[str, Any] = {"size": config.render_size}
    if config.render_points is not None:
        changes["n_points"] = config.render_points
    return dataclasses.replace(RENDER_PRESETS[config.render_preset], **changes)


def sample_systems(config: PretrainConfig) -> list[np.ndarray]:
    """Draw the run's `num_systems` IFS systems with the configured sampler; deterministic in `config.seed`.

    FractalDB: one searched system per class, expanded to its 25 weight-row variants when num_systems = 25 C.
    """
    from fractalad.fractals import sampling

    if config.sampler == "sigma-factor":
        return sampling.sample_systems(config.num_systems, config.seed, config.n_min, config.n_max)
    per_class = config.num_systems // config.num_classes
    if per_class not in (1, 25):
        raise InputError(
            f"sampler=fractaldb needs num_systems = num_classes (one system per class) or 25 x num_classes "
            f"(FractalDB's weight-row variants); got num_systems={config.num_systems}, "
            f"num_classes={config.num_classes}"
        )
    found = sampling.sample_fractaldb(config.num_classes, config.seed, n_min=config.n_min, n_max=config.n_max)
    return sampling.expand_fractaldb(found) if per_class == 25 else list(found)


def prepare_systems(config: PretrainConfig, path: Path) -> None:
    """Write the run's systems file once (copied from `systems_file` or freshly sampled); reused on resume."""
    from fractalad.fractals.systems import load_systems, save_systems

    if path.exists():
        return
    if config.systems_file is not None:
        systems, metadata = load_systems(config.systems_file)
        metadata = {**metadata, "copied_from": str(config.systems_file)}
    else:
        systems = sample_systems(config)
        metadata = {
            "sampler": config.sampler,
            "n_min": config.n_min,
            "n_max": config.n_max,
            "seed": config.seed,
        }
    if len(systems) != config.num_systems:
        raise InputError(
            f"systems file {config.systems_file} holds {len(systems)} systems but "
            f"num_systems={config.num_systems};"
            " set num_systems to match"
        )
    save_systems(path, systems, metadata)


def load_run_systems(path: Path) -> list[np.ndarray]:
    """The systems saved by `prepare_systems`."""
    from fractalad.fractals.systems import load_systems

    return list(load_systems(path)[0])


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fixed_render_config(config: PretrainConfig) -> Any:
    """How the cached images are drawn: the whole attractor framed (no window, jitter, flip or blur draws),
    since augmentation supplies all the variety of a fixed-image run."""
    return render_config(config).replace(window=False, jitter=False, flips=False, blur=False)


def prepare_fixed_images(config: PretrainConfig, systems: Sequence[np.ndarray], path: Path) -> None:
    """Render one image per system once and cache it as `path` (.npy, (S, H, W, 3) uint8); reused on resume.

    Image i depends on (seed, i) only.
    """
    from tqdm import tqdm

    from fractalad.fractals.render import render

    if path.exists():
        return
    settings = fixed_render_config(config)
    images = np.empty((len(systems), settings.size, settings.size, 3), np.uint8)
    for i in tqdm(range(len(systems)), desc="render fixed images", unit="img", leave=False):
        seed = int(np.random.SeedSequence([config.seed, i, 0xF1C]).generate_state(1, np.uint64)[0])
        images[i] = render(systems[i], settings, seed)
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.save(handle, images)


def load_fixed_images(path: Path) -> np.ndarray:
    """The cached images (S, H, W, 3) uint8, memory-mapped so DataLoader workers share one copy."""
    return np.load(path, mmap_mode="r")


class FixedImageDataset(Dataset):
    """C x K samples over C cached images: sample idx is image idx // K under its own augmentation draw."""

    def __init__(self, images: np.ndarray, samples_per_class: int, augment: SampleAugment) -> None:
        self.images = images  # (C, H, W, 3) uint8
        self.samples_per_class = samples_per_class
        self.augment = augment
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.images) * self.samples_per_class

    def __getitem__(self, idx: int) -> tuple[torch.Tensor, int]:
        label = idx // self.samples_per_class
        image = torch.from_numpy(np.array(self.images[label])).permute(
            2, 0, 1
        )  # a writable copy of the mmap row
        return self.augment(image, self.epoch, idx), label


class AugmentedDataset(Dataset):
    """Applies the per-sample augmentation to a full-size rendered dataset's images (labels pass through)."""

    def __init__(self, dataset: Any, augment: SampleAugment) -> None:
        self.dataset = dataset  # a FractalDataset built without crop
        self.augment = augment

    def set_epoch(self, epoch: int) -> None:
        self.dataset.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, idx: int) -> tuple[torch.Tensor, Any]:
        image, label = self.dataset[idx]
        return self.augment(to_uint8(image), self.dataset.epoch, idx), label


class DeviceFixedBatches:
    """Batches of the cached images augmented on `device`; batch b of an epoch holds the same samples, in
    the same order, as the b-th batch of a one-process DataLoader over `FixedImageDataset`."""

    def __init__(
        self, images: np.ndarray, config: PretrainConfig, batch_size: int, used: int, device: torch.device
    ) -> None:
        self.images = torch.from_numpy(np.array(images)).permute(0, 3, 1, 2).to(device)  # (C, 3, H, W) uint8
        self.samples_per_class = config.samples_per_class
        self.augment = SampleAugment(config)
        self.batch_size = batch_size
        self.sampler = ResumableSampler(len(images) * config.samples_per_class, used, config.seed)

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)
        self.order = self.sampler.indices()

    def batch(self, b: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(images (B, 3, crop, crop) float32, labels (B,) int64) on the device."""
        indices = self.order[b * self.batch_size : (b + 1) * self.batch_size]
        labels = torch.from_numpy(indices // self.samples_per_class)
        epoch = self.sampler.epoch
        images = [
            self.augment(self.images[label], epoch, int(i)) for i, label in zip(indices, labels.tolist())
        ]
        return torch.stack(images), labels.to(self.images.device)


def build_dataset(
    config: PretrainConfig, systems: Sequence[np.ndarray], fixed_images: np.ndarray | None = None
) -> Dataset:
    """The training dataset of `config`; items are (image (3, crop, crop) float32 in [0, 1], target).

    Targets are class indices, or multi-hot (C,) float32 when `multi_instance`.
    """
    from fractalad.fractals.dataset import FractalDataset, MultiInstanceDataset

    if config.image_source == "fixed":
        if fixed_images is None:
            raise InputError("image_source=fixed needs the cached images (prepare_fixed_images)")
        return FixedImageDataset(fixed_images, config.samples_per_class, SampleAugment(config))
    # The paper's "crop" augmentation stays inside the renderer's dataset (its own crop draw); other stacks
    # augment the full-size render.
    crop = config.crop if config.augment == "crop" else None
    common = (systems, config.num_classes, config.samples_per_class, render_config(config), config.seed)
    if config.multi_instance:
        dataset: Dataset = MultiInstanceDataset(
            *common, crop=crop, instances=config.instances, same_class=config.same_class_instances
        )
    else:
        dataset = FractalDataset(*common, crop=crop)
    return dataset if config.augment == "crop" else AugmentedDataset(dataset, SampleAugment(config))
