"""Recipes beyond the paper: OFDB and multi-instance presets, the augmentation stack, fixed cached images."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from fractalad.demo_settings import DEMO_PRETRAIN_PRESET
from fractalad.errors import InputError
from fractalad.pretrain import checkpoints as ckpt
from fractalad.pretrain.augment import BatchMix, SampleAugment, to_uint8
from fractalad.pretrain.config import PRESETS, resolve_config
from fractalad.pretrain.data import (
    DeviceFixedBatches,
    FixedImageDataset,
    ResumableSampler,
    build_dataset,
    prepare_fixed_images,
    sample_systems,
)
from fractalad.pretrain.model import make_criterion
from fractalad.pretrain.train import FIXED_IMAGES_FILE, pretrain


@pytest.mark.parametrize("arch", ["resnet50", "wide_resnet50_2"])
def test_ofdb_presets_follow_specs_section_13(arch: str) -> None:
    c = PRESETS[f"ofdb-{arch}"]
    assert c.arch == arch and (c.num_classes, c.num_systems, c.render_size, c.crop) == (1000, 1000, 512, 224)
    assert (c.n_min, c.n_max, c.render_preset, c.image_source) == (2, 4, "paper", "fixed")
    assert (c.augment, c.random_erasing, c.mix_prob, c.mix_alpha) == ("imagenet", 0.5, 0.8, 1.0)
    assert (c.lr, c.momentum, c.weight_decay, c.schedule, c.batch_size) == (0.1, 0.9, 1e-4, "cosine", 128)
    # 20,000 epochs of 1,000 images with 5 warm-up epochs, counted in our 16-fold epochs.
    assert c.epochs * c.epoch_size == 20_000 * 1000 and c.warmup_epochs * c.epoch_size == 5 * 1000
    assert c.epochs * (c.epoch_size // c.batch_size) == 156_250 and c.device_render


@pytest.mark.parametrize("arch", ["resnet18", "wide_resnet50_2", "wide_resnet101_2"])
def test_multi_instance_presets_are_the_paper_recipe_on_composites(arch: str) -> None:
    c = PRESETS[f"paper-multi-{arch}"]
    paper = PRESETS[f"paper-{arch}"]
    assert c.multi_instance and c.same_class_instances and c.instances == (4, 10)
    assert (
        dataclasses.replace(
            c, preset=paper.preset, multi_instance=False, instances=(1, 5), same_class_instances=False
        )
        == paper
    )


def test_cpu_recipes_share_the_tiny_budget() -> None:
    tiny = PRESETS["tiny"]
    for name in ("tiny-ofdb", "tiny-multi"):
        c = PRESETS[name]
        assert (c.epochs * c.epoch_size, c.image_size, c.arch, c.device) == (50_000, 64, "resnet18", "cpu")
        assert c.epochs * c.epoch_size == tiny.epochs * tiny.epoch_size
    ofdb32 = PRESETS["tiny-ofdb32"]
    assert (ofdb32.epochs * ofdb32.epoch_size, ofdb32.image_size, ofdb32.mix_prob) == (50_000, 32, 0.0)
    assert (
        dataclasses.replace(ofdb32, preset="tiny-ofdb", crop=64, render_size=128, mix_prob=0.8)
        == PRESETS["tiny-ofdb"]
    )


def test_demo_recipe_is_tiny80k_on_48px_crops_classified_from_layer3() -> None:
    demo = PRESETS[DEMO_PRETRAIN_PRESET]
    assert demo.epochs * demo.epoch_size == 80_000
    tiny80k = PRESETS["tiny80k"]
    assert dataclasses.replace(demo, preset="tiny80k", crop=64, render_size=72, head_stage=4) == tiny80k
    assert (
        dataclasses.replace(tiny80k, preset="tiny", epochs=10, amp=False, channels_last=False)
        == PRESETS["tiny"]
    )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["multi_instance=true", "mix_prob=0.5"], "multi_instance composites"),
        (["image_source=fixed", "num_systems=200"], "caches one image per class"),
        (["augment=heavy"], "augment='heavy' is not one of crop, imagenet"),
        (["mix_prob=1.5"], r"mix_prob=1.5 .* must lie in \[0, 1\]"),
        (["background_lift=-0.1"], r"background_lift=-0.1 must lie in \[0, 1\]"),
    ],
)
def test_bad_recipe_combinations_are_named(overrides: list[str], message: str) -> None:
    with pytest.raises(InputError, match=message):
        resolve_config("tiny", None, overrides)


def _ofdb_config(*overrides: str):
    return resolve_config("tiny-ofdb", None, ["crop=32", "render_size=48", "random_erasing=1.0", *overrides])


def test_sample_augment_is_keyed_and_leaves_the_global_generator_alone() -> None:
    augment = SampleAugment(_ofdb_config("mean=[0.3,0.3,0.3]", "std=[0.5,0.5,0.5]"))
    image = torch.randint(0, 256, (3, 48, 48), dtype=torch.uint8)
    before = torch.get_rng_state()
    first = augment(image, 2, 7)
    assert torch.equal(torch.get_rng_state(), before)
    assert first.shape == (3, 32, 32) and first.dtype == torch.float32
    assert torch.equal(first, augment(image, 2, 7))
    assert not torch.equal(first, augment(image, 2, 8)) and not torch.equal(first, augment(image, 3, 7))
    # RandomErasing (p = 1 here) fills with the normalisation mean, which no uint8 / 255 value equals.
    assert (first == torch.tensor(0.3)).all(0).any()


def test_background_lift_raises_black_to_a_keyed_grey_level() -> None:
    """p = 1 with the plain crop: every black pixel of a sample becomes that sample's level, the fractal's
    pixels map affinely onto [level, 1], and the level is a function of the sample's key."""
    config = resolve_config("tiny", None, ["background_lift=1.0", "crop=16", "render_size=16"])
    image = torch.zeros(3, 16, 16, dtype=torch.uint8)
    image[:, 4:8, 4:8] = 255
    image[:, 10:12, 10:12] = 51  # 0.2
    augment = SampleAugment(config)
    levels = []
    for index in range(8):
        out = augment(image, 0, index)
        level = float(out[0, 0, 0])
        levels.append(level)
        torch.testing.assert_close(out[image == 0], torch.full_like(out[image == 0], level))
        torch.testing.assert_close(out[image == 255], torch.ones_like(out[image == 255]))
        torch.testing.assert_close(out[:, 10, 10], torch.full((3,), level + (1 - level) * 0.2))
        assert torch.equal(out, augment(image, 0, index))
    assert len(set(levels)) == 8 and 0 <= min(levels) and max(levels) < 1
    unlifted = SampleAugment(resolve_config("tiny", None, ["crop=16", "render_size=16"]))(image, 0, 0)
    torch.testing.assert_close(unlifted, image.float() / 255)


def test_batch_mix_gives_keyed_soft_targets() -> None:
    config = _ofdb_config("mix_prob=1.0", "num_classes=4", "num_systems=4")
    images, labels = torch.rand(8, 3, 16, 16), torch.tensor([0, 1, 2, 3, 0, 1, 2, 3])
    mixed, targets = BatchMix(config)(images, labels, (5, 0, 0))
    assert targets.shape == (8, 4) and torch.allclose(targets.sum(1), torch.ones(8))
    assert (targets > 0).sum(1).max() == 2 and not torch.equal(mixed, images)
    again, targets_again = BatchMix(config)(images, labels, (5, 0, 0))
    assert torch.equal(again, mixed) and torch.equal(targets_again, targets)
    plain, one_hot = BatchMix(dataclasses.replace(config, mix_prob=0.0))(images, labels, (5, 0, 0))
    assert torch.equal(plain, images) and torch.equal(one_hot.argmax(1), labels) and one_hot.max() == 1


def test_soft_target_loss_is_cross_entropy_against_the_distribution() -> None:
    criterion = make_criterion(PRESETS["tiny-ofdb"])
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 1.0, 0.0]])
    targets = torch.tensor([[0.7, 0.3, 0.0], [0.0, 0.4, 0.6]])
    loss, hits = criterion(logits, targets)
    expected = -(targets * logits.log_softmax(1)).sum(1).mean()
    assert loss.item() == pytest.approx(expected.item()) and hits.tolist() == [True, False]


def test_fixed_images_are_rendered_once_per_class_and_keyed_by_seed(tmp_path: Path) -> None:
    config = _ofdb_config("num_classes=3", "num_systems=3", "render_points=3000")
    systems = sample_systems(config)
    prepare_fixed_images(config, systems, tmp_path / "a.npy")
    prepare_fixed_images(config, systems, tmp_path / "b.npy")
    a, b = np.load(tmp_path / "a.npy"), np.load(tmp_path / "b.npy")
    assert a.shape == (3, 48, 48, 3) and a.dtype == np.uint8 and np.array_equal(a, b)
    assert all(a[i].any() for i in range(3)) and not np.array_equal(a[0], a[1])
    other = dataclasses.replace(config, seed=1)
    prepare_fixed_images(other, systems, tmp_path / "c.npy")
    assert not np.array_equal(np.load(tmp_path / "c.npy"), a)


def test_device_batches_equal_the_loader_order_on_cpu(tmp_path: Path) -> None:
    config = _ofdb_config(
        "num_classes=3", "num_systems=3", "samples_per_class=4", "batch_size=4", "render_points=3000"
    )
    prepare_fixed_images(config, sample_systems(config), tmp_path / "i.npy")
    images = np.load(tmp_path / "i.npy", mmap_mode="r")
    dataset = build_dataset(config, [], images)
    assert isinstance(dataset, FixedImageDataset) and len(dataset) == 12
    device = DeviceFixedBatches(images, config, batch_size=4, used=12, device=torch.device("cpu"))
    device.set_epoch(1)
    dataset.set_epoch(1)
    sampler = ResumableSampler(12, 12, config.seed)
    sampler.set_epoch(1)
    order = [i for _, i in sampler][4:8]
    expected = torch.stack([dataset[i][0] for i in order])
    batch, labels = device.batch(1)
    assert torch.equal(batch, expected) and labels.tolist() == [i // 4 for i in order]


def test_rendered_images_take_the_imagenet_stack_too() -> None:
    config = resolve_config(
        "tiny", None, ["augment=imagenet", "crop=32", "render_size=48", "render_points=2000"]
    )
    dataset = build_dataset(config, sample_systems(config))
    image, label = dataset[51]
    assert image.shape == (3, 32, 32) and label == 1
    assert torch.equal(to_uint8(image.new_tensor([51 / 255])), torch.tensor([51], dtype=torch.uint8))


def test_fixed_image_run_with_mixing_is_reproducible(tmp_path: Path, make_config) -> None:
    recipe = [
        "image_source=fixed",
        "augment=imagenet",
        "random_erasing=0.5",
        "mix_prob=0.8",
        "render_size=48",
        "render_points=2000",
        "epochs=1",
    ]
    config = make_config(*recipe)
    torch.manual_seed(123)  # the global generator must not matter
    pretrain(config, tmp_path / "a")
    torch.manual_seed(456)
    pretrain(config, tmp_path / "b")
    assert (tmp_path / "a" / FIXED_IMAGES_FILE).exists()
    first = ckpt.load_checkpoint(tmp_path / "a" / "last.pt")["model"]
    second = ckpt.load_checkpoint(tmp_path / "b" / "last.pt")["model"]
    assert all(torch.equal(first[k], second[k]) for k in first)
    pretrain(make_config(*recipe, "device_render=true"), tmp_path / "device")
    summary = json.loads((tmp_path / "device" / "summary.json").read_text())
    assert summary["global_step"] == 8
