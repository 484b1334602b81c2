"""Decode test/train images and masks into fixed-size tensors: RGB float in [0, 1], binary masks."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from fractalad.data.records import Sample
from fractalad.errors import InputError

# PIL raises several types for broken files (truncated data, bad headers, unsupported modes).
DECODE_ERRORS = (OSError, UnidentifiedImageError, SyntaxError, ValueError, Image.DecompressionBombError)


def pil_to_rgb(image: Image.Image) -> np.ndarray:
    """(H, W, 3) uint8 from any PIL mode: grayscale repeated, alpha dropped, 16-bit scaled to 8-bit."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        values = np.asarray(image, dtype=np.float32)
        # 16-bit PNGs open as I;16 or I; scale 0..65535 to 0..255 (8-bit data stored as I stays as is).
        if image.mode.startswith("I;16") or values.max(initial=0.0) > 255:
            values = values / 257.0
        gray = np.clip(np.rint(values), 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    return np.array(image.convert("RGB"), dtype=np.uint8)


def read_image(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB; raise InputError naming the file when it cannot be decoded."""
    try:
        with Image.open(path) as image:
            image.load()
            return pil_to_rgb(image)
    except DECODE_ERRORS as error:
        raise InputError(f"cannot read image {path}: {error}; replace or remove the file") from error


def read_mask(path: Path) -> np.ndarray:
    """(H, W) bool: any non-zero value is a defect (0/255 MVTec masks and VisA class-index maps alike)."""
    try:
        with Image.open(path) as image:
            image.load()
            # No mode conversion: a palette ("P") mask must keep its class indices, not palette luminance.
            values = np.asarray(image)
    except DECODE_ERRORS as error:
        raise InputError(f"cannot read mask {path}: {error}; replace or remove the file") from error
    if values.ndim == 3:
        # Colour channels only: LA keeps its grey channel, RGBA its RGB (alpha is often 255 everywhere).
        colour = values[:, :, :1] if values.shape[2] == 2 else values[:, :, :3]
        return (colour != 0).any(axis=2)
    return values != 0


def resize_image(image: np.ndarray, size: int) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, size, size) float32 in [0, 1], bilinear with antialiasing.

    PIL's bilinear filter widens with the scale factor (the antialiasing torchvision's Resize imitates) and
    runs on uint8, several times faster than a float resize of a 1024 px photo.
    """
    if image.shape[:2] != (size, size):
        image = np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BILINEAR))
    # Convert while still (H, W, 3) contiguous; the permute afterwards is free.
    return torch.from_numpy(image.astype(np.float32) / np.float32(255.0)).permute(2, 0, 1).contiguous()


def resize_mask(mask: np.ndarray, size: int) -> torch.Tensor:
    """(H, W) bool -> (size, size) float32 in {0, 1} by nearest neighbour (pixel centres)."""
    if mask.shape != (size, size):
        mask = np.asarray(Image.fromarray(mask).resize((size, size), Image.Resampling.NEAREST))
    return torch.from_numpy(mask.astype(np.float32))


def load_sample(sample: Sample, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Image (3, S, S) float32 in [0, 1] and mask (S, S) float32 in {0, 1} (zeros when there is no mask)."""
    image = read_image(sample.image_path)
    if sample.mask_path is None:
        return resize_image(image, size), torch.zeros(size, size)
    mask = read_mask(sample.mask_path)
    if mask.shape != image.shape[:2]:
        raise InputError(
            f"mask {sample.mask_path} is {mask.shape[1]}x{mask.shape[0]} px but its image "
            f"{sample.image_path} is {image.shape[1]}x{image.shape[0]} px; masks must have their image's size"
        )
    return resize_image(image, size), resize_mask(mask, size)


class AnomalyImageDataset(Dataset):
    """Samples decoded and resized to size x size; item = dict(image, mask, label, path)."""

    def __init__(self, samples: Sequence[Sample], size: int = 256) -> None:
        if size < 1:
            raise InputError(f"image size must be a positive number of pixels, got {size}")
        self.samples = tuple(samples)
        self.size = int(size)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | int | str]:
        sample = self.samples[index]
        image, mask = load_sample(sample, self.size)
        return {"image": image, "mask": mask, "label": int(sample.label), "path": str(sample.image_path)}


def load_images(samples: Sequence[Sample], size: int = 256) -> torch.Tensor:
    """All sample images as one (N, 3, S, S) float32 tensor in [0, 1]."""
    if not samples:
        return torch.zeros(0, 3, size, size)
    return torch.stack([resize_image(read_image(sample.image_path), size) for sample in samples])
