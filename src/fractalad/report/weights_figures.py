"""Figures about the weights of a grid: first-layer filters side by side (paper Fig. 2), and fractal samples of
the systems a pre-trained weight file learned from (Fig. 8).

The report reads only the store, its artefacts and the weight files the store names. A weight file is used only
while its content still hashes to the run's weights id; a fractal file's systems are found beside it (the
pre-training folder's systems.npz, or the systems_file its exported config names) and used only when their
hash equals the systems_sha256 the export recorded in the file's metadata.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt

from fractalad.bench.result import RunResult
from fractalad.bench.spec import RunSpec
from fractalad.pretrain.export import SYSTEMS_FILE
from fractalad.provenance import file_sha256, weights_sha256
from fractalad.report.filters import filter_grid, first_layer_filters
from fractalad.report.png import save_figure

PREVIEW_SYSTEMS = 32


def weight_specs(results: Sequence[RunResult]) -> dict[str, RunSpec]:
    """One spec per weights label, in the grid's order (the first run that used it)."""
    specs: dict[str, RunSpec] = {}
    for result in results:
        specs.setdefault(result.spec.weights_label, result.spec)
    return specs


def loadable_weights(spec: RunSpec) -> str | None:
    """The weights argument to draw `spec`'s filters from, or None when they cannot be had offline."""
    from fractalad.backbones.sources import torchvision_imagenet_cached

    if spec.weights_id.startswith("random:"):
        return "random"
    if spec.weights_id == "imagenet-tv":
        return "imagenet" if torchvision_imagenet_cached(spec.backbone) else None
    if spec.weights_id.startswith("sha256:"):
        path = Path(spec.weights)
        if path.is_file() and f"sha256:{weights_sha256(path)}" == spec.weights_id:
            return str(path)
    return None  # timm's ImageNet weights, or a file moved or edited since the run


def filters_figure(results: Sequence[RunResult], path: Path) -> Path | None:
    """conv1 kernels of every weights label the grid used and this machine can load, one panel each."""
    panels = []
    for label, spec in weight_specs(results).items():
        weights = loadable_weights(spec)
        if weights is not None:
            panels.append((label, filter_grid(first_layer_filters(weights, spec.backbone, spec.seed))))
    if not panels:
        return None
    figure, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 4.4), squeeze=False)
    for axis, (label, grid) in zip(axes[0], panels, strict=True):
        axis.imshow(grid)
        axis.set_title(label)
        axis.axis("off")
    figure.suptitle("First-layer filters (conv1), each kernel min-max scaled")
    return save_figure(figure, path)


def systems_file(weights: Path) -> Path | None:
    """The systems a fractal weight file was trained on, when they are found and match its recorded hash."""
    from fractalad.backbones.weights import load_weights

    metadata = load_weights(weights)[1]
    recorded = metadata.get("systems_sha256")
    if not recorded or recorded == "unknown":
        return None
    config = json.loads(metadata.get("config", "{}"))
    candidates = [weights.parent / SYSTEMS_FILE]
    if config.get("systems_file"):
        candidates.append(Path(config["systems_file"]))
    return next((c for c in candidates if c.is_file() and file_sha256(c) == recorded), None)


def fractal_figures(results: Sequence[RunResult], out: Path) -> list[tuple[str, Path]]:
    """A grid of rendered training fractals per fractal weight file whose systems are found (Fig. 8)."""
    from fractalad.fractals.preview import save_preview
    from fractalad.fractals.render import get_render_preset
    from fractalad.fractals.systems import load_systems

    figures = []
    for label, spec in weight_specs(results).items():
        weights = loadable_weights(spec)
        if weights is None or not spec.weights_id.startswith("sha256:"):
            continue
        found = systems_file(Path(weights))
        if found is None:
            continue
        systems, _ = load_systems(found)
        path = save_preview(
            out / f"fractals_{label}.png", systems[:PREVIEW_SYSTEMS], get_render_preset("paper"), spec.seed
        )
        figures.append((f"Fig. 8: fractals the {label!r} weights were trained on ({found.name})", path))
    return figures
