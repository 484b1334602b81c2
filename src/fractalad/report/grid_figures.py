"""Figures from stored results and artefacts: every metric per category, spider charts of category groups
(paper Fig. 3), the feature-hierarchy study (Figs. 4-6) and qualitative maps (Fig. 7); the weights' figures
(Figs. 2 and 8) come from report.weights_figures. Every PNG is written atomically (report.png)."""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from fractalad.bench.artifacts import EXAMPLES_FILE, read_examples
from fractalad.bench.result import RunResult
from fractalad.report.grid_tables import collect_cells
from fractalad.report.paper import (
    GROUPS,
    METRIC_TITLES,
    METRICS,
    category_order,
    method_order,
    method_title,
)
from fractalad.report.png import save_figure

HIERARCHY_METHODS: tuple[str, ...] = ("patchcore", "padim")


def spider(results: Sequence[RunResult], labels: tuple[str, str], dataset: str, path: Path) -> Path | None:
    """Image AUROC per category group, one polygon per group, one panel per weights source (Fig. 3)."""
    cells = collect_cells(results)
    methods = method_order({r.spec.method for r in results if r.spec.dataset == dataset})
    groups = GROUPS[dataset]
    if len(methods) < 3:
        return None  # a polygon needs three axes
    angles = np.linspace(0, 2 * np.pi, len(methods), endpoint=False)
    figure, axes = plt.subplots(1, 2, figsize=(10, 4.8), subplot_kw={"projection": "polar"})
    drawn = False
    for axis, label in zip(axes, labels, strict=True):
        for group, members in groups.items():
            values = [[cells.get(dataset, c, m, label, "image_auroc") for c in members] for m in methods]
            means = [statistics.fmean(v) if all(x is not None for x in v) else np.nan for v in values]
            if np.isnan(means).all():
                continue
            drawn = True
            closed = np.append(means, means[0])
            axis.plot(np.append(angles, angles[0]), closed, label=group)
            axis.fill(np.append(angles, angles[0]), closed, alpha=0.15)
        axis.set_xticks(angles, [method_title(m) for m in methods], fontsize=8)
        axis.set_title(label)
    if not drawn:
        plt.close(figure)
        return None
    axes[0].legend(loc="lower left", fontsize=8, bbox_to_anchor=(-0.2, -0.15))
    figure.suptitle(f"{dataset}: image AUROC (%) by category group")
    return save_figure(figure, path)


def hierarchy(results: Sequence[RunResult], labels: tuple[str, str], path: Path) -> Path | None:
    """Mean over categories per layer set for PatchCore and PaDiM, each metric a row (Figs. 4-6).

    A mean is drawn only where every category of the grid has a result for that layer set.
    """
    means: dict[tuple[str, str, str, tuple[int, ...]], list[float]] = defaultdict(list)
    categories: dict[tuple[str, str], set[str]] = defaultdict(set)
    for result in results:
        spec = result.spec
        if spec.method not in HIERARCHY_METHODS or spec.few_shot is not None:
            continue
        categories[(spec.dataset, spec.method)].add(spec.category)
        for metric in METRICS:
            value = getattr(result, metric)
            if value is not None:
                means[(spec.method, spec.weights_label, metric, spec.layers)].append(100 * value)
    layer_sets = sorted({key[3] for key in means}, key=lambda s: (len(s), s))
    methods = [m for m in HIERARCHY_METHODS if len({k[3] for k in means if k[0] == m}) >= 2]
    if not methods:
        return None  # a hierarchy study needs one method run with two or more layer sets
    figure, axes = plt.subplots(
        len(METRICS), len(methods), figsize=(5 * len(methods), 3 * len(METRICS)), squeeze=False
    )
    positions = np.arange(len(layer_sets))
    for j, method in enumerate(methods):
        for i, metric in enumerate(METRICS):
            axis = axes[i][j]
            for k, label in enumerate(labels):
                values = [
                    statistics.fmean(means[(method, label, metric, s)])
                    if means[(method, label, metric, s)]
                    else 0.0
                    for s in layer_sets
                ]
                axis.bar(positions + (k - 0.5) * 0.38, values, 0.38, label=label)
            axis.set_xticks(positions, ["{" + ",".join(map(str, s)) + "}" for s in layer_sets])
            axis.set_ylim(0, 100)
            axis.set_title(f"{method_title(method)} — {METRIC_TITLES[metric]}", fontsize=9)
    axes[0][0].legend(fontsize=8)
    figure.tight_layout()
    return save_figure(figure, path)


def qualitative(
    results: Sequence[RunResult], labels: tuple[str, str], artifacts: Path, path: Path
) -> Path | None:
    """For each category, one anomalous test image: image, ground truth, then each source's map (Fig. 7)."""
    examples: dict[tuple[str, str], dict[str, Path]] = defaultdict(dict)
    for result in results:
        for artifact in result.artifacts:
            if artifact.path.endswith(EXAMPLES_FILE) and result.spec.weights_label in labels:
                key = (result.spec.category, result.spec.method)
                examples[key].setdefault(result.spec.weights_label, artifacts / artifact.path)
    rows = [
        (key, files)
        for key, files in sorted(examples.items())
        if all(Path(files.get(l, "")).is_file() for l in labels)
    ]
    if not rows:
        return None
    figure, axes = plt.subplots(
        len(rows), 2 + len(labels), figsize=(2.4 * (2 + len(labels)), 2.4 * len(rows)), squeeze=False
    )
    for i, ((category, method), files) in enumerate(rows):
        arrays = {label: read_examples(files[label]) for label in labels}
        first = arrays[labels[0]]
        index = int(np.argmax(first["masks"].reshape(len(first["masks"]), -1).sum(1)))
        axes[i][0].imshow(first["images"][index])
        axes[i][0].set_ylabel(f"{category}\n{method_title(method)}", fontsize=8)
        axes[i][1].imshow(first["masks"][index], cmap="gray", vmin=0, vmax=1)
        for k, label in enumerate(labels):
            axes[i][2 + k].imshow(first["images"][index])
            axes[i][2 + k].imshow(arrays[label]["maps"][index], cmap="jet", alpha=0.5)
            axes[0][2 + k].set_title(label, fontsize=9)
        axes[0][0].set_title("image", fontsize=9)
        axes[0][1].set_title("ground truth", fontsize=9)
        for axis in axes[i]:
            axis.set_xticks([])
            axis.set_yticks([])
    figure.tight_layout()
    return save_figure(figure, path)


def category_bars(results: Sequence[RunResult], dataset: str, path: Path) -> Path | None:
    """Every metric per category, one panel per (metric, method), one bar colour per weights label."""
    cells = collect_cells(results)
    runs = [r for r in results if r.spec.dataset == dataset]
    methods = method_order({r.spec.method for r in runs})
    categories = category_order(dataset, {r.spec.category for r in runs})
    labels = list(dict.fromkeys(r.spec.weights_label for r in runs))
    metrics = [m for m in METRICS if any(k[0] == dataset and k[4] == m for k in cells.values)]
    if not metrics:
        return None
    figure, axes = plt.subplots(
        len(metrics), len(methods), figsize=(max(4.5, 0.45 * len(categories) * len(labels)) * len(methods),
        3.2 * len(metrics)), squeeze=False,
    )  # fmt: skip
    width, positions = 0.8 / len(labels), np.arange(len(categories))
    for i, metric in enumerate(metrics):
        for j, method in enumerate(methods):
            axis = axes[i][j]
            for k, label in enumerate(labels):
                values = [cells.get(dataset, c, method, label, metric) for c in categories]
                heights = [np.nan if v is None else v for v in values]  # a missing run shows as no bar
                axis.bar(positions + (k - (len(labels) - 1) / 2) * width, heights, width, label=label)
            axis.set_xticks(positions, categories, rotation=30, ha="right", fontsize=8)
            axis.set_ylim(0, 100)
            axis.axhline(50, color="grey", linewidth=0.6, linestyle=":")
            axis.set_title(f"{method_title(method)} — {METRIC_TITLES[metric]}", fontsize=9)
    axes[0][0].legend(fontsize=8, loc="lower left")
    figure.tight_layout()
    return save_figure(figure, path)


def figure_set(
    results: Sequence[RunResult], labels: tuple[str, str], out: Path, artifacts: Path
) -> list[tuple[str, Path]]:
    """Every figure the results support, as (caption, path)."""
    from fractalad.report.weights_figures import filters_figure, fractal_figures

    figures: list[tuple[str, Path | None]] = []
    for dataset in sorted({r.spec.dataset for r in results}):
        figures.append(
            (
                f"{dataset}: every metric per category",
                category_bars(results, dataset, out / f"categories_{dataset}.png"),
            )
        )
    figures.append(
        ("Fig. 2: first-layer filters of the grid's weights", filters_figure(results, out / "filters.png"))
    )
    for dataset in sorted({r.spec.dataset for r in results} & set(GROUPS)):
        figures.append(
            (
                f"Fig. 3: {dataset} category groups",
                spider(results, labels, dataset, out / f"spider_{dataset}.png"),
            )
        )
    figures.append(("Figs. 4-6: feature hierarchy", hierarchy(results, labels, out / "hierarchy.png")))
    figures.append(
        ("Fig. 7: qualitative maps", qualitative(results, labels, artifacts, out / "qualitative.png"))
    )
    drawn = [(caption, path) for caption, path in figures if path is not None]
    return drawn + fractal_figures(results, out)
