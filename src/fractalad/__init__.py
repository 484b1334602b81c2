"""fractalad: pre-train backbones on synthetic fractals and evaluate them on industrial anomaly detection."""

__version__ = "0.1.0"
