"""The README's main job, shrunk to seconds: pre-training, the demo grid through the runner, the report."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from fractalad.bench.grid import read_grid
from fractalad.cli import main
from fractalad.demo import DemoSettings, demo_grid

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "grids"
TINY_PRETRAIN = [
    "epochs=1",
    "num_classes=4",
    "num_systems=4",
    "samples_per_class=8",
    "batch_size=8",
    "render_size=40",
    "crop=32",
    "render_points=3000",
    "checkpoint_every_steps=0",
    "workers=0",
]


def demo(out: Path, synthetic: Path) -> int:
    arguments = ["demo", "--out", str(out), "--categories", "weave", "--methods", "patchcore", "--size", "64"]
    return main([*arguments, "--device", "cpu", "--synthetic-root", str(synthetic), *TINY_PRETRAIN])


def store_rows(store: Path) -> list[tuple]:
    with sqlite3.connect(store) as db:
        return db.execute(
            "SELECT run_id, status, image_auroc, pixel_auroc, ended FROM runs ORDER BY run_id"
        ).fetchall()


def test_shipped_demo_grid_is_the_demos_default_grid() -> None:
    default = demo_grid(DemoSettings(), Path("outputs/demo/pretrain/backbone.safetensors"), imagenet=False)
    assert read_grid(CONFIGS / "demo.yaml") == default


def test_demo_runs_its_grid_into_a_store_and_reports_it(tmp_path: Path, capsys) -> None:
    out = tmp_path / "demo"
    assert demo(out, tmp_path / "synthetic") == 0
    printed = capsys.readouterr().out
    # Tables compare the reference with the fractal weights, "reference/fractal" per cell, one row per category.
    report = (out / "report.md").read_text()
    assert "(random/fractal, %)" in report and "| weave |" in report and report in printed
    rows = store_rows(out / "results.db")
    assert len(rows) == 2 and {r[1] for r in rows} == {"done"}  # patchcore x {random, fractal}
    runs = (out / "runs.csv").read_text().splitlines()
    assert len(runs) == 3 and {line.split(",")[4] for line in runs[1:]} == {"random", "fractal"}
    for figure in ("categories_synthetic.png", "filters.png", "fractals_fractal.png", "qualitative.png"):
        assert (out / "figures" / figure).read_bytes()[:4] == b"\x89PNG"
    assert "fractals_fractal.png" not in (out / "index.html").read_text()  # inlined, not linked
    assert read_grid(out / "grid.yaml").weights["fractal"] == str(out / "pretrain" / "backbone.safetensors")
    # A second run reuses the finished pre-training and the finished runs: nothing is trained or run again.
    training_log = (out / "pretrain" / "metrics.csv").read_text()
    assert demo(out, tmp_path / "synthetic") == 0
    assert (out / "pretrain" / "metrics.csv").read_text() == training_log
    assert store_rows(out / "results.db") == rows
