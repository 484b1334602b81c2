"""Generic folder loader: any user's good/defect images in the MVTec layout, masks optional."""

from __future__ import annotations

from pathlib import Path

from fractalad.data.layout import LAYOUT_HELP, check_root, load_layout
from fractalad.data.records import Category
from fractalad.errors import InputError


def load_folder(root: str | Path, name: str | None = None) -> Category:
    """Load root/{train/good, test/good, test/<defect>} with optional root/ground_truth/<defect> masks.

    Masks may be named <stem>_mask.<ext> or <stem>.<ext>. Without a ground_truth folder the category has no
    masks (`Category.has_masks` is False) and pixel metrics are skipped; with one, every defect image needs
    a mask.
    """
    root = check_root(Path(root), "image folder")
    if not (root / "train").is_dir():
        nested = sorted(p.name for p in root.iterdir() if p.is_dir() and (p / "train").is_dir())
        hint = f"; did you mean one of its sub-folders: {', '.join(nested)}?" if nested else ""
        raise InputError(f"image folder {root} has no train/ folder; expected {LAYOUT_HELP}{hint}")
    has_truth = (root / "ground_truth").is_dir()
    label = name or root.name
    return load_layout(root, label, f"folder {label}", masks_required=has_truth, same_stem=True)
