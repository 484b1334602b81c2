"""On-the-fly fractal datasets: S systems grouped into C classes, C x K samples per epoch, rendered on demand.

label = idx // K and system = idx // (C K / S), so class L owns systems L S / C .. (L + 1) S / C - 1.
Every sample is a pure function of (seed, epoch, idx): images do not depend on worker count or DDP rank.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from fractalad.errors import InputError
from fractalad.fractals.background import diamond_square
from fractalad.fractals.kernels import colourise
from fractalad.fractals.render import RenderConfig, render
from fractalad.fractals.systems import pack_systems


def check_classes(n_systems: int, num_classes: int, samples_per_class: int) -> int:
    """Validate the class construction; returns the number of draws per system per epoch (C K / S)."""
    if num_classes < 1 or samples_per_class < 1:
        raise InputError(
            f"invalid class setting num_classes={num_classes}, samples_per_class={samples_per_class}: "
            "both must be positive integers"
        )
    if n_systems < num_classes or n_systems % num_classes:
        raise InputError(
            f"{n_systems} systems cannot be split evenly into {num_classes} classes: "
            "use a number of systems that is a multiple of num_classes"
        )
    total = num_classes * samples_per_class
    if total % n_systems:
        raise InputError(
            f"{num_classes} classes x {samples_per_class} samples = {total} is not a multiple of the "
            f"{n_systems} systems: each system must be drawn equally often per epoch"
        )
    return total // n_systems


def sample_seeds(seed: int, epoch: int, idx: int) -> np.random.Generator:
    """The generator of one sample, derived from (seed, epoch, idx) only."""
    return np.random.default_rng(np.random.SeedSequence([seed, epoch, idx]))


def random_crop(image: np.ndarray, crop: int | None, rng: np.random.Generator) -> np.ndarray:
    """Random crop x crop window of image (H, W, 3) (no-op when crop is None or equals the size)."""
    if crop is None or crop == image.shape[0]:
        return image
    top, left = rng.integers(0, image.shape[0] - crop + 1, 2)
    return image[top : top + crop, left : left + crop]


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, H, W) float32 in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)


class FractalDataset(Dataset):
    """Single-fractal classification images (3, crop, crop) float32 in [0, 1] with their class label."""

    def __init__(
        self,
        systems: Sequence[np.ndarray],
        num_classes: int,
        samples_per_class: int,
        render: RenderConfig,
        seed: int,
        crop: int | None = None,
    ) -> None:
        self.draws_per_system = check_classes(len(systems), num_classes, samples_per_class)
        if crop is not None and not 1 <= crop <= render.size:
            raise InputError(f"invalid crop {crop}: must be between 1 and the render size {render.size}")
        # One packed array instead of S small ones: workers share it copy-on-write, no per-item objects.
        self.maps, self.counts = pack_systems(systems)
        self.num_classes = num_classes
        self.samples_per_class = samples_per_class
        self.config = render
        self.seed = seed
        self.crop = crop
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose samples __getitem__ returns."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_classes * self.samples_per_class

    @property
    def systems_per_class(self) -> int:
        return len(self.counts) // self.num_classes

    def label(self, idx: int) -> int:
        return idx // self.samples_per_class

    def system(self, index: int) -> np.ndarray:
        """System `index` (N, 2, 3) as a view into the packed array."""
        return self.maps[index, : self.counts[index]]

    def _check_index(self, idx: int) -> int:
        if not 0 <= idx < len(self):
            raise IndexError(f"sample index {idx} out of range for a dataset of {len(self)} samples")
        return int(idx)

    def _render_sample(self, idx: int) -> tuple[np.ndarray, np.random.Generator]:
        """Full-size image (size, size, 3) uint8 of sample idx, and the generator its crop draws from next."""
        rng = sample_seeds(self.seed, self.epoch, idx)
        image = render(self.system(idx // self.draws_per_system), self.config, int(rng.integers(0, 2**63)))
        return image, rng

    def render_item(self, idx: int) -> np.ndarray:
        """The full-size image (size, size, 3) uint8 of sample idx (no crop)."""
        return self._render_sample(self._check_index(idx))[0]

    def __getitem__(self, idx: int) -> tuple[torch.Tensor, int]:
        idx = self._check_index(idx)
        image, rng = self._render_sample(idx)
        return to_tensor(random_crop(image, self.crop, rng)), self.label(idx)


class MultiInstanceDataset(FractalDataset):
    """Composites of several fractals, each resized to U(scale) x size at a random place; multi-hot labels.

    A&F's variant (same_class=False): 1-5 instances; the first is sample idx's own system, the others
    come from random classes. The paper code's variant (same_class=True, e.g. instances=(4, 10)): all from
    idx's class.
    """

    def __init__(
        self,
        systems: Sequence[np.ndarray],
        num_classes: int,
        samples_per_class: int,
        render: RenderConfig,
        seed: int,
        crop: int | None = None,
        instances: tuple[int, int] = (1, 5),
        same_class: bool = False,
        scale: tuple[float, float] = (0.15, 0.6),
    ) -> None:
        super().__init__(systems, num_classes, samples_per_class, render, seed, crop)
        if not 1 <= instances[0] <= instances[1]:
            raise InputError(f"invalid instances range {instances}: need 1 <= low <= high")
        if not 0.0 < scale[0] <= scale[1] <= 1.0:
            raise InputError(f"invalid instance scale {scale}: need 0 < low <= high <= 1")
        self.instances = instances
        self.same_class = same_class
        self.scale = scale

    def _instance_systems(self, idx: int, rng: np.random.Generator) -> tuple[list[int], list[int]]:
        """(system indices, classes) of the instances of sample idx."""
        count = int(rng.integers(self.instances[0], self.instances[1] + 1))
        per_class = self.systems_per_class
        indices, classes = [idx // self.draws_per_system], [self.label(idx)]
        for _ in range(count - 1):
            cls = classes[0] if self.same_class else int(rng.integers(self.num_classes))
            indices.append(cls * per_class + int(rng.integers(per_class)))
            classes.append(cls)
        return indices, classes

    def _canvas(self, rng: np.random.Generator) -> np.ndarray:
        """Background (size, size, 3) uint8: colourised diamond-square noise, or black."""
        size = self.config.size
        canvas = np.zeros((size, size, 3), np.uint8)
        if self.config.background:
            noise = diamond_square(rng, size)
            back = np.array(
                [rng.random(), rng.uniform(0.0, 0.5), rng.uniform(0.3, 1.0), rng.uniform(0.3, 0.8)]
            )
            colourise(np.zeros((size, size), np.int32), True, True, np.zeros(3), noise, back, canvas)
        return canvas

    def compose(self, idx: int) -> tuple[np.ndarray, np.ndarray, np.random.Generator]:
        """Composite image (size, size, 3) uint8, multi-hot (C,) float32, and the sample's generator."""
        idx = self._check_index(idx)
        rng = sample_seeds(self.seed, self.epoch, idx)
        indices, classes = self._instance_systems(idx, rng)
        canvas = self._canvas(rng)
        size = self.config.size
        for index in indices:
            side = max(4, int(round(rng.uniform(*self.scale) * size)))
            # Fewer points for a smaller instance keep the point density (and the cost) per pixel the same.
            points = max(5_000, int(self.config.n_points * (side / size) ** 2))
            config = self.config.replace(size=side, n_points=points, background=False)
            tile = render(self.system(index), config, int(rng.integers(0, 2**63)))
            top, left = rng.integers(0, size - side + 1, 2)
            mask = tile.any(axis=2)
            canvas[top : top + side, left : left + side][mask] = tile[mask]
        multi_hot = np.zeros(self.num_classes, np.float32)
        multi_hot[classes] = 1.0
        return canvas, multi_hot, rng

    def __getitem__(self, idx: int) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        canvas, multi_hot, rng = self.compose(idx)
        return to_tensor(random_crop(canvas, self.crop, rng)), torch.from_numpy(multi_hot)
