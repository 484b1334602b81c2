"""Object scenes seen from above: a hex nut, a two-colour capsule with an imprint, and a small PCB."""

from __future__ import annotations

from typing import Any

import numpy as np

from fractalad.data.synthetic.defects import Scene, colour_spot, crack, hole, scratch
from fractalad.data.synthetic.pcb import PCB_DEFECTS, render_pcb, sample_pcb
from fractalad.data.synthetic.shapes import REF_PX, LatticeNoise, coverage, rotate, sdf_box, sdf_hexagon

Params = dict[str, Any]


def object_frame(p: Params, y: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates relative to the object's centre and orientation."""
    return rotate(y - p["centre"][0], x - p["centre"][1], -p["angle"])


def to_image(p: Params, ly: float, lx: float) -> tuple[float, float]:
    """Object-frame point -> image coordinates."""
    ry, rx = rotate(np.float32(ly), np.float32(lx), p["angle"])
    return float(ry + p["centre"][0]), float(rx + p["centre"][1])


def sample_nut(rng: np.random.Generator) -> Params:
    """Nut pose (any rotation, small shift), metal tint, machining marks; no chip."""
    return {
        "centre": rng.normal(0.0, 0.04, 2),
        "angle": rng.uniform(0.0, 2 * np.pi),
        "light": -2.2 + rng.normal(0.0, 0.1),
        "metal": (np.array([0.66, 0.66, 0.69]) + rng.normal(0, 0.012, 3)).astype(np.float32),
        "marks": LatticeNoise(rng),
        "chip": None,
    }


def render_nut(p: Params, y: np.ndarray, x: np.ndarray, px: float) -> tuple[np.ndarray, np.ndarray]:
    """Hex nut: chamfered facets, a machined face with concentric marks, a threaded bore."""
    ly, lx = object_frame(p, y, x)
    r, theta = np.hypot(ly, lx), np.arctan2(ly, lx)
    body = coverage(sdf_hexagon(ly, lx, 0.56), px) * (1.0 - coverage(r - 0.24, px))
    if p["chip"] is not None:
        cy, cx, radius = p["chip"]
        body = body * (1.0 - coverage(np.hypot(ly - cy, lx - cx) - radius, px))
    normal = np.pi / 6 + np.round((theta - np.pi / 6) / (np.pi / 3)) * (np.pi / 3)
    facets = 0.55 + 0.3 * np.cos(normal + p["angle"] - p["light"])
    marks = 0.025 * np.sin(2 * np.pi * r * 55.0) + 0.04 * p["marks"](r * 40.0, theta * 6.0)
    face = coverage(r - 0.50, px)
    bore = np.clip((r - 0.24) / 0.05, 0.0, 1.0)
    threads = 0.35 + 0.12 * np.sin(theta * 28.0 + r * 180.0)
    tone = face * (0.74 + marks) + (1 - face) * facets
    tone = np.where(bore < 1.0, threads + bore * (tone - threads), tone)
    background = (
        np.array([0.13, 0.14, 0.17], np.float32)
        * (1.0 - 0.35 * np.exp(-np.maximum(r - 0.2, 0) / 0.2))[:, :, None]
    )
    image = background * (1 - body[:, :, None]) + p["metal"] * (tone * body)[:, :, None]
    return image.astype(np.float32), body


def nut_chip(scene: Scene, rng: np.random.Generator) -> np.ndarray:
    """A piece broken off the outer edge (missing part)."""
    along = rng.uniform(0, 2 * np.pi)
    radius = rng.uniform(5.0, 9.0) * REF_PX
    params = {**scene.params, "chip": (0.60 * np.sin(along), 0.60 * np.cos(along), radius)}
    return scene.rerender(params)


def nut_bent(scene: Scene, rng: np.random.Generator) -> np.ndarray:
    """One corner of the hexagon bent inwards by a few pixels."""
    corner = np.pi / 3 * rng.integers(6)
    cy, cx = to_image(scene.params, 0.646 * np.sin(corner), 0.646 * np.cos(corner))
    canvas = scene.canvas
    radius = rng.uniform(5.0, 9.0) * REF_PX
    push = rng.uniform(3.0, 6.0) * REF_PX
    weight = np.exp(-((canvas.y - cy) ** 2 + (canvas.x - cx) ** 2) / (2 * radius**2))
    # Sampling farther out pulls the outline inwards: the displacement points away from the centre.
    norm = max(float(np.hypot(cy - scene.params["centre"][0], cx - scene.params["centre"][1])), 1e-6)
    dy = (cy - scene.params["centre"][0]) / norm * push * weight
    dx = (cx - scene.params["centre"][1]) / norm * push * weight
    return scene.rerender(scene.params, dy, dx)


# Seven-segment imprint: (centre y, centre x, horizontal?) per segment a..g in digit units.
SEGMENTS = (
    (-1.0, 0.0, True),
    (-0.5, 0.5, False),
    (0.5, 0.5, False),
    (1.0, 0.0, True),
    (0.5, -0.5, False),
    (-0.5, -0.5, False),
    (0.0, 0.0, True),
)
DIGIT_SEGMENTS = {"5": "afgcd", "0": "abcdef", "8": "abcdefg"}
IMPRINT = "508"


def imprint_segments() -> tuple[tuple[bool, ...], ...]:
    return tuple(tuple(name in DIGIT_SEGMENTS[d] for name in "abcdefg") for d in IMPRINT)


def sample_capsule(rng: np.random.Generator) -> Params:
    """Capsule pose (small shift and tilt), shell colours and the printed "508"."""
    return {
        "centre": rng.normal(0.0, 0.025, 2),
        "angle": rng.normal(0.0, 0.05),
        "cap": (np.array([0.80, 0.32, 0.13]) + rng.normal(0, 0.012, 3)).astype(np.float32),
        "body": (np.array([0.92, 0.90, 0.85]) + rng.normal(0, 0.01, 3)).astype(np.float32),
        "digits": imprint_segments(),
        "paper": LatticeNoise(rng),
    }


def render_imprint(p: Params, ly: np.ndarray, lx: np.ndarray, px: float) -> np.ndarray:
    """Ink coverage (H, W) of the seven-segment digits."""
    ink = np.zeros_like(ly)
    height, width, thick = 0.05, 0.032, 0.0075
    for index, segments in enumerate(p["digits"]):
        centre_x = 0.13 + 0.085 * index
        for on, (sy, sx, horizontal) in zip(segments, SEGMENTS, strict=True):
            if not on:
                continue
            half_h, half_w = (thick, width * 0.5) if horizontal else (height * 0.5, thick)
            sdf = sdf_box(ly - sy * height, lx - centre_x - sx * width, half_h, half_w)
            ink = np.maximum(ink, coverage(sdf, px))
    return ink


def render_capsule(p: Params, y: np.ndarray, x: np.ndarray, px: float) -> tuple[np.ndarray, np.ndarray]:
    """A stadium-shaped shell, cylinder shading with a specular stripe, a seam and a dark imprint."""
    ly, lx = object_frame(p, y, x)
    half_length, radius = 0.36, 0.19
    distance = np.hypot(lx - np.clip(lx, -half_length, half_length), ly) - radius
    shell = coverage(distance, px)
    across = np.clip(np.abs(ly) / radius, 0.0, 1.0)
    shade = (
        0.6 + 0.4 * np.sqrt(1.0 - across**2) + 0.22 * np.exp(-(((ly + 0.45 * radius) / (0.12 * radius)) ** 2))
    )
    colour = np.where((lx < 0.0)[:, :, None], p["cap"], p["body"])
    seam = 1.0 - 0.25 * coverage(np.abs(lx) - 0.5 * px, px)
    ink = render_imprint(p, ly, lx, px)[:, :, None]
    surface = np.clip(colour * (shade * seam)[:, :, None], 0.0, 1.0) * (1 - 0.75 * ink)
    halo = 1.0 - 0.18 * np.exp(-np.maximum(distance, 0.0) / 0.04)
    background = (
        np.array([0.76, 0.76, 0.74], np.float32) * (halo + 0.015 * p["paper"](y * 30, x * 30))[:, :, None]
    )
    image = background * (1 - shell[:, :, None]) + surface * shell[:, :, None]
    return image.astype(np.float32), shell


def capsule_squeeze(scene: Scene, rng: np.random.Generator) -> np.ndarray:
    """The shell pressed in at one side: the outline dips by a few pixels."""
    side = rng.choice([-1.0, 1.0])
    cy, cx = to_image(scene.params, side * 0.19, rng.uniform(-0.3, 0.3))
    canvas = scene.canvas
    radius = rng.uniform(7.0, 12.0) * REF_PX
    push = rng.uniform(2.5, 5.0) * REF_PX
    weight = np.exp(-((canvas.y - cy) ** 2 + (canvas.x - cx) ** 2) / (2 * radius**2))
    normal = rotate(np.float32(side), np.float32(0.0), scene.params["angle"])
    return scene.rerender(scene.params, normal[0] * push * weight, normal[1] * push * weight)


def faulty_imprint(scene: Scene, rng: np.random.Generator) -> np.ndarray:
    """One segment of the imprint missing, or one extra segment printed."""
    digits = [list(d) for d in scene.params["digits"]]
    digit = int(rng.integers(len(digits)))
    segment = int(rng.integers(7))
    if all(digits[digit]):
        digits[digit][segment] = False
    else:
        digits[digit][segment] = not digits[digit][segment]
    return scene.rerender({**scene.params, "digits": tuple(tuple(d) for d in digits)})


OBJECTS = {
    "nut": (
        sample_nut,
        render_nut,
        {"scratch": scratch, "bent": nut_bent, "chip": nut_chip, "color": colour_spot},
    ),
    "capsule": (
        sample_capsule,
        render_capsule,
        {"crack": crack, "squeeze": capsule_squeeze, "poke": hole, "faulty_imprint": faulty_imprint},
    ),
    "pcb": (sample_pcb, render_pcb, PCB_DEFECTS),
}
