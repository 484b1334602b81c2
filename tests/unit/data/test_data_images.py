"""Image decoding and resizing: colour modes, sizes, masks and the errors for broken files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from data_trees import rgb, top_half_mask, write_image
from PIL import Image

from fractalad.data import Sample, load_images, load_mvtec
from fractalad.data.images import AnomalyImageDataset, read_image
from fractalad.errors import InputError


def test_dataset_items(mvtec_root: Path) -> None:
    category = load_mvtec(mvtec_root, "bottle")
    dataset = AnomalyImageDataset(category.test, size=16)
    assert len(dataset) == 5
    good, bad = dataset[0], dataset[2]
    assert good["image"].shape == (3, 16, 16) and good["image"].dtype == torch.float32
    assert good["mask"].shape == (16, 16) and good["mask"].sum() == 0 and good["label"] == 0
    # A flat image stays flat through the antialiased resize: 90/255 everywhere.
    assert torch.allclose(good["image"], torch.full((3, 16, 16), 90 / 255), atol=1e-6)
    assert bad["label"] == 1 and bad["path"].endswith("broken_large/000.png")
    assert torch.equal(bad["mask"][:8], torch.ones(8, 16)) and bad["mask"][8:].sum() == 0
    batch = next(iter(torch.utils.data.DataLoader(dataset, batch_size=5)))
    assert batch["image"].shape == (5, 3, 16, 16) and batch["label"].tolist() == [0, 0, 1, 1, 1]


def test_grayscale_rgba_and_16_bit_become_rgb(tmp_path: Path) -> None:
    gray = write_image(tmp_path / "gray.png", np.full((8, 8), 60, np.uint8))
    rgba_array = np.zeros((8, 8, 4), np.uint8)
    rgba_array[..., :3] = (10, 20, 30)
    rgba_array[..., 3] = 0  # fully transparent: the colour is kept, the alpha dropped
    rgba = write_image(tmp_path / "rgba.png", rgba_array)
    deep = tmp_path / "deep.png"
    Image.fromarray(np.full((8, 8), 65535, np.uint16)).save(deep)
    assert (read_image(gray) == 60).all() and read_image(gray).shape == (8, 8, 3)
    assert (read_image(rgba) == np.array([10, 20, 30], np.uint8)).all()
    assert (read_image(deep) == 255).all() and read_image(deep).shape == (8, 8, 3)
    samples = [Sample(p, 0, None, "good") for p in (gray, rgba, deep)]
    images = load_images(samples, size=4)
    assert images.shape == (3, 3, 4, 4)
    assert torch.allclose(images[0], torch.full((3, 4, 4), 60 / 255))


def test_resize_is_antialiased_bilinear(tmp_path: Path) -> None:
    stripes = np.zeros((64, 64, 3), np.uint8)
    stripes[:, ::2] = 255  # one-pixel stripes: plain bilinear would alias, antialiasing averages to grey
    path = write_image(tmp_path / "stripes.png", stripes)
    image = load_images([Sample(path, 0, None, "good")], size=16)[0]
    assert image.mean() == pytest.approx(0.5, abs=5e-3)
    assert float(image.std()) < 0.02


def test_mask_size_mismatch_names_both(tmp_path: Path) -> None:
    image = write_image(tmp_path / "x.png", rgb(10, 12, 5))
    mask = write_image(tmp_path / "x_mask.png", top_half_mask(10, 10))
    with pytest.raises(InputError, match=r"mask .*x_mask.png is 10x10 px but its image .*x.png is 12x10 px"):
        AnomalyImageDataset([Sample(image, 1, mask, "cut")], size=8)[0]


def test_corrupt_image_names_the_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(InputError, match=r"cannot read image .*broken.png"):
        AnomalyImageDataset([Sample(broken, 0, None, "good")], size=8)[0]
    truncated = write_image(
        tmp_path / "cut.png", (np.arange(64 * 64 * 3) % 251).astype(np.uint8).reshape(64, 64, 3)
    )
    truncated.write_bytes(truncated.read_bytes()[:200])
    with pytest.raises(InputError, match=r"cannot read image .*cut.png"):
        load_images([Sample(truncated, 0, None, "good")], size=8)
    with pytest.raises(InputError, match="positive number of pixels"):
        AnomalyImageDataset([], size=0)


def test_masks_ignore_alpha(tmp_path: Path) -> None:
    image = write_image(tmp_path / "x.png", rgb(8, 8, 5))
    grey_alpha = np.zeros((8, 8, 2), np.uint8)
    grey_alpha[:4, :, 0] = 255
    grey_alpha[..., 1] = 255  # opaque everywhere: alpha must not mark the whole image defective
    rgba = np.concatenate([np.repeat(grey_alpha[..., :1], 3, axis=2), grey_alpha[..., 1:]], axis=2)
    for name, array in (("la.png", grey_alpha), ("rgba.png", rgba)):
        mask_path = tmp_path / name
        Image.fromarray(array, mode="LA" if array.shape[2] == 2 else "RGBA").save(mask_path)
        mask = AnomalyImageDataset([Sample(image, 1, mask_path, "cut")], size=8)[0]["mask"]
        assert mask[:4].sum() == 32 and mask[4:].sum() == 0
