"""CutPaste and CutPaste-scar (Li et al. 2021): synthetic defects cut from an image and pasted back into it.

Every random draw comes from an explicit torch.Generator, so a training step's augmented batch is a function of
(seed, step) and a resumed fit sees the same batches as an uninterrupted one. The colour operations are
torchvision's functional transforms with parameters drawn here (torchvision's ColorJitter draws from the global
RNG, which would break that).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torchvision.transforms import InterpolationMode
from torchvision.transforms.v2 import functional as TF

# The paper's ranges (SPECS §6).
AREA_RANGE: tuple[float, float] = (0.02, 0.15)  # patch area / image area, uniform
ASPECT_RANGE: tuple[float, float] = (0.3, 3.3)  # patch width / height, log-uniform
JITTER: float = 0.1  # brightness, contrast, saturation and hue jitter of the pasted patch
SCAR_WIDTH: tuple[float, float] = (2.0, 16.0)  # px, uniform
SCAR_LENGTH: tuple[float, float] = (10.0, 25.0)  # px, uniform
SCAR_ANGLE: tuple[float, float] = (-45.0, 45.0)  # degrees, uniform

VARIANTS: dict[str, tuple[str, ...]] = {
    "3way": ("normal", "cutpaste", "scar"),
    "binary": ("normal", "cutpaste"),
    "scar": ("normal", "scar"),
}


@dataclass(frozen=True)
class CutPasteDraw:
    """One CutPaste patch: area fraction, aspect ratio (width / height) and the resulting size in pixels."""

    area: float
    aspect: float
    height: int
    width: int


@dataclass(frozen=True)
class ScarDraw:
    """One scar: width and length in pixels (before rotation) and rotation angle in degrees."""

    width: int
    length: int
    angle: float


def _uniform(low: float, high: float, generator: torch.Generator) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


def _randint(high_exclusive: int, generator: torch.Generator) -> int:
    return int(torch.randint(max(1, high_exclusive), (), generator=generator))


def draw_cutpaste(height: int, width: int, generator: torch.Generator) -> CutPasteDraw:
    """Patch size for an image of height x width: area U(0.02, 0.15) of the image, aspect log-U(0.3, 3.3)."""
    area = _uniform(*AREA_RANGE, generator)
    aspect = math.exp(_uniform(math.log(ASPECT_RANGE[0]), math.log(ASPECT_RANGE[1]), generator))
    pixels = area * height * width
    patch_w = min(width - 1, max(1, round(math.sqrt(pixels * aspect))))
    patch_h = min(height - 1, max(1, round(math.sqrt(pixels / aspect))))
    return CutPasteDraw(area, aspect, patch_h, patch_w)


def draw_scar(generator: torch.Generator) -> ScarDraw:
    """Scar width U(2, 16) px, length U(10, 25) px, rotation U(-45, 45) degrees."""
    width = round(_uniform(*SCAR_WIDTH, generator))
    length = round(_uniform(*SCAR_LENGTH, generator))
    return ScarDraw(width, length, _uniform(*SCAR_ANGLE, generator))


def jitter_colours(patch: torch.Tensor, strength: float, generator: torch.Generator) -> torch.Tensor:
    """(3, h, w) in [0, 1] -> brightness, contrast, saturation, hue jittered by `strength`, in random order."""
    factors = [_uniform(1.0 - strength, 1.0 + strength, generator) for _ in range(3)]
    hue = _uniform(-strength, strength, generator)
    operations = [
        lambda x: TF.adjust_brightness(x, factors[0]),
        lambda x: TF.adjust_contrast(x, factors[1]),
        lambda x: TF.adjust_saturation(x, factors[2]),
        lambda x: TF.adjust_hue(x, hue),
    ]
    for index in torch.randperm(len(operations), generator=generator).tolist():
        patch = operations[index](patch)
    return patch.clamp(0.0, 1.0)


def _paste(
    image: torch.Tensor, patch: torch.Tensor, inside: torch.Tensor, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Paste `patch` (3, h, w) where `inside` (h, w) is true, at a random spot -> (image, mask (H, W))."""
    _, height, width = image.shape
    h, w = inside.shape
    top, left = _randint(height - h + 1, generator), _randint(width - w + 1, generator)
    out = image.clone()
    region = out[:, top : top + h, left : left + w]
    out[:, top : top + h, left : left + w] = torch.where(inside, patch, region)
    mask = torch.zeros(height, width, dtype=torch.bool, device=image.device)
    mask[top : top + h, left : left + w] = inside
    return out, mask


def _cut(image: torch.Tensor, h: int, w: int, generator: torch.Generator) -> torch.Tensor:
    _, height, width = image.shape
    top, left = _randint(height - h + 1, generator), _randint(width - w + 1, generator)
    return image[:, top : top + h, left : left + w]


def cutpaste(image: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(3, H, W) -> (image with a jittered rectangle of itself pasted elsewhere, pasted mask (H, W) bool)."""
    draw = draw_cutpaste(image.shape[1], image.shape[2], generator)
    patch = jitter_colours(_cut(image, draw.height, draw.width, generator), JITTER, generator)
    inside = torch.ones(draw.height, draw.width, dtype=torch.bool, device=image.device)
    return _paste(image, patch, inside, generator)


def cutpaste_scar(image: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(3, H, W) -> (image with a thin, rotated, jittered strip of itself pasted elsewhere, mask (H, W))."""
    draw = draw_scar(generator)
    _, height, width = image.shape
    length, strip_w = min(draw.length, height - 1), min(draw.width, width - 1)
    patch = jitter_colours(_cut(image, length, strip_w, generator), JITTER, generator)
    ones = torch.ones(1, length, strip_w, device=image.device)
    # expand=True grows the canvas to hold the rotated strip; the rotated mask marks the strip's pixels.
    rotated = TF.rotate(patch, draw.angle, InterpolationMode.BILINEAR, expand=True)
    inside = TF.rotate(ones, draw.angle, InterpolationMode.NEAREST, expand=True)[0] > 0.5
    rotated, inside = rotated[:, :height, :width], inside[:height, :width]
    return _paste(image, rotated, inside, generator)


AUGMENTATIONS = {"cutpaste": cutpaste, "scar": cutpaste_scar}


def make_views(
    images: torch.Tensor, variant: str, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 3, H, W) originals -> (V*B, 3, H, W) views and (V*B,) class labels (0 = normal) for `variant`."""
    views = [images]
    for kind in VARIANTS[variant][1:]:
        augment = AUGMENTATIONS[kind]
        views.append(torch.stack([augment(image, generator)[0] for image in images]))
    labels = torch.arange(len(views), device=images.device).repeat_interleave(images.shape[0])
    return torch.cat(views), labels


def random_crops(images: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """(B, 3, H, W) -> one random size x size crop per image, (B, 3, size, size)."""
    _, _, height, width = images.shape
    crops = []
    for image in images:
        top, left = _randint(height - size + 1, generator), _randint(width - size + 1, generator)
        crops.append(image[:, top : top + size, left : left + size])
    return torch.stack(crops)
