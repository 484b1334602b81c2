"""`fractalad pretrain`, `pretrain-export` and `viz filters` end to end on real fractals at a tiny budget."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from PIL import Image

from fractalad.backbones.weights import load_weights
from fractalad.cli import main

BUDGET = [
    "num_classes=4",
    "num_systems=4",
    "samples_per_class=8",
    "batch_size=8",
    "epochs=1",
    "render_size=36",
    "crop=32",
    "render_points=2000",
    "workers=0",
    "threads=1",
]


def test_pretrain_export_and_filters(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert main(["pretrain", "--preset", "tiny", "--out", str(out), *BUDGET]) == 0
    assert f"backbone weights: {out / 'backbone.safetensors'}" in capsys.readouterr().out
    resolved = yaml.safe_load((out / "config.yaml").read_text())
    assert resolved["preset"] == "tiny" and resolved["num_classes"] == 4 and resolved["crop"] == 32
    assert (out / "systems.npz").exists() and (out / "metrics.csv").exists()

    # Re-running into a folder with a checkpoint needs --resume; with it, the finished run just re-exports.
    assert main(["pretrain", "--preset", "tiny", "--out", str(out), *BUDGET]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["pretrain", "--preset", "tiny", "--out", str(out), "--resume", *BUDGET]) == 0

    exported = tmp_path / "exported.safetensors"
    assert main(["pretrain-export", str(out / "last.pt"), str(exported)]) == 0
    state, meta = load_weights(exported)
    assert "fc.weight" not in state and meta["arch"] == "resnet18" and len(meta["systems_sha256"]) == 64

    png = tmp_path / "filters.png"
    assert main(["viz", "filters", str(exported), "--out", str(png)]) == 0
    assert Image.open(png).size[0] > 100
    assert main(["viz", "filters", "random", "--arch", "resnet18", "--out", str(tmp_path / "r.png")]) == 0


def test_cli_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pretrain", "--preset", "tiny", "--out", str(tmp_path), "learning_rate=1"]) == 2
    err = capsys.readouterr().err
    assert "unknown key(s) 'learning_rate'" in err and "valid keys" in err and "Traceback" not in err
    assert main(["pretrain", "--out", str(tmp_path)]) == 2
    assert "--preset" in capsys.readouterr().err
    assert main(["pretrain-export", str(tmp_path / "missing.pt"), str(tmp_path / "x.safetensors")]) == 2
    assert main(["pretrain", "--preset", "af", "--print-config", "epochs=3"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["arch"] == "resnet50" and printed["epochs"] == 3 and printed["mean"] is None
