"""Anomaly detectors behind one contract; the registry (`fractalad.detectors.registry`) imports them lazily."""

from fractalad.detectors.registry import (
    create_detector,
    detector_class,
    detector_params,
    list_detectors,
    load_detector,
)

__all__ = ["create_detector", "detector_class", "detector_params", "list_detectors", "load_detector"]
