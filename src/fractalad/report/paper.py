"""The paper's layout and its own numbers: method titles, category orders and groups (Table 2), and
Tables 3-8 read from the shipped copy of paper/results.csv."""

from __future__ import annotations

import csv
import functools
import io
from importlib import resources

METRICS: tuple[str, ...] = ("image_auroc", "pixel_auroc", "aupro")
METRIC_TITLES: dict[str, str] = {
    "image_auroc": "image AUROC",
    "pixel_auroc": "pixel AUROC",
    "aupro": "AUPRO@0.3",
}
# Registry names -> the paper's column titles, in the paper's column order.
METHOD_TITLES: dict[str, str] = {
    "fastflow": "FastFlow",
    "cflow": "C-Flow",
    "patchcore": "PatchCore",
    "padim": "PaDiM",
    "reverse_distillation": "RD",
    "stfpm": "STFPM",
    "cutpaste": "CutPaste",
    "panda": "PANDA",
}
# Category order of the paper's tables (textures first for MVTec AD).
CATEGORY_ORDER: dict[str, tuple[str, ...]] = {
    "mvtec": (
        "carpet", "grid", "leather", "tile", "wood", "bottle", "cable", "capsule", "hazelnut", "metal_nut",
        "pill", "screw", "toothbrush", "transistor", "zipper",
    ),
    "visa": (
        "candle", "capsules", "cashew", "chewinggum", "fryum", "macaroni1", "macaroni2", "pcb1", "pcb2",
        "pcb3", "pcb4", "pipe_fryum",
    ),
}  # fmt: skip
GROUPS: dict[str, dict[str, tuple[str, ...]]] = {
    "mvtec": {
        "textures": ("carpet", "grid", "leather", "tile", "wood"),
        "objects": CATEGORY_ORDER["mvtec"][5:],
    },
    "visa": {
        "PCB": ("pcb1", "pcb2", "pcb3", "pcb4"),
        "multi-in": ("candle", "capsules", "macaroni1", "macaroni2"),
        "single-in": ("cashew", "chewinggum", "fryum", "pipe_fryum"),
    },
}
# Tables 3-8 of the paper: (dataset, metric) -> table number; Table 1 averages them, Table 2 groups them.
PAPER_TABLES: dict[tuple[str, str], int] = {
    ("mvtec", "image_auroc"): 3,
    ("mvtec", "pixel_auroc"): 4,
    ("mvtec", "aupro"): 5,
    ("visa", "image_auroc"): 6,
    ("visa", "pixel_auroc"): 7,
    ("visa", "aupro"): 8,
}


def method_title(method: str) -> str:
    return METHOD_TITLES.get(method, method)


def method_order(methods: set[str]) -> list[str]:
    """The paper's column order for known methods, then the others alphabetically."""
    known = [m for m in METHOD_TITLES if m in methods]
    return known + sorted(methods - set(known))


def category_order(dataset: str, categories: set[str]) -> list[str]:
    order = CATEGORY_ORDER.get(dataset, ())
    return [c for c in order if c in categories] + sorted(categories - set(order))


@functools.cache
def paper_numbers() -> dict[tuple[str, str, str, str], tuple[float | None, float | None]]:
    """(dataset, metric, category or "mean", method title) -> (ImageNet, Fractals) in percent (None = '–')."""
    text = resources.files("fractalad.report").joinpath("paper_results.csv").read_text()
    numbers = {}
    for row in csv.DictReader(io.StringIO(text)):
        pair = tuple(None if row[k] in ("", "-", "–") else float(row[k]) for k in ("imagenet", "fractal"))
        numbers[(row["dataset"], row["metric"], row["category"], row["method"])] = pair
    return numbers
