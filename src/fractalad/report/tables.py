"""Result tables in the paper's layout: one table per metric, categories as rows, methods as columns, and
each cell "reference/fractal" in percent."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

METRICS: tuple[str, ...] = ("image_auroc", "pixel_auroc", "aupro")
METRIC_TITLES: dict[str, str] = {
    "image_auroc": "Image AUROC (%)",
    "pixel_auroc": "Pixel AUROC (%)",
    "aupro": "AUPRO@0.3 (%)",
}


@dataclass(frozen=True)
class ResultRow:
    """One evaluated (category, method, weights) result; metrics are fractions in [0, 1], NaN if absent."""

    dataset: str
    category: str
    method: str
    weights: str
    image_auroc: float
    pixel_auroc: float
    aupro: float
    fit_seconds: float
    predict_seconds: float


def _percent(value: float) -> str:
    return "–" if math.isnan(value) else f"{100 * value:.1f}"


def metric_value(rows: Sequence[ResultRow], category: str, method: str, weights: str, metric: str) -> float:
    """The metric of one (category, method, weights) result, NaN when that result is absent."""
    for row in rows:
        if (row.category, row.method, row.weights) == (category, method, weights):
            return float(getattr(row, metric))
    return math.nan


def _mean(values: Sequence[float]) -> float:
    finite = [value for value in values if not math.isnan(value)]
    return sum(finite) / len(finite) if finite else math.nan


def comparison_table(
    rows: Sequence[ResultRow], metric: str, reference: str, candidate: str
) -> list[list[str]]:
    """Rows of a "reference/candidate" table for one metric, header first and a mean row last."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; expected one of {METRICS}")
    categories = list(dict.fromkeys(row.category for row in rows))
    methods = list(dict.fromkeys(row.method for row in rows))
    table = [["category", *methods]]
    for category in categories:
        cells = [
            f"{_percent(metric_value(rows, category, m, reference, metric))}/"
            f"{_percent(metric_value(rows, category, m, candidate, metric))}"
            for m in methods
        ]
        table.append([category, *cells])
    mean_cells = []
    for method in methods:
        pair = [
            _mean([metric_value(rows, c, method, weights, metric) for c in categories])
            for weights in (reference, candidate)
        ]
        mean_cells.append(f"{_percent(pair[0])}/{_percent(pair[1])}")
    table.append(["mean", *mean_cells])
    return table


def to_markdown(table: Sequence[Sequence[str]]) -> str:
    header, *body = table
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    return "\n".join(lines)


def comparison_markdown(rows: Sequence[ResultRow], reference: str, candidate: str) -> str:
    """All metric tables as Markdown, each titled with its metric and the meaning of the cells."""
    sections = []
    for metric in METRICS:
        table = comparison_table(rows, metric, reference, candidate)
        if all(cell.replace("–", "").strip("/") == "" for row in table[1:] for cell in row[1:]):
            continue  # a metric no row has (pixel metrics without masks) gets no empty table
        sections.append(f"### {METRIC_TITLES[metric]} — {reference}/{candidate}\n\n{to_markdown(table)}")
    return "\n\n".join(sections) + "\n"


def rows_to_csv(rows: Sequence[ResultRow]) -> str:
    buffer = io.StringIO()
    names = list(asdict(rows[0]).keys()) if rows else list(ResultRow.__dataclass_fields__)
    writer = csv.DictWriter(buffer, fieldnames=names, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(asdict(row))
    return buffer.getvalue()
