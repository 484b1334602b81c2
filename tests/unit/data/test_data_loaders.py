"""MVTec AD, VisA and folder loaders on generated trees in the real layouts, including every error path."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from data_trees import rgb, write_image

from fractalad.data import load_category, load_folder, load_mvtec, load_visa
from fractalad.data.images import AnomalyImageDataset
from fractalad.errors import InputError


def test_mvtec_category(mvtec_root: Path) -> None:
    category = load_mvtec(mvtec_root, "bottle")
    assert category.name == "bottle" and category.root == mvtec_root / "bottle"
    assert [s.image_path.name for s in category.train] == ["000.png", "001.png", "002.png"]
    assert all(s.label == 0 and s.mask_path is None and s.defect_type == "good" for s in category.train)
    assert category.counts() == {
        "train": 3,
        "test_good": 2,
        "test_anomalous": 3,
        "masks": 3,
        "defect:broken_large": 2,
        "defect:contamination": 1,
    }
    assert category.defect_types == ("broken_large", "contamination")
    assert category.has_masks
    for sample in category.test:
        if sample.label == 1:
            assert sample.mask_path == mvtec_root / "bottle" / "ground_truth" / sample.defect_type / (
                f"{sample.image_path.stem}_mask.png"
            )
    assert load_category("mvtec", mvtec_root, "bottle") == category


def test_mvtec_errors(mvtec_root: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        load_mvtec(tmp_path / "nowhere", "bottle")
    with pytest.raises(InputError, match=r"'carpet' not found .* available: bottle, grid"):
        load_mvtec(mvtec_root, "carpet")
    (mvtec_root / "cable").mkdir()
    with pytest.raises(InputError, match="has no train/ or test/ folder; expected .*train/good"):
        load_mvtec(mvtec_root, "cable")
    for path in (mvtec_root / "bottle" / "train" / "good").iterdir():
        path.unlink()
    with pytest.raises(InputError, match="holds no images"):
        load_mvtec(mvtec_root, "bottle")
    (mvtec_root / "grid" / "ground_truth" / "bent" / "000_mask.png").unlink()
    with pytest.raises(
        InputError, match=r"defect image .*bent.000\.png has no mask; expected .*000_mask\.png"
    ):
        load_mvtec(mvtec_root, "grid")


def test_mvtec_missing_test_folder(mvtec_root: Path) -> None:
    shutil.rmtree(mvtec_root / "grid" / "test")
    with pytest.raises(InputError, match=r"test is missing; expected"):
        load_mvtec(mvtec_root, "grid")


def test_visa_category(visa_root: Path) -> None:
    category = load_visa(visa_root, "candle")
    assert category.root == visa_root / "candle"
    assert len(category.train) == 3 and all(s.label == 0 for s in category.train)
    labels = [s.label for s in category.test]
    assert labels == [0, 1, 1]
    assert category.has_masks and category.defect_types == ("anomaly",)
    item = AnomalyImageDataset(category.test, size=30)[2]
    # Palette index map with class 2 in the top-left 10x10 block, resized 30x40 -> 30x30 (x scale 0.75).
    mask = item["mask"].numpy()
    assert set(np.unique(mask)) == {0.0, 1.0}
    assert mask[:10, :7].all() and mask[10:].sum() == 0 and mask[:, 8:].sum() == 0


def test_visa_errors(visa_root: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"'cashew' not in .*1cls.csv; available: candle, pcb1"):
        load_visa(visa_root, "cashew")
    with pytest.raises(InputError, match=r"lists no test images"):
        load_visa(visa_root, "pcb1")
    with pytest.raises(InputError, match=r"split_csv.1cls.csv is missing; expected the raw VisA layout"):
        load_visa(tmp_path, "candle")
    csv_path = visa_root / "split_csv" / "1cls.csv"
    text = csv_path.read_text()
    csv_path.write_text(text.replace("object,split,label,image,mask", "object,split,image"))
    with pytest.raises(InputError, match=r"lacks columns label, mask \(found: object, split, image\)"):
        load_visa(visa_root, "candle")
    csv_path.write_text(text.replace("candle/Data/Masks/Anomaly/001.png", ""))
    with pytest.raises(InputError, match=r"1cls.csv:7: anomalous image .*001.JPG has no mask"):
        load_visa(visa_root, "candle")
    csv_path.write_text(text.replace("Normal/0001.JPG", "Normal/9999.JPG"))
    with pytest.raises(InputError, match=r"1cls.csv:3: image .*9999.JPG does not exist"):
        load_visa(visa_root, "candle")


def test_folder_without_ground_truth(folder_root: Path) -> None:
    category = load_folder(folder_root)
    assert category.name == "my_parts"
    assert not category.has_masks
    assert [(s.label, s.defect_type, s.mask_path) for s in category.test] == [
        (0, "good", None),
        (1, "scratch", None),
    ]
    assert AnomalyImageDataset(category.test, size=8)[1]["mask"].sum() == 0
    assert load_category("folder", folder_root, "renamed").name == "renamed"


def test_folder_with_same_stem_masks(folder_root: Path) -> None:
    write_image(folder_root / "ground_truth" / "scratch" / "b.png", np.full((12, 12), 255, np.uint8))
    category = load_folder(folder_root)
    assert category.has_masks
    assert category.test[1].mask_path == folder_root / "ground_truth" / "scratch" / "b.png"
    write_image(folder_root / "test" / "scratch" / "c.png", rgb(12, 12, 40))
    with pytest.raises(InputError, match=r"defect image .*c\.png has no mask; expected .*c_mask\.png"):
        load_folder(folder_root)


def test_folder_errors(folder_root: Path) -> None:
    with pytest.raises(InputError, match=re.escape("did you mean one of its sub-folders: my_parts?")):
        load_folder(folder_root.parent)
    with pytest.raises(InputError, match="unknown dataset 'kaggle'"):
        load_category("kaggle", folder_root, "x")
    with pytest.raises(InputError, match="needs a root folder"):
        load_category("mvtec", None, "bottle")
