"""A Gaussian density with Ledoit-Wolf shrinkage (CutPaste's scorer): stable when samples < dimensions."""

from __future__ import annotations

import torch
from sklearn.covariance import LedoitWolf

from fractalad.errors import InputError


def fit_ledoit_wolf(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """features (N, D) -> mean (D,), precision (D, D) of the Ledoit-Wolf shrunk covariance (float32).

    Shrinkage towards a scaled identity keeps the covariance invertible when N < D or features are collinear,
    where the sample covariance is singular.
    """
    if features.ndim != 2 or features.shape[0] < 2:
        raise InputError(f"a Gaussian density needs at least 2 feature vectors, got shape {tuple(features.shape)}")
    estimator = LedoitWolf(assume_centered=False).fit(features.detach().double().cpu().numpy())
    mean = torch.from_numpy(estimator.location_).float()
    precision = torch.from_numpy(estimator.precision_).float()
    return mean.to(features.device), precision.to(features.device)


def mahalanobis_squared(features: torch.Tensor, mean: torch.Tensor, precision: torch.Tensor) -> torch.Tensor:
    """features (N, D) -> (N,) squared Mahalanobis distances, -2 log density up to a constant (higher = rarer)."""
    delta = features - mean
    return ((delta @ precision) * delta).sum(1).clamp_min(0)
