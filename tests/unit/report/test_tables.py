import math
from pathlib import Path

import pytest

from fractalad.report.figures import plot_metric_bars
from fractalad.report.tables import ResultRow, comparison_markdown, comparison_table, rows_to_csv


def _row(category: str, method: str, weights: str, image: float, pixel: float = math.nan) -> ResultRow:
    return ResultRow("synthetic", category, method, weights, image, pixel, math.nan, 1.0, 0.5)


ROWS = [
    _row("carpet", "PatchCore", "imagenet", 0.98, 0.97),
    _row("carpet", "PatchCore", "fractal", 0.75, 0.80),
    _row("screw", "PatchCore", "imagenet", 0.90, 0.95),
    _row("screw", "PatchCore", "fractal", 0.65, 0.70),
    _row("carpet", "PaDiM", "imagenet", 0.95),
    _row("carpet", "PaDiM", "fractal", 0.70),
]


def test_cells_are_reference_slash_candidate_in_percent() -> None:
    table = comparison_table(ROWS, "image_auroc", "imagenet", "fractal")
    assert table[0] == ["category", "PatchCore", "PaDiM"]
    assert table[1] == ["carpet", "98.0/75.0", "95.0/70.0"]
    # PaDiM has no screw result: the cell shows a dash instead of inventing a number.
    assert table[2] == ["screw", "90.0/65.0", "–/–"]
    assert table[3] == ["mean", "94.0/70.0", "95.0/70.0"]


def test_metric_without_any_value_is_left_out_of_markdown() -> None:
    text = comparison_markdown(ROWS, "imagenet", "fractal")
    assert "Image AUROC" in text and "Pixel AUROC" in text
    assert "AUPRO" not in text


def test_unknown_metric_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown metric 'f1'"):
        comparison_table(ROWS, "f1", "imagenet", "fractal")


def test_csv_has_one_line_per_row_and_all_fields() -> None:
    lines = rows_to_csv(ROWS).strip().splitlines()
    assert lines[0].split(",")[:4] == ["dataset", "category", "method", "weights"]
    assert len(lines) == len(ROWS) + 1


def test_figure_is_written_as_png(tmp_path: Path) -> None:
    path = plot_metric_bars(ROWS, ["image_auroc", "pixel_auroc"], tmp_path / "fig" / "bars.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
