"""Every grid under configs/grids reads and expands (no run) on stand-in data trees with its own categories."""

from __future__ import annotations

import csv
import dataclasses
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fractalad.bench.grid import expand_grid, read_grid
from fractalad.detectors.registry import list_detectors
from fractalad.errors import InputError

GRIDS = Path(__file__).resolve().parents[3] / "configs" / "grids"


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny synthetic root whose one category has 16 training images (the few-shot grid's largest k)."""
    from fractalad.data.synthetic import generate_synthetic

    root = tmp_path_factory.mktemp("template")
    return generate_synthetic(root, categories=["weave"], size=32, n_train=16, n_test_good=1, n_test_defect=1)


def mvtec_tree(root: Path, categories: list[str], template: Path) -> Path:
    """Each category a copy of one tiny synthetic category (the MVTec layout)."""
    for category in categories:
        shutil.copytree(template, root / category)
    return root


def visa_tree(root: Path, categories: list[str]) -> Path:
    """The raw VisA layout: two normal train images, one normal and one anomalous test image per category."""
    rows = []
    image = Image.fromarray(np.full((16, 16, 3), 128, np.uint8))
    mask = Image.fromarray(np.pad(np.ones((4, 4), np.uint8), 6))
    for category in categories:
        data = root / category / "Data"
        for name, split, label in (
            ("0", "train", "normal"),
            ("1", "train", "normal"),
            ("2", "test", "normal"),
        ):
            path = data / "Images" / "Normal" / f"{name}.JPG"
            path.parent.mkdir(parents=True, exist_ok=True)
            image.save(path, format="JPEG")
            rows.append([category, split, label, path.relative_to(root).as_posix(), ""])
        bad, bad_mask = data / "Images" / "Anomaly" / "3.JPG", data / "Masks" / "Anomaly" / "3.png"
        for path, picture, kind in ((bad, image, "JPEG"), (bad_mask, mask, "PNG")):
            path.parent.mkdir(parents=True, exist_ok=True)
            picture.save(path, format=kind)
        rows.append(
            [
                category,
                "test",
                "anomaly",
                bad.relative_to(root).as_posix(),
                bad_mask.relative_to(root).as_posix(),
            ]
        )
    (root / "split_csv").mkdir()
    with open(root / "split_csv" / "1cls.csv", "w", newline="") as handle:
        csv.writer(handle).writerows([["object", "split", "label", "image", "mask"], *rows])
    return root


@pytest.mark.parametrize("path", sorted(GRIDS.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_grid_expands(path: Path, tmp_path: Path, template: Path) -> None:
    grid = read_grid(path)
    assert set(grid.methods) <= set(list_detectors())
    weights_file = tmp_path / "backbone.safetensors"
    weights_file.write_bytes(b"stand-in weights")  # expansion only hashes a weight file; nothing loads it
    weights = {label: source if not source.endswith(".safetensors") else str(weights_file)
               for label, source in grid.weights.items()}  # fmt: skip
    categories = list(grid.categories)
    if grid.dataset == "mvtec":
        root = mvtec_tree(tmp_path / "mvtec", categories, template / "weave")
    elif grid.dataset == "visa":
        root = visa_tree(tmp_path / "visa", categories)
    else:
        root, categories = template, ["weave"]  # generating all six synthetic categories is the demo's job
    specs = expand_grid(
        dataclasses.replace(grid, root=root and str(root), weights=weights, categories=categories)
    )
    axes = len(categories) * len(grid.methods) * len(weights) * len(grid.seeds) * len(grid.few_shot)
    layer_sets = 1 if grid.layers == ["default"] else len(grid.layers)
    assert len(specs) == axes * layer_sets == len({s.run_id for s in specs})
    assert {s.weights_label for s in specs} == set(grid.weights)


def test_paper_grids_cover_the_papers_categories() -> None:
    assert len(read_grid(GRIDS / "paper-mvtec.yaml").categories) == 15
    assert len(read_grid(GRIDS / "paper-visa.yaml").categories) == 12
    for name in ("paper-mvtec.yaml", "paper-visa.yaml"):  # all eight of the paper's methods
        assert sorted(read_grid(GRIDS / name).methods) == list_detectors()
    few_shot = read_grid(GRIDS / "few-shot.yaml")
    assert few_shot.few_shot == (1, 2, 4, 8, 16, None) and len(few_shot.seeds) >= 3
    assert read_grid(GRIDS / "hierarchy.yaml").layers == [[1, 2], [2, 3], [3, 4], [1, 2, 3]]


def test_an_unregistered_method_is_refused_naming_the_registered_ones(tmp_path: Path) -> None:
    text = (GRIDS / "paper-mvtec.yaml").read_text().replace("  padim: {}", "  patch_core: {}")
    path = tmp_path / "grid.yaml"
    path.write_text(text)
    registered = re.escape(str(list_detectors()))
    with pytest.raises(InputError, match=rf"unknown detector 'patch_core'; choose one of {registered}"):
        expand_grid(read_grid(path))
