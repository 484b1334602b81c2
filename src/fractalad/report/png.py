"""One way the report writes a matplotlib figure: a PNG through files.atomic_path, the figure closed after."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never open a window (CI and servers have no display)
import matplotlib.pyplot as plt

from fractalad.files import atomic_path


def save_figure(figure: plt.Figure, path: str | Path, dpi: int = 110) -> Path:
    """Write `figure` as a PNG at `path` (atomic: a killed report never leaves half a file) and close it."""
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            figure.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    finally:
        plt.close(figure)
    return path
