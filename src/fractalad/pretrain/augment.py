"""The pre-training augmentation stack, from torchvision's transforms (v2), with seeded, reproducible draws.

Two stages:
- per sample (`SampleAugment`): "crop" = a random crop (the paper); "imagenet" = RandomResizedCrop, horizontal
  flip, AutoAugment with the ImageNet policy and RandomErasing (OFDB, SPECS section 13); either optionally lifts
  the black background to a random grey level (`background_lift`, see `LiftBackground`). It runs in DataLoader
  workers, or on the training device for cached images (`device_render`);
- per batch (`BatchMix`): MixUp or CutMix (one of them, chosen at random) with probability `mix_prob`; targets
  become soft class distributions (B, C). It runs on the training device, after the batch got there.

torchvision's transforms draw from torch's global CPU generator; every call here runs inside
`torch.random.fork_rng` seeded from the sample's (seed, epoch, index) or the batch's (seed, step, micro-batch,
rank) key, so draws are a pure function of that key, identical for any worker count, and the caller's global
generator state is left untouched.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np
import torch
from torchvision.transforms import v2

from fractalad.pretrain.config import PretrainConfig

T = TypeVar("T")

_SAMPLE_STREAM = 0xA11
_BATCH_STREAM = 0xB47


def key_seed(*key: int) -> int:
    """A 63-bit seed derived from integer keys only (SeedSequence hashing: nearby keys give unrelated seeds)."""
    return int(np.random.SeedSequence([int(k) for k in key]).generate_state(2, np.uint64)[0] >> np.uint64(1))


def seeded_call(seed: int, function: Callable[[], T]) -> T:
    """function() with torch's global CPU generator seeded to `seed`, restored afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return function()


def sample_transform(config: PretrainConfig) -> v2.Transform:
    """The per-sample transform of `config.augment`: uint8 (3, S, S) -> float32 (3, crop, crop) in [0, 1]."""
    size = config.image_size
    steps: list[v2.Transform] = []
    if config.augment == "imagenet":
        steps += [
            v2.RandomResizedCrop(size, antialias=True),
            v2.RandomHorizontalFlip(),
            v2.AutoAugment(v2.AutoAugmentPolicy.IMAGENET),
        ]
    else:
        steps.append(v2.RandomCrop(size))
    steps.append(v2.ToDtype(torch.float32, scale=True))
    if config.background_lift > 0:
        steps.append(v2.RandomApply([LiftBackground()], p=config.background_lift))
    if config.random_erasing > 0:
        # Erase to the normalisation mean: after normalisation the patch is 0, as when erasing a normalised
        # image with zeros (timm's and OFDB's order).
        fill = list(config.mean) if config.mean is not None else 0.0
        steps.append(v2.RandomErasing(p=config.random_erasing, value=fill))
    return v2.Compose(steps)


class LiftBackground(torch.nn.Module):
    """float (3, S, S) in [0, 1] -> level + (1 - level) * image with one grey level ~ U(0, 1) per image.

    Fractals are drawn on black, but an inspection photo is mostly flat, often bright ground; lifting the black
    to a random level shows the network flat regions of every brightness, with the fractal's contrast scaled
    down as it would be on a lit surface.
    """

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        level = torch.rand((), device=image.device)
        return level + (1 - level) * image


class SampleAugment:
    """Applies `sample_transform(config)` to one image with draws keyed by (seed, epoch, index)."""

    def __init__(self, config: PretrainConfig) -> None:
        self.transform = sample_transform(config)
        self.seed = config.seed

    def __call__(self, image: torch.Tensor, epoch: int, index: int) -> torch.Tensor:
        """image uint8 (3, S, S) on any device -> float32 (3, crop, crop) on the same device."""
        return seeded_call(key_seed(self.seed, epoch, index, _SAMPLE_STREAM), lambda: self.transform(image))


def to_uint8(image: torch.Tensor) -> torch.Tensor:
    """float (3, S, S) in [0, 1] that came from uint8 / 255 -> the same uint8 values."""
    return image.mul(255.0).round_().to(torch.uint8)


class BatchMix:
    """MixUp or CutMix (alpha `mix_alpha`, one chosen at random) with probability `mix_prob` per batch.

    Returns soft targets (B, C) float32 always, so the loss sees one target kind: one-hot when not mixed.
    """

    def __init__(self, config: PretrainConfig) -> None:
        self.num_classes = config.num_classes
        self.prob = config.mix_prob
        self.seed = config.seed
        self.mix = v2.RandomChoice(
            [
                v2.MixUp(alpha=config.mix_alpha, num_classes=config.num_classes),
                v2.CutMix(alpha=config.mix_alpha, num_classes=config.num_classes),
            ]
        )

    def _apply(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if float(torch.rand(())) < self.prob:
            return self.mix(images, labels)
        return images, torch.nn.functional.one_hot(labels, self.num_classes).float()

    def __call__(
        self, images: torch.Tensor, labels: torch.Tensor, key: Sequence[int]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """images (B, 3, S, S) float, labels (B,) int64 -> mixed images, soft targets (B, C) float32."""
        return seeded_call(key_seed(self.seed, *key, _BATCH_STREAM), lambda: self._apply(images, labels))
