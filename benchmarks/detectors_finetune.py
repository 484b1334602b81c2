"""CutPaste / PANDA speed on CPU: seconds per training step and predict images/s, resnet18 vs wide_resnet50_2.

Seconds per step are the difference of two fits that differ only in their number of optimiser steps (CutPaste:
steps_per_epoch 1 vs 3; PANDA: one batch per epoch, epochs 1 vs 2), so backbone building and density/k-NN fitting
cancel out. Everything runs in one process, interleaved, so the printed ratios compare like with like. `--grid`
also writes a PNG of original / CutPaste / scar views of synthetic training images.

    PYTHONPATH=src .venv/bin/python benchmarks/detectors_finetune.py                   # 256 px, batch 32
    PYTHONPATH=src .venv/bin/python benchmarks/detectors_finetune.py --quick           # 128 px, batch 4
    PYTHONPATH=src .venv/bin/python benchmarks/detectors_finetune.py --grid-only --grid /tmp/views.png
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import torch
from torchvision.utils import make_grid

from fractalad.detectors import create_detector
from fractalad.detectors.components.augment import cutpaste, cutpaste_scar
from fractalad.files import atomic_path

ARCHS: tuple[str, ...] = ("resnet18", "wide_resnet50_2")


def timed_fit(method: str, images: torch.Tensor, params: dict[str, Any]) -> tuple[float, Any]:
    detector = create_detector(method, weights="random", normalization="imagenet", seed=0, **params)
    start = time.perf_counter()
    detector.fit(images, device="cpu")
    return time.perf_counter() - start, detector


def step_seconds(method: str, arch: str, images: torch.Tensor, batch: int) -> tuple[float, Any]:
    """(seconds per optimiser step, the longer fit's detector)."""
    if method == "cutpaste":
        short, long = ({"steps_per_epoch": n, "epochs": 1} for n in (1, 3))
        steps = 2
    else:
        short, long = ({"epochs": n} for n in (1, 2))
        steps = 1
    common = {"backbone": arch, "batch_size": batch}
    first, _ = timed_fit(method, images, {**common, **short})
    second, detector = timed_fit(method, images, {**common, **long})
    return (second - first) / steps, detector


def images_per_second(detector: Any, images: torch.Tensor) -> float:
    detector.predict(images[:1])  # warm-up
    start = time.perf_counter()
    detector.predict(images)
    return images.shape[0] / (time.perf_counter() - start)


def write_grid(path: Path, root: Path | None, size: int, count: int) -> None:
    """Rows: originals, their CutPaste views, their scar views (synthetic training images)."""
    from fractalad.data import load_category
    from fractalad.data.images import load_images

    samples = []
    for name in ("wood", "tile", "nut"):
        samples += load_category("synthetic", root, name).train[: max(1, count // 3 + 1)]
    originals = load_images(samples[:count], size)
    generator = torch.Generator().manual_seed(0)
    rows = [originals]
    for augment in (cutpaste, cutpaste_scar):
        rows.append(torch.stack([augment(image, generator)[0] for image in originals]))
    grid = make_grid(torch.cat(rows), nrow=originals.shape[0], padding=2, pad_value=1.0)
    from PIL import Image

    pixels = (grid.permute(1, 2, 0).clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    with atomic_path(path) as tmp:
        Image.fromarray(pixels).save(tmp, format="PNG")
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="128 px, 4 originals per batch")
    parser.add_argument("--size", type=int, default=None, help="image size (default 256; --quick 128)")
    parser.add_argument("--batch", type=int, default=None, help="originals per step (default 32; --quick 4)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--predict-images", type=int, default=4, help="images per timed predict call")
    parser.add_argument("--grid", type=Path, default=None, help="also write a PNG grid of augmented views")
    parser.add_argument("--grid-size", type=int, default=256, help="grid image size (default 256)")
    parser.add_argument("--synthetic-root", type=Path, default=None, help="synthetic dataset root (default: cache)")
    parser.add_argument("--grid-only", action="store_true", help="only write the --grid PNG")
    args = parser.parse_args()
    if args.grid is not None:
        write_grid(args.grid, args.synthetic_root, args.grid_size, 9)
    if args.grid_only:
        return
    torch.set_num_threads(args.threads)
    size = args.size or (128 if args.quick else 256)
    batch = args.batch or (4 if args.quick else 32)
    images = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(0))
    rows: dict[tuple[str, str], tuple[float, float]] = {}
    for arch in ARCHS:
        for method in ("cutpaste", "panda"):
            seconds, detector = step_seconds(method, arch, images, batch)
            rate = images_per_second(detector, images[: args.predict_images])
            rows[(method, arch)] = (seconds, rate)
            print(f"{method:9s} {arch:16s} {seconds:8.2f} s/step  {rate:8.2f} predict img/s", flush=True)
    print(f"\n{size} px, {batch} originals per step (CutPaste 3-way: {3 * batch} images), {args.threads} threads")
    for method in ("cutpaste", "panda"):
        (s18, r18), (s50, r50) = rows[(method, ARCHS[0])], rows[(method, ARCHS[1])]
        print(f"{method}: wide_resnet50_2 / resnet18 step time x{s50 / s18:.2f}, predict rate x{r50 / r18:.2f}")


if __name__ == "__main__":
    main()
