"""Tables 1-8 in the paper's layout from stored RunResults: "reference/candidate" cells in percent, the best
of each column marked, the paper's numbers and our difference beside them where the dataset is the paper's.

Rules (SPECS.md §11): a mean is taken only over a complete set of categories, a table missing any cell is
titled partial, and nothing is imputed. Several seeds of one cell are averaged (their count is noted).
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

from fractalad.bench.result import RunResult
from fractalad.bench.spec import RunSpec
from fractalad.report.paper import (
    CATEGORY_ORDER,
    GROUPS,
    METRIC_TITLES,
    METRICS,
    PAPER_TABLES,
    category_order,
    method_order,
    method_title,
    paper_numbers,
)

Pair = tuple[float | None, float | None]  # (reference, candidate) in percent


@dataclass(frozen=True)
class Table:
    """A table whose body cells are (reference, candidate) pairs; `marked` holds the best of each column."""

    key: str
    title: str
    header: list[str]
    row_names: list[str]
    cells: list[list[Pair]]
    notes: list[str] = field(default_factory=list)

    def best(self) -> set[tuple[int, int, int]]:
        """(row, column, side) of the highest value per column and side (0 reference, 1 candidate), means out."""
        marked: set[tuple[int, int, int]] = set()
        if self.key.endswith("_std"):
            return marked  # a spread has no best
        for column in range(len(self.header)):
            for side in (0, 1):
                values = [
                    (row[column][side], r)
                    for r, row in enumerate(self.cells)
                    if row[column][side] is not None and self.row_names[r] != "mean"
                ]
                if values:
                    top = max(v for v, _ in values)
                    marked |= {(r, column, side) for v, r in values if v == top}
        return marked


@dataclass(frozen=True)
class Cells:
    """Percent values per (dataset, category, method, weights label, metric), averaged over seeds."""

    values: dict[tuple[str, str, str, str, str], float]
    seeds: dict[tuple[str, str, str, str], int]

    def get(self, dataset: str, category: str, method: str, label: str, metric: str) -> float | None:
        return self.values.get((dataset, category, method, label, metric))


def main_layers(results: Sequence[RunResult]) -> dict[str, tuple[int, ...]]:
    """The layer set each method's main tables use: its only one, else the one with the most runs."""
    counts: dict[str, dict[tuple[int, ...], int]] = defaultdict(lambda: defaultdict(int))
    for result in results:
        counts[result.spec.method][result.spec.layers] += 1
    return {method: max(sets, key=lambda s: (sets[s], -len(s))) for method, sets in counts.items()}


def collect_cells(results: Sequence[RunResult], layers: dict[str, tuple[int, ...]] | None = None) -> Cells:
    """Full-shot results on each method's main layers (or the given `layers`), seeds averaged."""
    layers = layers or main_layers(results)
    gathered: dict[tuple[str, str, str, str, str], list[float]] = defaultdict(list)
    seeds: dict[tuple[str, str, str, str], set[int]] = defaultdict(set)
    for result in results:
        spec = result.spec
        if spec.few_shot is not None or spec.layers != layers.get(spec.method):
            continue
        base = (spec.dataset, spec.category, spec.method, spec.weights_label)
        seeds[base].add(spec.seed)
        for metric in METRICS:
            value = getattr(result, metric)
            if value is not None:
                gathered[(*base, metric)].append(100.0 * value)
    values = {key: statistics.fmean(v) for key, v in gathered.items()}
    return Cells(values, {key: len(s) for key, s in seeds.items()})


def _mean_if_complete(values: list[float | None]) -> float | None:
    return None if not values or any(v is None for v in values) else statistics.fmean(values)  # type: ignore[arg-type]


def category_table(
    cells: Cells,
    dataset: str,
    metric: str,
    categories: list[str],
    methods: list[str],
    labels: tuple[str, str],
) -> Table:
    """Tables 3-8: categories as rows plus a mean row, methods as columns."""
    rows = [
        [tuple(cells.get(dataset, c, m, label, metric) for label in labels) for m in methods]
        for c in categories
    ]
    mean = [
        tuple(_mean_if_complete([row[j][side] for row in rows]) for side in (0, 1))
        for j in range(len(methods))
    ]
    missing = sum(v is None for row in rows for pair in row for v in pair)
    number = PAPER_TABLES.get((dataset, metric))
    title = f"Table {number}: " if number else ""
    title += f"{dataset} {METRIC_TITLES[metric]} ({labels[0]}/{labels[1]}, %)"
    notes = []
    if missing:
        title += " — partial"
        notes.append(f"{missing} cells missing; means only over complete category sets")
    return Table(f"table{number or ''}_{dataset}_{metric}", title, [method_title(m) for m in methods],
                 [*categories, "mean"], [*rows, mean], notes)  # fmt: skip


def table1(
    cells: Cells, datasets: dict[str, list[str]], methods: list[str], labels: tuple[str, str]
) -> Table:
    """Table 1: each method's mean per dataset and metric (only over complete category sets)."""
    header = [f"{d} {METRIC_TITLES[m]}" for d in datasets for m in METRICS]
    rows = []
    for method in methods:
        row = []
        for dataset, categories in datasets.items():
            for metric in METRICS:
                table = category_table(cells, dataset, metric, categories, [method], labels)
                row.append(table.cells[-1][0])
        rows.append(row)
    return Table("table1_means", f"Table 1: mean per method ({labels[0]}/{labels[1]}, %)", header,
                 [method_title(m) for m in methods], rows)  # fmt: skip


def table2(
    cells: Cells, dataset: str, categories: list[str], methods: list[str], labels: tuple[str, str]
) -> Table:
    """Table 2: image AUROC averaged over the paper's category groups (a group mean needs all its members)."""
    groups = GROUPS[dataset]
    rows = []
    for method in methods:
        row = []
        for members in groups.values():
            row.append(tuple(
                _mean_if_complete([cells.get(dataset, c, method, labels[side], "image_auroc") for c in members])
                for side in (0, 1)
            ))  # fmt: skip
        rows.append(row)
    return Table(f"table2_{dataset}_groups", f"Table 2: {dataset} image AUROC by category group "
                 f"({labels[0]}/{labels[1]}, %)", list(groups), [method_title(m) for m in methods], rows)  # fmt: skip


def paper_table(ours: Table, dataset: str, metric: str, methods: list[str]) -> tuple[Table, Table] | None:
    """The paper's numbers in the layout of `ours`, and ours minus the paper's (None when nothing matches)."""
    numbers = paper_numbers()
    rows = [
        [numbers.get((dataset, metric, row, method_title(m)), (None, None)) for m in methods]
        for row in ours.row_names
    ]
    if all(v is None for row in rows for pair in row for v in pair):
        return None
    diff = [
        [tuple(None if a[s] is None or b[s] is None else a[s] - b[s] for s in (0, 1)) for a, b in zip(o, p, strict=True)]
        for o, p in zip(ours.cells, rows, strict=True)
    ]  # fmt: skip
    paper = Table(f"{ours.key}_paper", f"{ours.title.split(' (')[0]} — the paper (ImageNet/Fractals, %)",
                  ours.header, ours.row_names, rows)  # fmt: skip
    difference = Table(f"{ours.key}_difference", f"{ours.title.split(' (')[0]} — ours minus the paper (points)",
                       ours.header, ours.row_names, diff)  # fmt: skip
    return paper, difference


def expected_categories(specs: Sequence[RunSpec | RunResult]) -> dict[str, list[str]]:
    """Per dataset, the categories a complete table needs: the grid's, and all of the paper's for its datasets."""
    found: dict[str, set[str]] = defaultdict(set)
    for item in specs:
        spec = item.spec if isinstance(item, RunResult) else item
        found[spec.dataset].add(spec.category)
    return {d: category_order(d, c | set(CATEGORY_ORDER.get(d, ()))) for d, c in found.items()}


def _seed_means(
    results: Sequence[RunResult], dataset: str, metric: str, layers: dict[str, tuple[int, ...]]
) -> tuple[dict[tuple[str, str, int | None], list[float]], set[str]]:
    """Per (method, label, k): one mean over the few-shot categories per seed, for seeds that cover them all."""
    by_seed: dict[tuple[str, str, int | None, int], dict[str, float]] = defaultdict(dict)
    few_shot_categories = set()
    for result in results:
        spec, value = result.spec, getattr(result, metric)
        if spec.dataset != dataset or spec.layers != layers.get(spec.method) or value is None:
            continue
        by_seed[(spec.method, spec.weights_label, spec.few_shot, spec.seed)][spec.category] = 100.0 * value
        if spec.few_shot is not None:
            few_shot_categories.add(spec.category)
    means: dict[tuple[str, str, int | None], list[float]] = defaultdict(list)
    for (method, label, k, _), values in sorted(by_seed.items(), key=lambda item: str(item[0])):
        if few_shot_categories and few_shot_categories <= set(values):
            means[(method, label, k)].append(statistics.fmean(values[c] for c in few_shot_categories))
    return means, few_shot_categories


def few_shot_tables(results: Sequence[RunResult], labels: tuple[str, str]) -> list[Table]:
    """SPECS.md §12: per dataset and metric, k as rows ("full" last), methods as columns; the mean over seeds of
    each seed's mean over the few-shot categories, and the standard deviation over seeds in a second table."""
    layers = main_layers(results)
    tables = []
    for dataset in sorted({r.spec.dataset for r in results if r.spec.few_shot is not None}):
        methods = method_order({r.spec.method for r in results if r.spec.dataset == dataset})
        for metric in METRICS:
            means, categories = _seed_means(results, dataset, metric, layers)
            ks = sorted({k for _, _, k in means if k is not None}) + (
                [None] if any(k is None for *_, k in means) else []
            )
            if not ks:
                continue
            seeds = {len(v) for v in means.values()}
            mean_rows, std_rows = [], []
            for k in ks:
                runs = [[means.get((m, label, k), []) for label in labels] for m in methods]
                mean_rows.append([tuple(statistics.fmean(v) if v else None for v in pair) for pair in runs])
                std_rows.append(
                    [tuple(statistics.stdev(v) if len(v) > 1 else None for v in pair) for pair in runs]
                )
            rows = [f"k={k}" if k is not None else "full" for k in ks]
            header = [method_title(m) for m in methods]
            title = f"Few-shot {dataset} {METRIC_TITLES[metric]} ({labels[0]}/{labels[1]}, %)"
            note = (
                f"each seed's mean over {len(categories)} categories, then over seeds "
                f"({'/'.join(map(str, sorted(seeds)))} per cell); std is the sample standard deviation"
            )
            partial = (
                " — partial" if any(v is None for row in mean_rows for pair in row for v in pair) else ""
            )
            tables.append(
                Table(
                    f"fewshot_{dataset}_{metric}",
                    f"{title}: mean over seeds{partial}",
                    header,
                    rows,
                    mean_rows,
                    [note],
                )
            )
            tables.append(Table(f"fewshot_{dataset}_{metric}_std", f"{title}: std over seeds{partial}", header,
                                rows, std_rows, [note]))  # fmt: skip
    return tables


def build_tables(
    results: Sequence[RunResult], labels: tuple[str, str], grid: Sequence[RunSpec] | None = None
) -> list[Table]:
    """Tables 1, 2 and 3-8 (per dataset and metric) with the paper's numbers where they exist.

    `grid` is every run asked for (done or not), so missing runs show as gaps and the table as partial.
    """
    cells = collect_cells(results)
    datasets = expected_categories(results if grid is None else grid)
    methods = method_order({r.spec.method for r in results})
    tables = [table1(cells, datasets, methods, labels)]
    tables += [table2(cells, d, c, methods, labels) for d, c in datasets.items() if d in GROUPS]
    for dataset, categories in datasets.items():
        for metric in METRICS:
            ours = category_table(cells, dataset, metric, categories, methods, labels)
            if all(v is None for row in ours.cells for pair in row for v in pair):
                continue  # a metric no run has (pixel metrics without masks) gets no empty table
            tables.append(ours)
            paper = paper_table(ours, dataset, metric, methods)
            tables += list(paper) if paper else []
    return tables + few_shot_tables(results, labels)
