"""The README's main job, shrunk to seconds: every stage runs for real on tiny settings."""

import json
import math
from pathlib import Path

from fractalad.cli import main

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


def test_demo_end_to_end_writes_paper_layout_report(tmp_path: Path, capsys) -> None:
    out = tmp_path / "demo"
    code = main(
        [
            "demo",
            "--out",
            str(out),
            "--categories",
            "weave",
            "--methods",
            "patchcore",
            "--size",
            "64",
            "--synthetic-root",
            str(tmp_path / "synthetic"),
            *TINY_PRETRAIN,
        ]
    )
    assert code == 0
    report = (out / "results.md").read_text()
    # The table compares a reference against the fractal weights, "reference/fractal" per cell.
    assert "random/fractal" in report
    assert "| weave |" in report
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert {row["weights"] for row in rows} >= {"random", "fractal"}
    for row in rows:
        assert 0.0 <= row["image_auroc"] <= 1.0
        assert row["pixel_auroc"] is None or 0.0 <= row["pixel_auroc"] <= 1.0
        assert row["fit_seconds"] > 0 and not math.isnan(row["fit_seconds"])
    for figure in ("results.png", "fractals.png", "filters.png"):
        assert (out / figure).read_bytes()[:4] == b"\x89PNG"
    # A second run reuses the finished pre-training: no new training steps are logged.
    assert (out / "pretrain" / "backbone.safetensors").is_file()
    training_log = (out / "pretrain" / "metrics.csv").read_text()
    assert (
        main(
            [
                "demo",
                "--out",
                str(out),
                "--categories",
                "weave",
                "--methods",
                "patchcore",
                "--size",
                "64",
                "--synthetic-root",
                str(tmp_path / "synthetic"),
                *TINY_PRETRAIN,
            ]
        )
        == 0
    )
    assert (out / "pretrain" / "metrics.csv").read_text() == training_log
