"""What a loaded dataset category is: image paths, labels, mask paths and defect types (no pixels)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

IMAGE_SUFFIXES: frozenset[str] = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"})
GOOD = "good"


@dataclass(frozen=True)
class Sample:
    """One image: label 0 = good, 1 = anomalous; mask_path None for good images or when no mask exists."""

    image_path: Path
    label: int
    mask_path: Path | None
    defect_type: str


@dataclass(frozen=True)
class Category:
    """A category's training (good only) and test samples."""

    name: str
    root: Path
    train: tuple[Sample, ...]
    test: tuple[Sample, ...]

    @property
    def has_masks(self) -> bool:
        """True when every anomalous test image has a ground-truth mask, so pixel metrics are defined."""
        anomalous = [s for s in self.test if s.label == 1]
        return bool(anomalous) and all(s.mask_path is not None for s in anomalous)

    @property
    def defect_types(self) -> tuple[str, ...]:
        """Sorted defect types present in the test set (without "good")."""
        return tuple(sorted({s.defect_type for s in self.test if s.label == 1}))

    def counts(self) -> dict[str, int]:
        """Image counts: train, test_good, test_anomalous, and one entry per defect type."""
        per_type = Counter(s.defect_type for s in self.test if s.label == 1)
        summary = {
            "train": len(self.train),
            "test_good": sum(1 for s in self.test if s.label == 0),
            "test_anomalous": sum(per_type.values()),
            "masks": sum(1 for s in self.test if s.mask_path is not None),
        }
        summary.update({f"defect:{name}": per_type[name] for name in sorted(per_type)})
        return summary


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside `folder`, sorted by name (hidden files skipped)."""
    if not folder.is_dir():
        return []
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith(".")
    )
