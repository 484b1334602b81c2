"""The one training loop every trained detector's `fit` calls: a function, not a framework.

What it owns, so that no method writes it again: seeded shuffling (epoch e shuffles with a generator seeded from
(seed, e), so a resumed run draws the same batches as an uninterrupted one), bf16 autocast where the device computes
bf16 natively (`devices.resolve_precision`: a CUDA GPU, or a CPU with AMX), a progress bar
with the loss, optional checkpoint selection on a validation split of the *normal training images* (never test
data), and an atomic checkpoint in the work folder after every epoch so that a killed fit resumes where it stopped.
An epoch iterates images (a TrainSet) or, for the methods on a frozen network, `FrozenFeatures` of them, which
computes the frozen features once instead of once per epoch (see `frozen_splits`).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from fractalad.backbones.factory import FeatureExtractor
from fractalad.detectors.base import TrainSet
from fractalad.detectors.components.feature_cache import FeatureBatch, FrozenFeatures
from fractalad.errors import InputError
from fractalad.files import atomic_path

CHECKPOINT_NAME = "train-state.pt"
# What an epoch iterates: images, or the frozen network's features of them (cached or recomputed).
Batches = TrainSet | FrozenFeatures
Batch = torch.Tensor | FeatureBatch
# A step's loss: one tensor (one optimiser step), or an iterator of them (one step each, e.g. C-Flow's fibre
# batches of one image batch).
StepLoss = Callable[[Batch], torch.Tensor | Iterator[torch.Tensor]]


@dataclass(frozen=True)
class TrainingRecord:
    """What a fit did: epochs run, mean loss per epoch, and the selected epoch (1-based) with its rule.

    `epoch_seconds` holds the wall time of each epoch this process ran (a resumed fit lists only its own).
    """

    epochs_run: int
    losses: list[float]
    selected_epoch: int
    selection_rule: str
    validation_scores: list[float] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)
    precision: str = "fp32"

    def as_info(self) -> dict[str, Any]:
        """JSON-ready form for a detector's `fit_info_`."""
        return {
            "epochs_run": self.epochs_run,
            "losses": self.losses,
            "selected_epoch": self.selected_epoch,
            "selection_rule": self.selection_rule,
            "validation_scores": self.validation_scores,
            "epoch_seconds": self.epoch_seconds,
            "precision": self.precision,
        }


def build_optimizer(
    name: str,
    parameters: Iterable[nn.Parameter],
    lr: float,
    weight_decay: float = 0.0,
    momentum: float = 0.0,
    betas: tuple[float, float] = (0.9, 0.999),
) -> torch.optim.Optimizer:
    """Adam or SGD from a detector's hyper-parameters (every setting is passed in; none is a literal here)."""
    trainable = [p for p in parameters if p.requires_grad]
    if not trainable:
        raise InputError("nothing to train: the detector's sub-networks have no trainable parameters")
    if name == "adam":
        return torch.optim.Adam(trainable, lr=lr, betas=tuple(betas), weight_decay=weight_decay)
    if name == "sgd":
        return torch.optim.SGD(trainable, lr=lr, momentum=momentum, weight_decay=weight_decay)
    raise InputError(f"optimizer {name!r} is unknown; use 'adam' or 'sgd'")


def fingerprint(params: dict[str, Any], n_train: int) -> str:
    """Identity of a fit: a checkpoint from a fit with other params or another training set is not resumed."""
    text = json.dumps({"params": params, "n_train": n_train}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _epoch_generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


def _forward(step_loss: StepLoss, batch: Batch, autocast: torch.autocast) -> Iterator[torch.Tensor]:
    """The step's loss or losses, each forward pass under `autocast`.

    A generator of losses runs its forward passes lazily, when the next loss is asked for, so each `next` is
    wrapped too: otherwise only the code before its first `yield` would see the autocast context.
    """
    with autocast:
        loss = step_loss(batch)
    if isinstance(loss, torch.Tensor):
        yield loss
        return
    while True:
        with autocast:
            value = next(loss, None)
        if value is None:
            return
        yield value


def _run_steps(
    losses: Iterator[torch.Tensor],
    optimizer: torch.optim.Optimizer,
    parameters: list[nn.Parameter],
    clip_grad_norm: float | None,
) -> list[float]:
    values: list[float] = []
    for value in losses:
        if not torch.isfinite(value):
            raise InputError(
                f"training loss became {float(value.detach())}; lower the learning rate or check the backbone weights"
            )
        optimizer.zero_grad(set_to_none=True)
        value.backward()
        if clip_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(parameters, clip_grad_norm)
        optimizer.step()
        values.append(float(value.detach()))
    return values


def _save(path: Path, state: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _load(path: Path, expected: str) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, OSError, EOFError) as error:
        raise InputError(
            f"{path} is not a readable fractalad training checkpoint; delete it to start the fit over"
        ) from error
    return state if state.get("fingerprint") == expected else None


def train_epochs(
    modules: dict[str, nn.Module],
    optimizer: torch.optim.Optimizer,
    train: Batches,
    step_loss: StepLoss,
    *,
    epochs: int,
    batch_size: int,
    seed: int,
    device: torch.device,
    precision: str = "fp32",
    progress: bool = False,
    work_dir: Path | None = None,
    run_fingerprint: str = "",
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
    validation: Batches | None = None,
    validate: Callable[[Batches], float] | None = None,
    clip_grad_norm: float | None = None,
    desc: str = "train",
) -> TrainingRecord:
    """Train `modules` for `epochs` epochs over shuffled batches of `train`; see the module docstring.

    `precision` is "bf16" (forward passes under bf16 autocast, float32 weights and optimiser) or "fp32"; a
    checkpoint written at the other precision is not resumed, since the two do not give the same weights.
    """
    if epochs < 1:
        raise InputError(f"epochs must be >= 1, got {epochs}")
    if precision not in ("fp32", "bf16"):
        raise InputError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
    run_fingerprint = f"{run_fingerprint}:{precision}"
    parameters = [p for m in modules.values() for p in m.parameters() if p.requires_grad]
    checkpoint = work_dir / CHECKPOINT_NAME if work_dir is not None else None
    losses: list[float] = []
    scores: list[float] = []
    best: dict[str, Any] | None = None
    start = 0
    saved = _load(checkpoint, run_fingerprint) if checkpoint is not None else None
    if saved is not None:
        for name, module in modules.items():
            module.load_state_dict(saved["modules"][name])
        optimizer.load_state_dict(saved["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(saved["scheduler"])
        start, losses, scores, best = saved["epoch"], saved["losses"], saved["scores"], saved["best"]
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    total = train.num_batches(batch_size)
    seconds: list[float] = []
    for epoch in range(start, epochs):
        started = time.perf_counter()
        for module in modules.values():
            module.train()
        batches = train.batches(batch_size, shuffle=True, generator=_epoch_generator(seed, epoch))
        bar = tqdm(
            batches, total=total, desc=f"{desc} {epoch + 1}/{epochs}", disable=not progress, leave=False
        )
        epoch_losses: list[float] = []
        for batch in bar:
            losses_of_batch = _forward(step_loss, batch.to(device), autocast)
            epoch_losses.extend(_run_steps(losses_of_batch, optimizer, parameters, clip_grad_norm))
            bar.set_postfix(loss=f"{epoch_losses[-1]:.4g}")
        losses.append(sum(epoch_losses) / max(1, len(epoch_losses)))
        if scheduler is not None:
            scheduler.step()
        if validation is not None and validate is not None:
            for module in modules.values():
                module.eval()
            scores.append(float(validate(validation)))
            if best is None or scores[-1] < best["score"]:
                best = {"epoch": epoch + 1, "score": scores[-1], "modules": _copy_states(modules)}
        seconds.append(time.perf_counter() - started)
        if checkpoint is not None:
            state = _state(modules, optimizer, scheduler, epoch + 1, losses, scores, best, run_fingerprint)
            _save(checkpoint, state)
    for module in modules.values():
        module.eval()
    if best is not None:
        for name, module in modules.items():
            module.load_state_dict(best["modules"][name])
        return TrainingRecord(
            epochs, losses, best["epoch"], "lowest validation score", scores, seconds, precision
        )
    return TrainingRecord(epochs, losses, epochs, "last epoch", scores, seconds, precision)


def _copy_states(modules: dict[str, nn.Module]) -> dict[str, dict[str, torch.Tensor]]:
    return {
        name: {k: v.detach().cpu().clone() for k, v in m.state_dict().items()} for name, m in modules.items()
    }


def _state(
    modules: dict[str, nn.Module],
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler | None,
    epoch: int,
    losses: list[float],
    scores: list[float],
    best: dict[str, Any] | None,
    run_fingerprint: str,
) -> dict[str, Any]:
    return {
        "fingerprint": run_fingerprint,
        "epoch": epoch,
        "modules": {name: m.state_dict() for name, m in modules.items()},
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "losses": [float(x) for x in losses],
        "scores": [float(x) for x in scores],
        "best": best,
    }


def mean_validation_loss(
    step_loss: Callable[[Batch], torch.Tensor], batch_size: int, device: torch.device
) -> Callable[[Batches], float]:
    """A `validate` function: the mean of `step_loss` over the validation images, without gradients."""

    @torch.no_grad()
    def validate(validation: Batches) -> float:
        values = [float(step_loss(batch.to(device))) * len(batch) for batch in validation.batches(batch_size)]
        return sum(values) / max(1, len(validation)) if values else math.inf

    return validate


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


def frozen_splits(
    train: TrainSet,
    fraction: float,
    seed: int,
    extractor: FeatureExtractor,
    device: torch.device,
    batch_size: int,
    keep_images: bool = False,
) -> tuple[FrozenFeatures, FrozenFeatures | None]:
    """`split_validation`, each part as the frozen extractor's features (cached when they fit in memory)."""
    train_part, validation = split_validation(train, fraction, seed)

    def features(images: TrainSet) -> FrozenFeatures:
        return FrozenFeatures(images, extractor, device, batch_size, keep_images)

    return features(train_part), features(validation) if validation is not None else None


def fit_info(
    record: TrainingRecord, validation_fraction: float, features: FrozenFeatures | None = None
) -> dict[str, Any]:
    """`fit_info_` of a trained detector: the training record with its selection rule spelled out."""
    info = record.as_info()
    if features is not None:
        info["feature_cache"] = features.describe()
        info["feature_cache_seconds"] = features.fill_seconds
    if validation_fraction > 0:
        info["selection_rule"] = (
            f"lowest mean validation loss on {validation_fraction:.0%} of the normal training images"
        )
    info["validation_fraction"] = validation_fraction
    info["finetuned_backbone"] = False
    return info
