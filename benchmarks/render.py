"""Fractal-engine figures in one run, reported as ratios measured side by side.

1. img/s per core of the fused numba renderer at 256x256 / 100k points, presets paper and af.
2. ns per chaos-game point of the fused kernel (bounding-box pass, canvas pass, both).
3. The same pipeline on a straightforward per-step numba chaos game (map choices from np.random, one array
   unpack per step, a coordinate buffer, numpy bounding box): ns/point, img/s, fused / baseline ratios.
4. img/s of the batched torch renderer on CPU (one thread).
5. FractalDB search: seconds for N categories on 2 processes, extrapolated to 1000 (measured: --full-1000).
6. Peak RSS of a DataLoader worker rendering from S = 100,000 systems (1000 classes x 1000 samples).

    python benchmarks/render.py                    # everything (a few minutes on 2 cores)
    python benchmarks/render.py --images 100 --fractaldb 50 --full-1000
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from numba import njit

from fractalad.fractals import kernels, sampling
from fractalad.fractals.dataset import FractalDataset
from fractalad.fractals.render import RENDER_PRESETS, RenderConfig, dihedral_flip, frame, render
from fractalad.fractals.systems import pack_systems
from fractalad.fractals.torch_render import pack_probabilities, render_batch


@njit(cache=True)
def baseline_points(system: np.ndarray, choices: np.ndarray, x0: float, y0: float) -> np.ndarray:
    """Per-step chaos game: one (2, 3) row unpacked per step into a coordinate buffer (n, 2)."""
    points = np.empty((choices.size, 2))
    x, y = x0, y0
    for i in range(choices.size):
        row = system[choices[i]]
        a, b, e = row[0]
        c, d, f = row[1]
        x, y = a * x + b * y + e, c * x + d * y + f
        points[i, 0] = x
        points[i, 1] = y
    return points


@njit(cache=True)
def baseline_histogram(
    points: np.ndarray, left: float, top: float, sx: float, sy: float, size: int
) -> np.ndarray:
    counts = np.zeros((size, size), np.int32)
    for i in range(points.shape[0]):
        fx = (points[i, 0] - left) * sx
        fy = (points[i, 1] - top) * sy
        if 0 <= fx < size and 0 <= fy < size:
            counts[int(fy), int(fx)] += 1
    return counts


def baseline_render(system: np.ndarray, config: RenderConfig, seed: int) -> np.ndarray:
    """The paper pipeline on the baseline chaos game (same framing, colour, flips, blur as render())."""
    rng = np.random.default_rng(seed)
    choices = rng.choice(len(system), config.n_points, p=sampling.map_probabilities(system))
    points = baseline_points(system, choices, *sampling.fixed_point(system))
    bbox = (points[:, 0].min(), points[:, 0].max(), points[:, 1].min(), points[:, 1].max())
    counts = baseline_histogram(points, *frame(bbox, config, rng), config.size)
    image = np.empty((config.size, config.size, 3), np.uint8)
    fg = np.array([rng.random(), rng.uniform(0.3, 1.0), rng.uniform(0.5, 1.0)])
    kernels.colourise(counts, config.graded, config.colour, fg, np.zeros((0, 0)), np.zeros(4), image)
    image = dihedral_flip(image, rng.random(3) < 0.5)
    if rng.random() < 0.5:
        image = kernels.blur3(image, rng.uniform(0.5, 1.0))
    return image


def images_per_second(
    fn, systems: list[np.ndarray], config: RenderConfig, count: int, rounds: int = 3
) -> float:
    """Best of `rounds` timings of `count` renders (the least disturbed by other load)."""
    fn(systems[0], config, 0)
    best = np.inf
    for _ in range(rounds):
        start = time.perf_counter()
        for i in range(count):
            fn(systems[i % len(systems)], config, i)
        best = min(best, time.perf_counter() - start)
    return count / best


def _best_seconds(call, repeats: int = 3) -> float:
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - start)
    return best


def ns_per_point(systems: list[np.ndarray], n_points: int) -> dict[str, float]:
    """Fused kernel passes vs the baseline chaos game: median over systems of the best of 3 runs, ns/point."""
    times: dict[str, list[float]] = {"bbox": [], "count": [], "baseline": []}
    rng = np.random.default_rng(0)
    for system in systems:
        coef, table = sampling.coefficients(system), kernels.build_table(sampling.map_probabilities(system))
        x0, y0 = sampling.fixed_point(system)
        bbox = kernels.chaos_bbox(coef, table, x0, y0, 1, n_points)
        times["bbox"].append(_best_seconds(lambda: kernels.chaos_bbox(coef, table, x0, y0, 1, n_points)))
        window = frame(bbox, RenderConfig(window=False), rng)
        counts = np.zeros((256, 256), np.int32)
        times["count"].append(
            _best_seconds(lambda: kernels.chaos_count(coef, table, x0, y0, 1, n_points, *window, counts))
        )
        probabilities = sampling.map_probabilities(system)
        times["baseline"].append(
            _best_seconds(
                lambda: baseline_points(system, rng.choice(len(system), n_points, p=probabilities), x0, y0)
            )
        )
    return {key: float(np.median(value)) / n_points * 1e9 for key, value in times.items()}


def torch_images_per_second(
    systems: list[np.ndarray], config: RenderConfig, batch: int, rounds: int
) -> float:
    maps, _ = pack_systems(systems[:batch])
    maps_t = torch.tensor(maps)
    probabilities = torch.tensor(pack_probabilities(systems[:batch], maps.shape[1]))
    render_batch(
        maps_t[:2], probabilities[:2], config.replace(n_points=2_000), torch.Generator().manual_seed(0), "cpu"
    )
    start = time.perf_counter()
    for r in range(rounds):
        render_batch(maps_t, probabilities, config, torch.Generator().manual_seed(r), "cpu")
    return batch * rounds / (time.perf_counter() - start)


def fractaldb_seconds(categories: int, workers: int) -> float:
    start = time.perf_counter()
    sampling.sample_fractaldb(categories, seed=0, workers=workers, progress=False)
    return time.perf_counter() - start


class _RssProbe(torch.utils.data.Dataset):
    """Wraps a dataset; each item also reports the worker's RSS and private (unshared) memory in MB."""

    def __init__(self, dataset: FractalDataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, idx: int) -> tuple[torch.Tensor, int, float, float]:
        image, label = self.dataset[idx]
        fields = {}
        with open("/proc/self/smaps_rollup") as handle:
            for line in handle:
                parts = line.split()
                if parts[0] in ("Rss:", "Private_Clean:", "Private_Dirty:"):
                    fields[parts[0]] = int(parts[1]) / 1024
        return image, label, fields["Rss:"], fields["Private_Clean:"] + fields["Private_Dirty:"]


def worker_memory(n_systems: int, batches: int) -> tuple[float, float]:
    """Peak (RSS, private) MB of one DataLoader worker over `batches` batches (1000 x 1000 samples)."""
    systems = sampling.sample_systems(n_systems, 0, 2, 4)
    dataset = FractalDataset(
        systems, n_systems if n_systems < 1000 else 1000, 1000, RENDER_PRESETS["paper"], 0, 224
    )
    del systems
    loader = torch.utils.data.DataLoader(
        _RssProbe(dataset),
        batch_size=32,
        num_workers=1,
        shuffle=True,
        generator=torch.Generator().manual_seed(0),
    )
    rss, private = 0.0, 0.0
    for index, (_, _, batch_rss, batch_private) in enumerate(loader):
        rss, private = max(rss, float(batch_rss.max())), max(private, float(batch_private.max()))
        if index + 1 == batches:
            break
    return rss, private


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=300, help="images per img/s figure (default 300)")
    parser.add_argument(
        "--fractaldb", type=int, default=100, help="FractalDB categories to time (default 100)"
    )
    parser.add_argument("--full-1000", action="store_true", help="also measure the full 1000-category search")
    parser.add_argument(
        "--workers", type=int, default=2, help="processes for the FractalDB search (default 2)"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    systems = sampling.sample_systems(64, 0)
    paper = RENDER_PRESETS["paper"]
    fused = images_per_second(render, systems, paper, args.images)
    af = images_per_second(render, systems, RENDER_PRESETS["af"], args.images)
    base = images_per_second(baseline_render, systems, paper, max(20, args.images // 4))
    print(f"fused numba, paper 256px/100k : {fused:8.1f} img/s per core")
    print(f"fused numba, af    256px/100k : {af:8.1f} img/s per core")
    print(
        f"baseline numba, paper         : {base:8.1f} img/s per core   fused / baseline = {fused / base:.2f}x"
    )
    ns = ns_per_point(systems[:32], 100_000)
    both = ns["bbox"] + ns["count"]
    print(
        f"fused kernel ns/point         : bbox pass {ns['bbox']:.2f}, canvas pass {ns['count']:.2f}, "
        f"both {both:.2f}"
    )
    print(
        f"baseline chaos game ns/point  : {ns['baseline']:.2f} (incl. np.random choices)   "
        f"baseline / fused-both = {ns['baseline'] / both:.1f}x"
    )
    torch_rate = torch_images_per_second(systems, paper, batch=16, rounds=2)
    print(
        f"torch CPU (1 thread), paper   : {torch_rate:8.1f} img/s   "
        f"fused numba / torch = {fused / torch_rate:.1f}x"
    )
    seconds = fractaldb_seconds(args.fractaldb, args.workers)
    print(
        f"FractalDB search, {args.fractaldb} categories, {args.workers} processes: {seconds:.1f} s "
        f"-> 1000 extrapolated {seconds * 1000 / args.fractaldb:.0f} s"
    )
    if args.full_1000:
        print(
            f"FractalDB search, 1000 categories, {args.workers} processes: "
            f"{fractaldb_seconds(1000, args.workers):.1f} s (measured)"
        )
    for n_systems in (10, 100_000):
        rss, private = worker_memory(n_systems, batches=8)
        print(f"DataLoader worker, S={n_systems:<7d}: peak RSS {rss:.0f} MB, private {private:.0f} MB")


if __name__ == "__main__":
    main()
