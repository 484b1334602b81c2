"""Scan a category folder in the MVTec AD layout (shared by the MVTec, folder and synthetic loaders)."""

from __future__ import annotations

from pathlib import Path

from fractalad.data.records import GOOD, IMAGE_SUFFIXES, Category, Sample, list_images
from fractalad.errors import InputError

LAYOUT_HELP = (
    "<category>/train/good/*.png, <category>/test/good/*.png, <category>/test/<defect>/*.png and "
    "<category>/ground_truth/<defect>/<image stem>_mask.png"
)


def check_root(root: Path, what: str) -> Path:
    """Return `root` resolved, or raise InputError when it is not a folder."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise InputError(
            f"{what} root {root} does not exist or is not a folder; pass the dataset's top folder"
        )
    return root


def find_category_dir(root: Path, category: str, what: str) -> Path:
    """Return root/category, or raise InputError listing the categories that do exist."""
    folder = root / category
    if (folder / "train").is_dir() or (folder / "test").is_dir():
        return folder
    available = sorted(p.name for p in root.iterdir() if p.is_dir() and (p / "train").is_dir())
    if folder.is_dir():
        raise InputError(
            f"{what} category folder {folder} has no train/ or test/ folder; expected {LAYOUT_HELP}"
        )
    listing = ", ".join(available) if available else "none (no sub-folder contains train/)"
    raise InputError(f"{what} category {category!r} not found under {root}; available: {listing}")


def find_mask(truth_dir: Path, image: Path, same_stem: bool) -> Path | None:
    """The mask of `image` in truth_dir: <stem>_mask.<ext> (MVTec), or <stem>.<ext> when same_stem."""
    stems = [f"{image.stem}_mask", image.stem] if same_stem else [f"{image.stem}_mask"]
    for stem in stems:
        for suffix in (".png", *sorted(IMAGE_SUFFIXES - {".png"})):
            for candidate in (truth_dir / f"{stem}{suffix}", truth_dir / f"{stem}{suffix.upper()}"):
                if candidate.is_file():
                    return candidate
    return None


def scan_train(category_dir: Path, what: str) -> tuple[Sample, ...]:
    """Good training samples from train/good; raise InputError when the folder is missing or empty."""
    good_dir = category_dir / "train" / GOOD
    if not good_dir.is_dir():
        raise InputError(f"{what}: {good_dir} is missing; expected {LAYOUT_HELP}")
    images = list_images(good_dir)
    if not images:
        raise InputError(
            f"{what}: training folder {good_dir} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}); "
            "add good images there"
        )
    return tuple(Sample(path, 0, None, GOOD) for path in images)


def scan_test(category_dir: Path, what: str, masks_required: bool, same_stem: bool) -> tuple[Sample, ...]:
    """Test samples from test/good and test/<defect>, with masks from ground_truth/<defect> when present."""
    test_dir = category_dir / "test"
    if not test_dir.is_dir():
        raise InputError(f"{what}: {test_dir} is missing; expected {LAYOUT_HELP}")
    samples: list[Sample] = []
    # Good images first, then defect types alphabetically.
    for folder in sorted(
        (p for p in test_dir.iterdir() if p.is_dir()), key=lambda p: (p.name != GOOD, p.name)
    ):
        defect = folder.name
        for image in list_images(folder):
            if defect == GOOD:
                samples.append(Sample(image, 0, None, GOOD))
                continue
            mask = find_mask(category_dir / "ground_truth" / defect, image, same_stem)
            if mask is None and masks_required:
                expected = category_dir / "ground_truth" / defect / f"{image.stem}_mask.png"
                raise InputError(
                    f"{what}: defect image {image} has no mask; expected {expected} (the category has a "
                    "ground_truth folder, so every defect image needs its mask)"
                )
            samples.append(Sample(image, 1, mask, defect))
    if not samples:
        raise InputError(f"{what}: {test_dir} holds no images; expected {LAYOUT_HELP}")
    return tuple(samples)


def load_layout(category_dir: Path, name: str, what: str, masks_required: bool, same_stem: bool) -> Category:
    """Read a category folder in MVTec layout into a Category (sorted, deterministic order)."""
    train = scan_train(category_dir, what)
    test = scan_test(category_dir, what, masks_required, same_stem)
    return Category(name=name, root=category_dir, train=train, test=test)
