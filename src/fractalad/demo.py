"""The end-to-end demo on built-in data: fractals -> CPU-sized pre-training -> PatchCore and PaDiM on the
synthetic dataset with fractal, random and (when cached locally) ImageNet weights -> a table in the paper's
layout."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torchvision
from tqdm.auto import tqdm

from fractalad import __version__
from fractalad.data import SYNTHETIC_CATEGORIES, load_category
from fractalad.detectors import create_detector
from fractalad.detectors.evaluate import evaluate
from fractalad.fractals.preview import save_preview
from fractalad.fractals.render import get_render_preset
from fractalad.fractals.systems import load_systems
from fractalad.pretrain.config import from_mapping, get_preset, parse_overrides, save_config
from fractalad.pretrain.filters import save_filter_grid
from fractalad.pretrain.train import pretrain
from fractalad.report.figures import plot_metric_bars
from fractalad.report.tables import ResultRow, comparison_markdown, rows_to_csv

# The demo pre-trains with the best CPU-sized recipe measured by benchmarks/pretrain_quality.py (about 5 minutes
# on two CPU cores): `tiny` led `tiny-ofdb` in the one run recorded in benchmarks/RESULTS.md ("Recipe quality"),
# which used a tenth of the presets' budget. Any of its keys can be overridden from the command line, e.g.
# epochs=3 for a quicker look; --pretrain-preset picks another recipe.
DEMO_PRETRAIN_PRESET = "tiny"
DEMO_PRETRAIN_OVERRIDES: tuple[str, ...] = ()
DEMO_METHODS: tuple[str, ...] = ("patchcore", "padim")
METHOD_TITLES: dict[str, str] = {"patchcore": "PatchCore", "padim": "PaDiM"}


@dataclass(frozen=True)
class DemoSettings:
    """What the demo runs; defaults are the README's main job."""

    out_dir: Path = Path("outputs/demo")
    categories: tuple[str, ...] = SYNTHETIC_CATEGORIES
    methods: tuple[str, ...] = DEMO_METHODS
    arch: str = "resnet18"
    size: int = 256
    seed: int = 0
    pretrain_preset: str = DEMO_PRETRAIN_PRESET
    pretrain_overrides: tuple[str, ...] = DEMO_PRETRAIN_OVERRIDES
    synthetic_root: Path | None = None


def torchvision_imagenet_cached(arch: str) -> bool:
    """True when torchvision's ImageNet weights for `arch` are already in the local torch hub cache."""
    try:
        weights = torchvision.models.get_model_weights(arch).IMAGENET1K_V1
    except (ValueError, AttributeError):
        return False
    return (Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name).is_file()


def pretrain_fractal_backbone(settings: DemoSettings) -> Path:
    """Pre-train (or resume, or reuse) the CPU-sized fractal backbone; returns its exported weight file."""
    values = {"arch": settings.arch, "seed": settings.seed, **parse_overrides(settings.pretrain_overrides)}
    config = from_mapping(values, get_preset(settings.pretrain_preset), source="demo pre-training settings")
    out = settings.out_dir / "pretrain"
    out.mkdir(parents=True, exist_ok=True)
    save_config(config, out / "demo-config.yaml")
    return pretrain(config, out, resume=True)


def draw_pretraining_figures(settings: DemoSettings, fractal_weights: Path) -> None:
    """fractals.png: systems the backbone learned from (paper Fig. 8); filters.png: its conv1 (Fig. 2)."""
    systems, _ = load_systems(settings.out_dir / "pretrain" / "systems.npz")
    save_preview(settings.out_dir / "fractals.png", systems[:32], get_render_preset("paper"), settings.seed)
    save_filter_grid(fractal_weights, settings.out_dir / "filters.png", settings.arch)


def weight_sources(settings: DemoSettings, fractal_weights: Path) -> dict[str, str]:
    """Label -> weights argument of create_backbone, reference sources first."""
    sources = {"random": "random"}
    if torchvision_imagenet_cached(settings.arch):
        sources = {"imagenet": "imagenet", **sources}
    return {**sources, "fractal": str(fractal_weights)}


def evaluate_grid(settings: DemoSettings, sources: dict[str, str]) -> list[ResultRow]:
    """Every (category, method, weights) combination, with one progress bar over all of them."""
    jobs = [(c, m, s) for c in settings.categories for m in settings.methods for s in sources]
    rows: list[ResultRow] = []
    bar = tqdm(jobs, desc="detect", unit="run")
    for category_name, method, source in bar:
        bar.set_postfix_str(f"{category_name}/{method}/{source}")
        category = load_category("synthetic", settings.synthetic_root, category_name)
        detector = create_detector(
            method, backbone=settings.arch, weights=sources[source], seed=settings.seed
        )
        result = evaluate(detector, category, size=settings.size)
        rows.append(
            ResultRow(
                dataset="synthetic",
                category=category_name,
                method=METHOD_TITLES.get(method, method),
                weights=source,
                image_auroc=result.image_auroc,
                pixel_auroc=_or_nan(result.pixel_auroc),
                aupro=_or_nan(result.aupro),
                fit_seconds=result.fit_seconds,
                predict_seconds=result.predict_seconds,
            )
        )
    return rows


def _or_nan(value: float | None) -> float:
    return math.nan if value is None else value


def write_report(settings: DemoSettings, rows: Sequence[ResultRow], sources: dict[str, str]) -> str:
    """results.csv, results.json, results.md and results.png in the output folder; returns the Markdown."""
    out = settings.out_dir
    reference = "imagenet" if "imagenet" in sources else "random"
    text = f"## Synthetic dataset, {settings.arch}: {reference}/fractal\n\n"
    text += comparison_markdown(rows, reference, "fractal")
    if reference != "random":
        text += "\n## random/fractal\n\n" + comparison_markdown(rows, "random", "fractal")
    (out / "results.md").write_text(text)
    (out / "results.csv").write_text(rows_to_csv(rows))
    meta = {
        "fractalad_version": __version__,
        "settings": {k: str(v) for k, v in asdict(settings).items()},
        "weights": sources,
        "rows": [asdict(r) for r in rows],
    }
    (out / "results.json").write_text(json.dumps(meta, indent=2, default=_json_number))
    plot_metric_bars(rows, ["image_auroc", "pixel_auroc"], out / "results.png")
    return text


def _json_number(value: object) -> object:
    return None if isinstance(value, float) and math.isnan(value) else str(value)


def run_demo(settings: DemoSettings) -> list[ResultRow]:
    """Run every step, printing what happens; returns the result rows."""
    started = time.perf_counter()
    settings.out_dir.mkdir(parents=True, exist_ok=True)
    where = settings.out_dir / "pretrain"
    print(f"[1/3] pre-training a fractal backbone ({settings.pretrain_preset}) into {where}", flush=True)
    fractal_weights = pretrain_fractal_backbone(settings)
    draw_pretraining_figures(settings, fractal_weights)
    sources = weight_sources(settings, fractal_weights)
    print(
        f"[2/3] detecting anomalies on the synthetic dataset with weights: {', '.join(sources)}", flush=True
    )
    rows = evaluate_grid(settings, sources)
    print("[3/3] writing the report", flush=True)
    print(write_report(settings, rows, sources))
    minutes = (time.perf_counter() - started) / 60
    print(
        f"done in {minutes:.1f} min; results in {settings.out_dir}: results.{{md,csv,json,png}}, "
        "fractals.png (training fractals), filters.png (first-layer filters)"
    )
    return rows
