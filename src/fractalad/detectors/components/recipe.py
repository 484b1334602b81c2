"""What every trained detector's `fit` shares around `train_epochs`: hyper-parameter checks, the optional
validation split of the normal training images, and the JSON fit record."""

from __future__ import annotations

from typing import Any

from fractalad.detectors.base import TrainSet
from fractalad.detectors.components.training import TrainingRecord
from fractalad.errors import InputError


def check_training_params(
    epochs: int, batch_size: int, lr: float, weight_decay: float, validation_fraction: float
) -> None:
    """Refuse impossible optimiser settings at construction time, in one line each."""
    if int(epochs) < 1:
        raise InputError(f"epochs must be >= 1, got {epochs}")
    if int(batch_size) < 1:
        raise InputError(f"batch_size must be >= 1, got {batch_size}")
    if not float(lr) > 0:
        raise InputError(f"lr must be positive, got {lr}")
    if float(weight_decay) < 0:
        raise InputError(f"weight_decay must be >= 0, got {weight_decay}")
    if not 0.0 <= float(validation_fraction) < 1.0:
        raise InputError(
            f"validation_fraction must be in [0, 1) (0 = train on all images, keep the last epoch), "
            f"got {validation_fraction}"
        )


def split_validation(train: TrainSet, fraction: float, seed: int) -> tuple[TrainSet, TrainSet | None]:
    """(images to train on, held-out normal images for checkpoint selection or None when fraction is 0)."""
    if fraction == 0.0:
        return train, None
    return train.split(fraction, seed)


def fit_info(record: TrainingRecord, validation_fraction: float) -> dict[str, Any]:
    """`fit_info_` of a trained detector: the training record with its selection rule spelled out."""
    info = record.as_info()
    if validation_fraction > 0:
        info["selection_rule"] = (
            f"lowest mean validation loss on {validation_fraction:.0%} of the normal training images"
        )
    info["validation_fraction"] = validation_fraction
    info["finetuned_backbone"] = False
    return info
