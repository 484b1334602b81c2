"""Fractal engine: IFS samplers, fused numba and batched torch renderers, on-the-fly datasets, export."""
