"""Adapters that drive reference implementations (Anomalib) with fractalad's weights, for parity and benchmarks."""
