"""CutPaste / PANDA speed on CPU: seconds per training step and predict images/s, resnet18 vs wide_resnet50_2.

Seconds per step are the difference of two fits that differ only in their number of optimiser steps (CutPaste:
steps_per_epoch 1 vs 5; PANDA: one batch per epoch, epochs 1 vs 2), so backbone building and density/k-NN fitting
cancel out. Each is printed next to a reference measured in the same process right after it: one plain
torchvision forward+backward+SGD step of the same architecture on the same number of images (CutPaste 3-way:
3 x batch images at `size`; PANDA: batch images at its 224 crop, whole network), and a plain no-grad forward
of that input for predict. The ratio (ours / reference) is what a loaded machine cannot distort much. `--disk` also times decoding
one step's originals from the synthetic dataset's PNG files, the cost each CutPaste step paid before training
images were decoded once and cycled from memory. `--compare-wait-policy` runs the resnet18 rows in child processes
under OMP_WAIT_POLICY=ACTIVE and PASSIVE, alternating (the policy is fixed when OpenMP starts, so it needs a
process each; this script defaults to PASSIVE). `--grid` writes a PNG of original / CutPaste / scar views.

    PYTHONPATH=src .venv/bin/python benchmarks/detectors_finetune.py --size 256 --batch 4 --predict-images 2 --disk
    PYTHONPATH=src .venv/bin/python benchmarks/detectors_finetune.py --quick           # 128 px, batch 4
    PYTHONPATH=src .venv/bin/python benchmarks/detectors_finetune.py --grid-only --grid /tmp/views.png
"""

from __future__ import annotations

import os

# OpenMP threads that spin while waiting steal the CPU from each other and from other processes on a shared,
# loaded machine (a 10-20x slow-down measured on 2 cores at load ~9); it must be set before torch loads OpenMP.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torchvision
from torch.nn import functional as F
from torchvision.utils import make_grid

from fractalad.detectors import create_detector
from fractalad.detectors.components.augment import cutpaste, cutpaste_scar
from fractalad.files import atomic_path

ARCHS: tuple[str, ...] = ("resnet18", "wide_resnet50_2")
PANDA_CROP = 224


def timed_fit(method: str, images: torch.Tensor, params: dict[str, Any]) -> tuple[float, Any]:
    detector = create_detector(method, weights="random", normalization="imagenet", seed=0, **params)
    start = time.perf_counter()
    detector.fit(images, device="cpu")
    return time.perf_counter() - start, detector


def step_seconds(method: str, arch: str, images: torch.Tensor, batch: int) -> tuple[float, Any]:
    """(seconds per optimiser step, the longer fit's detector)."""
    if method == "cutpaste":
        short, long = ({"steps_per_epoch": n, "epochs": 1} for n in (1, 5))
        steps = 4
    else:
        short, long = ({"epochs": n} for n in (1, 2))
        steps = 1
    common = {"backbone": arch, "batch_size": batch}
    first, _ = timed_fit(method, images, {**common, **short})
    second, detector = timed_fit(method, images, {**common, **long})
    return (second - first) / steps, detector


def reference_step_seconds(arch: str, count: int, size: int, repeats: int = 2) -> float:
    """Fastest of `repeats` plain torchvision train steps (forward, cross-entropy, backward, SGD) on count images."""
    model = torchvision.models.get_model(arch, weights=None, num_classes=3).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    images, labels = torch.rand(count, 3, size, size), torch.arange(count) % 3
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        optimizer.zero_grad()
        F.cross_entropy(model(images), labels).backward()
        optimizer.step()
        best = min(best, time.perf_counter() - start)
    return best


@torch.no_grad()
def reference_images_per_second(arch: str, count: int, size: int) -> float:
    model = torchvision.models.get_model(arch, weights=None).eval()
    images = torch.rand(count, 3, size, size)
    model(images[:1])  # warm-up
    start = time.perf_counter()
    model(images)
    return count / (time.perf_counter() - start)


def images_per_second(detector: Any, images: torch.Tensor) -> float:
    detector.predict(images[:1])  # warm-up
    start = time.perf_counter()
    detector.predict(images)
    return images.shape[0] / (time.perf_counter() - start)


def disk_decode_seconds(root: Path | None, size: int, batch: int) -> float:
    """Seconds to decode and resize `batch` synthetic training images from their PNG files (one step's originals)."""
    from fractalad.data import load_category
    from fractalad.data.images import AnomalyImageDataset

    dataset = AnomalyImageDataset(load_category("synthetic", root, "wood").train, size)
    start = time.perf_counter()
    for index in range(batch):
        dataset[index % len(dataset)]
    return time.perf_counter() - start


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


def compare_wait_policies(arguments: list[str]) -> None:
    """The resnet18 rows in child processes, ACTIVE / PASSIVE / ACTIVE / PASSIVE, so load drifts hit both."""
    for policy in ("ACTIVE", "PASSIVE") * 2:
        command = [sys.executable, __file__, *arguments, "--archs", "resnet18"]
        child = subprocess.run(command, env={**os.environ, "OMP_WAIT_POLICY": policy},
                               capture_output=True, text=True, check=True)
        print(f"OMP_WAIT_POLICY={policy}\n{child.stdout}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="128 px, 4 originals per batch")
    parser.add_argument("--size", type=int, default=None, help="image size (default 256; --quick 128)")
    parser.add_argument("--batch", type=int, default=None, help="originals per step (default 32; --quick 4)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--predict-images", type=int, default=4, help="images per timed predict call")
    parser.add_argument("--archs", nargs="+", default=list(ARCHS), help="architectures (default both)")
    parser.add_argument("--disk", action="store_true", help="also time one step's PNG decoding (synthetic wood)")
    parser.add_argument("--grid", type=Path, default=None, help="also write a PNG grid of augmented views")
    parser.add_argument("--grid-size", type=int, default=256, help="grid image size (default 256)")
    parser.add_argument("--synthetic-root", type=Path, default=None, help="synthetic dataset root (default: cache)")
    parser.add_argument("--grid-only", action="store_true", help="only write the --grid PNG")
    parser.add_argument("--compare-wait-policy", action="store_true",
                        help="run the resnet18 rows under OMP_WAIT_POLICY=ACTIVE and PASSIVE, twice each, alternating")
    args = parser.parse_args()
    if args.compare_wait_policy:
        compare_wait_policies([a for a in sys.argv[1:] if a != "--compare-wait-policy"])
        return
    if args.grid is not None:
        write_grid(args.grid, args.synthetic_root, args.grid_size, 9)
    if args.grid_only:
        return
    torch.set_num_threads(args.threads)
    size = args.size or (128 if args.quick else 256)
    batch = args.batch or (4 if args.quick else 32)
    images = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(0))
    print(f"{size} px, {batch} originals per step (CutPaste 3-way: {3 * batch} images), {args.threads} threads")
    print("method    backbone          s/step  ref s/step  ratio   predict img/s  ref img/s  ratio")
    for arch in args.archs:
        for method in ("cutpaste", "panda"):
            seconds, detector = step_seconds(method, arch, images, batch)
            count, step_size = (3 * batch, size) if method == "cutpaste" else (batch, PANDA_CROP)
            reference = reference_step_seconds(arch, count, step_size)
            rate = images_per_second(detector, images[: args.predict_images])
            reference_rate = reference_images_per_second(arch, args.predict_images, step_size)
            print(f"{method:9s} {arch:16s} {seconds:7.2f} {reference:10.2f} {seconds / reference:6.2f}"
                  f"  {rate:13.2f} {reference_rate:10.2f} {rate / reference_rate:6.2f}", flush=True)
            if args.disk and method == "cutpaste":
                decode = disk_decode_seconds(args.synthetic_root, size, batch)
                print(f"  decoding {batch} originals from PNG: {decode:.3f} s per step before the in-memory cycle"
                      f" ({decode / seconds:.1%} of this CPU step); now once per fit", flush=True)


if __name__ == "__main__":
    main()
