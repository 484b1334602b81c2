"""VisA loader for the raw layout: <root>/split_csv/1cls.csv plus <root>/<category>/Data/{Images,Masks}."""

from __future__ import annotations

import csv
from pathlib import Path

from fractalad.data.layout import check_root
from fractalad.data.records import GOOD, Category, Sample
from fractalad.errors import InputError

VISA_CATEGORIES: tuple[str, ...] = (
    "candle",
    "capsules",
    "cashew",
    "chewinggum",
    "fryum",
    "macaroni1",
    "macaroni2",
    "pcb1",
    "pcb2",
    "pcb3",
    "pcb4",
    "pipe_fryum",
)
SPLIT_FILE = Path("split_csv") / "1cls.csv"
COLUMNS: tuple[str, ...] = ("object", "split", "label", "image", "mask")
VISA_LAYOUT = (
    "<root>/split_csv/1cls.csv (columns object,split,label,image,mask; paths relative to <root>), "
    "<root>/<category>/Data/Images/{Normal,Anomaly}/*.JPG, <root>/<category>/Data/Masks/Anomaly/*.png"
)
ANOMALY = "anomaly"


def read_split(csv_path: Path) -> list[tuple[int, dict[str, str]]]:
    """Rows of the split file with their line numbers; raise InputError when columns are missing."""
    try:
        with csv_path.open(newline="", encoding="utf-8-sig") as handle:
            return _split_rows(csv_path, csv.DictReader(handle))
    except UnicodeDecodeError as error:
        raise InputError(
            f"VisA split file {csv_path} is not UTF-8 text (byte {error.start}); save it as UTF-8 CSV "
            "or restore the file of the VisA release"
        ) from error
    except csv.Error as error:
        raise InputError(f"VisA split file {csv_path} is not a readable CSV file ({error})") from error


def _split_rows(csv_path: Path, reader: csv.DictReader) -> list[tuple[int, dict[str, str]]]:
    header = [name.strip() for name in (reader.fieldnames or [])]
    missing = [name for name in COLUMNS if name not in header]
    if missing:
        raise InputError(
            f"VisA split file {csv_path} lacks columns {', '.join(missing)} "
            f"(found: {', '.join(header) or 'none'}); expected columns {','.join(COLUMNS)}"
        )
    reader.fieldnames = header
    return [
        (index + 2, {k: (v or "").strip() for k, v in row.items() if k}) for index, row in enumerate(reader)
    ]


def to_sample(root: Path, row: dict[str, str], where: str) -> tuple[str, Sample]:
    """(split, Sample) of one csv row; raise InputError for unknown values or files that do not exist."""
    split, label = row["split"].lower(), row["label"].lower()
    if split not in ("train", "test") or label not in ("normal", ANOMALY):
        raise InputError(
            f"{where}: split must be train/test and label normal/anomaly, got {split!r}, {label!r}"
        )
    image = root / row["image"]
    if not image.is_file():
        raise InputError(f"{where}: image {image} does not exist; is {root} the VisA root folder?")
    if label == "normal":
        return split, Sample(image, 0, None, GOOD)
    if split == "train":
        raise InputError(
            f"{where}: anomalous image {image} in the train split; training images must be normal"
        )
    if not row["mask"] or not (root / row["mask"]).is_file():
        raise InputError(f"{where}: anomalous image {image} has no mask file ({root / row['mask']} missing)")
    return split, Sample(image, 1, root / row["mask"], ANOMALY)


def load_visa(root: str | Path, category: str) -> Category:
    """Load a VisA category of the raw release via split_csv/1cls.csv; masks are index maps (!= 0: defect)."""
    root = check_root(Path(root), "VisA")
    csv_path = root / SPLIT_FILE
    if not csv_path.is_file():
        raise InputError(
            f"VisA split file {csv_path} is missing; expected the raw VisA layout: {VISA_LAYOUT}"
        )
    rows = read_split(csv_path)
    selected = [(line, row) for line, row in rows if row["object"] == category]
    if not selected:
        available = ", ".join(sorted({row["object"] for _, row in rows})) or "none"
        raise InputError(f"VisA category {category!r} not in {csv_path}; available: {available}")
    splits: dict[str, list[Sample]] = {"train": [], "test": []}
    for line, row in selected:
        split, sample = to_sample(root, row, f"{csv_path}:{line}")
        splits[split].append(sample)
    if not splits["train"]:
        raise InputError(
            f"VisA category {category!r}: {csv_path} lists no train images; expected {VISA_LAYOUT}"
        )
    if not splits["test"]:
        raise InputError(
            f"VisA category {category!r}: {csv_path} lists no test images; expected {VISA_LAYOUT}"
        )
    return Category(category, root / category, tuple(splits["train"]), tuple(splits["test"]))
