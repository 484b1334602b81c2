"""Pre-training on synthetic fractals: config presets, the training loop, checkpoints and backbone export."""

from fractalad.pretrain.config import PRESETS, PretrainConfig, get_preset, load_config, resolve_config
from fractalad.pretrain.export import export_backbone
from fractalad.pretrain.train import pretrain

__all__ = [
    "PRESETS",
    "PretrainConfig",
    "export_backbone",
    "get_preset",
    "load_config",
    "pretrain",
    "resolve_config",
]
