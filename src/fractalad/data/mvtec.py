"""MVTec AD loader: <root>/<category>/{train/good, test/good, test/<defect>, ground_truth/<defect>}."""

from __future__ import annotations

from pathlib import Path

from fractalad.data.layout import check_root, find_category_dir, load_layout
from fractalad.data.records import Category

MVTEC_TEXTURES: tuple[str, ...] = ("carpet", "grid", "leather", "tile", "wood")
MVTEC_OBJECTS: tuple[str, ...] = (
    "bottle",
    "cable",
    "capsule",
    "hazelnut",
    "metal_nut",
    "pill",
    "screw",
    "toothbrush",
    "transistor",
    "zipper",
)
MVTEC_CATEGORIES: tuple[str, ...] = tuple(sorted(MVTEC_TEXTURES + MVTEC_OBJECTS))


def load_mvtec(root: str | Path, category: str) -> Category:
    """Load one MVTec AD category; every defect image must have ground_truth/<defect>/<id>_mask.png."""
    root = check_root(Path(root), "MVTec AD")
    category_dir = find_category_dir(root, category, "MVTec AD")
    return load_layout(category_dir, category, f"MVTec AD {category}", masks_required=True, same_stem=False)
