"""GPU pre-training throughput: resnet18 at 224 px, on-device rendering vs CPU workers vs a fixed batch.

Uses the real training step (bf16 autocast, channels_last, SGD) of the paper-resnet18 preset. Input modes:
  fixed   one in-memory batch reused (upper bound: the GPU's training speed)
  device  DeviceFractalBatches renders every batch on the GPU (fractalad.fractals.torch_render)
  workers FractalDataset rendered by DataLoader worker processes on the CPU
Prints img/s per mode and the ratios to `fixed`. On a CPU (`--device cpu`) it runs a smoke version
(batch 8, 32 px, few points) so that tests can exercise it.

    python benchmarks/gpu_pretrain.py --steps 30 --batch-size 256 --workers 14
    python benchmarks/gpu_pretrain.py --device cpu --steps 2
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch
from pretrain_input import endless, measure  # noqa: E402  (sibling script)

from fractalad.pretrain import resolve_config
from fractalad.pretrain.config import PretrainConfig
from fractalad.pretrain.distributed import init_distributed
from fractalad.pretrain.train import setup_run

MODES: tuple[str, ...] = ("fixed", "device", "workers")


def make_config(args: argparse.Namespace, mode: str) -> PretrainConfig:
    """paper-resnet18 with this benchmark's device, batch and input mode (CPU: smoke sizes)."""
    cpu = args.device == "cpu"
    overrides = [
        f"device={args.device}",
        f"batch_size={8 if cpu else args.batch_size}",
        f"workers={args.workers}",
        f"device_render={'true' if mode == 'device' else 'false'}",
        f"compile={'true' if args.compile else 'false'}",
        "num_classes=100",
        "num_systems=1000" if not cpu else "num_systems=100",
        "samples_per_class=100",
    ]
    if cpu:
        overrides += [
            "render_size=36",
            "crop=32",
            "render_points=2000",
            "amp=false",
            "channels_last=false",
            "threads=1",
        ]
    return resolve_config("paper-resnet18", None, [*overrides, *args.overrides])


def run_mode(args: argparse.Namespace, mode: str) -> float:
    """Training images/s of one input mode."""
    config = make_config(args, mode)
    with tempfile.TemporaryDirectory() as folder:
        run, _ = setup_run(config, Path(folder), init_distributed(config.device), resume=False, dataset=None)
        stream = endless(run)
        if mode == "fixed":
            batch = stream()
            return measure(run, lambda: batch, args.steps, args.warmup)
        return measure(run, stream, args.steps, args.warmup)


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu for a smoke run")
    parser.add_argument("--steps", type=int, default=30, help="timed optimiser steps per mode")
    parser.add_argument(
        "--warmup", type=int, default=5, help="untimed steps per mode (compilation, cudnn autotune)"
    )
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=14, help="DataLoader workers for the 'workers' mode")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model")
    parser.add_argument(
        "--modes", default=",".join(MODES), help="comma-separated subset of " + ",".join(MODES)
    )
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="PretrainConfig overrides")
    args = parser.parse_args(argv)
    if args.device == "cpu":
        args.workers = min(args.workers, 1)
    results = {mode: run_mode(args, mode) for mode in args.modes.split(",")}
    name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu (smoke sizes)"
    print(f"device: {name}; resnet18, {args.steps} timed steps per mode")
    for mode, rate in results.items():
        ratio = f"  ({rate / results['fixed']:.2f} x fixed)" if "fixed" in results else ""
        print(f"{mode:8s} {rate:9.1f} img/s{ratio}")
    if args.json:
        args.json.write_text(
            json.dumps({"hardware": name, "steps": args.steps, "img_per_s": results}, indent=2)
        )
    return results


if __name__ == "__main__":
    main()
