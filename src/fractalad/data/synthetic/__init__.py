"""Synthetic MVTec-format anomaly data: procedural textures and objects with subtle, exactly masked defects.

Deterministic from a seed (each image draws from its own stream seeded by (seed, category, split, index))
and written once into a cache folder; a category appears atomically (built in a temporary folder, then
renamed) and carries a marker file with the settings it was built with.
"""

from __future__ import annotations

import json
import os
import shutil
import zlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from fractalad.data.layout import load_layout
from fractalad.data.names import SYNTHETIC_CATEGORIES, SYNTHETIC_OBJECTS, SYNTHETIC_TEXTURES
from fractalad.data.records import Category
from fractalad.data.synthetic.defects import MIN_MASK_PIXELS_AT_256, Scene, defect_mask
from fractalad.data.synthetic.objects import OBJECTS
from fractalad.data.synthetic.shapes import Canvas, make_canvas, photograph
from fractalad.data.synthetic.textures import TEXTURES
from fractalad.errors import InputError
from fractalad.files import FOLDER_MODE, make_folder, sweep_stale_temps, temp_sibling, write_error

GENERATOR_VERSION = 1
MARKER = ".fractalad-synthetic.json"
SPECS = {**TEXTURES, **OBJECTS}
SPLIT_CODES = {"train": 0, "test_good": 1, "test_defect": 2}


@dataclass(frozen=True)
class Settings:
    """What a generated category depends on; stored in its marker file."""

    version: int
    seed: int
    size: int
    n_train: int
    n_test_good: int
    n_test_defect: int
    contrast: float


def default_synthetic_root() -> Path:
    """Cache of the generated data: $FRACTALAD_CACHE/synthetic (default ~/.cache/fractalad/synthetic)."""
    base = os.environ.get("FRACTALAD_CACHE") or str(Path.home() / ".cache" / "fractalad")
    return Path(base).expanduser() / "synthetic"


def defect_types(category: str) -> tuple[str, ...]:
    """The defect types of a synthetic category."""
    return tuple(SPECS[category][2])


def image_rng(seed: int, category: str, split: str, index: int) -> np.random.Generator:
    """The random stream of one image: independent of counts, order and the other categories."""
    return np.random.default_rng([seed, zlib.crc32(category.encode()), SPLIT_CODES[split], index])


def make_image(
    category: str, canvas: Canvas, rng: np.random.Generator, defect: str | None, contrast: float = 1.0
) -> tuple[np.ndarray, np.ndarray | None]:
    """One photo (H, W, 3) uint8 and, for a defect, its mask (H, W) bool (None for good images)."""
    sample, render, defects = SPECS[category]
    min_pixels = max(1, int(MIN_MASK_PIXELS_AT_256 * (canvas.size / 256) ** 2))
    for _ in range(16):
        params = sample(rng)
        image, support = render(params, canvas.y, canvas.x, canvas.px)
        if defect is None:
            return photograph(image, canvas, rng), None
        defective = defects[defect](Scene(params, canvas, image, support, render, contrast), rng)
        mask = defect_mask(image, defective)
        # A defect that landed where it changes almost nothing (a warp on a flat area) is drawn again.
        if mask.sum() >= min_pixels:
            return photograph(defective, canvas, rng), mask
    raise RuntimeError(f"synthetic {category}/{defect}: no visible defect after 16 draws")


def save_png(path: Path, array: np.ndarray) -> None:
    Image.fromarray(array).save(path, format="PNG", compress_level=1)


def write_category(folder: Path, category: str, settings: Settings) -> None:
    """Write train/good, test/good, test/<defect> and ground_truth/<defect> images into `folder`."""
    canvas = make_canvas(settings.size)
    kinds = defect_types(category)
    jobs = [("train", i, None) for i in range(settings.n_train)]
    jobs += [("test_good", i, None) for i in range(settings.n_test_good)]
    jobs += [("test_defect", i, kinds[i % len(kinds)]) for i in range(settings.n_test_defect)]
    for split, index, defect in tqdm(jobs, desc=f"synthetic {category}", unit="img", leave=False):
        rng = image_rng(settings.seed, category, split, index)
        image, mask = make_image(category, canvas, rng, defect, settings.contrast)
        if split == "train":
            target = folder / "train" / "good" / f"{index:03d}.png"
        else:
            number = index if defect is None else index // len(kinds)
            target = folder / "test" / (defect or "good") / f"{number:03d}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        save_png(target, image)
        if mask is not None:
            mask_path = folder / "ground_truth" / defect / f"{target.stem}_mask.png"
            mask_path.parent.mkdir(parents=True, exist_ok=True)
            save_png(mask_path, mask.astype(np.uint8) * 255)


def is_complete(folder: Path, settings: Settings | None = None) -> bool:
    """Whether folder holds a finished category (built with `settings`, when given)."""
    try:
        stored = json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return False
    return settings is None or stored == asdict(settings)


def _fill(staging: Path, final: Path, category: str, settings: Settings) -> None:
    """Write the category and its marker into `staging`; a full disk is reported against `final`."""
    try:
        write_category(staging, category, settings)
        (staging / MARKER).write_text(json.dumps(asdict(settings), sort_keys=True))
    except OSError as error:
        raise write_error(final, error) or error


def build_category(root: Path, category: str, settings: Settings) -> Path:
    """Generate one category unless an identical one is cached; the folder appears atomically."""
    final = root / category
    if is_complete(final, settings):
        return final
    make_folder(root)
    sweep_stale_temps(root)  # staging folders of killed runs
    staging = temp_sibling(final)
    staging.mkdir(mode=FOLDER_MODE)
    try:
        _fill(staging, final, category, settings)
        if final.exists():
            shutil.rmtree(final)
        try:
            os.replace(staging, final)
        except OSError:
            # Another process finished the same category first; its (identical) folder stands.
            if not is_complete(final, settings):
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return final


def generate_synthetic(
    root: str | Path | None = None,
    categories: Sequence[str] = SYNTHETIC_CATEGORIES,
    seed: int = 0,
    size: int = 256,
    n_train: int = 60,
    n_test_good: int = 20,
    n_test_defect: int = 30,
    contrast: float = 1.0,
) -> Path:
    """Write the synthetic dataset in MVTec layout under root (None = the cache) and return root.

    contrast scales the intensity change of surface defects (scratches, stains, ...): below 1 is harder.
    Categories already built with the same settings are kept; incomplete or different ones are rebuilt.
    """
    unknown = [name for name in categories if name not in SPECS]
    if unknown:
        raise InputError(
            f"unknown synthetic categories {unknown}; available: {', '.join(SYNTHETIC_CATEGORIES)}"
        )
    if not 0.0 < contrast <= 5.0:
        raise InputError(f"contrast must be in (0, 5], got {contrast}; 1 is the default difficulty")
    if size < 16 or min(n_train, n_test_good, n_test_defect) < 1:
        raise InputError(
            f"synthetic data needs size >= 16 and at least one image per split, got size={size}, "
            f"n_train={n_train}, n_test_good={n_test_good}, n_test_defect={n_test_defect}"
        )
    root = default_synthetic_root() if root is None else Path(root).expanduser()
    settings = Settings(
        GENERATOR_VERSION,
        int(seed),
        int(size),
        int(n_train),
        int(n_test_good),
        int(n_test_defect),
        float(contrast),
    )
    for category in categories:
        build_category(root, category, settings)
    return root


def load_synthetic(root: str | Path | None, category: str) -> Category:
    """Load a synthetic category, generating it with default settings if root does not hold a finished one."""
    if category not in SPECS:
        raise InputError(
            f"unknown synthetic category {category!r}; available: {', '.join(SYNTHETIC_CATEGORIES)}"
        )
    root = default_synthetic_root() if root is None else Path(root).expanduser()
    if not is_complete(root / category):
        generate_synthetic(root, categories=(category,))
    return load_layout(
        root / category, category, f"synthetic {category}", masks_required=True, same_stem=False
    )


__all__ = [
    "SYNTHETIC_CATEGORIES",
    "SYNTHETIC_OBJECTS",
    "SYNTHETIC_TEXTURES",
    "default_synthetic_root",
    "defect_types",
    "generate_synthetic",
    "load_synthetic",
]
