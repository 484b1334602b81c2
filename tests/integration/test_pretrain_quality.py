"""The recipe quality benchmark end to end at smoke size: pre-trains, evaluates, caches, and names bad input."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from fractalad.errors import InputError

ROOT = Path(__file__).resolve().parents[2]
SMOKE = (
    "t=tiny:num_classes=4:num_systems=4:samples_per_class=8:batch_size=8:render_size=40:crop=32"
    ":render_points=2000:workers=0:checkpoint_every_steps=0"
)


def _benchmark():
    spec = importlib.util.spec_from_file_location(
        "pretrain_quality", ROOT / "benchmarks" / "pretrain_quality.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module's annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def test_benchmark_trains_evaluates_and_reuses_its_cache(tmp_path: Path, capsys) -> None:
    bench = _benchmark()
    args = [
        "--out",
        str(tmp_path / "q"),
        "--recipes",
        SMOKE,
        "--images",
        "32",
        "--sizes",
        "64",
        "--categories",
        "weave",
        "--synthetic-root",
        str(tmp_path / "synthetic"),
        "--threads",
        "1",
    ]
    table = bench.main(args)
    rows = {line.split("|")[1].strip(): line for line in table.splitlines()[2:]}
    assert set(rows) == {"random", "t"}
    summary = json.loads((tmp_path / "q" / "pretrain" / "t" / "summary.json").read_text())
    assert summary["global_step"] == 32 // 8  # the budget: 32 images at batch 8
    result = tmp_path / "q" / "eval" / "t" / "64" / "weave-padim.json"
    before = result.stat().st_mtime_ns
    capsys.readouterr()
    assert bench.main(args) == table
    assert "pre-training" not in capsys.readouterr().out and result.stat().st_mtime_ns == before


def test_budget_must_be_whole_epochs_and_labels_must_differ_from_random() -> None:
    bench = _benchmark()
    with pytest.raises(InputError, match="not a whole number of epochs of 5000"):
        bench.parse_recipe("x=tiny", 7000, 0)
    with pytest.raises(InputError, match="other than 'random'"):
        bench.parse_recipe("random=tiny", 5000, 0)
    assert bench.parse_recipe("x=tiny:crop=48", 20_000, 3).config.epochs == 4
