"""Is the fractal input pipeline the bottleneck? Training img/s with on-the-fly fractals vs one fixed batch.

Runs the real training step (fractalad.pretrain.train.train_step) of a preset in one process. The two inputs
alternate in short blocks (fixed in-memory batch, then on-the-fly fractals from DataLoader workers), so
load drift on a shared machine hits both alike. Prints images/s of each and the ratio on-the-fly / fixed
(overall and the median over rounds); >= 0.9 means rendering keeps up with training.

    python benchmarks/pretrain_input.py --preset tiny --rounds 8 --steps 5
    python benchmarks/pretrain_input.py --preset tiny workers=2 threads=1
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from fractalad.pretrain import resolve_config
from fractalad.pretrain.distributed import init_distributed
from fractalad.pretrain.train import Run, epoch_batches, setup_run, train_step

Batch = tuple[torch.Tensor, torch.Tensor]


def measure(run: Run, next_micro: Callable[[], Batch], steps: int, warmup: int) -> float:
    """Training images/s over `steps` optimiser steps after `warmup` untimed ones."""
    accumulation = run.config.accumulation_steps
    for _ in range(warmup):
        train_step(run, [next_micro() for _ in range(accumulation)])
    if run.context.device.type == "cuda":
        torch.cuda.synchronize()
    start, images = time.perf_counter(), 0
    for _ in range(steps):
        images += train_step(run, [next_micro() for _ in range(accumulation)])[2]
    if run.context.device.type == "cuda":
        torch.cuda.synchronize()
    return images / (time.perf_counter() - start)


def harmonic_mean(rates: Sequence[float]) -> float:
    """Total images over total time, when every block ran the same number of images."""
    return len(rates) / sum(1 / r for r in rates)


def endless(run: Run) -> Callable[[], Batch]:
    """Micro-batches of epoch 0, 1, ... back to back (workers persist across epochs)."""
    state = {"epoch": 0, "it": epoch_batches(run, 0)}

    def next_micro() -> Batch:
        try:
            return next(state["it"])
        except StopIteration:
            state["epoch"] += 1
            state["it"] = epoch_batches(run, state["epoch"])
            return next(state["it"])

    return next_micro


def main(argv: Sequence[str] | None = None) -> float:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--rounds", type=int, default=8, help="alternating fixed / on-the-fly blocks")
    parser.add_argument("--steps", type=int, default=5, help="timed optimiser steps per block")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps before each block")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="PretrainConfig overrides")
    args = parser.parse_args(argv)
    config = resolve_config(args.preset, None, args.overrides)
    if config.threads:
        torch.set_num_threads(config.threads)
    rates: dict[str, list[float]] = {"fixed": [], "live": []}
    with tempfile.TemporaryDirectory() as folder:
        run, _ = setup_run(config, Path(folder), init_distributed(config.device), resume=False, dataset=None)
        stream = endless(run)
        fixed_batch = stream()
        for _ in range(args.rounds):
            rates["fixed"].append(measure(run, lambda: fixed_batch, args.steps, args.warmup))
            rates["live"].append(measure(run, stream, args.steps, args.warmup))
    fixed, live = harmonic_mean(rates["fixed"]), harmonic_mean(rates["live"])
    per_round = sorted(b / a for a, b in zip(rates["fixed"], rates["live"]))
    print(
        f"preset {config.preset}: {config.arch} at {config.image_size} px, "
        f"micro-batch {run.layout.micro_batch}, "
        f"workers={config.workers}, threads={torch.get_num_threads()}, device={run.context.device}, "
        f"{args.rounds} rounds x {args.steps} steps"
    )
    print(
        f"fixed batch        {fixed:8.1f} img/s  "
        f"(per block {min(rates['fixed']):.1f} .. {max(rates['fixed']):.1f})"
    )
    print(
        f"on-the-fly fractal {live:8.1f} img/s  "
        f"(per block {min(rates['live']):.1f} .. {max(rates['live']):.1f})"
    )
    print(
        f"ratio on-the-fly / fixed = {live / fixed:.3f} "
        f"(median over rounds {per_round[len(per_round) // 2]:.3f})"
    )
    return live / fixed


if __name__ == "__main__":
    main()
