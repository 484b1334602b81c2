"""A small printed circuit board: a chip with pins, SMD parts on pads, traces, vias and silkscreen."""

from __future__ import annotations

from typing import Any

import numpy as np

from fractalad.data.synthetic.defects import Scene, scratch
from fractalad.data.synthetic.shapes import (
    REF_PX,
    LatticeNoise,
    coverage,
    rotate,
    sdf_box,
    sdf_polyline,
    window,
)

Params = dict[str, Any]

BOARD_HALF = 0.86
CHIP = (-0.10, -0.12, 0.26, 0.20)  # centre y, centre x, half height, half width
PIN_ROWS = tuple(-0.30 + 0.08 * i for i in range(6))
# SMD parts: centre y, centre x, angle, body colour.
PARTS = (
    (-0.58, 0.48, 0.0, (0.13, 0.13, 0.14)),
    (0.02, 0.56, np.pi / 2, (0.13, 0.13, 0.14)),
    (0.52, 0.42, 0.0, (0.62, 0.48, 0.33)),
    (0.50, -0.46, np.pi / 2, (0.62, 0.48, 0.33)),
    (-0.62, -0.50, 0.0, (0.13, 0.13, 0.14)),
)
TRACES = (
    ((-0.30, 0.125), (-0.30, 0.30), (-0.58, 0.30), (-0.58, 0.39)),
    ((-0.14, 0.125), (0.02, 0.30), (0.02, 0.47)),
    ((0.10, 0.125), (0.30, 0.30), (0.52, 0.30), (0.52, 0.33)),
    ((0.10, -0.365), (0.30, -0.46), (0.41, -0.46)),
    ((-0.30, -0.365), (-0.62, -0.40), (-0.62, -0.41)),
    ((0.59, 0.46), (0.70, 0.70)),
    ((0.25, 0.25), (0.10, 0.125)),
)
VIAS = ((0.25, 0.25), (-0.40, 0.75), (0.70, -0.10), (0.70, 0.70))
SILVER = np.array([0.74, 0.74, 0.70], np.float32)


def sample_pcb(rng: np.random.Generator) -> Params:
    """Board pose (small shift and rotation), board colour and solder-mask texture; every part in place."""
    return {
        "centre": rng.normal(0.0, 0.015, 2),
        "angle": rng.normal(0.0, 0.015),
        "board": (np.array([0.12, 0.38, 0.20]) + rng.normal(0, 0.01, 3)).astype(np.float32),
        "texture": LatticeNoise(rng),
        "parts": tuple((cy, cx, angle, True) for cy, cx, angle, _ in PARTS),
        "pins": tuple(0.0 for _ in range(2 * len(PIN_ROWS))),
    }


def paint(image: np.ndarray, alpha: np.ndarray, colour: np.ndarray) -> None:
    """In-place alpha blend of a flat colour."""
    image += alpha[:, :, None] * (colour - image)


def local(p: Params, ly: np.ndarray, cy: float, cx: float, reach: float) -> tuple[slice, slice]:
    """Pixel window around an object-frame point (8 px margin covers small pose changes and warps)."""
    size = ly.shape[0]
    px = 2.0 / size
    iy, ix = rotate(np.float32(cy), np.float32(cx), p["angle"])
    return window(size, px, float(iy) + p["centre"][0], float(ix) + p["centre"][1], reach + 8 * px)


def render_part(p: Params, k: int, image: np.ndarray, ly: np.ndarray, lx: np.ndarray, px: float) -> None:
    """Silkscreen outline and pads of SMD part k, and the part itself when present (in place)."""
    (ny, nx, nominal_angle, colour), (cy, cx, angle, present) = PARTS[k], p["parts"][k]
    where = local(p, ly, (ny + cy) / 2, (nx + cx) / 2, 0.17 + 0.5 * float(np.hypot(cy - ny, cx - nx)))
    ly, lx, image = ly[where], lx[where], image[where]
    py, px_ = rotate(ly - ny, lx - nx, -nominal_angle)
    silk = coverage(np.abs(sdf_box(py, px_, 0.075, 0.15)) - 0.004, px)
    paint(image, silk, np.array([0.88, 0.88, 0.84], np.float32))
    pads = np.minimum(sdf_box(py, px_ - 0.09, 0.055, 0.035), sdf_box(py, px_ + 0.09, 0.055, 0.035))
    paint(image, coverage(pads, px), SILVER * 0.92)
    if not present:
        return
    qy, qx = rotate(ly - cy, lx - cx, -angle)
    ends = np.minimum(sdf_box(qy, qx - 0.085, 0.045, 0.022), sdf_box(qy, qx + 0.085, 0.045, 0.022))
    paint(image, coverage(ends, px), SILVER)
    paint(image, coverage(sdf_box(qy, qx, 0.045, 0.065), px), np.array(colour, np.float32))


def render_chip(p: Params, image: np.ndarray, ly: np.ndarray, lx: np.ndarray, px: float) -> None:
    """The chip package, its orientation dot and its two rows of pins (in place)."""
    cy, cx, half_h, half_w = CHIP
    where = local(p, ly, cy, cx, half_h + 0.1)
    ly, lx, image = ly[where], lx[where], image[where]
    for side in (-1.0, 1.0):
        offsets = p["pins"][: len(PIN_ROWS)] if side < 0 else p["pins"][len(PIN_ROWS) :]
        for row, offset in zip(PIN_ROWS, offsets, strict=True):
            pin = sdf_box(ly - row - offset, lx - cx - side * (half_w + 0.045), 0.016, 0.045)
            paint(image, coverage(pin, px), SILVER)
    paint(
        image,
        coverage(sdf_box(ly - cy, lx - cx, half_h, half_w), px),
        np.array([0.08, 0.08, 0.09], np.float32),
    )
    dot = np.hypot(ly - cy + half_h - 0.05, lx - cx + half_w - 0.05) - 0.022
    paint(image, coverage(dot, px), np.array([0.2, 0.2, 0.21], np.float32))


def render_copper(p: Params, image: np.ndarray, ly: np.ndarray, lx: np.ndarray, px: float) -> None:
    """Traces and vias (in place)."""
    for trace in TRACES:
        points = np.array(trace, np.float32)
        lo, hi = points.min(axis=0), points.max(axis=0)
        where = local(
            p, ly, float(lo[0] + hi[0]) / 2, float(lo[1] + hi[1]) / 2, float((hi - lo).max()) / 2 + 0.02
        )
        line = coverage(sdf_polyline(ly[where], lx[where], points) - 0.008, px)
        paint(image[where], line, p["board"] * 1.45)
    for vy, vx in VIAS:
        where = local(p, ly, vy, vx, 0.04)
        ring = np.hypot(ly[where] - vy, lx[where] - vx)
        paint(image[where], coverage(ring - 0.028, px), SILVER)
        paint(image[where], coverage(ring - 0.012, px), np.array([0.05, 0.05, 0.05], np.float32))


def render_pcb(p: Params, y: np.ndarray, x: np.ndarray, px: float) -> tuple[np.ndarray, np.ndarray]:
    """The board in its pose on a dark background; support = board area."""
    ly, lx = rotate(y - p["centre"][0], x - p["centre"][1], -p["angle"])
    board = coverage(sdf_box(ly, lx, BOARD_HALF, BOARD_HALF), px)
    image = np.empty(y.shape + (3,), np.float32)
    image[:] = np.array([0.20, 0.20, 0.22], np.float32)
    mask_tone = p["board"] * (1.0 + 0.04 * p["texture"].fractal(ly * 12.0, lx * 12.0, 2))[:, :, None]
    image += board[:, :, None] * (mask_tone - image)
    render_copper(p, image, ly, lx, px)
    for k in range(len(PARTS)):
        render_part(p, k, image, ly, lx, px)
    render_chip(p, image, ly, lx, px)
    return image, board


def missing_part(scene: Scene, rng: np.random.Generator) -> np.ndarray:
    """One SMD part absent: its bare pads show."""
    parts = list(scene.params["parts"])
    k = int(rng.integers(len(parts)))
    parts[k] = (*parts[k][:3], False)
    return scene.rerender({**scene.params, "parts": tuple(parts)})


def misplaced_part(scene: Scene, rng: np.random.Generator) -> np.ndarray:
    """One SMD part soldered 3-7 px off its pads and turned by 6-20 degrees."""
    parts = list(scene.params["parts"])
    k = int(rng.integers(len(parts)))
    cy, cx, angle, present = parts[k]
    shift, direction = rng.uniform(3.0, 7.0) * REF_PX, rng.uniform(0, 2 * np.pi)
    turn = np.deg2rad(rng.uniform(6.0, 20.0)) * rng.choice([-1.0, 1.0])
    parts[k] = (cy + shift * np.sin(direction), cx + shift * np.cos(direction), angle + turn, present)
    return scene.rerender({**scene.params, "parts": tuple(parts)})


def bent_pin(scene: Scene, rng: np.random.Generator) -> np.ndarray:
    """One chip pin bent sideways by 2.5-5 px."""
    pins = list(scene.params["pins"])
    k = int(rng.integers(len(pins)))
    pins[k] = rng.uniform(2.5, 5.0) * REF_PX * rng.choice([-1.0, 1.0])
    return scene.rerender({**scene.params, "pins": tuple(pins)})


PCB_DEFECTS = {"missing": missing_part, "misplaced": misplaced_part, "bent_pin": bent_pin, "scratch": scratch}
