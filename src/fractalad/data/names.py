"""Dataset and category names, importable without numpy or torch (the CLI builds its choices from them).

The synthetic generators in fractalad.data.synthetic are keyed by these names; a unit test keeps both equal.
"""

from __future__ import annotations

DATASETS: tuple[str, ...] = ("mvtec", "visa", "folder", "synthetic")
SYNTHETIC_TEXTURES: tuple[str, ...] = ("weave", "wood", "tile")
SYNTHETIC_OBJECTS: tuple[str, ...] = ("nut", "capsule", "pcb")
SYNTHETIC_CATEGORIES: tuple[str, ...] = SYNTHETIC_TEXTURES + SYNTHETIC_OBJECTS
