"""Backbone factory and weight-file I/O."""

from fractalad.backbones.factory import (
    FRACTAL_NORMALIZATION,
    IMAGENET_NORMALIZATION,
    FeatureExtractor,
    Normalization,
    create_backbone,
    create_classifier,
    parse_normalization,
)
from fractalad.backbones.weights import load_weights, save_weights

__all__ = [
    "FRACTAL_NORMALIZATION",
    "IMAGENET_NORMALIZATION",
    "FeatureExtractor",
    "Normalization",
    "create_backbone",
    "create_classifier",
    "load_weights",
    "parse_normalization",
    "save_weights",
]
