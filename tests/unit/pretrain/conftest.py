"""A tiny deterministic stand-in for the fractal dataset: items are pure functions of (seed, epoch, idx)."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import Dataset

from fractalad.pretrain.config import PretrainConfig, resolve_config


class ToyDataset(Dataset):
    """Class-coloured stripes plus noise (3, S, S) in [0, 1]; optional multi-hot labels; can fail."""

    def __init__(
        self,
        num_classes: int = 4,
        per_class: int = 8,
        size: int = 32,
        seed: int = 0,
        multi_label: bool = False,
        fail_at: tuple[int, int] | None = None,
    ) -> None:
        self.c, self.k, self.size, self.seed, self.epoch = num_classes, per_class, size, seed, 0
        self.multi_label, self.fail_at = multi_label, fail_at

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.c * self.k

    def __getitem__(self, idx: int):
        if self.fail_at == (self.epoch, idx):
            raise RuntimeError("simulated crash")
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch * 10_007 + idx)
        label = idx // self.k
        image = torch.rand(3, self.size, self.size, generator=g) * 0.3
        image[label % 3, : (label + 1) * self.size // (self.c + 1)] += 0.6
        if not self.multi_label:
            return image.clamp(0, 1), label
        target = torch.zeros(self.c)
        target[label] = 1.0
        target[(label + 1) % self.c] = 1.0
        return image.clamp(0, 1), target


def toy_config(*overrides: str) -> PretrainConfig:
    """The tiny preset shrunk to the toy dataset: 4 classes x 16 samples, 32 px, batch 8, 2 epochs, CPU."""
    base = [
        "num_classes=4",
        "num_systems=4",
        "samples_per_class=16",
        "batch_size=8",
        "epochs=2",
        "crop=32",
        "render_size=32",
        "workers=0",
        "threads=1",
        "checkpoint_every_steps=3",
        "log_every_steps=2",
    ]
    return resolve_config("tiny", None, [*base, *overrides])


@pytest.fixture(scope="session")
def toy() -> type[ToyDataset]:
    return ToyDataset


@pytest.fixture(scope="session")
def make_config():
    return toy_config
