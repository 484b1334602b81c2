"""Anomaly-detection metrics: pure functions, NumPy arrays in, float out, exact (no threshold sampling)."""

from fractalad.metrics.pro import aupro
from fractalad.metrics.roc import image_auroc, pixel_auroc

__all__ = ["aupro", "image_auroc", "pixel_auroc"]
