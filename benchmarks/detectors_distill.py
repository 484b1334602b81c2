"""Reverse Distillation / STFPM speed and memory: ours vs Anomalib 2.7.0, same weights, images and batches.

Per method, one process times both sides interleaved (so machine load hits both alike):
- seconds per training epoch = (time of a 3-epoch fit - time of a 1-epoch fit) / 2, which cancels model
  construction and first-batch warm-up on both sides;
- predict images/s over the test images (best of two passes).
Peak memory runs in separate processes (one per method and side): ru_maxrss above the post-import baseline for a
1-epoch fit plus predict. Prints a table and the ratios; `--json` writes the raw rows.

    .venv/bin/python benchmarks/detectors_distill.py              # resnet18, 256 px, CPU
    .venv/bin/python benchmarks/detectors_distill.py --quick      # 64 px smoke run
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from detectors_cache import best_rate  # the benchmarks folder is on sys.path when a script runs

CATEGORY = "tile"
METHODS = ("reverse_distillation", "stfpm")


def build_data(root: Path, size: int, n_train: int, n_test: int) -> Path:
    """Synthetic category (MVTec layout) and one random-seeded resnet18 weight file shared by both sides."""
    from fractalad.backbones import create_classifier, save_weights
    from fractalad.data.synthetic import generate_synthetic

    generate_synthetic(
        root, categories=[CATEGORY], size=size, n_train=n_train, n_test_good=n_test, n_test_defect=n_test
    )
    weights = root / "resnet18-seed0.safetensors"
    if not weights.exists():
        meta = {
            "arch": "resnet18",
            "mean": "0.485,0.456,0.406",
            "std": "0.229,0.224,0.225",
            "source": "bench",
        }
        save_weights(weights, create_classifier("resnet18", 1000, seed=0).state_dict(), meta)
    return weights


def _data(spec: dict[str, Any]) -> tuple[Any, list[Any], Any]:
    import numpy as np

    from fractalad.data.images import load_images
    from fractalad.data.mvtec import load_mvtec
    from fractalad.detectors.base import TrainSet

    category = load_mvtec(Path(spec["root"]), CATEGORY)
    train = TrainSet.from_tensor(load_images(category.train, spec["size"]))
    test = load_images(category.test, spec["size"])
    return train, list(test.split(16)), np.array([s.label for s in category.test])


def _detector(spec: dict[str, Any], epochs: int) -> Any:
    from fractalad.detectors import create_detector

    weights = Path(spec["root"]) / "resnet18-seed0.safetensors"
    return create_detector(spec["method"], backbone="resnet18", weights=str(weights), epochs=epochs)


def _time_ours(spec: dict[str, Any], train: Any, epochs: int) -> tuple[float, Any]:
    detector = _detector(spec, epochs)
    start = time.perf_counter()
    detector.fit(train, device="cpu")
    return time.perf_counter() - start, detector


def _time_anomalib(spec: dict[str, Any], train: Any, epochs: int) -> tuple[float, Any]:
    from fractalad.parity import distill

    detector = _detector(spec, epochs)
    start = time.perf_counter()
    model = (
        distill.build_stfpm(detector)
        if spec["method"] == "stfpm"
        else distill.build_reverse_distillation(detector, spec["size"])
    )
    normalization = detector.extractor_.normalization
    distill.train_anomalib(
        model,
        distill.anomalib_optimizer(model),
        train,
        epochs=epochs,
        batch_size=detector.batch_size,
        seed=detector.seed,
        normalization=normalization,
    )
    return time.perf_counter() - start, (model, normalization)


def speed_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Interleaved timing of both sides for one method."""
    import torch

    from fractalad.metrics import image_auroc
    from fractalad.parity import distill

    torch.set_num_threads(spec["threads"])
    train, test, labels = _data(spec)
    fits: dict[str, dict[int, float]] = {"ours": {}, "anomalib": {}}
    for epochs in (1, 3):
        fits["ours"][epochs], ours = _time_ours(spec, train, epochs)
        fits["anomalib"][epochs], (model, normalization) = _time_anomalib(spec, train, epochs)
    ours_rate = best_rate(ours.predict, test)
    theirs_rate = best_rate(lambda b: distill.predict_anomalib(model, [b], normalization), test)
    ours_scores = torch.cat([ours.predict(b).image_scores for b in test]).numpy()
    theirs_scores = distill.predict_anomalib(model, test, normalization)[0].numpy()
    row = dict(spec, n_train=len(train), batch_size=ours.batch_size)
    for impl, rate, scores in (("ours", ours_rate, ours_scores), ("anomalib", theirs_rate, theirs_scores)):
        row[f"{impl}_s_per_epoch"] = (fits[impl][3] - fits[impl][1]) / 2
        row[f"{impl}_predict_img_s"] = rate
        row[f"{impl}_image_auroc_3ep"] = image_auroc(scores, labels)
    return row


def memory_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Peak RSS above the post-import baseline for a 1-epoch fit plus predict of one side."""
    import anomalib.models  # noqa: F401  (its import cost belongs in the baseline)
    import torch

    from fractalad.parity import distill
    from fractalad.provenance import process_peak_rss_mb as peak_rss_mb

    torch.set_num_threads(spec["threads"])
    train, test, _ = _data(spec)
    baseline = peak_rss_mb()
    if spec["impl"] == "ours":
        _, detector = _time_ours(spec, train, 1)
        for batch in test:
            detector.predict(batch)
    else:
        _, (model, normalization) = _time_anomalib(spec, train, 1)
        distill.predict_anomalib(model, test, normalization)
    return dict(spec, peak_above_baseline_mb=peak_rss_mb() - baseline)


def run_subprocess(kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    """Run a worker in a fresh interpreter; its last stdout line is the JSON result."""
    command = [sys.executable, __file__, f"--{kind}-worker", json.dumps(spec)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        return dict(spec, error=lines[-1] if lines else "failed")
    return json.loads(done.stdout.strip().splitlines()[-1])


def report(speed: list[dict[str, Any]], memory: list[dict[str, Any]]) -> None:
    """Print one table row per method with the ours/Anomalib ratios."""
    peaks = {(m["method"], m["impl"]): m.get("peak_above_baseline_mb", float("nan")) for m in memory}
    print(
        "| method | s/epoch ours / Anomalib (ratio) | predict img/s ours / Anomalib (ratio) "
        "| peak MiB ours / Anomalib | image AUROC ours / Anomalib |"
    )
    print("|---|---|---|---|---|")
    for row in speed:
        if "error" in row:
            print(f"| {row['method']} | error: {row['error']} |")
            continue
        o, a = row["ours_s_per_epoch"], row["anomalib_s_per_epoch"]
        po, pa = row["ours_predict_img_s"], row["anomalib_predict_img_s"]
        print(
            f"| {row['method']} | {o:.2f} / {a:.2f} ({o / a:.2f}x) | {po:.1f} / {pa:.1f} ({po / pa:.2f}x) "
            f"| {peaks[(row['method'], 'ours')]:.0f} / {peaks[(row['method'], 'anomalib')]:.0f} "
            f"| {row['ours_image_auroc_3ep']:.3f} / {row['anomalib_image_auroc_3ep']:.3f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--speed-worker", help=argparse.SUPPRESS)
    parser.add_argument("--memory-worker", help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, default=Path("/tmp/fractalad-bench-distill"))
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--n-train", type=int, default=32)
    parser.add_argument("--n-test", type=int, default=8, help="good and defective test images each")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="64 px, 16 training images")
    parser.add_argument("--json", type=Path, help="also write the raw rows here")
    args = parser.parse_args()
    if args.speed_worker or args.memory_worker:
        worker = speed_worker if args.speed_worker else memory_worker
        print(json.dumps(worker(json.loads(args.speed_worker or args.memory_worker))))
        return
    if args.quick:
        args.size, args.n_train, args.root = 64, 16, args.root.with_name(args.root.name + "-quick")
    build_data(args.root, args.size, args.n_train, args.n_test)
    base = {"root": str(args.root), "size": args.size, "threads": args.threads}
    speed = [run_subprocess("speed", dict(base, method=m)) for m in METHODS]
    memory = [
        run_subprocess("memory", dict(base, method=m, impl=i)) for m in METHODS for i in ("ours", "anomalib")
    ]
    report(speed, memory)
    if args.json:
        from fractalad.files import write_text_atomic

        write_text_atomic(args.json, json.dumps({"speed": speed, "memory": memory}, indent=2))


if __name__ == "__main__":
    main()
