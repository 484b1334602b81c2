"""Fractal-engine figures in one run, reported as ratios measured side by side.

1. img/s per core of the numba renderer at 256x256 / 100k points, presets paper and af, and the previous
   renderer (benchmarks/render_previous.py: bbox pass + replay) timed in alternating rounds in this process;
   the agreement of their images (IoU of occupied pixels, density correlation) over many systems.
2. ns per chaos-game point: point pass and binning pass, against the previous bbox pass and replay pass.
3. The same pipeline on a straightforward per-step numba chaos game (map choices from np.random, one array
   unpack per step, a coordinate buffer, numpy bounding box): ns/point, img/s, fused / baseline ratios.
4. img/s of the batched torch renderer on CPU (one thread).
5. FractalDB search: seconds for N categories on 2 processes, extrapolated to 1000 (measured: --full-1000).
6. Peak RSS of a DataLoader worker rendering from S = 100,000 systems (1000 classes x 1000 samples).

    python benchmarks/render.py                    # everything (a few minutes on 2 cores)
    python benchmarks/render.py --images 100 --fractaldb 50 --full-1000
    NUMBA_NUM_THREADS=1 taskset -c 0 python benchmarks/render.py --renderer-only --rounds 7
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import render_previous  # sibling script: the previous renderer
import torch
from numba import njit

from fractalad.fractals import kernels, sampling
from fractalad.fractals.dataset import FractalDataset
from fractalad.fractals.render import RENDER_PRESETS, RenderConfig, chaos_counts, frame, render
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
    image = render_previous.dihedral_flip(image, rng.random(3) < 0.5)
    if rng.random() < 0.5:
        image = render_previous.blur3(image, rng.uniform(0.5, 1.0))
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


def previous_vs_current(
    systems: list[np.ndarray], config: RenderConfig, count: int, rounds: int
) -> tuple[np.ndarray, np.ndarray]:
    """img/s of the previous and the current renderer per round, (rounds,) each, measured alternately."""
    render_previous.render(systems[0], config, 0)
    render(systems[0], config, 0)
    rates = np.empty((2, rounds))
    for r in range(rounds):
        for side, fn in enumerate((render_previous.render, render)):
            start = time.perf_counter()
            for i in range(count):
                fn(systems[i % len(systems)], config, r * count + i)
            rates[side, r] = count / (time.perf_counter() - start)
    return rates[0], rates[1]


def _pooled_correlation(a: np.ndarray, b: np.ndarray, factor: int = 4) -> float:
    size = a.shape[0] // factor
    pooled = [x.reshape(size, factor, size, factor).sum(axis=(1, 3)).ravel() for x in (a, b)]
    return float(np.corrcoef(*pooled)[0, 1])


def image_agreement(systems: list[np.ndarray]) -> dict[str, tuple[float, float]]:
    """Mean (IoU of occupied pixels, 4x4-block density correlation) against the previous renderer's counts.

    'current': current vs previous on the same system; 'previous': previous vs previous with another seed
    (the run-to-run floor); 'other system': previous of the next system (what a wrong attractor scores).
    """
    config = RenderConfig(colour=False, flips=False, blur=False, jitter=False, window=False)
    scores: dict[str, list[tuple[float, float]]] = {"current": [], "previous": [], "other system": []}
    for i, system in enumerate(systems):
        reference = render_previous.chaos_counts(system, config, np.random.default_rng(0))
        candidates = {
            "current": chaos_counts(system, config, np.random.default_rng(1)),
            "previous": render_previous.chaos_counts(system, config, np.random.default_rng(1)),
            "other system": render_previous.chaos_counts(
                systems[(i + 1) % len(systems)], config, np.random.default_rng(1)
            ),
        }
        for name, counts in candidates.items():
            both, either = ((counts > 0) & (reference > 0)).sum(), ((counts > 0) | (reference > 0)).sum()
            scores[name].append((both / either, _pooled_correlation(counts, reference)))
    return {name: tuple(np.mean(values, axis=0)) for name, values in scores.items()}


def ns_per_point(systems: list[np.ndarray], n_points: int) -> dict[str, float]:
    """Chaos-game passes, current and previous, and the baseline: median over systems of the best of 3, ns/point.

    Windows are the paper preset's (random shift and zoom), so the canvas passes see clipped attractors.
    """
    names = ("points", "binning", "previous bbox", "previous replay", "baseline")
    times: dict[str, list[float]] = {name: [] for name in names}
    rng = np.random.default_rng(0)
    points = np.empty((n_points, 2))
    canvas = np.zeros((258, 258), np.int32)
    counts = np.zeros((256, 256), np.int32)
    for system in systems:
        coef, table = sampling.coefficients(system), kernels.build_table(sampling.map_probabilities(system))
        x0, y0 = sampling.fixed_point(system)
        window = frame(kernels.chaos_points(coef, table, x0, y0, 1, points), RENDER_PRESETS["paper"], rng)
        probabilities = sampling.map_probabilities(system)
        calls = {
            "points": lambda: kernels.chaos_points(coef, table, x0, y0, 1, points),
            "binning": lambda: kernels.bin_points(points, *window, canvas),
            "previous bbox": lambda: render_previous.chaos_bbox(coef, table, x0, y0, 1, n_points),
            "previous replay": lambda: render_previous.chaos_count(
                coef, table, x0, y0, 1, n_points, *window, counts
            ),
            "baseline": lambda: baseline_points(
                system, rng.choice(len(system), n_points, p=probabilities), x0, y0
            ),
        }
        for name, call in calls.items():
            times[name].append(_best_seconds(call))
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


def report_renderer(systems: list[np.ndarray], images: int, rounds: int) -> float:
    """Print the renderer figures (current vs previous, ns/point, image agreement); returns current img/s."""
    paper = RENDER_PRESETS["paper"]
    previous, current = previous_vs_current(systems, paper, images, rounds)
    ratios = current / previous
    print(
        f"paper 256px/100k, {rounds} alternating rounds of {images} images, img/s per core (median, min..max):\n"
        f"  previous (bbox + replay)    : {np.median(previous):8.1f}  ({previous.min():.1f} .. {previous.max():.1f})\n"
        f"  current (points + binning)  : {np.median(current):8.1f}  ({current.min():.1f} .. {current.max():.1f})\n"
        f"  current / previous per round: median {np.median(ratios):.2f}x ({ratios.min():.2f} .. {ratios.max():.2f})"
    )
    af = images_per_second(render, systems, RENDER_PRESETS["af"], images)
    print(f"current, af 256px/100k        : {af:8.1f} img/s per core")
    ns = ns_per_point(systems[:32], 100_000)
    current_ns, previous_ns = ns["points"] + ns["binning"], ns["previous bbox"] + ns["previous replay"]
    print(
        f"ns/point, current             : point pass {ns['points']:.2f}, binning pass {ns['binning']:.2f}, "
        f"both {current_ns:.2f}\n"
        f"ns/point, previous            : bbox pass {ns['previous bbox']:.2f}, replay pass "
        f"{ns['previous replay']:.2f}, both {previous_ns:.2f}   previous / current = {previous_ns / current_ns:.2f}x\n"
        f"baseline chaos game ns/point  : {ns['baseline']:.2f} (incl. np.random choices)   "
        f"baseline / current = {ns['baseline'] / current_ns:.1f}x"
    )
    print("agreement with the previous renderer's counts, 64 systems, 256px/100k, no augmentation:")
    for name, (iou, correlation) in image_agreement(systems).items():
        print(
            f"  {name:12s}: IoU of occupied pixels {iou:.3f}, 4x4-block density correlation {correlation:.3f}"
        )
    return float(np.median(current))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--images", type=int, default=300, help="images per img/s figure (default 300)")
    parser.add_argument(
        "--rounds", type=int, default=5, help="alternating previous/current rounds (default 5)"
    )
    parser.add_argument(
        "--renderer-only", action="store_true", help="only the renderer figures (section 1-2)"
    )
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
    current = report_renderer(systems, args.images, args.rounds)
    if args.renderer_only:
        return
    base = images_per_second(baseline_render, systems, paper, max(20, args.images // 4))
    print(
        f"baseline numba, paper         : {base:8.1f} img/s per core   current / baseline = {current / base:.2f}x"
    )
    torch_rate = torch_images_per_second(systems, paper, batch=16, rounds=2)
    print(
        f"torch CPU (1 thread), paper   : {torch_rate:8.1f} img/s   "
        f"numba / torch = {current / torch_rate:.1f}x"
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
