"""PatchCore / PaDiM speed and memory: ours vs Anomalib 2.7.0 on the same images and weights, in one run.

Each configuration runs in its own subprocess so that peak RSS (getrusage ru_maxrss) is not contaminated by
earlier ones. Prints a table and ratios; `--json` writes the raw rows.

    .venv/bin/python benchmarks/detectors.py           # full run (Anomalib's PatchCore fit takes minutes)
    .venv/bin/python benchmarks/detectors.py --quick        # small smoke run
    .venv/bin/python benchmarks/detectors.py --coreset      # coreset selection only, three feature kinds
    .venv/bin/python benchmarks/detectors.py --whole-fit 400 --threads 2   # one PatchCore fit, per stage
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numba import njit, prange

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
    from torch.utils.data import DataLoader

    from fractalad.data.images import AnomalyImageDataset
    from fractalad.data.mvtec import load_mvtec
    from fractalad.detectors.base import TrainSet
    from fractalad.metrics import image_auroc, pixel_auroc
    from fractalad.provenance import process_peak_rss_mb as peak_rss_mb

    torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)  # Anomalib's coreset draws from the global RNG
    root = Path(spec["root"])
    category = load_mvtec(root, CATEGORY)
    train = TrainSet(AnomalyImageDataset(category.train[: spec["n_train"]], spec["size"]))
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


# --- coreset selection: ours vs Anomalib's KCenterGreedy on identical projected features -------------------------


def texture_images(count: int, size: int, seed: int) -> torch.Tensor:
    """(count, 3, size, size) in [0, 1]: coloured 1/f^b noise (b in [1.5, 2.5]), random anisotropy per image.

    Natural-texture statistics without any data set: patches of such images do not form tight clusters.
    """
    generator = torch.Generator().manual_seed(seed)
    fy = torch.fft.fftfreq(size)[:, None]
    fx = torch.fft.rfftfreq(size)[None, :]
    images = torch.empty(count, 3, size, size)
    for i in range(count):
        slope, stretch = (
            1.5 + torch.rand(1, generator=generator),
            0.3 + 1.4 * torch.rand(1, generator=generator),
        )
        radius = (fy**2 * stretch + fx**2 / stretch).sqrt().clamp_min(1.0 / size)
        spectrum = torch.randn(3, size, size // 2 + 1, 2, generator=generator) * radius[..., None] ** (
            -slope / 2
        )
        noise = torch.fft.irfft2(torch.view_as_complex(spectrum), s=(size, size))  # (3, size, size)
        mixed = torch.einsum("ij,jhw->ihw", torch.rand(3, 3, generator=generator), noise)
        low, high = mixed.amin(), mixed.amax()
        images[i] = (mixed - low) / (high - low)
    return images


def patch_features(kind: str, n_images: int, root: Path, size: int) -> torch.Tensor:
    """(N, C) PatchCore patch features (resnet18 layer2+3, the benchmark's random weights) or Gaussian ones."""
    from fractalad.data.images import AnomalyImageDataset
    from fractalad.data.mvtec import load_mvtec
    from fractalad.detectors import create_detector
    from fractalad.detectors.base import TrainSet

    if kind == "gaussian":
        return torch.randn(n_images * (size // 8) ** 2, 384, generator=torch.Generator().manual_seed(1))
    detector = create_detector(
        "patchcore",
        backbone="resnet18",
        weights=str(root / "resnet18-seed0.safetensors"),
        layers=(2, 3),
        normalization="imagenet",
    )
    extractor = detector.make_extractor()
    detector.device_ = torch.device("cpu")
    if kind == "texture":
        batches = texture_images(n_images, size, seed=0).split(16)
    else:
        samples = load_mvtec(root, CATEGORY).train[:n_images]
        batches = TrainSet(AnomalyImageDataset(samples, size)).batches(16)
    rows = []
    with torch.no_grad():
        for batch in batches:
            embedding = detector.embed(extractor, batch)  # (B, C, h, w)
            rows.append(embedding.permute(0, 2, 3, 1).reshape(-1, embedding.shape[1]))
    return torch.cat(rows)


@njit(parallel=True, fastmath=True)
def _stream_read(values: np.ndarray) -> float:  # pragma: no cover
    """Sum of an (N, d) int8 array: one streaming read, the bound for a pass over the int8 codes."""
    total = 0.0
    for i in prange(values.shape[0]):
        row = np.float32(0.0)
        for j in range(values.shape[1]):
            row += np.float32(values[i, j])
        total += row
    return total


def read_bandwidth(n_bytes: int, repeats: int = 20) -> float:
    """Bytes per second of a multi-threaded streaming read of an array of n_bytes (same threads as the run)."""
    values = np.ones((n_bytes // 256, 256), np.int8)
    _stream_read(values)
    start = time.perf_counter()
    for _ in range(repeats):
        _stream_read(values)
    return values.nbytes * repeats / (time.perf_counter() - start)


def anomalib_steps(projected_rows: torch.Tensor, first: int, n_steps: int) -> tuple[list[int], float]:
    """KCenterGreedy's own per-step methods on the same (N, d) projected features from the same start."""
    from anomalib.models.components.sampling import KCenterGreedy  # imported (and timed) before: see worker

    sampler = KCenterGreedy(projected_rows[:, :, None], sampling_ratio=0.1)  # 3-D: used as is, no projection
    sampler.features = projected_rows
    idx, selected = torch.tensor(first), [first]
    start = time.perf_counter()
    for _ in range(n_steps - 1):
        sampler.update_distances(cluster_center=idx)
        idx = sampler.get_new_idx()
        sampler.min_distances.scatter_(0, idx.unsqueeze(0).unsqueeze(1), 0.0)
        selected.append(int(idx))
    return selected, time.perf_counter() - start


# Steps timed separately, so the steady per-step cost excludes encoding and the all-exact first step.
PREFIX_STEPS = 64


def coreset_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """One feature kind and size: ours (all steps) between two halves of Anomalib's timed prefix."""
    import anomalib.models.components.sampling  # noqa: F401  (before the thread settings below)
    import numba

    from fractalad.detectors.components.coreset import project_chunks, traverse_compiled
    from fractalad.provenance import process_peak_rss_mb as peak_rss_mb

    torch.set_num_threads(spec["threads"])
    numba.set_num_threads(spec["threads"])  # the bandwidth probe runs on as many threads as ours
    features = patch_features(spec["kind"], spec["n_images"], Path(spec["root"]), spec["size"])
    projected = project_chunks([features], 0.9, torch.Generator().manual_seed(0))  # (d, N)
    del features
    dim, n = projected.shape
    n_select = int(n * 0.1)
    steps = min(n_select, spec["steps"]) if spec["steps"] else n_select
    rows = projected.T.contiguous()
    first = int(torch.randint(n, (1,), generator=torch.Generator().manual_seed(0)))
    half = max(2, spec["anomalib_steps"] // 2)
    bandwidth_before = read_bandwidth(n * dim)
    _, seconds_a = anomalib_steps(rows, first, half)
    traverse_compiled(projected[:, :4096].contiguous().numpy(), 70, 0)  # compile outside the timing
    start = time.perf_counter()
    traverse_compiled(projected.numpy(), PREFIX_STEPS, first)  # set-up (codes, step 0) + a few steps
    prefix_s = time.perf_counter() - start
    start = time.perf_counter()
    ours, counts = traverse_compiled(projected.numpy(), steps, first)
    ours_s = time.perf_counter() - start
    theirs_b, seconds_b = anomalib_steps(rows, first, 2 * half)
    bandwidth = (bandwidth_before + read_bandwidth(n * dim)) / 2
    theirs_step = (seconds_a + seconds_b) / (3 * half - 2)
    agree = next((i for i, (a, b) in enumerate(zip(ours, theirs_b)) if a != b), min(len(ours), len(theirs_b)))
    step_bytes = n * (dim + 20)  # int8 codes + running minimum (8 B) + norm, scale, error bound (4 B each)
    return dict(
        spec,
        n=n,
        dim=dim,
        steps=steps,
        ours_s=ours_s,
        ours_step_ms=1e3 * ours_s / steps,
        prefix_s=prefix_s,
        steady_step_ms=1e3 * (ours_s - prefix_s) / max(1, steps - PREFIX_STEPS),
        anomalib_step_ms=1e3 * theirs_step,
        ratio=ours_s / (theirs_step * steps),
        same_selection_steps=agree,
        compared_steps=min(len(ours), len(theirs_b)),
        bandwidth_gbs=bandwidth / 1e9,
        bound_step_ms=1e3 * step_bytes / bandwidth,
        float32_read_ms=1e3 * 4 * n * dim / bandwidth,
        exact_per_step=(counts.exact - n) / max(1, steps - 1),
        skipped_fraction=counts.skipped / (n * max(1, steps - 1)),
        peak_rss_mb=peak_rss_mb(),
        load_average=os.getloadavg()[0],
    )


def coreset_report(rows: list[dict[str, Any]]) -> str:
    """Markdown table of the coreset measurements."""
    lines = [
        (
            "| features | N | d | steps | ours ms/step | Anomalib ms/step | ours/Anomalib | same picks "
            "| steady ms/step | int8 bound ms | steady/bound | fp32 read ms | GB/s | exact/step "
            "| skipped | load |"
        ),
        "|---" * 16 + "|",
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['kind']} | {r['n_images']} images | error: {r['error']} |")
            continue
        lines.append(
            f"| {r['kind']} | {r['n']} | {r['dim']} | {r['steps']} | {r['ours_step_ms']:.2f} | "
            f"{r['anomalib_step_ms']:.1f} | {r['ratio']:.3f} | "
            f"{r['same_selection_steps']}/{r['compared_steps']} | {r['steady_step_ms']:.2f} | {r['bound_step_ms']:.2f} | "
            f"{r['steady_step_ms'] / r['bound_step_ms']:.2f} | "
            f"{r['float32_read_ms']:.2f} | {r['bandwidth_gbs']:.1f} | {r['exact_per_step']:.0f} | "
            f"{r['skipped_fraction']:.3f} | {r['load_average']:.1f} |"
        )
    return "\n".join(lines)


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


def run_subprocess(spec: dict[str, Any], flag: str = "--worker") -> dict[str, Any]:
    """Run `spec` in a fresh interpreter; its last stdout line is the JSON result."""
    command = [sys.executable, __file__, flag, json.dumps(spec)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return dict(spec, error=done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "failed")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _above(row: dict[str, Any]) -> float:
    return row["peak_rss_mb"] - row["baseline_rss_mb"]


def report(rows: list[dict[str, Any]]) -> str:
    """Markdown table plus ours/Anomalib ratios."""
    lines = [
        (
            "| impl | method | backbone | n_train | fit s | predict s | peak RSS MiB | RSS above baseline MiB "
            "| image AUROC | pixel AUROC |"
        ),
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


def run_coreset(args: argparse.Namespace) -> int:
    """Every (kind, size) coreset measurement, each in its own subprocess."""
    from fractalad.files import write_text_atomic

    if "synthetic" in args.coreset_kinds:
        build_data(args.root, args.size, max(args.coreset_images))
    rows = []
    for n_images in args.coreset_images:
        for kind in args.coreset_kinds:
            spec = {
                "root": str(args.root),
                "size": args.size,
                "threads": args.threads,
                "kind": kind,
                "n_images": n_images,
                "steps": args.coreset_steps,
                "anomalib_steps": args.anomalib_steps,
            }
            print(f"coreset {kind} {n_images} images ...", file=sys.stderr, flush=True)
            rows.append(run_subprocess(spec, "--coreset-worker"))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    print(coreset_report(rows))
    if args.json:
        write_text_atomic(args.json, json.dumps(rows, indent=2))
    return 0


# --- one whole PatchCore fit on many training images, timed per stage -----------------------------------------


def whole_fit_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """PatchCore (resnet18 layer2+3, library defaults) fitted on n_images of one kind; seconds per stage."""
    import numba

    from fractalad.data.images import AnomalyImageDataset
    from fractalad.data.mvtec import load_mvtec
    from fractalad.detectors import create_detector
    from fractalad.detectors.base import TrainSet
    from fractalad.detectors.components import coreset
    from fractalad.provenance import process_peak_rss_mb

    torch.set_num_threads(spec["threads"])
    numba.set_num_threads(spec["threads"])
    root = Path(spec["root"])
    if spec["kind"] == "texture":
        train = TrainSet.from_tensor(texture_images(spec["n_images"], spec["size"], seed=0))
    else:
        train = TrainSet(AnomalyImageDataset(load_mvtec(root, CATEGORY).train[: spec["n_images"]], spec["size"]))
    detector = create_detector(
        "patchcore", backbone="resnet18", weights=str(root / "resnet18-seed0.safetensors"), layers=(2, 3)
    )
    # Compile (or load) every kernel first, the re-sort included: clustered points make the traversal regroup.
    rng = np.random.default_rng(0)
    clustered = (rng.normal(size=(8, 16)) * 5)[:, rng.integers(0, 16, 4096)] + rng.normal(size=(8, 4096))
    coreset.traverse_compiled(clustered.astype(np.float32), 300, 0)
    stages: dict[str, float] = {}
    timed_coreset = coreset.greedy_coreset

    def greedy_coreset(*args: Any, **kwargs: Any) -> torch.Tensor:
        stages["features_s"] = time.perf_counter() - begin
        start = time.perf_counter()
        picked = timed_coreset(*args, **kwargs)
        stages["coreset_s"] = time.perf_counter() - start
        return picked

    import fractalad.detectors.patchcore as patchcore_module

    patchcore_module.greedy_coreset = greedy_coreset
    begin = time.perf_counter()
    detector.fit(train, device="cpu")
    fit_s = time.perf_counter() - begin
    return dict(
        spec,
        fit_s=fit_s,
        patches=int(len(train) * (spec["size"] // 8) ** 2),
        bank=int(detector.memory_bank_.shape[0]),
        **stages,
        peak_rss_mb=process_peak_rss_mb(),
        load_average=os.getloadavg()[0],
    )


def run_whole_fit(args: argparse.Namespace) -> int:
    """The whole-fit measurement for each feature kind, each in its own subprocess."""
    build_data(args.root, args.size, args.whole_fit)
    for kind in ("synthetic", "texture"):
        spec = {"root": str(args.root), "size": args.size, "threads": args.threads, "kind": kind}
        row = run_subprocess(dict(spec, n_images=args.whole_fit), "--whole-fit-worker")
        print(json.dumps(row), flush=True)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--coreset-worker", help=argparse.SUPPRESS)
    parser.add_argument("--whole-fit-worker", help=argparse.SUPPRESS)
    parser.add_argument(
        "--whole-fit", type=int, default=0, help="time one PatchCore fit on this many images per kind"
    )
    parser.add_argument("--coreset", action="store_true", help="measure only the coreset selection")
    parser.add_argument("--coreset-kinds", nargs="*", default=["synthetic", "gaussian", "texture"])
    parser.add_argument("--coreset-images", type=int, nargs="*", default=[100, 400], help="N = 1024 x images")
    parser.add_argument("--coreset-steps", type=int, default=0, help="steps of ours to time (0 = all, 10 %%)")
    parser.add_argument("--anomalib-steps", type=int, default=200, help="steps of KCenterGreedy to time")
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
    if args.coreset_worker:
        print(json.dumps(coreset_worker(json.loads(args.coreset_worker))))
        return 0
    if args.whole_fit_worker:
        print(json.dumps(whole_fit_worker(json.loads(args.whole_fit_worker))))
        return 0
    if args.coreset:
        return run_coreset(args)
    if args.whole_fit:
        return run_whole_fit(args)
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
