"""The frozen network's features of the training images, computed once and reused by every epoch.

FastFlow, C-Flow, Reverse Distillation and STFPM train small networks on the features of a backbone (teacher)
that never changes, of training images that get no augmentation: an image's features are the same in every
epoch. `FrozenFeatures` computes them in one pass (eval mode, no gradients, float32) and keeps them when they fit
in `CACHE_MEMORY_FRACTION` of the memory available on the training device; otherwise it recomputes them for each
batch. Either way it yields the batches in exactly the order in which `TrainSet.batches` shuffles the images with
the same generator, so a cached fit and a recomputed one are the same computation.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader

from fractalad.backbones.factory import FeatureExtractor
from fractalad.detectors.base import TrainSet, check_finite

# The cache may take at most this fraction of the memory available on the training device when the fit starts
# (RAM on CPU, free memory on a GPU); the rest stays for the trained networks, their gradients and activations.
CACHE_MEMORY_FRACTION = 0.5


@dataclass(frozen=True)
class FeatureBatch:
    """A batch for a trained method: the frozen maps [(B, C_j, h_j, w_j)], plus the (B, 3, H, W) images if kept."""

    features: list[torch.Tensor]
    images: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.features[0].shape[0])

    def to(self, device: torch.device) -> FeatureBatch:
        """The batch on `device`."""
        images = self.images.to(device) if self.images is not None else None
        return FeatureBatch([f.to(device) for f in self.features], images)


@torch.no_grad()
def frozen_features(
    extractor: FeatureExtractor, images: torch.Tensor, device: torch.device
) -> list[torch.Tensor]:
    """(B, 3, H, W) -> the frozen extractor's float32 maps on `device`, checked for NaN/inf."""
    features = [f.float() for f in extractor(images.to(device))]
    check_finite(features[-1], "backbone features", extractor.weights_id)
    return features


def available_bytes(device: torch.device) -> int:
    """Memory that a cache on `device` may grow into: free GPU memory, or the kernel's MemAvailable."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def shuffled_indices(
    n: int, batch_size: int, shuffle: bool, generator: torch.Generator | None
) -> Iterator[torch.Tensor]:
    """Index batches (B,) drawn as `TrainSet.batches` draws its images (the same DataLoader sampler and seed use)."""
    yield from DataLoader(range(n), batch_size=batch_size, shuffle=shuffle, generator=generator)


class FrozenFeatures:
    """Sized, re-iterable batches of a frozen extractor's features of `images`: cached when they fit, else recomputed.

    `keep_images` also yields the images themselves (STFPM's student trains on them); they are cached with the
    features and count against the same budget.
    """

    def __init__(
        self,
        images: TrainSet,
        extractor: FeatureExtractor,
        device: torch.device,
        batch_size: int,
        keep_images: bool = False,
        budget_bytes: int | None = None,
    ) -> None:
        self.images = images
        self.extractor = extractor
        self.device = device
        self.keep_images = keep_images
        budget = (
            int(CACHE_MEMORY_FRACTION * available_bytes(device)) if budget_bytes is None else budget_bytes
        )
        started = time.perf_counter()
        self.cache: FeatureBatch | None = self._fill(batch_size, budget)
        # The one pass over the images (it stops after the first batch when the features do not fit).
        self.fill_seconds = time.perf_counter() - started

    def __len__(self) -> int:
        return len(self.images)

    def num_batches(self, batch_size: int) -> int:
        """How many batches `batches(batch_size)` yields."""
        return self.images.num_batches(batch_size)

    @property
    def cached(self) -> bool:
        """Whether the features are held in memory (else each batch recomputes them)."""
        return self.cache is not None

    def describe(self) -> str:
        """For `fit_info`: which path ran and why."""
        if self.cached:
            return f"cached ({self.cache_bytes / 2**20:.0f} MiB for {len(self)} images)"
        return f"recomputed per batch ({self.cache_bytes / 2**20:.0f} MiB would exceed the cache budget)"

    def _batch(self, images: torch.Tensor) -> FeatureBatch:
        features = frozen_features(self.extractor, images, self.device)
        return FeatureBatch(features, images.to(self.device) if self.keep_images else None)

    def _fill(self, batch_size: int, budget: int) -> FeatureBatch | None:
        """One pass over the images in order; None (and no memory kept) when the features exceed `budget` bytes."""
        self.extractor.eval()
        self.cache_bytes = 0
        store: FeatureBatch | None = None
        start = 0
        for images in self.images.batches(batch_size):
            batch = self._batch(images)
            if store is None:
                tensors = [*batch.features, *([batch.images] if batch.images is not None else [])]
                per_image = sum(t[0].numel() * t.element_size() for t in tensors)
                self.cache_bytes = per_image * len(self)
                if self.cache_bytes > budget:
                    return None
                store = FeatureBatch(
                    [f.new_empty((len(self), *f.shape[1:])) for f in batch.features],
                    batch.images.new_empty((len(self), *batch.images.shape[1:]))
                    if self.keep_images
                    else None,
                )
            stop = start + len(batch)
            for target, source in zip(store.features, batch.features, strict=True):
                target[start:stop] = source
            if store.images is not None:
                store.images[start:stop] = batch.images
            start = stop
        return store

    def batches(
        self, batch_size: int, shuffle: bool = False, generator: torch.Generator | None = None
    ) -> Iterator[FeatureBatch]:
        """FeatureBatches in `TrainSet.batches(batch_size, shuffle, generator)` order, on the training device."""
        if self.cache is None:
            for images in self.images.batches(batch_size, shuffle, generator):
                yield self._batch(images)
            return
        if shuffle and generator is None:
            raise ValueError("shuffling FrozenFeatures needs an explicit torch.Generator")
        for index in shuffled_indices(len(self), batch_size, shuffle, generator):
            index = index.to(self.device)
            images = self.cache.images[index] if self.cache.images is not None else None
            yield FeatureBatch([f[index] for f in self.cache.features], images)
