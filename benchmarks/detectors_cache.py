"""Trained detectors with the frozen-feature cache: seconds per epoch and predict speed, ours vs Anomalib 2.7.0.

All in one process, per method the sides alternating (Anomalib, ours cached, optionally ours with the cache off;
`--rounds` rounds, order reversed every other round, the best of each side kept), on the same images, the same
random-seeded resnet18 weights and untrained networks (FastFlow, RD, STFPM), batch size, epochs and batches:
- ours: `fit_info_["epoch_seconds"]` per epoch, and the first epoch also counted with the one pass that fills the
  cache (`feature_cache_seconds`); Anomalib: its torch model trained as its `training_step` does (no Lightning),
  timed per epoch;
- predict: images/s over the test images, best of two passes.
"steady" is the mean over epochs 2.. (the cached epochs); "first" is epoch 1 (plus the cache fill for ours).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/detectors_cache.py             # resnet18, 256 px, 3 epochs
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/detectors_cache.py --quick     # 64 px smoke run
"""

from __future__ import annotations

import argparse
import json
import math
import time
from typing import Any

import torch

METHODS = ("fastflow", "cflow", "reverse_distillation", "stfpm")
CFLOW = {
    "condition_dim": 128,
    "coupling_blocks": 8,
    "clamp": 1.9,
    "fiber_batch_size": 256,
}


def cflow_settings(size: int, permute_soft: bool) -> dict[str, Any]:
    """C-Flow's settings on both sides; small smoke-run images have too few layer4 vectors for 256 a batch."""
    fibres = CFLOW["fiber_batch_size"] if size >= 256 else 16
    return {**CFLOW, "fiber_batch_size": fibres, "permute_soft": permute_soft}


def texture(n: int, size: int, seed: int) -> torch.Tensor:
    """(n, 3, size, size) in [0, 1]: stripes with a random phase plus noise (content does not matter here)."""
    generator = torch.Generator().manual_seed(seed)
    coords = torch.arange(size, dtype=torch.float32)
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    phase = torch.rand(n, 1, 1, 1, generator=generator) * 2 * math.pi
    stripes = 0.5 + 0.25 * torch.sin((xx + yy) * 2 * math.pi / 10 + phase)
    return (stripes + 0.04 * torch.randn(n, 3, size, size, generator=generator)).clamp(0, 1)


def our_params(method: str, size: int, epochs: int, batch: int, permute_soft: bool) -> dict[str, Any]:
    """Hyper-parameters of our side; the Anomalib side is built to match them."""
    common = {"backbone": "resnet18", "weights": "random", "normalization": "imagenet", "batch_size": batch}
    if method == "fastflow":
        return {**common, "input_size": size, "epochs": epochs}
    if method == "cflow":
        return {**common, "epochs": epochs, "sub_epochs": 1, "lr_warmup_epochs": 0,
                **cflow_settings(size, permute_soft)}  # fmt: skip
    return {**common, "epochs": epochs}


def best_rate(predict: Any, test: list[torch.Tensor]) -> float:
    """Images per second of `predict` over the test batches, best of two passes."""
    best = math.inf
    for _ in range(2):
        start = time.perf_counter()
        for batch in test:
            predict(batch)
        best = min(best, time.perf_counter() - start)
    return sum(len(b) for b in test) / best


def run_ours(
    method: str, params: dict[str, Any], train: Any, test: list[torch.Tensor], precision: str = "fp32"
) -> dict[str, Any]:
    from fractalad.detectors import create_detector

    detector = create_detector(method, **params).fit(train, device="cpu", precision=precision)
    info = detector.fit_info_
    seconds = info.get("epoch_seconds", [])
    fill = float(info.get("feature_cache_seconds", 0.0))
    return {
        "first": seconds[0] + fill,
        "steady": sum(seconds[1:]) / max(1, len(seconds) - 1),
        "cache": info.get("feature_cache", ""),
        "precision": info.get("precision", ""),
        "predict": best_rate(detector.predict, test),
        "detector": detector,
    }  # fmt: skip


def run_anomalib(method: str, ours: Any, train: Any, test: list[torch.Tensor]) -> dict[str, Any]:
    """Anomalib's model of `method`, from the weights and untrained networks of the unfitted detector `ours`."""
    from fractalad.backbones import IMAGENET_NORMALIZATION
    from fractalad.parity import distill, flows

    params, normalization = ours.get_params(), IMAGENET_NORMALIZATION
    state = {k[len("body.") :]: v for k, v in ours.extractor_.state_dict().items() if k.startswith("body.")}
    if method in ("fastflow", "cflow"):
        if method == "fastflow":
            model = flows.build_fastflow("resnet18", state, params["input_size"], 8, True, 1.0, seed=0)
            flows.start_from_ours(model, ours.norms_, ours.flows_)
            lr, decay = params["lr"], params["weight_decay"]
        else:
            model = flows.build_cflow(
                "resnet18", (2, 3, 4), state, seed=0,
                **cflow_settings(int(test[0].shape[-1]), params["permute_soft"]),
            )  # fmt: skip
            lr, decay = params["lr"], 0.0
        seconds = flows.train(
            method, model, train, normalization, epochs=params["epochs"], batch_size=params["batch_size"],
            lr=lr, weight_decay=decay, seed=0,
        )  # fmt: skip

        def predict(batch: torch.Tensor) -> Any:
            return flows.predict(model, [batch], normalization)
    else:
        fresh = type(ours)(**params)
        fresh._setup("cpu")  # the untrained networks our fit started from
        size = int(test[0].shape[-1])
        model = (
            distill.build_stfpm(fresh)
            if method == "stfpm"
            else distill.build_reverse_distillation(fresh, size)
        )
        seconds = distill.train_anomalib(
            model, distill.anomalib_optimizer(model), train, epochs=params["epochs"],
            batch_size=params["batch_size"], seed=params["seed"], normalization=normalization,
        )  # fmt: skip

        def predict(batch: torch.Tensor) -> Any:
            return distill.predict_anomalib(model, [batch], normalization)

    return {
        "first": seconds[0],
        "steady": sum(seconds[1:]) / max(1, len(seconds) - 1),
        "predict": best_rate(predict, test),
    }


def time_method(
    method: str, params: dict[str, Any], train: Any, test: list[torch.Tensor], args: argparse.Namespace
) -> dict[str, dict[str, Any]]:
    """Per side the best (lowest) first / steady epoch and the best predict rate over `args.rounds` rounds.

    The sides alternate within a round and swap order between rounds, so a burst of load from other processes
    on the shared machine is unlikely to hit the same side every time; the minimum discards such bursts.
    """
    from fractalad.detectors.components import feature_cache

    runs: dict[str, list[dict[str, Any]]] = {}
    fraction = feature_cache.CACHE_MEMORY_FRACTION
    for round_index in range(args.rounds):
        sides = ["Anomalib", "ours", *(["ours, cache off"] if args.uncached else [])]
        for side in sides if round_index % 2 == 0 else sides[::-1]:
            feature_cache.CACHE_MEMORY_FRACTION = 0.0 if side == "ours, cache off" else fraction
            if side == "Anomalib":
                reference = create_unfitted(method, params)
                result = run_anomalib(method, reference, train, test)
            else:
                result = run_ours(method, params, train, test)
                result.pop("detector")
            runs.setdefault(side, []).append(result)
    feature_cache.CACHE_MEMORY_FRACTION = fraction
    return {
        side: {
            "first": min(r["first"] for r in results),
            "steady": min(r["steady"] for r in results),
            "predict": max(r["predict"] for r in results),
            "cache": results[0].get("cache", ""),
        }
        for side, results in runs.items()
    }


def step_functions(method: str, ours: Any, images: torch.Tensor) -> tuple[Any, Any]:
    """(our training step on cached features of `images`, Anomalib's training step on `images`), each one batch."""
    from fractalad.backbones import IMAGENET_NORMALIZATION
    from fractalad.detectors.components.feature_cache import FeatureBatch, frozen_features
    from fractalad.detectors.components.training import build_optimizer
    from fractalad.parity import distill, flows

    batch = FeatureBatch(frozen_features(ours.extractor_, images, ours.device_), images)
    normalised = flows.normalise(images, IMAGENET_NORMALIZATION)
    params = ours.get_params()
    state = {k[len("body.") :]: v for k, v in ours.extractor_.state_dict().items() if k.startswith("body.")}
    if method == "fastflow":
        model = flows.build_fastflow("resnet18", state, params["input_size"], 8, True, 1.0, seed=0)
        mine = [*ours.norms_.parameters(), *ours.flows_.parameters()]
        losses = (lambda: [ours.loss(batch)], lambda: [flows.fastflow_loss(model, normalised)])
    elif method == "cflow":
        settings = cflow_settings(images.shape[-1], params["permute_soft"])
        model = flows.build_cflow("resnet18", (2, 3, 4), state, seed=0, **settings)
        generator = torch.Generator().manual_seed(0)
        mine = ours.flows_.parameters()
        losses = (lambda: ours.fibre_losses(batch, generator), None)
    else:
        size = int(images.shape[-1])
        model = (
            distill.build_stfpm(ours) if method == "stfpm" else distill.build_reverse_distillation(ours, size)
        )
        mine = ours.student_.parameters() if method == "stfpm" else [
            *ours.bottleneck_.parameters(), *ours.decoder_.parameters()]  # fmt: skip
        loss_fn = distill._anomalib_loss(model)
        losses = (lambda: [ours._loss(batch)], lambda: [loss_fn(*model(normalised))])
    # A step's cost does not depend on the learning rate; each side uses its own kind of optimiser.
    our_optimizer = build_optimizer("sgd" if method == "stfpm" else "adam", mine, 1e-4)
    their_optimizer = (
        distill.anomalib_optimizer(model)
        if method in ("reverse_distillation", "stfpm")
        else torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    )
    for module in (
        model,
        *[m for m in (getattr(ours, n, None) for n in ours.fitted) if isinstance(m, torch.nn.Module)],
    ):
        module.train()
    ours.extractor_.eval()

    def run(make_losses: Any, optimizer: torch.optim.Optimizer) -> None:
        for loss in make_losses():
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    def anomalib_step() -> None:
        if method == "cflow":
            flows.cflow_steps(model, normalised, their_optimizer)
        else:
            run(losses[1], their_optimizer)

    return (lambda: run(losses[0], our_optimizer)), anomalib_step


def interleaved_steps(
    method: str, params: dict[str, Any], images: torch.Tensor, rounds: int
) -> tuple[float, float]:
    """Median seconds of one training step (one batch), ours on cached features vs Anomalib's, alternating."""
    import statistics

    ours, theirs = step_functions(method, create_unfitted(method, params), images)
    times: dict[str, list[float]] = {"ours": [], "anomalib": []}
    for _ in range(rounds):
        for name, step in (("ours", ours), ("anomalib", theirs)):
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    return statistics.median(times["ours"]), statistics.median(times["anomalib"])


def permutation_steps(
    method: str, params: dict[str, Any], images: torch.Tensor, rounds: int
) -> tuple[float, float]:
    """Median seconds of our training step with the flows' permutations indexed vs FrEIA's dense matrices.

    The blocks' `indexed` flag is toggled between steps (alternating), so both variants see the same load.
    """
    import statistics

    from fractalad.detectors.components.flows import IndexPermutedBlock

    ours = create_unfitted(method, params)
    step, _ = step_functions(method, ours, images)
    blocks = [m for m in ours.flows_.modules() if isinstance(m, IndexPermutedBlock) and m.indexed]
    if not blocks:
        raise SystemExit(f"{method} has no hard-permutation blocks (C-Flow: pass --cflow-permutation hard)")
    times: dict[bool, list[float]] = {True: [], False: []}
    step()  # warm-up
    for _ in range(rounds):
        for indexed in (True, False):
            for block in blocks:
                block.indexed = indexed
            start = time.perf_counter()
            step()
            times[indexed].append(time.perf_counter() - start)
    return statistics.median(times[True]), statistics.median(times[False])


def create_unfitted(method: str, params: dict[str, Any]) -> Any:
    """Our detector set up (backbone and untrained networks built) but not trained: Anomalib's starting point."""
    from fractalad.detectors import create_detector

    detector = create_detector(method, **params)
    detector._setup("cpu")
    return detector


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--n-train", type=int, default=16)
    parser.add_argument("--n-test", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds per method (best is kept)")
    parser.add_argument("--step-rounds", type=int, default=0, help="also time single steps, alternating")
    parser.add_argument("--epoch-timing", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--uncached", action="store_true", help="also time ours with the cache switched off")
    parser.add_argument("--cflow-permutation", choices=("soft", "hard"), default="soft",
                        help="C-Flow's fixed permutations: soft (rotations, the recipe) or hard")  # fmt: skip
    parser.add_argument("--permutation-rounds", type=int, default=0,
                        help="also time our flow step, permutations indexed vs dense, alternating")  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="64 px, 8 training images, 2 epochs")
    args = parser.parse_args()
    if args.quick:
        args.size, args.n_train, args.epochs = 64, 8, 2
    from fractalad.detectors.base import TrainSet

    train_images = texture(args.n_train, args.size, seed=1)
    train = TrainSet.from_tensor(train_images)
    test = list(texture(args.n_test, args.size, seed=2).split(args.batch))
    print(f"threads {torch.get_num_threads()}, {args.size} px, {args.n_train} train images, batch {args.batch}, "
          f"{args.epochs} epochs")  # fmt: skip
    print("| method | side | first epoch s | steady epoch s | predict img/s | ours/Anomalib first | "
          "ours/Anomalib steady | ours/Anomalib predict speed | cache |")  # fmt: skip
    print("|---" * 9 + "|")
    soft = args.cflow_permutation == "soft"
    for method in args.methods if args.epoch_timing else ():
        params = our_params(method, args.size, args.epochs, args.batch, soft)
        rows = time_method(method, params, train, test, args)
        theirs = rows["Anomalib"]
        for side, r in rows.items():
            ratios = "| | |"
            if side != "Anomalib":
                ratios = (f"{r['first'] / theirs['first']:.3f} | {r['steady'] / theirs['steady']:.3f} | "
                          f"{r['predict'] / theirs['predict']:.3f}")  # fmt: skip
            print(f"| {method} | {side} | {r['first']:.2f} | {r['steady']:.2f} | {r['predict']:.2f} | {ratios} | "
                  f"{r.get('cache', '')} |", flush=True)  # fmt: skip
    if args.step_rounds:
        print(f"\nOne training step on a batch of {args.batch}, alternating, median of {args.step_rounds}:")
        for method in args.methods:
            params = our_params(method, args.size, args.epochs, args.batch, soft)
            mine, theirs = interleaved_steps(method, params, train_images[: args.batch], args.step_rounds)
            print(f"{method}: ours (cached features) {mine:.3f} s, Anomalib {theirs:.3f} s, ratio {mine / theirs:.3f}",
                  flush=True)  # fmt: skip
    for method in [m for m in args.methods if m in ("fastflow", "cflow")] if args.permutation_rounds else ():
        params = our_params(method, args.size, args.epochs, args.batch, soft)
        indexed, dense = permutation_steps(method, params, train_images[: args.batch], args.permutation_rounds)
        print(f"{method}: our step, permutations indexed {indexed:.3f} s, dense {dense:.3f} s, "
              f"ratio {indexed / dense:.3f}", flush=True)  # fmt: skip
    print(json.dumps({"load_average": list(__import__("os").getloadavg())}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
