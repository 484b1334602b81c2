"""What the demo runs, importable without torch so `fractalad demo --help` answers at once."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fractalad.data.names import SYNTHETIC_CATEGORIES

# The demo pre-trains with the best CPU-sized recipe measured by benchmarks/pretrain_quality.py: `tiny80k-l3`
# (`tiny` at 80,000 images of 48 px crops, classified from layer3; about 5 minutes on two AVX2 cores in float32).
# At the demo's 256 px it beats random weights by more than 10 points of image AUROC for PatchCore and PaDiM
# over two seeds (benchmarks/RESULTS.md, "Recipe quality, fifth session"). Any of its keys can be overridden
# from the command line, e.g. epochs=3 for a quicker look; --pretrain-preset picks another recipe.
DEMO_PRETRAIN_PRESET = "tiny80k-l3"
DEMO_PRETRAIN_OVERRIDES: tuple[str, ...] = ()
DEMO_METHODS: tuple[str, ...] = ("patchcore", "padim")


@dataclass(frozen=True)
class DemoSettings:
    """What the demo runs; defaults are the README's main job (and configs/grids/demo.yaml)."""

    out_dir: Path = Path("outputs/demo")
    categories: tuple[str, ...] = SYNTHETIC_CATEGORIES
    methods: tuple[str, ...] = DEMO_METHODS
    arch: str = "resnet18"
    size: int = 256
    seed: int = 0
    pretrain_preset: str = DEMO_PRETRAIN_PRESET
    pretrain_overrides: tuple[str, ...] = DEMO_PRETRAIN_OVERRIDES
    synthetic_root: Path | None = None
    device: str = "auto"
