"""Texture scenes: a plain-woven fabric, wood grain and a tiled floor, each with its defect types."""

from __future__ import annotations

from typing import Any

import numpy as np

from fractalad.data.synthetic.defects import (
    Scene,
    colour_spot,
    crack,
    hole,
    local_warp,
    pick_point,
    random_curve,
    scratch,
    stain,
    stroke,
)
from fractalad.data.synthetic.shapes import REF_PX, LatticeNoise, coverage, rotate

Params = dict[str, Any]


def sample_weave(rng: np.random.Generator) -> Params:
    """Fabric pose (small rotation, thread phase), thread period (~10 px) and dye colour."""
    colour = np.array([0.62, 0.50, 0.38]) + rng.normal(0, 0.012, 3)
    return {
        "angle": rng.normal(0.0, 0.03),
        "period": 0.075 * rng.uniform(0.97, 1.03),
        "phase": rng.uniform(0.0, 1.0, 2),
        "colour": colour.astype(np.float32),
        "fibres": LatticeNoise(rng),
        "dye": LatticeNoise(rng),
    }


def render_weave(p: Params, y: np.ndarray, x: np.ndarray, px: float) -> tuple[np.ndarray, np.ndarray]:
    """Plain weave: weft and warp threads alternate on top; fibres run along each thread."""
    v, u = rotate(y, x, p["angle"])
    u = u / p["period"] + p["phase"][0]
    v = v / p["period"] + p["phase"][1]
    iu, iv = np.floor(u), np.floor(v)
    fu, fv = u - iu, v - iv
    weft_on_top = (iu + iv) % 2 == 0
    weft = np.sin(np.pi * fv) ** 0.6 * (0.62 + 0.38 * np.sin(np.pi * fu))
    warp = np.sin(np.pi * fu) ** 0.6 * (0.62 + 0.38 * np.sin(np.pi * fv))
    fibre = np.where(weft_on_top, p["fibres"](v * 7.0, u * 0.9), p["fibres"](u * 7.0 + 31.0, v * 0.9))
    tone = 0.28 + 0.72 * np.where(weft_on_top, weft, warp) + 0.09 * fibre
    tone = tone + 0.035 * p["dye"].fractal(y * 3.0, x * 3.0)
    return (p["colour"] * tone[:, :, None]).astype(np.float32), np.ones_like(y)


def loose_thread(scene: Scene, rng: np.random.Generator) -> np.ndarray:
    """A stray fibre lying on the fabric, in the fabric's own colour."""
    colour = scene.params["colour"] * rng.uniform(0.75, 0.95)
    points = random_curve(scene, rng, (16, 45))
    return stroke(
        scene, scene.image, points, rng.uniform(1.4, 2.4), lambda old: np.broadcast_to(colour, old.shape)
    )


def pulled_threads(scene: Scene, rng: np.random.Generator) -> np.ndarray:
    """Threads pushed aside locally (a cut or a pull): the weave pattern is displaced."""
    return local_warp(scene, rng, amplitude_px=(3.0, 6.0), radius_px=(5.0, 10.0))


def sample_wood(rng: np.random.Generator) -> Params:
    """Board pose, ring spacing and colours of light and dark wood."""
    return {
        "angle": rng.normal(0.0, 0.04),
        "frequency": rng.uniform(5.0, 7.0),
        "offset": rng.uniform(0.0, 1.0),
        "warp": LatticeNoise(rng),
        "streaks": LatticeNoise(rng),
        "light": (np.array([0.80, 0.60, 0.40]) + rng.normal(0, 0.012, 3)).astype(np.float32),
        "dark": (np.array([0.55, 0.36, 0.20]) + rng.normal(0, 0.012, 3)).astype(np.float32),
    }


def render_wood(p: Params, y: np.ndarray, x: np.ndarray, px: float) -> tuple[np.ndarray, np.ndarray]:
    """Growth rings bent by smooth noise, fine streaks and pores along the grain."""
    along, across = rotate(y, x, p["angle"])
    t = across * p["frequency"] + p["offset"] + 0.8 * p["warp"].fractal(along * 1.2, across * 1.6, 3)
    rings = (0.5 + 0.5 * np.cos(2 * np.pi * t)) ** 3
    streaks = p["streaks"](along * 2.0, across * 45.0)
    pores = np.clip(p["streaks"](along * 7.0 + 50.0, across * 60.0) - 0.55, 0.0, None) * 2.0
    mix = np.clip(0.1 + 0.62 * rings + 0.1 * streaks + 0.45 * pores, 0.0, 1.0)[:, :, None]
    return (p["light"] * (1 - mix) + p["dark"] * mix).astype(np.float32), np.ones_like(y)


def sample_tile(rng: np.random.Generator) -> Params:
    """Tile grid pose (phase, tiny rotation), tile shades and terrazzo speckles."""
    return {
        "angle": rng.normal(0.0, 0.01),
        "period": 0.40 * rng.uniform(0.98, 1.02),
        "offset": rng.uniform(0.0, 1.0, 2),
        "grout": 0.028,
        "base": (np.array([0.80, 0.78, 0.74]) + rng.normal(0, 0.01, 3)).astype(np.float32),
        "grout_colour": (np.array([0.47, 0.46, 0.44]) + rng.normal(0, 0.01, 3)).astype(np.float32),
        "shades": LatticeNoise(rng, cells=16),
        "speckle": LatticeNoise(rng),
    }


def tile_cells(
    p: Params, y: np.ndarray, x: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Tile indices (iu, iv) and positions (fu, fv) in [0, 1) inside the tile."""
    v, u = rotate(y, x, p["angle"])
    u = u / p["period"] + p["offset"][0]
    v = v / p["period"] + p["offset"][1]
    iu, iv = np.floor(u), np.floor(v)
    return iu, iv, u - iu, v - iv


def render_tile(p: Params, y: np.ndarray, x: np.ndarray, px: float) -> tuple[np.ndarray, np.ndarray]:
    """Square tiles with grout joints, a shade per tile, bevelled edges and dark speckles."""
    iu, iv, fu, fv = tile_cells(p, y, x)
    edge = np.minimum(np.minimum(fu, 1 - fu), np.minimum(fv, 1 - fv)) * p["period"]
    grout = coverage(edge - p["grout"] / 2, px)[:, :, None]
    cells = p["shades"].table.shape[0]
    shade = 0.05 * p["shades"].table[iu.astype(np.int64) % cells, iv.astype(np.int64) % cells]
    dots = np.clip((p["speckle"](y * 45.0, x * 45.0) - 0.55) * 6.0, 0.0, 1.0)
    fine = 0.03 * p["speckle"].fractal(y * 20.0 + 7.0, x * 20.0 + 3.0, 2)
    bevel = 1.0 - 0.12 * np.exp(-(edge - p["grout"] / 2) / (3.0 * REF_PX))
    tone = ((1.0 + shade + fine) * (1.0 - 0.22 * dots) * np.clip(bevel, 0.0, 1.0))[:, :, None]
    return (grout * p["grout_colour"] + (1 - grout) * p["base"] * tone).astype(np.float32), np.ones_like(y)


def grey_stroke(scene: Scene, rng: np.random.Generator) -> np.ndarray:
    """A broad, faint grey smear (6-12 % darker)."""
    factor = 1.0 - min(rng.uniform(0.06, 0.12) * scene.contrast, 1.0)
    points = random_curve(scene, rng, (20, 50))
    return stroke(scene, scene.image, points, rng.uniform(3.0, 6.0), lambda old: old * factor)


def misplaced_tile(scene: Scene, rng: np.random.Generator) -> np.ndarray:
    """One tile laid 2-4 px off its place: its joints no longer line up with the neighbours."""
    p, canvas = scene.params, scene.canvas
    cy, cx = pick_point(scene, rng)
    iu, iv, _, _ = tile_cells(p, canvas.y, canvas.x)
    ou, ov, _, _ = tile_cells(p, np.array([[cy]], np.float32), np.array([[cx]], np.float32))
    inside = ((iu == ou[0, 0]) & (iv == ov[0, 0])).astype(np.float32)
    shift = rng.uniform(2.0, 4.0) * REF_PX
    angle = rng.uniform(0, 2 * np.pi)
    return scene.rerender(p, inside * shift * np.sin(angle), inside * shift * np.cos(angle))


TEXTURES = {
    "weave": (
        sample_weave,
        render_weave,
        {"hole": hole, "thread": loose_thread, "cut": pulled_threads, "color": colour_spot},
    ),
    "wood": (
        sample_wood,
        render_wood,
        {"scratch": scratch, "hole": hole, "liquid": stain, "color": colour_spot},
    ),
    "tile": (
        sample_tile,
        render_tile,
        {"crack": crack, "gray_stroke": grey_stroke, "oil": stain, "misplaced": misplaced_tile},
    ),
}
