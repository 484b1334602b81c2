"""Trained detectors: ours (frozen-feature cache) vs Anomalib 2.7.0 run as its users run it, `Engine.fit`.

The Anomalib side is `anomalib.engine.Engine` (Lightning) fitting the Lightning model of each method on the
synthetic category in MVTec layout through `anomalib.data.MVTecAD` (offline: the folder exists, nothing is
downloaded), CPU, logger off, progress bar off, `num_workers=0`, its default per-epoch validation on the test
split. The torch model inside the Lightning module is replaced by one built from our weight file and our untrained
networks (`fractalad.parity`), so both sides start from the same tensors. A Lightning callback times each
training epoch from `on_train_epoch_start` to `on_train_epoch_end` minus the validation run inside it.
Ours: `fit_info_["epoch_seconds"]` of a fit from the same image files, same size, batch size and epochs; the
first epoch also counts the pass that fills the cache. For reference, Anomalib's torch model driven by a bare loop
(`detectors_cache.run_anomalib`, no Lightning) on the same images. "steady" = mean of epochs 2.. on each side.
Per method the three sides alternate in one process over `--rounds` rounds, order reversed every other round,
and the best (lowest) first / steady epoch of each side is kept.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/detectors_engine.py --root /tmp/bench-engine
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any
from unittest import mock

import torch
from detectors import CATEGORY, build_data
from detectors_cache import METHODS, create_unfitted, our_params, run_anomalib, run_ours

from fractalad.devices import PRECISIONS


def epoch_timer() -> Any:
    """A Lightning callback recording each training epoch's wall time without the validation run inside it."""
    from lightning.pytorch.callbacks import Callback

    class TrainingEpochTimer(Callback):
        def __init__(self) -> None:
            self.seconds: list[float] = []
            self.epoch_start = self.validation_start = 0.0
            self.validation_seconds = 0.0

        def on_train_epoch_start(self, trainer: Any, module: Any) -> None:
            self.epoch_start, self.validation_seconds = time.perf_counter(), 0.0

        def on_validation_start(self, trainer: Any, module: Any) -> None:
            self.validation_start = time.perf_counter()

        def on_validation_end(self, trainer: Any, module: Any) -> None:
            self.validation_seconds += time.perf_counter() - self.validation_start

        def on_train_epoch_end(self, trainer: Any, module: Any) -> None:
            elapsed = time.perf_counter() - self.epoch_start - self.validation_seconds
            self.seconds.append(elapsed)

    return TrainingEpochTimer()


def lightning_model(method: str, ours: Any, size: int) -> Any:
    """Anomalib's Lightning module of `method`, its torch model replaced by one holding our starting tensors."""
    from anomalib import models
    from anomalib.models.components import TimmFeatureExtractor

    from fractalad.parity import distill, flows

    params = ours.get_params()
    # Anomalib's default pre-processor: resize to `size` and ImageNet normalisation, as on our side.
    pre_processor = models.Fastflow.configure_pre_processor(image_size=(size, size))
    state = {k[len("body.") :]: v for k, v in ours.extractor_.state_dict().items() if k.startswith("body.")}
    if method == "fastflow":
        module = models.Fastflow(
            backbone="resnet18",
            pre_trained=False,
            flow_steps=8,
            conv3x3_only=True,
            pre_processor=pre_processor,
        )
        module.model = flows.build_fastflow("resnet18", state, size, 8, True, 1.0, seed=0)
        flows.start_from_ours(module.model, ours.norms_, ours.flows_)
    elif method == "cflow":
        settings = {k: params[k] for k in ("condition_dim", "coupling_blocks", "clamp", "permute_soft")}
        module = models.Cflow(
            backbone="resnet18", pre_trained=False, fiber_batch_size=params["fiber_batch_size"],
            condition_vector=settings["condition_dim"], coupling_blocks=settings["coupling_blocks"],
            clamp_alpha=settings["clamp"], permute_soft=settings["permute_soft"], lr=params["lr"],
            pre_processor=pre_processor,
        )  # fmt: skip
        module.model = flows.build_cflow(
            "resnet18", (2, 3, 4), state, fiber_batch_size=params["fiber_batch_size"], seed=0, **settings
        )
    elif method == "reverse_distillation":
        module = models.ReverseDistillation(
            backbone="resnet18", pre_trained=False, pre_processor=pre_processor
        )
        module.model = distill.build_reverse_distillation(ours, size)
    else:
        # Stfpm's constructor downloads ImageNet teacher weights; build its extractors random, then replace.
        from anomalib.models.image.stfpm import torch_model

        def random_extractor(*args: Any, **options: Any) -> Any:
            return TimmFeatureExtractor(*args, **{**options, "pre_trained": False})

        with mock.patch.object(torch_model, "TimmFeatureExtractor", random_extractor):
            module = models.Stfpm(backbone="resnet18", pre_processor=pre_processor)
        module.model = distill.build_stfpm(ours)
    return module


def run_engine(
    method: str, ours: Any, root: Path, size: int, epochs: int, batch: int, precision: str
) -> list[float]:
    """Anomalib's `Engine.fit` of `method` on the category; seconds of each training epoch."""
    from anomalib.data import MVTecAD
    from anomalib.engine import Engine

    timer = epoch_timer()
    datamodule = MVTecAD(
        root=root, category=CATEGORY, train_batch_size=batch, eval_batch_size=batch, num_workers=0
    )
    with tempfile.TemporaryDirectory() as work:
        engine = Engine(
            callbacks=[timer], logger=False, default_root_dir=work, accelerator="cpu", devices=1,
            max_epochs=epochs, enable_progress_bar=False, precision=precision,
        )  # fmt: skip
        engine.fit(lightning_model(method, ours, size), datamodule=datamodule)
    return timer.seconds


def run_side(
    side: str, method: str, params: dict[str, Any], train: Any, args: argparse.Namespace
) -> tuple[float, float]:
    """(first, steady) epoch seconds of one fit by `side`: "engine", "ours" or "bare" (Anomalib, no Lightning)."""
    test = [torch.rand(args.batch, 3, args.size, args.size)]  # predict speed is not what this measures
    if side == "ours":
        mine = run_ours(method, params, train, test, args.precision)
        return mine["first"], mine["steady"]
    if side == "bare":
        theirs = run_anomalib(method, create_unfitted(method, params), train, test)
        return theirs["first"], theirs["steady"]
    seconds = run_engine(
        method, create_unfitted(method, params), args.root, args.size, args.epochs, args.batch,
        args.anomalib_precision,
    )  # fmt: skip
    return seconds[0], sum(seconds[1:]) / max(1, len(seconds) - 1)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--root", type=Path, default=Path(".cache/bench-engine"), help="data + weights folder"
    )
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--n-train", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--rounds", type=int, default=1, help="alternating rounds per method (best is kept)")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto", help="ours: fit(precision=...)")
    parser.add_argument(
        "--anomalib-precision", default="32-true", help="the Engine's Lightning precision, e.g. bf16-mixed"
    )
    args = parser.parse_args()
    from fractalad.data.images import AnomalyImageDataset
    from fractalad.data.mvtec import load_mvtec
    from fractalad.detectors.base import TrainSet

    build_data(args.root, args.size, args.n_train)
    weights = str(args.root / "resnet18-seed0.safetensors")
    train = TrainSet(AnomalyImageDataset(load_mvtec(args.root, CATEGORY).train[: args.n_train], args.size))
    print(f"threads {torch.get_num_threads()}, {args.size} px, {args.n_train} train images, batch "
          f"{args.batch}, {args.epochs} epochs, ours at precision {args.precision}, Engine at "
          f"{args.anomalib_precision}, bare loop float32")  # fmt: skip
    print("| method | Anomalib Engine first / steady s | Anomalib bare loop first / steady s | ours cached first / "
          "steady s | steady ours/Engine | first ours/Engine | steady ours/bare loop |")  # fmt: skip
    print("|---" * 7 + "|")
    rows = {}
    for method in args.methods:
        params = {**our_params(method, args.size, args.epochs, args.batch, True), "weights": weights}
        runs: dict[str, list[tuple[float, float]]] = {"engine": [], "ours": [], "bare": []}
        for round_index in range(args.rounds):
            sides = list(runs) if round_index % 2 == 0 else list(runs)[::-1]
            for side in sides:
                runs[side].append(run_side(side, method, params, train, args))
        best = {side: (min(r[0] for r in rs), min(r[1] for r in rs)) for side, rs in runs.items()}
        rows[method] = {"runs": runs, "best": best}
        (engine_first, engine_steady), (first, steady) = best["engine"], best["ours"]
        print(f"| {method} | {engine_first:.2f} / {engine_steady:.2f} | {best['bare'][0]:.2f} / "
              f"{best['bare'][1]:.2f} | {first:.2f} / {steady:.2f} | {steady / engine_steady:.3f} | "
              f"{first / engine_first:.3f} | {steady / best['bare'][1]:.3f} |", flush=True)  # fmt: skip
    print(json.dumps({"rows": rows, "load_average": list(os.getloadavg())}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
