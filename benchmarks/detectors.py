"""PatchCore / PaDiM speed and memory: ours vs Anomalib 2.7.0 on the same images and weights, in one run.

Each configuration runs in its own subprocess so that peak RSS (getrusage ru_maxrss) is not contaminated by
earlier ones. Prints a table and ratios; `--json` writes the raw rows.

    .venv/bin/python benchmarks/detectors.py           # full run (Anomalib's PatchCore fit takes minutes)
    .venv/bin/python benchmarks/detectors.py --quick        # small smoke run
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

CATEGORY = "capsule"


def build_data(root: Path, size: int, n_train: int) -> None:
    """Synthetic category (MVTec layout) plus one random-seeded resnet18 weight file shared by both sides."""
    from fractalad.backbones import create_classifier, save_weights
    from fractalad.data.synthetic import generate_synthetic

    generate_synthetic(
        root, categories=[CATEGORY], size=size, n_train=n_train, n_test_good=20, n_test_defect=20
    )
    weights = root / "resnet18-seed0.safetensors"
    if not weights.exists():
        meta = {
            "arch": "resnet18",
            "mean": "0.485,0.456,0.406",
            "std": "0.229,0.224,0.225",
            "source": "benchmark",
        }
        save_weights(weights, create_classifier("resnet18", 1000, seed=0).state_dict(), meta)


def _ours(spec: dict[str, Any], weights: Path) -> Any:
    from fractalad.detectors import create_detector

    arch = spec["backbone"]
    source = str(weights) if arch == "resnet18" else "random"
    params: dict[str, Any] = {
        "backbone": arch,
        "weights": source,
        "normalization": "imagenet",
    }
    params["layers"] = (2, 3) if spec["method"] == "patchcore" else (1, 2, 3)
    return create_detector(spec["method"], **params)


def _anomalib_fit_predict(spec: dict[str, Any], weights: Path, train, test) -> tuple[Any, float, float]:
    from fractalad.backbones import IMAGENET_NORMALIZATION, load_weights
    from fractalad.detectors import create_detector, reference

    start = time.perf_counter()
    state, _ = load_weights(weights)
    if spec["method"] == "patchcore":
        model = reference.build_patchcore("resnet18", (2, 3), state)
        run = reference.run_patchcore(model, train, test, IMAGENET_NORMALIZATION, 0.1)
    else:
        index = create_detector("padim", backbone="resnet18")._channel_index(448)
        model = reference.build_padim("resnet18", (1, 2, 3), state, index)
        run = reference.run_padim(model, train, test, IMAGENET_NORMALIZATION)
    # Like ours, Anomalib's fit time includes building the model and loading the weights.
    total = time.perf_counter() - start
    return run, total - run.predict_seconds, run.predict_seconds


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one configuration in this process and return its measurements."""
    import numpy as np
    import torch

    from fractalad.data.mvtec import load_mvtec
    from torch.utils.data import DataLoader

    from fractalad.data.images import AnomalyImageDataset
    from fractalad.detectors.evaluate import peak_rss_mb, train_set
    from fractalad.metrics import image_auroc, pixel_auroc

    torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)  # Anomalib's coreset draws from the global RNG
    root = Path(spec["root"])
    category = load_mvtec(root, CATEGORY)
    train = train_set(category.train[: spec["n_train"]], spec["size"])
    test_samples = category.test if spec["predict"] else category.test[:16]
    test_loader = DataLoader(AnomalyImageDataset(test_samples, spec["size"]), batch_size=16)
    test = [batch["image"] for batch in test_loader]
    weights = root / "resnet18-seed0.safetensors"
    if spec["impl"] == "anomalib":
        import anomalib.models  # noqa: F401  (its import cost belongs in the baseline, not in the fit)
    baseline = peak_rss_mb()
    if spec["impl"] == "anomalib":
        run, fit_s, predict_s = _anomalib_fit_predict(spec, weights, list(train.batches(16)), test)
        scores, maps = run.scores.numpy(), run.maps.numpy()
    else:
        detector = _ours(spec, weights)
        start = time.perf_counter()
        detector.fit(train, device="cpu")
        fit_s = time.perf_counter() - start
        start = time.perf_counter()
        predictions = [detector.predict(batch) for batch in test]
        predict_s = time.perf_counter() - start
        scores = torch.cat([p.image_scores for p in predictions]).numpy()
        maps = torch.cat([p.anomaly_maps for p in predictions]).numpy()
    labels = np.array([s.label for s in test_samples])
    masks = np.concatenate([b["mask"].numpy() for b in test_loader]) > 0.5
    result = dict(spec, fit_s=fit_s, predict_s=predict_s, peak_rss_mb=peak_rss_mb(), baseline_rss_mb=baseline)
    if spec["predict"]:
        result.update(image_auroc=image_auroc(scores, labels), pixel_auroc=pixel_auroc(maps, masks))
    return result


def configurations(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every configuration of one benchmark run."""
    base = {"root": str(args.root), "size": args.size, "threads": args.threads, "predict": True}
    n = args.n_train
    specs = [
        dict(base, impl="ours", method="patchcore", backbone="resnet18", n_train=n),
        dict(base, impl="anomalib", method="patchcore", backbone="resnet18", n_train=n),
        dict(base, impl="ours", method="padim", backbone="resnet18", n_train=n),
        dict(base, impl="anomalib", method="padim", backbone="resnet18", n_train=n),
        dict(base, impl="ours", method="patchcore", backbone="wide_resnet50_2", n_train=n),
        dict(base, impl="ours", method="padim", backbone="wide_resnet50_2", n_train=n),
    ]
    for count in args.memory_series:
        specs.append(
            dict(base, impl="ours", method="patchcore", backbone="resnet18", n_train=count, predict=False)
        )
    return specs


def run_subprocess(spec: dict[str, Any]) -> dict[str, Any]:
    """Run `spec` in a fresh interpreter; its last stdout line is the JSON result."""
    command = [sys.executable, __file__, "--worker", json.dumps(spec)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return dict(spec, error=done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _above(row: dict[str, Any]) -> float:
    return row["peak_rss_mb"] - row["baseline_rss_mb"]


def report(rows: list[dict[str, Any]]) -> str:
    """Markdown table plus ours/Anomalib ratios."""
    lines = [
        "| impl | method | backbone | n_train | fit s | predict s | peak RSS MiB | RSS above baseline MiB "
        "| image AUROC | pixel AUROC |",
        "|---" * 10 + "|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(
                f"| {r['impl']} | {r['method']} | {r['backbone']} | {r['n_train']} | error: {r['error']} |"
            )
            continue
        auroc = (f"{r['image_auroc']:.4f} | {r['pixel_auroc']:.4f}") if "image_auroc" in r else "- | -"
        lines.append(
            f"| {r['impl']} | {r['method']} | {r['backbone']} | {r['n_train']} | {r['fit_s']:.1f} | "
            f"{r['predict_s']:.1f} | {r['peak_rss_mb']:.0f} | {r['peak_rss_mb'] - r['baseline_rss_mb']:.0f} "
            f"| {auroc} |"
        )
    for method in ("patchcore", "padim"):
        pair = {
            r["impl"]: r
            for r in rows
            if r["method"] == method and r["backbone"] == "resnet18" and r.get("predict") and "error" not in r
        }
        if {"ours", "anomalib"} <= set(pair):
            o, a = pair["ours"], pair["anomalib"]
            lines.append(
                f"\n{method} resnet18 ours/Anomalib: fit time {o['fit_s'] / a['fit_s']:.3f}, predict time "
                f"{o['predict_s'] / a['predict_s']:.3f}, peak RSS {o['peak_rss_mb'] / a['peak_rss_mb']:.3f}, "
                f"RSS above baseline {_above(o) / max(1.0, _above(a)):.3f}"
            )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument(
        "--root", type=Path, default=Path(".cache/bench-detectors"), help="data + weights folder"
    )
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--n-train", type=int, default=100)
    parser.add_argument("--memory-series", type=int, nargs="*", default=[20, 100, 400])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="64 px, 16 training images, series 8 16")
    parser.add_argument(
        "--only",
        nargs="*",
        default=None,
        help="run only configurations whose impl/method/backbone contain all these words",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0
    if args.quick:
        args.size, args.n_train, args.memory_series = 64, 16, [8, 16]
        args.root = args.root.with_name(args.root.name + "-quick")
    build_data(args.root, args.size, max([args.n_train, *args.memory_series]))
    rows = []
    for spec in configurations(args):
        label = f"{spec['impl']} {spec['method']} {spec['backbone']} n={spec['n_train']}"
        if args.only and not all(word in label for word in args.only):
            continue
        print(f"running {label} ...", file=sys.stderr, flush=True)
        rows.append(run_subprocess(spec))
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    print(report(rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
