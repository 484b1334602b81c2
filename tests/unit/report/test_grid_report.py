"""Tables from stored results: the paper's layout and numbers, partial grids, no imputation; the HTML page."""

from __future__ import annotations

from pathlib import Path

import pytest
from bench_rows import make_result, make_spec

from fractalad.bench.store import ResultsStore
from fractalad.report.build import build_report
from fractalad.report.grid_tables import build_tables
from fractalad.report.paper import CATEGORY_ORDER, paper_numbers
from fractalad.report.render import to_latex, to_markdown


def mvtec_results(categories, auroc_by_label):
    results = []
    for category in categories:
        for label, value in auroc_by_label.items():
            spec = make_spec(
                category, method="patchcore", dataset="mvtec", weights_label=label, weights_id=label
            )
            results.append(make_result(spec, value))
    return results


def test_paper_numbers_are_read_from_the_shipped_csv() -> None:
    numbers = paper_numbers()
    assert numbers[("mvtec", "image_auroc", "mean", "PatchCore")] == (98.7, 75.1)
    assert numbers[("mvtec", "aupro", "carpet", "FastFlow")] == (None, 51.3)  # the paper's missing 1.21 value


def test_complete_mvtec_table_has_means_and_the_paper_difference() -> None:
    results = mvtec_results(CATEGORY_ORDER["mvtec"], {"imagenet": 0.9, "fractal": 0.6})
    tables = {t.key: t for t in build_tables(results, ("imagenet", "fractal"))}
    ours = tables["table3_mvtec_image_auroc"]
    assert ours.row_names[-1] == "mean" and ours.cells[-1][0] == (90.0, 60.0)
    assert "partial" not in ours.title
    difference = tables["table3_mvtec_image_auroc_difference"]
    carpet = difference.row_names.index("carpet")
    assert difference.cells[carpet][0] == (90.0 - 98.0, 60.0 - 40.9)
    assert "| carpet | **90.0**/**60.0** |" in to_markdown(ours)
    assert r"\textbf{90.0}/\textbf{60.0}" in to_latex(ours)
    groups = tables["table2_mvtec_groups"]
    assert groups.header == ["textures", "objects"] and groups.cells[0] == [(90.0, 60.0), (90.0, 60.0)]


def test_a_partial_grid_is_labelled_and_never_averaged() -> None:
    results = mvtec_results(["carpet", "grid"], {"imagenet": 0.9, "fractal": 0.6})
    tables = {t.key: t for t in build_tables(results, ("imagenet", "fractal"))}
    ours = tables["table3_mvtec_image_auroc"]
    assert "partial" in ours.title and ours.cells[-1][0] == (None, None)
    assert ours.row_names[:-1] == list(CATEGORY_ORDER["mvtec"])  # missing categories show as gaps
    assert tables["table1_means"].cells[0][0] == (None, None)
    assert tables["table2_mvtec_groups"].cells[0] == [(None, None), (None, None)]
    assert "–/–" in to_markdown(ours)


def test_report_writes_tables_and_one_self_contained_html(tmp_path: Path) -> None:
    results = mvtec_results(["carpet", "grid"], {"imagenet": 0.9, "fractal": 0.6})
    store = ResultsStore(tmp_path / "r.db")
    store.add_pending([r.spec for r in results])
    store.select_runs([r.spec.run_id for r in results])
    for result in results[:3]:
        spec = store.claim("a:1", 1, 60)
        store.finish(next(r for r in results if r.spec == spec), "a:1")
    store.close()
    files = build_report(tmp_path / "r.db", tmp_path / "out")
    page = files.html.read_text()
    assert "3 of 4 runs done (partial grid" in page and "Table 3: mvtec image AUROC" in page
    assert "<script" not in page and "src='http" not in page
    assert (tmp_path / "out" / "tables" / "table3_mvtec_image_auroc.tex").is_file()


def test_few_shot_table_gives_mean_and_std_over_seeds_of_category_means() -> None:
    results = []
    for k, base in ((1, 0.60), (2, 0.70), (None, 0.90)):
        for seed, shift in ((0, 0.0), (1, 0.02), (2, 0.04)):
            for category, offset in (("tile", 0.0), ("weave", 0.10)):
                for label, gap in (("imagenet", 0.0), ("fractal", -0.2)):
                    spec = make_spec(category, seed=seed, few_shot=k, weights_label=label, weights_id=label)
                    results.append(make_result(spec, base + shift + offset + gap))
    tables = {t.key: t for t in build_tables(results, ("imagenet", "fractal"))}
    mean, std = tables["fewshot_synthetic_image_auroc"], tables["fewshot_synthetic_image_auroc_std"]
    assert mean.row_names == ["k=1", "k=2", "full"] and std.row_names == mean.row_names
    # k=1, seed s: category mean = 60 + 2s + 5 (imagenet), 20 points lower (fractal); over seeds: 67 and 47.
    assert mean.cells[0][0] == pytest.approx((67.0, 47.0)) and mean.cells[2][0] == pytest.approx((97.0, 77.0))
    assert std.cells[1][0] == pytest.approx((2.0, 2.0)) and not std.best()
    assert "then over seeds (3 per cell)" in mean.notes[0]
