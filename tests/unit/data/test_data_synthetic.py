"""The synthetic MVTec-format generator: layout, exact masks, subtlety, determinism and caching."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fractalad.data import (
    SYNTHETIC_CATEGORIES,
    default_synthetic_root,
    generate_synthetic,
    load_category,
    load_mvtec,
)
from fractalad.data.synthetic import MARKER, SPECS, defect_types
from fractalad.data.synthetic.defects import MASK_THRESHOLD, Scene, defect_mask
from fractalad.data.synthetic.shapes import make_canvas
from fractalad.errors import InputError

STRUCTURAL = {"bent", "chip", "squeeze", "faulty_imprint", "missing", "misplaced", "bent_pin"}
SMALL = {"size": 64, "n_train": 2, "n_test_good": 1, "n_test_defect": 4}


def digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*.png"))
    }


def test_layout_counts_and_masks(tmp_path: Path) -> None:
    root = generate_synthetic(tmp_path, categories=("tile", "capsule"), seed=3, **SMALL)
    for name in ("tile", "capsule"):
        category = load_mvtec(root, name)
        assert category.has_masks
        assert category.counts()["train"] == 2 and category.counts()["test_good"] == 1
        assert category.defect_types == tuple(sorted(defect_types(name)))
        for sample in category.test:
            image = np.asarray(Image.open(sample.image_path))
            assert image.shape == (64, 64, 3) and image.dtype == np.uint8
            if sample.label == 1:
                mask = np.asarray(Image.open(sample.mask_path))
                assert mask.shape == (64, 64) and set(np.unique(mask)) == {0, 255}
    assert load_category("synthetic", root, "tile") == load_mvtec(root, "tile")


@pytest.mark.parametrize("name", SYNTHETIC_CATEGORIES)
def test_every_defect_is_exactly_masked_and_subtle(name: str) -> None:
    sample, render, defects = SPECS[name]
    canvas = make_canvas(128)
    for index, (kind, make_defect) in enumerate(defects.items()):
        rng = np.random.default_rng(index)
        params = sample(rng)
        good, support = render(params, canvas.y, canvas.x, canvas.px)
        assert good.shape == (128, 128, 3) and 0.0 <= good.min() and good.max() <= 1.0 + 1e-6
        defective = make_defect(Scene(params, canvas, good, support, render), rng)
        mask = defect_mask(good, defective)
        change = np.abs(defective - good).max(axis=2)
        assert mask.sum() > 0, kind
        # Exact: nothing outside the mask changed visibly; small: at most 8 % of the image.
        assert change[~mask].max(initial=0.0) <= MASK_THRESHOLD, kind
        assert mask.mean() < 0.08, kind
        # Subtle: a surface defect changes intensity by a fraction of the range (parts that are missing, moved
        # or bent change geometry instead, which is as visible as the part itself).
        if kind not in STRUCTURAL:
            assert float(np.median(change[mask])) < 0.2, kind


def test_deterministic_and_independent_of_counts(tmp_path: Path) -> None:
    first = generate_synthetic(tmp_path / "a", categories=("wood",), seed=5, **SMALL)
    second = generate_synthetic(tmp_path / "b", categories=("wood",), seed=5, **SMALL)
    assert digest(first) == digest(second)
    more = generate_synthetic(tmp_path / "c", categories=("wood",), seed=5, **{**SMALL, "n_train": 3})
    assert digest(more)["wood/train/good/001.png"] == digest(first)["wood/train/good/001.png"]
    other = generate_synthetic(tmp_path / "d", categories=("wood",), seed=6, **SMALL)
    assert digest(other)["wood/train/good/001.png"] != digest(first)["wood/train/good/001.png"]


def test_cache_is_reused_and_incomplete_data_rebuilt(tmp_path: Path) -> None:
    root = generate_synthetic(tmp_path, categories=("nut",), seed=1, **SMALL)
    image = root / "nut" / "train" / "good" / "000.png"
    stamp = image.stat().st_mtime_ns
    assert json.loads((root / "nut" / MARKER).read_text())["seed"] == 1
    generate_synthetic(tmp_path, categories=("nut",), seed=1, **SMALL)
    assert image.stat().st_mtime_ns == stamp
    (root / "nut" / MARKER).unlink()
    image.unlink()
    generate_synthetic(tmp_path, categories=("nut",), seed=1, **SMALL)
    assert image.is_file() and (root / "nut" / MARKER).is_file()
    generate_synthetic(tmp_path, categories=("nut",), seed=1, **{**SMALL, "n_train": 1})
    assert not image.with_name("001.png").exists() and image.is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left behind


def test_default_root_and_bad_arguments(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FRACTALAD_CACHE", str(tmp_path / "cache"))
    assert default_synthetic_root() == tmp_path / "cache" / "synthetic"
    with pytest.raises(InputError, match="unknown synthetic categories"):
        generate_synthetic(tmp_path, categories=("carpet",))
    with pytest.raises(InputError, match="size >= 16"):
        generate_synthetic(tmp_path, size=8)
    with pytest.raises(InputError, match="unknown synthetic category 'carpet'"):
        load_category("synthetic", tmp_path, "carpet")


def test_light_category_names_match_the_generators() -> None:
    # The CLI lists categories from fractalad.data.names without importing the generators (numpy).
    from fractalad.data import names
    from fractalad.data.synthetic.objects import OBJECTS
    from fractalad.data.synthetic.textures import TEXTURES

    assert names.SYNTHETIC_TEXTURES == tuple(TEXTURES)
    assert names.SYNTHETIC_OBJECTS == tuple(OBJECTS)
