"""Small dataset trees in the exact MVTec AD, VisA (raw) and user-folder layouts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from data_trees import rgb, top_half_mask, write_image
from PIL import Image


@pytest.fixture
def mvtec_root(tmp_path: Path) -> Path:
    """bottle: 3 train, 2 test good, broken_large x2 + contamination x1 with masks; grid: grayscale images."""
    root = tmp_path / "mvtec"
    bottle = root / "bottle"
    for i in range(3):
        write_image(bottle / "train" / "good" / f"{i:03d}.png", rgb(20, 24, 100 + i))
    for i in range(2):
        write_image(bottle / "test" / "good" / f"{i:03d}.png", rgb(20, 24, 90))
    for defect, count in (("broken_large", 2), ("contamination", 1)):
        for i in range(count):
            write_image(bottle / "test" / defect / f"{i:03d}.png", rgb(20, 24, 200))
            write_image(bottle / "ground_truth" / defect / f"{i:03d}_mask.png", top_half_mask(20, 24))
    grid = root / "grid"
    write_image(grid / "train" / "good" / "000.png", np.full((16, 16), 77, np.uint8))
    write_image(grid / "test" / "good" / "000.png", np.full((16, 16), 77, np.uint8))
    write_image(grid / "test" / "bent" / "000.png", np.full((16, 16), 10, np.uint8))
    write_image(grid / "ground_truth" / "bent" / "000_mask.png", top_half_mask(16, 16))
    (root / "license.txt").write_text("not a category")
    return root


VISA_HEADER = "object,split,label,image,mask\n"


@pytest.fixture
def visa_root(tmp_path: Path) -> Path:
    """candle: 3 train normal, 1 test normal, 2 anomalies with palette index-map masks (values 0, 1, 2)."""
    root = tmp_path / "VisA"
    rows = []
    data = root / "candle" / "Data"
    for i in range(4):
        write_image(data / "Images" / "Normal" / f"{i:04d}.JPG", rgb(30, 40, 120))
        rows.append(f"candle,{'train' if i < 3 else 'test'},normal,candle/Data/Images/Normal/{i:04d}.JPG,")
    for i in range(2):
        write_image(data / "Images" / "Anomaly" / f"{i:03d}.JPG", rgb(30, 40, 60))
        index_map = np.zeros((30, 40), np.uint8)
        index_map[:10, :10] = 1 + i  # class indices, not 0/255
        mask = Image.fromarray(index_map, mode="L").convert("P")
        (data / "Masks" / "Anomaly").mkdir(parents=True, exist_ok=True)
        mask.save(data / "Masks" / "Anomaly" / f"{i:03d}.png")
        rows.append(
            f"candle,test,anomaly,candle/Data/Images/Anomaly/{i:03d}.JPG,candle/Data/Masks/Anomaly/{i:03d}.png"
        )
    write_image(root / "pcb1" / "Data" / "Images" / "Normal" / "0000.JPG", rgb(30, 40, 50))
    rows.append("pcb1,train,normal,pcb1/Data/Images/Normal/0000.JPG,")
    (root / "split_csv").mkdir(parents=True)
    (root / "split_csv" / "1cls.csv").write_text(VISA_HEADER + "\n".join(rows) + "\n")
    return root


@pytest.fixture
def folder_root(tmp_path: Path) -> Path:
    """A user's folder: train/good, test/good, test/scratch, no ground truth."""
    root = tmp_path / "my_parts"
    for i in range(2):
        write_image(root / "train" / "good" / f"img{i}.jpg", rgb(12, 12, 140))
    write_image(root / "test" / "good" / "a.png", rgb(12, 12, 140))
    write_image(root / "test" / "scratch" / "b.png", rgb(12, 12, 40))
    return root
