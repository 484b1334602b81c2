"""Pre-training on synthetic fractals: config presets, the training loop, checkpoints and backbone export."""

from __future__ import annotations

import importlib
from typing import Any

from fractalad.pretrain.config import PRESETS, PretrainConfig, get_preset, load_config, resolve_config

# The loop and the export import torch; they load on first use so reading presets (the CLI) stays light.
_LAZY: dict[str, str] = {
    "export_backbone": "fractalad.pretrain.export",
    "pretrain": "fractalad.pretrain.train",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "PRESETS",
    "PretrainConfig",
    "export_backbone",
    "get_preset",
    "load_config",
    "pretrain",
    "resolve_config",
]
