"""Trained detectors with the frozen-feature cache: seconds per epoch and predict speed, ours vs Anomalib 2.7.0.

All in one process, per method one side after the other (Anomalib, ours cached, optionally ours with the cache
off), on the same images, the same random-seeded resnet18 weights, batch size, epochs and shuffled batches:
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
    "permute_soft": True,
    "fiber_batch_size": 256,
}


def cflow_settings(size: int) -> dict[str, Any]:
    """C-Flow's settings on both sides; small smoke-run images have too few layer4 vectors for 256 a batch."""
    return {**CFLOW, "fiber_batch_size": CFLOW["fiber_batch_size"] if size >= 256 else 16}


def texture(n: int, size: int, seed: int) -> torch.Tensor:
    """(n, 3, size, size) in [0, 1]: stripes with a random phase plus noise (content does not matter here)."""
    generator = torch.Generator().manual_seed(seed)
    coords = torch.arange(size, dtype=torch.float32)
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    phase = torch.rand(n, 1, 1, 1, generator=generator) * 2 * math.pi
    stripes = 0.5 + 0.25 * torch.sin((xx + yy) * 2 * math.pi / 10 + phase)
    return (stripes + 0.04 * torch.randn(n, 3, size, size, generator=generator)).clamp(0, 1)


def our_params(method: str, size: int, epochs: int, batch: int) -> dict[str, Any]:
    """Hyper-parameters of our side; the Anomalib side is built to match them."""
    common = {"backbone": "resnet18", "weights": "random", "normalization": "imagenet", "batch_size": batch}
    if method == "fastflow":
        return {**common, "input_size": size, "epochs": epochs}
    if method == "cflow":
        return {**common, "epochs": epochs, "sub_epochs": 1, "lr_warmup_epochs": 0, **cflow_settings(size)}
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


def run_ours(method: str, params: dict[str, Any], train: Any, test: list[torch.Tensor]) -> dict[str, Any]:
    from fractalad.detectors import create_detector

    detector = create_detector(method, **params).fit(train, device="cpu")
    info = detector.fit_info_
    seconds = info.get("epoch_seconds", [])
    fill = float(info.get("feature_cache_seconds", 0.0))
    return {
        "first": seconds[0] + fill,
        "steady": sum(seconds[1:]) / max(1, len(seconds) - 1),
        "cache": info.get("feature_cache", ""),
        "predict": best_rate(detector.predict, test),
        "detector": detector,
    }


def run_anomalib(method: str, ours: Any, train: Any, test: list[torch.Tensor]) -> dict[str, Any]:
    """Anomalib's model of `method`, from the same weights (and for RD/STFPM the same initial networks)."""
    from fractalad.backbones import IMAGENET_NORMALIZATION
    from fractalad.parity import distill, flows

    params, normalization = ours.get_params(), IMAGENET_NORMALIZATION
    state = {k[len("body.") :]: v for k, v in ours.extractor_.state_dict().items() if k.startswith("body.")}
    if method in ("fastflow", "cflow"):
        if method == "fastflow":
            model = flows.build_fastflow("resnet18", state, params["input_size"], 8, True, 1.0, seed=0)
            lr, decay = params["lr"], params["weight_decay"]
        else:
            model = flows.build_cflow(
                "resnet18", (2, 3, 4), state, seed=0, **cflow_settings(int(test[0].shape[-1]))
            )
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
    parser.add_argument("--uncached", action="store_true", help="also time ours with the cache switched off")
    parser.add_argument("--quick", action="store_true", help="64 px, 8 training images, 2 epochs")
    args = parser.parse_args()
    if args.quick:
        args.size, args.n_train, args.epochs = 64, 8, 2
    from fractalad.detectors.base import TrainSet
    from fractalad.detectors.components import feature_cache

    train = TrainSet.from_tensor(texture(args.n_train, args.size, seed=1))
    test = list(texture(args.n_test, args.size, seed=2).split(args.batch))
    print(f"threads {torch.get_num_threads()}, {args.size} px, {args.n_train} train images, batch {args.batch}, "
          f"{args.epochs} epochs")  # fmt: skip
    print("| method | side | first epoch s | steady epoch s | predict img/s | ours/Anomalib first | "
          "ours/Anomalib steady | ours/Anomalib predict speed | cache |")  # fmt: skip
    print("|---" * 9 + "|")
    for method in args.methods:
        params = our_params(method, args.size, args.epochs, args.batch)
        ours = run_ours(method, params, train, test)
        theirs = run_anomalib(method, ours.pop("detector"), train, test)
        rows = [("Anomalib", theirs), ("ours", ours)]
        if args.uncached:
            fraction = feature_cache.CACHE_MEMORY_FRACTION
            feature_cache.CACHE_MEMORY_FRACTION = 0.0
            uncached = run_ours(method, params, train, test)
            uncached.pop("detector")
            feature_cache.CACHE_MEMORY_FRACTION = fraction
            rows.append(("ours, cache off", uncached))
        for side, r in rows:
            ratios = "| | |"
            if side != "Anomalib":
                ratios = (f"{r['first'] / theirs['first']:.3f} | {r['steady'] / theirs['steady']:.3f} | "
                          f"{r['predict'] / theirs['predict']:.3f}")  # fmt: skip
            print(f"| {method} | {side} | {r['first']:.2f} | {r['steady']:.2f} | {r['predict']:.2f} | {ratios} | "
                  f"{r.get('cache', '')} |", flush=True)  # fmt: skip
    print(json.dumps({"load_average": list(__import__("os").getloadavg())}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
