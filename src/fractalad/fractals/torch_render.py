"""Batched chaos game in torch (CPU or CUDA): many chains per image, histograms by scatter-add.

Same systems and framing rules as the numba renderer (bounding box of the points, window augmentation,
graded or binary, 3x3 patch, HSV colour, diamond-square background, dihedral flips, blur, jitter); a different
random stream, so images match the numba ones in distribution, not bytes.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from fractalad.fractals.background import diamond_square_fill, grid_size
from fractalad.fractals.dataset import check_classes
from fractalad.fractals.render import RenderConfig
from fractalad.fractals.sampling import map_probabilities
from fractalad.fractals.systems import pack_systems

WARMUP = 20


def _uniform(
    shape: tuple[int, ...], low: float, high: float, generator: torch.Generator, device: torch.device
) -> torch.Tensor:
    return low + (high - low) * torch.rand(shape, generator=generator, device=device)


def _max_singular(linear: torch.Tensor) -> torch.Tensor:
    """Largest singular value of (..., 2, 2) matrices, closed form."""
    a, b, c, d = linear[..., 0, 0], linear[..., 0, 1], linear[..., 1, 0], linear[..., 1, 1]
    return (torch.hypot(a + d, c - b) + torch.hypot(a - d, c + b)) / 2


def _jitter(
    systems: torch.Tensor, probabilities: torch.Tensor, config: RenderConfig, generator: torch.Generator
) -> torch.Tensor:
    """Per image: scale one random used map's 2x3 by U(jitter_range), retried while it is not contractive."""
    batch, device = systems.shape[0], systems.device
    rows = torch.arange(batch, device=device)
    used = (probabilities > 0).sum(1).clamp(min=1)
    out = systems.clone()
    done = torch.zeros(batch, dtype=torch.bool, device=device)
    for _ in range(config.jitter_tries):
        index = (
            (torch.rand(batch, generator=generator, device=device) * used)
            .long()
            .clamp(max=systems.shape[1] - 1)
        )
        factor = _uniform((batch,), *config.jitter_range, generator, device)
        candidate = systems[rows, index] * factor[:, None, None]
        ok = (_max_singular(candidate[:, :, :2]) <= 1.0) & ~done
        out[rows, index] = torch.where(ok[:, None, None], candidate, out[rows, index])
        done |= ok
    return out


def _abs_det(systems: torch.Tensor) -> torch.Tensor:
    """|det A| (B, Nmax) of every map."""
    return (systems[..., 0, 0] * systems[..., 1, 1] - systems[..., 0, 1] * systems[..., 1, 0]).abs()


def _fixed_points(systems: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed point (x, y), each (B,), of every image's first map."""
    a = 1 - systems[:, 0, 0, 0]
    b = -systems[:, 0, 0, 1]
    c = -systems[:, 0, 1, 0]
    d = 1 - systems[:, 0, 1, 1]
    e, f = systems[:, 0, 0, 2], systems[:, 0, 1, 2]
    det = a * d - b * c
    safe = det.abs() > 1e-12
    det = torch.where(safe, det, torch.ones_like(det))
    x = torch.where(safe, (d * e - b * f) / det, e)
    y = torch.where(safe, (a * f - c * e) / det, f)
    return x, y


def _chaos_steps(
    coef: torch.Tensor,
    cdf: torch.Tensor,
    start: tuple[torch.Tensor, torch.Tensor],
    steps: int,
    chains: int,
    generator: torch.Generator,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield the (B, chains) points of each step; coef (B, Nmax, 6) = a b e c d f, cdf (B, Nmax)."""
    batch = coef.shape[0]
    x = start[0][:, None].expand(batch, chains).contiguous()
    y = start[1][:, None].expand(batch, chains).contiguous()
    last = coef.shape[1] - 1
    # All chains start at the same fixed point; their first steps stay close to it and would over-weight its
    # neighbourhood in graded images, so WARMUP unrecorded steps spread the chains over the attractor first.
    for step in range(WARMUP + steps):
        u = torch.rand((batch, chains), generator=generator, device=coef.device)
        k = torch.searchsorted(cdf, u, right=True).clamp_(max=last)
        s = torch.gather(coef, 1, k.unsqueeze(-1).expand(batch, chains, 6))
        x, y = s[..., 0] * x + s[..., 1] * y + s[..., 2], s[..., 3] * x + s[..., 4] * y + s[..., 5]
        if step >= WARMUP:
            yield x, y


def _hsv_to_rgb(h: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """HSV with hue in [0, 1) (wrapping) -> RGB stacked on dim 1: (B, H, W) each -> (B, 3, H, W)."""
    channels = []
    for n in (5.0, 3.0, 1.0):
        k = torch.remainder(n + h * 6.0, 6.0)
        channels.append(v - v * s * torch.clamp(torch.minimum(k, 4.0 - k), 0.0, 1.0))
    return torch.stack(channels, 1)


def _counts(
    systems: torch.Tensor,
    probabilities: torch.Tensor,
    config: RenderConfig,
    generator: torch.Generator,
    chains: int,
) -> torch.Tensor:
    """Hit counts (B, H, W) float32: bbox pass, window, then the replayed stream into the histograms."""
    batch, device, size = systems.shape[0], systems.device, config.size
    coef = systems.reshape(batch, systems.shape[1], 6)
    cdf = torch.cumsum(probabilities, 1)
    chains = max(1, min(chains, config.n_points))
    steps = math.ceil(config.n_points / chains)
    start = _fixed_points(systems)
    state = generator.get_state()
    lo = torch.full((batch, 2), math.inf, device=device)
    hi = torch.full((batch, 2), -math.inf, device=device)
    for x, y in _chaos_steps(coef, cdf, start, steps, chains, generator):
        points = torch.stack([x, y], -1)
        lo = torch.minimum(lo, points.amin(1))
        hi = torch.maximum(hi, points.amax(1))
    centre = (lo + hi) / 2
    extent = torch.maximum(hi - lo, 1e-9 * centre.abs().clamp(min=1.0))
    if config.window:
        centre = centre + extent * _uniform(
            (batch, 2), -config.window_shift, config.window_shift, generator, device
        )
        extent = extent * _uniform((batch, 2), *config.window_scale, generator, device)
    extent = extent * (1.0 + 1e-5)  # float32: margin against rounding at the bounding box edges
    scale = size / extent
    origin = centre - extent / 2
    window_state = generator.get_state()
    generator.set_state(state)
    flat = torch.zeros(batch * size * size + 1, device=device)
    base = (torch.arange(batch, device=device) * size * size)[:, None]
    ones = torch.ones(batch * chains, device=device)
    for x, y in _chaos_steps(coef, cdf, start, steps, chains, generator):
        fx = (x - origin[:, 0:1]) * scale[:, 0:1]
        fy = (y - origin[:, 1:2]) * scale[:, 1:2]
        inside = (fx >= 0) & (fy >= 0) & (fx < size) & (fy < size)
        index = base + fy.clamp(0, size - 1).long() * size + fx.clamp(0, size - 1).long()
        index = torch.where(inside, index, torch.full_like(index, batch * size * size))
        flat.index_add_(0, index.reshape(-1), ones)
    generator.set_state(window_state)
    return flat[:-1].reshape(batch, size, size)


def _stamp_patches(counts: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Stamp a random non-empty 3x3 mask per image at every hit: (B, H, W) -> (B, H, W)."""
    batch, device = counts.shape[0], counts.device
    code = 1 + (torch.rand(batch, generator=generator, device=device) * 511).long().clamp(max=510)
    bits = (code[:, None] >> torch.arange(9, device=device)) & 1
    # Stamping is a convolution; conv2d correlates, hence the flipped mask.
    weight = bits.float().reshape(batch, 1, 3, 3).flip(-1, -2)
    return F.conv2d(counts[None], weight, padding=1, groups=batch)[0]


def _backgrounds(batch: int, size: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """Colourised diamond-square noise (B, 3, H, W) in [0, 1]."""
    n = grid_size(size)
    grid = torch.zeros((batch, n, n), device=device)
    grid[:, :: n - 1, :: n - 1] = _uniform((batch, 2, 2), -1.0, 1.0, generator, device)
    decay = _uniform((batch, 1, 1), 0.4, 0.7, generator, device)
    diamond_square_fill(grid, lambda shape: _uniform(shape, -1.0, 1.0, generator, device), decay)
    grid = grid[:, :size, :size]
    low = grid.amin((1, 2), keepdim=True)
    high = grid.amax((1, 2), keepdim=True)
    level = (grid - low) / (high - low).clamp(min=1e-12)
    hue, spread, sat, val = (
        _uniform((batch, 1, 1), lo, hi, generator, device)
        for lo, hi in ((0.0, 1.0), (0.0, 0.5), (0.3, 1.0), (0.3, 0.8))
    )
    return _hsv_to_rgb(hue + spread * level, sat.expand_as(level), val * level)


def _colour(counts: torch.Tensor, config: RenderConfig, generator: torch.Generator) -> torch.Tensor:
    """Counts (B, H, W) -> (B, 3, H, W) in [0, 1]: graded/binary, HSV or grey, black or noise background."""
    batch, size, device = counts.shape[0], counts.shape[1], counts.device
    hit = counts > 0
    if config.graded:
        value = counts / counts.amax((1, 2), keepdim=True).clamp(min=1.0)
    else:
        value = hit.float()
    shift, sat, val = (
        _uniform((batch, 1, 1), lo, hi, generator, device) for lo, hi in ((0.0, 1.0), (0.3, 1.0), (0.5, 1.0))
    )
    if config.colour:
        image = _hsv_to_rgb(value + shift, sat.expand_as(value), val.expand_as(value))
    else:
        image = value[:, None].expand(batch, 3, size, size)
    if config.background:
        return torch.where(hit[:, None], image, _backgrounds(batch, size, generator, device))
    return image * hit[:, None]


def _flip(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Per image: transpose, vflip, hflip, each with p = 0.5; (B, 3, H, H) -> (B, 3, H, H)."""
    flags = torch.rand((3, images.shape[0], 1, 1, 1), generator=generator, device=images.device) < 0.5
    images = torch.where(flags[0], images.transpose(-1, -2), images)
    images = torch.where(flags[1], images.flip(-2), images)
    return torch.where(flags[2], images.flip(-1), images)


def _blur(images: torch.Tensor, config: RenderConfig, generator: torch.Generator) -> torch.Tensor:
    """Per image with p = blur_p: 3x3 Gaussian, sigma ~ U(blur_sigma), replicated edges."""
    batch, device = images.shape[0], images.device
    apply = torch.rand(batch, generator=generator, device=device) < config.blur_p
    sigma = _uniform((batch,), *config.blur_sigma, generator, device)
    side = torch.exp(-1.0 / (2 * sigma**2))
    taps = torch.stack([side, torch.ones_like(side), side], 1) / (1 + 2 * side)[:, None]  # (B, 3)
    kernel = (taps[:, :, None] * taps[:, None, :]).repeat_interleave(3, 0)[:, None]  # (3B, 1, 3, 3)
    padded = F.pad(images.reshape(1, batch * 3, *images.shape[2:]), (1, 1, 1, 1), mode="replicate")
    blurred = F.conv2d(padded, kernel, groups=batch * 3).reshape(images.shape)
    return torch.where(apply[:, None, None, None], blurred, images)


def render_batch(
    systems: torch.Tensor,
    probabilities: torch.Tensor,
    config: RenderConfig,
    generator: torch.Generator,
    device: torch.device | str,
    chains: int = 1024,
) -> torch.Tensor:
    """Render systems (B, Nmax, 2, 3) with map probabilities (B, Nmax) (0 = padding) -> (B, 3, H, W), [0, 1].

    Each image runs `chains` chaos-game chains of ceil(n_points / chains) steps from map 1's fixed point.
    """
    device = torch.device(device)
    systems = systems.to(device, torch.float32)
    probabilities = probabilities.to(device, torch.float32)
    probabilities = probabilities / probabilities.sum(1, keepdim=True)
    if config.jitter:
        jittered = _jitter(systems, probabilities, config, generator)
        # Scaling a map by f scales |det A| by f^2: keep p proportional to |det A| as the numba renderer does.
        ratio = _abs_det(jittered) / _abs_det(systems).clamp(min=1e-30)
        probabilities = probabilities * torch.where(_abs_det(systems) > 0, ratio, torch.ones_like(ratio))
        probabilities = probabilities / probabilities.sum(1, keepdim=True)
        systems = jittered
    counts = _counts(systems, probabilities, config, generator, chains)
    if config.patch:
        counts = _stamp_patches(counts, generator)
    images = _colour(counts, config, generator)
    if config.flips:
        images = _flip(images, generator)
    if config.blur:
        images = _blur(images, config, generator)
    return images.clamp_(0.0, 1.0)


def pack_probabilities(systems: Sequence[np.ndarray], width: int) -> np.ndarray:
    """Map probabilities zero-padded to (S, width) float64."""
    out = np.zeros((len(systems), width))
    for index, system in enumerate(systems):
        out[index, : len(system)] = map_probabilities(system)
    return out


def _batch_seed(seed: int, epoch: int, batch: int) -> int:
    return int(np.random.SeedSequence([seed, epoch, batch]).generate_state(1, np.uint64)[0] >> np.uint64(1))


class DeviceFractalBatches:
    """Iterable of (images (B, 3, crop, crop) float in [0, 1], labels (B,) int64) rendered on `device`.

    Same class construction as FractalDataset (label = idx // K, system = idx // (C K / S)); the epoch's
    sample order is a permutation drawn from (seed, epoch), and batch b is rendered from (seed, epoch, b), so
    the stream is reproducible and independent of how ranks split it (rank r takes batches r, r + world, ...).
    """

    def __init__(
        self,
        systems: Sequence[np.ndarray],
        num_classes: int,
        samples_per_class: int,
        render: RenderConfig,
        seed: int,
        batch_size: int,
        crop: int | None = None,
        device: torch.device | str = "cpu",
        rank: int = 0,
        world_size: int = 1,
        chains: int = 1024,
    ) -> None:
        self.draws_per_system = check_classes(len(systems), num_classes, samples_per_class)
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.device = torch.device(device)
        maps, _ = pack_systems(systems)
        self.maps = torch.as_tensor(maps, dtype=torch.float32, device=self.device)
        self.probabilities = torch.as_tensor(
            pack_probabilities(systems, maps.shape[1]), dtype=torch.float32, device=self.device
        )
        self.num_classes, self.samples_per_class = num_classes, samples_per_class
        self.config, self.seed, self.batch_size = render, seed, batch_size
        self.crop = crop if crop is not None else render.size
        self.rank, self.world_size, self.chains = rank, world_size, chains
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def _num_batches(self) -> int:
        return (self.num_classes * self.samples_per_class) // self.batch_size

    def __len__(self) -> int:
        return len(range(self.rank, self._num_batches(), self.world_size))

    def _epoch_order(self) -> np.ndarray:
        """The epoch's sample order (C K,): a permutation drawn from (seed, epoch) only."""
        return np.random.default_rng(np.random.SeedSequence([self.seed, self.epoch])).permutation(
            self.num_classes * self.samples_per_class
        )

    def batch(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch `index` of the current epoch (drop-last batching of the epoch's permutation)."""
        return self._render(self._epoch_order(), index)

    def _render(self, order: np.ndarray, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch `index`: samples order[index B : (index + 1) B], rendered from (seed, epoch, index)."""
        indices = order[index * self.batch_size : (index + 1) * self.batch_size]
        labels = torch.as_tensor(indices // self.samples_per_class, device=self.device)
        chosen = torch.as_tensor(indices // self.draws_per_system, device=self.device)
        generator = torch.Generator(device=self.device)
        generator.manual_seed(_batch_seed(self.seed, self.epoch, index))
        images = render_batch(
            self.maps[chosen], self.probabilities[chosen], self.config, generator, self.device, self.chains
        )
        return random_crops(images, self.crop, generator), labels

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = self._epoch_order()  # drawn once per epoch, not once per batch
        for index in range(self.rank, self._num_batches(), self.world_size):
            yield self._render(order, index)


def random_crops(images: torch.Tensor, crop: int, generator: torch.Generator) -> torch.Tensor:
    """A random crop x crop window per image: (B, C, H, W) -> (B, C, crop, crop)."""
    batch, _, size, _ = images.shape
    if crop >= size:
        return images
    offsets = (torch.rand((2, batch), generator=generator, device=images.device) * (size - crop + 1)).long()
    steps = torch.arange(crop, device=images.device)
    rows = (offsets[0, :, None] + steps)[:, :, None]  # (B, crop, 1)
    cols = (offsets[1, :, None] + steps)[:, None, :]  # (B, 1, crop)
    picked = images[
        torch.arange(batch, device=images.device)[:, None, None], :, rows, cols
    ]  # (B, crop, crop, C)
    return picked.permute(0, 3, 1, 2).contiguous()
