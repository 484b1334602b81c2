"""On-the-fly datasets: class construction, purity in (seed, epoch, idx), worker-count byte identity."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from fractalad.errors import InputError
from fractalad.fractals import sampling
from fractalad.fractals.dataset import FractalDataset, MultiInstanceDataset, check_classes
from fractalad.fractals.render import RENDER_PRESETS

CONFIG = RENDER_PRESETS["paper"].replace(size=32, n_points=2_000)


@pytest.fixture(scope="module")
def systems() -> list[np.ndarray]:
    return sampling.sample_systems(8, 1)


def test_class_construction(systems: list[np.ndarray]) -> None:
    # S = 8 systems, C = 4 classes, K = 6 samples: 2 systems per class, each drawn 3 times per epoch.
    dataset = FractalDataset(systems, 4, 6, CONFIG, seed=0, crop=24)
    assert len(dataset) == 24 and dataset.draws_per_system == 3 and dataset.systems_per_class == 2
    assert [dataset.label(i) for i in range(24)] == [i // 6 for i in range(24)]
    owners = {idx // dataset.draws_per_system for idx in range(6, 12)}
    assert owners == {2, 3}  # class 1 owns systems 2 and 3
    image, label = dataset[7]
    assert image.shape == (3, 24, 24) and image.dtype == torch.float32 and label == 1
    assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0
    with pytest.raises(IndexError):
        dataset[24]


def test_class_construction_errors() -> None:
    with pytest.raises(InputError, match="cannot be split evenly into 3 classes"):
        check_classes(8, 3, 6)
    with pytest.raises(InputError, match="not a multiple of the 8 systems"):
        check_classes(8, 4, 3)
    with pytest.raises(InputError, match="positive"):
        check_classes(8, 4, -1)
    with pytest.raises(InputError, match="invalid crop 64"):
        FractalDataset(sampling.sample_systems(2, 0), 2, 1, CONFIG, 0, crop=64)


def test_samples_are_pure_functions_of_seed_epoch_idx(systems: list[np.ndarray]) -> None:
    a = FractalDataset(systems, 4, 2, CONFIG, seed=5)
    b = FractalDataset(systems, 4, 2, CONFIG, seed=5)
    for idx in (0, 5):
        assert torch.equal(a[idx][0], b[idx][0])
    first = a[3][0]
    a.set_epoch(1)
    assert not torch.equal(first, a[3][0])
    a.set_epoch(0)
    assert torch.equal(first, a[3][0])


def _collect(dataset: torch.utils.data.Dataset, workers: int) -> list[torch.Tensor]:
    loader = DataLoader(dataset, batch_size=3, num_workers=workers, shuffle=False)
    return [images for images, _ in loader]


def test_identical_bytes_for_zero_and_two_workers(systems: list[np.ndarray]) -> None:
    dataset = FractalDataset(systems, 4, 4, CONFIG, seed=9, crop=28)
    serial, parallel = _collect(dataset, 0), _collect(dataset, 2)
    assert len(serial) == len(parallel)
    for x, y in zip(serial, parallel):
        assert x.numpy().tobytes() == y.numpy().tobytes()


def test_multi_instance(systems: list[np.ndarray]) -> None:
    dataset = MultiInstanceDataset(
        systems, 4, 4, RENDER_PRESETS["af"].replace(size=48, n_points=3_000), seed=2
    )
    for idx in range(0, 16, 2):
        image, labels = dataset[idx]
        assert image.shape == (3, 48, 48) and labels.shape == (4,) and labels.dtype == torch.float32
        assert labels[dataset.label(idx)] == 1 and 1 <= labels.sum() <= 4
        assert torch.equal(image, dataset[idx][0])
    same = MultiInstanceDataset(systems, 4, 4, CONFIG, seed=2, instances=(3, 3), same_class=True)
    _, labels = same[4]
    assert labels.tolist() == [0, 1, 0, 0]
    with pytest.raises(InputError, match="instances range"):
        MultiInstanceDataset(systems, 4, 4, CONFIG, seed=2, instances=(0, 2))
