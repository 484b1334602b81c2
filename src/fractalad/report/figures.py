"""Figures read from result rows only (no model code): grouped bar charts of metrics per category."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never open a window (CI and servers have no display)
import matplotlib.pyplot as plt
import numpy as np

from fractalad.report.tables import METRIC_TITLES, ResultRow, metric_value


def plot_metric_bars(rows: Sequence[ResultRow], metrics: Sequence[str], path: Path) -> Path:
    """One panel per (metric, method): bars per category, one colour per weights source."""
    methods = list(dict.fromkeys(row.method for row in rows))
    categories = list(dict.fromkeys(row.category for row in rows))
    weights = list(dict.fromkeys(row.weights for row in rows))
    figure, axes = plt.subplots(
        len(metrics), len(methods), figsize=(4.5 * len(methods), 3.2 * len(metrics)), squeeze=False
    )
    width = 0.8 / len(weights)
    positions = np.arange(len(categories))
    for i, metric in enumerate(metrics):
        for j, method in enumerate(methods):
            axis = axes[i][j]
            for k, source in enumerate(weights):
                values = [metric_value(rows, c, method, source, metric) for c in categories]
                values = [0.0 if math.isnan(v) else 100 * v for v in values]
                axis.bar(positions + (k - (len(weights) - 1) / 2) * width, values, width, label=source)
            axis.set_xticks(positions, categories, rotation=30, ha="right", fontsize=8)
            axis.set_ylim(0, 100)
            axis.axhline(50, color="grey", linewidth=0.6, linestyle=":")
            axis.set_title(f"{method} — {METRIC_TITLES[metric]}", fontsize=9)
    axes[0][0].legend(fontsize=8, loc="lower left")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
