"""Trained detectors: ours (frozen-feature cache) vs Anomalib 2.7.0 run as its users run it, `Engine.fit`.

The Anomalib side is `anomalib.engine.Engine` (Lightning) fitting the Lightning model of each method on the
synthetic category in MVTec layout through `anomalib.data.MVTecAD` (offline: the folder exists, nothing is
downloaded), CPU, logger off, progress bar off, `num_workers=0`, its default per-epoch validation on the test
split. The torch model inside the Lightning module is replaced by one built from our weight file and our untrained
networks (`fractalad.parity`), so both sides start from the same tensors. A Lightning callback times each
training epoch from `on_train_epoch_start` to `on_train_epoch_end` minus the validation run inside it.
Ours: `fit_info_["epoch_seconds"]` of a fit from the same image files, same size, batch size and epochs.
"steady" = mean of epochs 2.. on each side. Per method the two sides run one after the other in one process.

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
from detectors_cache import METHODS, create_unfitted, our_params, run_ours


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
            backbone="resnet18", pre_trained=False, flow_steps=8, conv3x3_only=True, pre_processor=pre_processor
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


def run_engine(method: str, ours: Any, root: Path, size: int, epochs: int, batch: int) -> list[float]:
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
            max_epochs=epochs, enable_progress_bar=False,
        )  # fmt: skip
        engine.fit(lightning_model(method, ours, size), datamodule=datamodule)
    return timer.seconds


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--root", type=Path, default=Path(".cache/bench-engine"), help="data + weights folder")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--n-train", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    args = parser.parse_args()
    from fractalad.data.images import AnomalyImageDataset
    from fractalad.data.mvtec import load_mvtec
    from fractalad.detectors.base import TrainSet

    build_data(args.root, args.size, args.n_train)
    weights = str(args.root / "resnet18-seed0.safetensors")
    train = TrainSet(AnomalyImageDataset(load_mvtec(args.root, CATEGORY).train[: args.n_train], args.size))
    test = [torch.rand(args.batch, 3, args.size, args.size)]  # predict speed is not what this measures
    print(f"threads {torch.get_num_threads()}, {args.size} px, {args.n_train} train images, batch "
          f"{args.batch}, {args.epochs} epochs")  # fmt: skip
    print("| method | Anomalib Engine epochs s | ours epochs s (cached) | steady ours/Engine | first ours/Engine |")
    print("|---|---|---|---|---|")
    rows = {}
    for method in args.methods:
        params = {**our_params(method, args.size, args.epochs, args.batch, True), "weights": weights}
        engine_seconds = run_engine(
            method, create_unfitted(method, params), args.root, args.size, args.epochs, args.batch
        )
        mine = run_ours(method, params, train, test)
        seconds = mine["detector"].fit_info_["epoch_seconds"]
        theirs_steady = sum(engine_seconds[1:]) / max(1, len(engine_seconds) - 1)
        rows[method] = {"engine": engine_seconds, "ours": seconds, "fill": mine["first"] - seconds[0]}
        print(f"| {method} | {' / '.join(f'{s:.2f}' for s in engine_seconds)} | "
              f"{' / '.join(f'{s:.2f}' for s in seconds)} (+{rows[method]['fill']:.2f} fill) | "
              f"{mine['steady'] / theirs_steady:.3f} | {mine['first'] / engine_seconds[0]:.3f} |",
              flush=True)  # fmt: skip
    print(json.dumps({"rows": rows, "load_average": list(os.getloadavg())}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
