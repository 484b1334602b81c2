"""Adapters that drive reference implementations (Anomalib) with our weights, for parity tests and benchmarks."""
