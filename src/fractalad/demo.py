"""The end-to-end demo on built-in data, as a tiny benchmark grid: fractals -> CPU-sized pre-training -> PatchCore
and PaDiM on the synthetic dataset with fractal, random and (when cached locally) ImageNet weights, run by the
grid runner into a results store -> the report in the paper's layout."""

from __future__ import annotations

import time
from pathlib import Path

from fractalad.backbones.sources import torchvision_imagenet_cached
from fractalad.bench.artifacts import default_artifacts
from fractalad.bench.evaluate import RunOptions
from fractalad.bench.grid import GridFile, describe, expand_grid, write_grid
from fractalad.bench.runner import RunnerOptions, run_grid
from fractalad.demo_settings import DemoSettings
from fractalad.report.build import ReportFiles, build_report

FRACTAL_LABEL = "fractal"
STORE_FILE = "results.db"
GRID_FILE = "grid.yaml"


def pretrain_fractal_backbone(settings: DemoSettings) -> Path:
    """Pre-train (or resume, or reuse) the CPU-sized fractal backbone; returns its exported weight file."""
    from fractalad.pretrain.config import from_mapping, get_preset, parse_overrides, save_config
    from fractalad.pretrain.train import pretrain

    values = {"arch": settings.arch, "seed": settings.seed, **parse_overrides(settings.pretrain_overrides)}
    config = from_mapping(values, get_preset(settings.pretrain_preset), source="demo pre-training settings")
    out = settings.out_dir / "pretrain"
    out.mkdir(parents=True, exist_ok=True)
    save_config(config, out / "demo-config.yaml")
    return pretrain(config, out, resume=True)


def demo_grid(settings: DemoSettings, fractal_weights: Path, imagenet: bool) -> GridFile:
    """The demo's grid: reference weights first (ImageNet when cached, random), the fractal backbone last."""
    weights = {"imagenet": "imagenet"} if imagenet else {}
    weights |= {"random": "random", FRACTAL_LABEL: str(fractal_weights)}
    return GridFile(
        dataset="synthetic",
        root=None if settings.synthetic_root is None else str(settings.synthetic_root),
        categories=list(settings.categories),
        methods={method: {} for method in settings.methods},
        weights=weights,
        backbone=settings.arch,
        layers=["default"],
        seeds=(settings.seed,),
        size=settings.size,
        name="demo",
        description="fractalad demo: PatchCore and PaDiM on the synthetic dataset, reference vs fractal weights",
    )


def run_demo(settings: DemoSettings) -> ReportFiles:
    """Pre-train, run the demo grid into <out>/results.db, write the report into <out>; returns its files."""
    started = time.perf_counter()
    out = settings.out_dir
    out.mkdir(parents=True, exist_ok=True)
    print(f"[1/3] pre-training a fractal backbone ({settings.pretrain_preset}) into {out / 'pretrain'}", flush=True)
    fractal_weights = pretrain_fractal_backbone(settings)
    grid = demo_grid(settings, fractal_weights, torchvision_imagenet_cached(settings.arch))
    write_grid(grid, out / GRID_FILE)
    specs = expand_grid(grid, source="demo grid")
    print(f"[2/3] {describe(specs)} into {out / STORE_FILE} (weights: {', '.join(grid.weights)})", flush=True)
    run_options = RunOptions(artifacts_dir=default_artifacts(out / STORE_FILE))
    run_grid(specs, out / STORE_FILE, RunnerOptions(devices=(settings.device,), run=run_options))
    print("[3/3] writing the report", flush=True)
    files = build_report(out / STORE_FILE, out, reference=next(iter(grid.weights)), candidate=FRACTAL_LABEL)
    print(files.markdown.read_text())
    minutes = (time.perf_counter() - started) / 60
    print(
        f"done in {minutes:.1f} min; {files.html} shows every table and figure "
        f"(report.md, runs.csv, tables/, figures/); rerun the grid with "
        f"`fractalad bench run {out / GRID_FILE} --store {out / STORE_FILE}`"
    )
    return files
