"""`fractalad detect`: one run through the benchmark's run_one; metrics.json holds the grid's RunSpec and
RunResult (the same run id a grid gives the same settings), overlays, and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fractalad.bench.grid import GridFile, expand_grid
from fractalad.bench.result import RunResult
from fractalad.bench.spec import RunSpec
from fractalad.cli import main
from fractalad.data.synthetic import generate_synthetic
from fractalad.detectors import load_detector

CATEGORY = "tile"


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synthetic")
    return generate_synthetic(root, categories=[CATEGORY], size=64, n_train=6, n_test_good=3, n_test_defect=4)


def detect(root: Path, out: Path, *extra: str) -> int:
    common = ["detect", "--dataset", "synthetic", "--root", str(root), "--category", CATEGORY, "--size", "64"]
    return main([*common, "--backbone", "resnet18", "--out", str(out), *extra])


def test_detect_writes_the_grids_run_result_and_overlays(synthetic_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    extra = [
        "--method",
        "patchcore",
        "--weights",
        "random",
        "--layers",
        "2",
        "3",
        "--normalization",
        "imagenet",
    ]
    assert (
        detect(synthetic_root, out, *extra, "--param", "coreset_ratio=0.5", "--overlays", "3", "--save-model")
        == 0
    )
    payload = json.loads((out / "metrics.json").read_text())
    spec = RunSpec.from_json(json.dumps(payload["spec"]))
    result = RunResult.from_json(spec, json.dumps(payload["result"]))
    grid = GridFile(dataset="synthetic", root=str(synthetic_root), categories=[CATEGORY],
                    methods={"patchcore": {"coreset_ratio": 0.5}}, weights={"random": "random"},
                    backbone="resnet18", layers=[[2, 3]], seeds=(0,), size=64, normalization="imagenet")  # fmt: skip
    assert payload["run_id"] == spec.run_id == expand_grid(grid)[0].run_id
    assert spec.layers == (2, 3) and json.loads(spec.params)["coreset_ratio"] == 0.5
    assert result.weights_resolved == "random:seed=0"
    assert result.normalization_used == "0.485,0.456,0.406/0.229,0.224,0.225"
    assert {"torch", "torchvision", "timm", "fractalad"} <= set(result.provenance["versions"])
    assert result.pixel_auroc is not None and (result.n_train, result.n_test) == (6, 7)
    assert all((out / payload["artifacts_dir"] / a.path).is_file() for a in result.artifacts)
    assert len(payload["overlays"]) == 3 and all((out / p).stat().st_size > 1000 for p in payload["overlays"])
    assert load_detector(out / "detector.safetensors").get_params()["coreset_ratio"] == 0.5


def test_detect_bad_input_is_one_line(synthetic_root: Path, tmp_path: Path, capsys) -> None:
    missing = str(tmp_path / "missing.safetensors")
    assert detect(synthetic_root, tmp_path / "o", "--method", "padim", "--weights", missing) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("fractalad detect: error:") and "missing.safetensors" in err[-1]
    assert not any(line.startswith("Traceback") for line in err)
