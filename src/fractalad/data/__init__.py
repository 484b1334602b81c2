"""Anomaly-detection datasets: MVTec AD, VisA, user folders and a synthetic MVTec-format generator."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from fractalad.data.folder import load_folder
from fractalad.data.layout import check_root
from fractalad.data.mvtec import MVTEC_CATEGORIES, load_mvtec
from fractalad.data.names import DATASETS, SYNTHETIC_CATEGORIES
from fractalad.data.records import Category, Sample
from fractalad.data.visa import SPLIT_FILE, VISA_CATEGORIES, VISA_LAYOUT, load_visa, read_split
from fractalad.errors import InputError

# Names whose modules import torch or numpy load on first use, so listing datasets stays light.
_LAZY: dict[str, str] = {
    "AnomalyImageDataset": "fractalad.data.images",
    "load_images": "fractalad.data.images",
    "default_synthetic_root": "fractalad.data.synthetic",
    "generate_synthetic": "fractalad.data.synthetic",
    "load_synthetic": "fractalad.data.synthetic",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load_category(dataset: str, root: str | Path | None, category: str | None = None) -> Category:
    """Load one category of `dataset` ("mvtec" | "visa" | "folder" | "synthetic").

    For "folder", root is the category folder itself and `category` only renames it. For "synthetic", root
    None means the cache folder, and the category is generated there on first use.
    """
    if dataset == "synthetic":
        from fractalad.data.synthetic import load_synthetic

        return load_synthetic(root, category or SYNTHETIC_CATEGORIES[0])
    if dataset == "folder":
        if root is None:
            raise InputError("the folder dataset needs a root folder holding train/good and test/")
        return load_folder(root, category)
    if dataset not in DATASETS:
        raise InputError(f"unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}")
    if root is None or category is None:
        raise InputError(f"dataset {dataset!r} needs a root folder and a category")
    return load_mvtec(root, category) if dataset == "mvtec" else load_visa(root, category)


def list_categories(dataset: str, root: str | Path) -> list[str]:
    """Categories under root: sub-folders with train/ (mvtec, synthetic) or objects in 1cls.csv (visa)."""
    root = check_root(Path(root), dataset)
    if dataset == "visa":
        csv_path = root / SPLIT_FILE
        if not csv_path.is_file():
            raise InputError(
                f"VisA split file {csv_path} is missing; expected the raw VisA layout: {VISA_LAYOUT}"
            )
        return sorted({row["object"] for _, row in read_split(csv_path)})
    names = sorted(p.name for p in root.iterdir() if p.is_dir() and (p / "train").is_dir())
    if not names:
        raise InputError(
            f"no categories under {root}; expected <root>/<category>/train/good (MVTec AD layout)"
        )
    return names


__all__ = [
    "DATASETS",
    "MVTEC_CATEGORIES",
    "SYNTHETIC_CATEGORIES",
    "VISA_CATEGORIES",
    "AnomalyImageDataset",
    "Category",
    "Sample",
    "default_synthetic_root",
    "generate_synthetic",
    "list_categories",
    "load_category",
    "load_folder",
    "load_images",
    "load_mvtec",
    "load_synthetic",
    "load_visa",
]
