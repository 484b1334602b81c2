"""Training images/s of several pre-training recipes, measured alternately in one process, as ratios.

Each recipe (`LABEL=PRESET[:key=value...]`, as in pretrain_quality.py) gets its own run folder and the real
training step (fractalad.pretrain.train.train_step) on its own on-the-fly fractals. The recipes take turns in
short blocks, so load drift on a shared machine hits all of them alike; the figure to read is each recipe's
images/s over the first recipe's (harmonic means over the rounds, and the median of the per-round ratios).

    python benchmarks/pretrain_recipes_speed.py tiny80k=tiny80k c48=tiny80k:crop=48:render_size=54 \
        l3=tiny80k:head_stage=3 tiny80k-l3=tiny80k-l3
"""

from __future__ import annotations

import argparse
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch
from pretrain_input import endless, harmonic_mean, measure
from pretrain_quality import parse_recipe

from fractalad.pretrain.distributed import init_distributed
from fractalad.pretrain.train import setup_run


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("recipes", nargs="+", help="LABEL=PRESET[:key=value...]; the first is the reference")
    parser.add_argument("--rounds", type=int, default=6, help="blocks per recipe, taken in turn")
    parser.add_argument("--steps", type=int, default=5, help="timed optimiser steps per block")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps before each block")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--images",
        type=int,
        default=80_000,
        help="budget that sets the recipes' epochs (the LR schedule only)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    recipes = [parse_recipe(spec, args.images, seed=0) for spec in args.recipes]
    rates: dict[str, list[float]] = {r.label: [] for r in recipes}
    with tempfile.TemporaryDirectory() as folder:
        runs = {
            r.label: setup_run(
                r.config,
                Path(folder) / r.label,
                init_distributed(r.config.device),
                resume=False,
                dataset=None,
            )[0]
            for r in recipes
        }
        streams = {label: endless(run) for label, run in runs.items()}
        for _ in range(args.rounds):
            for label, run in runs.items():
                rates[label].append(measure(run, streams[label], args.steps, args.warmup))
    reference = recipes[0].label
    means = {label: harmonic_mean(r) for label, r in rates.items()}
    print(f"{args.rounds} rounds x {args.steps} steps, threads={torch.get_num_threads()}")
    print("| recipe | crop | head stage | img/s | vs " + reference + " | median per round |")
    print("|---|---|---|---|---|---|")
    for recipe in recipes:
        label = recipe.label
        per_round = sorted(b / a for a, b in zip(rates[reference], rates[label]))
        print(
            f"| {label} | {recipe.config.crop} | {recipe.config.head_stage} | {means[label]:.0f} | "
            f"{means[label] / means[reference]:.2f}x | {per_round[len(per_round) // 2]:.2f}x |"
        )
    return {label: means[label] / means[reference] for label in means}


if __name__ == "__main__":
    main()
