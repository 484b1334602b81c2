"""FastFlow / C-Flow speed and memory: ours vs Anomalib 2.7.0 on the same images, weights, epochs and settings.

Each (method, implementation) runs in its own subprocess, one after the other in the same benchmark run, so that
peak RSS is not contaminated by earlier ones. Seconds per epoch = (model build + training + for C-Flow our fit of
the likelihood constants) / epochs, so framework-free overheads count against us; predict = images per second.
C-Flow runs with sub_epochs=1, so one of our epochs is one pass over the images, as one of Anomalib's.

    .venv/bin/python benchmarks/detectors_flows.py            # resnet18, 256 px, 16 train / 16 test images
    .venv/bin/python benchmarks/detectors_flows.py --quick    # 64 px smoke run
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from detectors import CATEGORY, build_data

BATCH = 8
FASTFLOW = {"flow_steps": 8, "conv3x3_only": True, "hidden_ratio": 1.0, "lr": 1e-3, "weight_decay": 1e-5}
CFLOW = {
    "condition_dim": 128,
    "coupling_blocks": 8,
    "clamp": 1.9,
    "permute_soft": True,
    "fiber_batch_size": 256,
}


def _ours(spec: dict[str, Any], weights: Path, train, test) -> tuple[float, float, Any]:
    from fractalad.detectors import create_detector

    common = {
        "backbone": "resnet18",
        "weights": str(weights),
        "normalization": "imagenet",
        "batch_size": BATCH,
    }
    if spec["method"] == "fastflow":
        detector = create_detector(
            "fastflow", input_size=spec["size"], epochs=spec["epochs"], **common, **FASTFLOW
        )
    else:
        detector = create_detector("cflow", epochs=spec["epochs"], sub_epochs=1, lr=2e-4, **common, **CFLOW)
    start = time.perf_counter()
    detector.fit(train, device="cpu")
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    scores = [detector.predict(batch).image_scores for batch in test]
    return fit_s, time.perf_counter() - start, scores


def _anomalib(spec: dict[str, Any], weights: Path, train, test) -> tuple[float, float, Any]:
    from fractalad.backbones import IMAGENET_NORMALIZATION, load_weights
    from fractalad.parity import flows

    start = time.perf_counter()
    state, _ = load_weights(weights)
    if spec["method"] == "fastflow":
        model = flows.build_fastflow("resnet18", state, spec["size"], 8, True, 1.0, seed=0)
        lr, decay = FASTFLOW["lr"], FASTFLOW["weight_decay"]
    else:
        model = flows.build_cflow("resnet18", (2, 3, 4), state, seed=0, **CFLOW)
        lr, decay = 2e-4, 0.0
    flows.train(
        spec["method"],
        model,
        train,
        IMAGENET_NORMALIZATION,
        epochs=spec["epochs"],
        batch_size=BATCH,
        lr=lr,
        weight_decay=decay,
        seed=0,
    )
    fit_s = time.perf_counter() - start
    scores, _, predict_s = flows.predict(model, test, IMAGENET_NORMALIZATION)
    return fit_s, predict_s, [scores]


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one configuration in this process and return its measurements."""
    import numpy as np
    import torch
    from torch.utils.data import DataLoader

    from fractalad.data.images import AnomalyImageDataset
    from fractalad.data.mvtec import load_mvtec
    from fractalad.detectors.base import TrainSet
    from fractalad.metrics import image_auroc
    from fractalad.provenance import process_peak_rss_mb as peak_rss_mb

    torch.set_num_threads(spec["threads"])
    root = Path(spec["root"])
    category = load_mvtec(root, CATEGORY)
    train = TrainSet(AnomalyImageDataset(category.train[: spec["n_train"]], spec["size"]))
    samples = category.test[:8] + category.test[-8:]
    test = [b["image"] for b in DataLoader(AnomalyImageDataset(samples, spec["size"]), batch_size=BATCH)]
    if spec["impl"] == "anomalib":
        import anomalib.models  # noqa: F401  (its import cost belongs in the baseline, not in the fit)
    baseline = peak_rss_mb()
    run = _anomalib if spec["impl"] == "anomalib" else _ours
    fit_s, predict_s, scores = run(spec, root / "resnet18-seed0.safetensors", train, test)
    labels = np.array([s.label for s in samples])
    auroc = image_auroc(torch.cat(scores).numpy(), labels)
    return dict(
        spec,
        epoch_s=fit_s / spec["epochs"],
        predict_img_s=len(samples) / predict_s,
        image_auroc=auroc,
        peak_rss_mb=peak_rss_mb(),
        baseline_rss_mb=baseline,
    )


def interleaved_fastflow_steps(size: int, rounds: int = 3) -> tuple[float, float]:
    """Best seconds of one FastFlow loss + backward on 4 images, ours and Anomalib's alternating in this process."""
    import torch

    from fractalad.backbones import IMAGENET_NORMALIZATION, create_classifier
    from fractalad.detectors import create_detector
    from fractalad.detectors.components.feature_cache import FeatureBatch, frozen_features
    from fractalad.parity import flows

    torch.set_num_threads(1)
    ours = create_detector(
        "fastflow", backbone="resnet18", weights="random", input_size=size, normalization="imagenet"
    )
    ours._setup("cpu")
    state = create_classifier("resnet18", 1000, seed=0).state_dict()
    theirs = flows.build_fastflow("resnet18", state, size, 8, True, 1.0, seed=0).train()
    images = torch.rand(4, 3, size, size)
    normalised = flows.normalise(images, IMAGENET_NORMALIZATION)
    times: dict[str, list[float]] = {"ours": [], "anomalib": []}
    for _ in range(rounds):
        for name, step in (
            ("ours", lambda: ours.loss(FeatureBatch(frozen_features(ours.extractor_, images, ours.device_)))),
            ("anomalib", lambda: flows.fastflow_loss(theirs, normalised)),
        ):
            start = time.perf_counter()
            step().backward()
            times[name].append(time.perf_counter() - start)
    return min(times["ours"]), min(times["anomalib"])


def run_subprocess(spec: dict[str, Any]) -> dict[str, Any]:
    """Run `spec` in a fresh interpreter; its last stdout line is the JSON result."""
    command = [sys.executable, __file__, "--worker", json.dumps(spec)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return dict(spec, error=done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed")
    return json.loads(done.stdout.strip().splitlines()[-1])


def report(rows: list[dict[str, Any]]) -> str:
    """Markdown table plus ours/Anomalib ratios."""
    lines = [
        "| impl | method | s / epoch | predict img/s | peak RSS MiB | RSS above baseline MiB | image AUROC |",
        "|---" * 7 + "|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['impl']} | {r['method']} | error: {r['error']} |")
            continue
        lines.append(
            f"| {r['impl']} | {r['method']} | {r['epoch_s']:.1f} | {r['predict_img_s']:.2f} | "
            f"{r['peak_rss_mb']:.0f} | {r['peak_rss_mb'] - r['baseline_rss_mb']:.0f} | {r['image_auroc']:.4f} |"
        )
    for method in ("fastflow", "cflow"):
        pair = {r["impl"]: r for r in rows if r["method"] == method and "error" not in r}
        if {"ours", "anomalib"} <= set(pair):
            o, a = pair["ours"], pair["anomalib"]
            lines.append(
                f"\n{method} ours/Anomalib: time per epoch {o['epoch_s'] / a['epoch_s']:.3f}, predict speed "
                f"{o['predict_img_s'] / a['predict_img_s']:.3f}, peak RSS {o['peak_rss_mb'] / a['peak_rss_mb']:.3f}"
            )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, default=Path(".cache/bench-flows"), help="data + weights folder")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--n-train", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="64 px, 8 training images, 1 epoch")
    parser.add_argument("--json", type=Path, help="also write the raw rows here")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0
    if args.quick:
        args.size, args.n_train, args.epochs = 64, 8, 1
    build_data(args.root, args.size, args.n_train)
    base = {
        "root": str(args.root),
        "size": args.size,
        "threads": args.threads,
        "n_train": args.n_train,
        "epochs": args.epochs,
    }
    rows = []
    for method in ("fastflow", "cflow"):
        for impl in ("ours", "anomalib"):
            rows.append(run_subprocess(dict(base, impl=impl, method=method)))
            print(json.dumps(rows[-1]), file=sys.stderr)
    print(report(rows))
    mine, theirs = interleaved_fastflow_steps(args.size)
    print(
        f"\nfastflow step (loss + backward, 4 images), interleaved in one process: ours {mine:.2f} s, "
        f"Anomalib {theirs:.2f} s, ratio {mine / theirs:.3f}"
    )
    if args.json:
        from fractalad.files import write_text_atomic

        write_text_atomic(args.json, json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
