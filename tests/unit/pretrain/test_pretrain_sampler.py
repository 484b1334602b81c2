"""ResumableSampler, EpochIndexedDataset: orders depend on (seed, epoch) only, shards tile, offsets skip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fractalad.pretrain.data import EpochIndexedDataset, ResumableSampler, make_loader


def test_order_is_a_function_of_seed_and_epoch() -> None:
    a, b = ResumableSampler(100, 96, seed=3), ResumableSampler(100, 96, seed=3)
    a.set_epoch(2)
    b.set_epoch(2)
    assert list(a) == list(b)
    b.set_epoch(3)
    assert [i for _, i in a] != [i for _, i in b]
    assert all(epoch == 3 for epoch, _ in b)
    c = ResumableSampler(100, 96, seed=4)
    c.set_epoch(2)
    assert [i for _, i in a] != [i for _, i in c]


@pytest.mark.parametrize("world", [1, 2, 4])
def test_rank_shards_are_disjoint_and_cover_the_used_prefix(world: int) -> None:
    shards = [ResumableSampler(50, 48, seed=0, num_replicas=world, rank=r) for r in range(world)]
    indices = [[i for _, i in s] for s in shards]
    flat = np.concatenate(indices)
    assert len(flat) == 48 and len(set(flat.tolist())) == 48 and flat.max() < 50
    assert all(len(s) == 48 // world for s in shards)
    single = ResumableSampler(50, 48, seed=0)
    # Interleaving rank shards recovers the single-process order: same samples per global batch.
    assert np.array_equal(np.stack(indices, 1).reshape(-1), [i for _, i in single])


def test_start_offset_skips_the_done_prefix() -> None:
    sampler = ResumableSampler(64, 64, seed=1, num_replicas=2, rank=1)
    sampler.set_epoch(5)
    full = list(sampler)
    sampler.set_epoch(5, start=10)
    assert list(sampler) == full[10:] and len(sampler) == len(full) - 10


def test_invalid_geometry() -> None:
    with pytest.raises(ValueError):
        ResumableSampler(10, 12, seed=0)
    with pytest.raises(ValueError):
        ResumableSampler(10, 9, seed=0, num_replicas=2)


def test_persistent_workers_see_each_epoch(toy) -> None:
    dataset = toy(num_classes=2, per_class=4, size=8)
    sampler = ResumableSampler(len(dataset), 8, seed=0)
    loader = make_loader(dataset, sampler, micro_batch=4, workers=2, pin_memory=False)
    per_epoch = []
    for epoch in range(2):
        sampler.set_epoch(epoch)
        images = torch.cat([x for x, _ in loader])
        expected = []
        dataset.set_epoch(epoch)
        expected = torch.stack([dataset[i][0] for _, i in sampler])
        assert torch.equal(images, expected)
        per_epoch.append(images)
    assert not torch.equal(per_epoch[0], per_epoch[1])


def test_epoch_indexed_dataset_sets_epoch() -> None:
    class Recorder(torch.utils.data.Dataset):
        epoch = -1

        def set_epoch(self, epoch: int) -> None:
            self.epoch = epoch

        def __len__(self) -> int:
            return 3

        def __getitem__(self, idx: int) -> tuple[int, int]:
            return self.epoch, idx

    wrapped = EpochIndexedDataset(Recorder())
    assert wrapped[(4, 1)] == (4, 1) and wrapped[(7, 2)] == (7, 2) and len(wrapped) == 3
