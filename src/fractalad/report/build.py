"""`fractalad report`: read a results store (and its saved artefacts) and write every table and figure."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from fractalad.bench.artifacts import default_artifacts
from fractalad.bench.result import RunResult
from fractalad.bench.spec import RunSpec
from fractalad.bench.store import ResultsStore
from fractalad.errors import InputError
from fractalad.files import write_text_atomic
from fractalad.report.grid_tables import build_tables
from fractalad.report.render import html_page, to_csv, to_latex, to_markdown


@dataclass(frozen=True)
class ReportFiles:
    markdown: Path
    html: Path
    tables: tuple[Path, ...]
    figures: tuple[Path, ...]


def weight_labels(specs: Sequence[RunSpec], reference: str | None, candidate: str | None) -> tuple[str, str]:
    """The two weight sources compared: the given ones, else the grid's first two labels (reference first)."""
    labels = list(dict.fromkeys(spec.weights_label for spec in specs))
    for given in (reference, candidate):
        if given is not None and given not in labels:
            raise InputError(f"weights label {given!r} is not in the store; it holds {', '.join(labels)}")
    if reference is None:
        reference = labels[0]
    if candidate is None:
        others = [label for label in labels if label != reference]
        candidate = others[0] if others else reference
    return reference, candidate


RUN_COLUMNS: tuple[str, ...] = (
    "run_id", "dataset", "category", "method", "weights_label", "layers", "seed", "few_shot",
    "image_auroc", "pixel_auroc", "aupro", "n_train", "n_test", "fit_seconds", "predict_seconds", "peak_rss_mb",
)  # fmt: skip


def runs_csv(results: Sequence[RunResult]) -> str:
    """One line per finished run: its axes, metrics (fractions; empty = undefined), sizes, timings, memory."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(RUN_COLUMNS)
    for result in results:
        spec = result.spec
        axes = [result.run_id, spec.dataset, spec.category, spec.method, spec.weights_label]
        axes += [",".join(map(str, spec.layers)), spec.seed, "" if spec.few_shot is None else spec.few_shot]
        measured = [getattr(result, name) for name in RUN_COLUMNS[len(axes) :]]
        writer.writerow(axes + ["" if value is None else value for value in measured])
    return buffer.getvalue()


def draw_figures(
    results: Sequence[RunResult], labels: tuple[str, str], out: Path, artifacts: Path
) -> list[tuple[str, Path]]:
    """Every figure the stored results support, as (caption, PNG path)."""
    from fractalad.report.grid_figures import figure_set

    return figure_set(results, labels, out / "figures", artifacts)


def build_report(
    store_path: str | Path,
    out_dir: str | Path,
    reference: str | None = None,
    candidate: str | None = None,
    artifacts: str | Path | None = None,
) -> ReportFiles:
    """Tables 1-8 (Markdown, CSV, LaTeX), figures (PNG) and index.html from the store alone."""
    store_path, out = Path(store_path), Path(out_dir)
    store = ResultsStore(store_path, create=False)
    try:
        specs, results, counts = store.specs(), store.results(), store.counts()
    finally:
        store.close()
    if not results:
        raise InputError(
            f"{store_path} holds no finished runs yet ({counts}); run `fractalad bench run` first"
        )
    labels = weight_labels(specs, reference, candidate)
    tables = build_tables(results, labels, specs)
    written = []
    for table in tables:
        for suffix, text in ((".md", to_markdown(table)), (".csv", to_csv(table)), (".tex", to_latex(table))):
            path = out / "tables" / f"{table.key}{suffix}"
            write_text_atomic(path, text)
            written.append(path)
    artifacts_dir = Path(artifacts) if artifacts else default_artifacts(store_path)
    figures = draw_figures(results, labels, out, artifacts_dir)
    state = "complete" if counts["done"] == sum(counts.values()) else "partial"
    summary = (
        f"{store_path.name}: {counts['done']} of {sum(counts.values())} runs done ({state} grid; "
        f"{counts['failed']} failed, {counts['pending'] + counts['running']} not run). "
        f"Reference {labels[0]!r}, candidate {labels[1]!r}."
    )
    runs = out / "runs.csv"
    write_text_atomic(runs, runs_csv(results))
    written.append(runs)
    markdown = out / "report.md"
    write_text_atomic(
        markdown, f"# fractalad report\n\n{summary}\n\n" + "\n".join(to_markdown(t) for t in tables)
    )
    page = out / "index.html"
    write_text_atomic(page, html_page("fractalad report", summary, tables, figures))
    return ReportFiles(markdown, page, tuple(written), tuple(path for _, path in figures))
