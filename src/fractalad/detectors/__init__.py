"""Anomaly detectors behind one protocol and registry; importing this package registers the built-ins."""

from fractalad.detectors.base import (
    Detector,
    Prediction,
    create_detector,
    list_detectors,
    load_detector,
    register_detector,
)
from fractalad.detectors.padim import PaDiM
from fractalad.detectors.patchcore import PatchCore

__all__ = [
    "Detector",
    "PaDiM",
    "PatchCore",
    "Prediction",
    "create_detector",
    "list_detectors",
    "load_detector",
    "register_detector",
]
