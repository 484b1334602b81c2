"""The PatchCore diagnosis benchmark's lighting variants change the lighting and nothing else."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np

from fractalad.data.synthetic.shapes import make_canvas, photograph

ROOT = Path(__file__).resolve().parents[2]


def _benchmark():
    spec = importlib.util.spec_from_file_location(
        "patchcore_diagnosis", ROOT / "benchmarks" / "patchcore_diagnosis.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def blocks(photo: np.ndarray) -> np.ndarray:
    """(64, 64, 3) uint8 -> (8, 8) means of 8x8 blocks: sensor noise averaged out, lighting kept."""
    return photo.astype(np.float64).mean(axis=2).reshape(8, 8, 8, 8).mean(axis=(1, 3))


def test_as_shot_lighting_is_the_generators_photograph_byte_for_byte() -> None:
    bench = _benchmark()
    canvas = make_canvas(48)
    scene = np.random.default_rng(1).uniform(0.2, 0.8, (48, 48, 3)).astype(np.float32)
    ours = bench.lit_photograph("as-shot", "tile")(scene, canvas, np.random.default_rng(5))
    np.testing.assert_array_equal(ours, photograph(scene, canvas, np.random.default_rng(5)))


def test_line_lighting_is_one_light_per_category_and_flat_lighting_has_none() -> None:
    bench = _benchmark()
    canvas = make_canvas(64)
    grey = np.full((64, 64, 3), 0.5, np.float32)
    line = bench.lit_photograph("line", "tile")
    # Two photos with different random streams: the same gradient and vignette, gains within 2 %.
    first, second = (blocks(line(grey, canvas, np.random.default_rng(s))) for s in (3, 4))
    ratio = first / second
    assert abs(np.median(ratio) - 1) < 0.042  # two gains, each within 2 %
    assert np.std(ratio / np.median(ratio)) < 0.01  # only sensor noise differs, averaged over 8x8 blocks
    shot_first, shot_second = (blocks(photograph(grey, canvas, np.random.default_rng(s))) for s in (3, 4))
    assert np.std(shot_first / shot_second) > 0.01  # the generator lights each photo its own way
    flat = bench.lit_photograph("flat", "tile")(grey, canvas, np.random.default_rng(3)).astype(np.float64)
    assert abs(flat.mean() - 127.5) < 1.0
    assert abs(flat[:8].mean() - flat[-8:].mean()) < 1.0  # no gradient between top and bottom rows
    assert abs(flat[:, :8].mean() - flat[28:36, 28:36].mean()) < 1.5  # no vignette
    shot = photograph(grey, canvas, np.random.default_rng(3)).astype(np.float64)
    assert abs(shot.mean() - 127.5) > 1.0  # the generator's own photo of the same draw is lit otherwise
