"""The model and objective of pre-training: seeded classifier, input normalisation, loss with top-1 hits."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from fractalad.pretrain.config import PretrainConfig
from fractalad.pretrain.distributed import DistContext

# (logits (B, C) float32, targets (B,) int64, (B, C) soft class distributions or (B, C) multi-hot) -> (scalar loss, hits (B,) bool)
Criterion = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def build_model(config: PretrainConfig, context: DistContext) -> nn.Module:
    """Seeded classifier on the device; SyncBatchNorm under multi-GPU DDP (it has no CPU kernel)."""
    from fractalad.backbones.factory import create_classifier

    model = create_classifier(config.arch, config.num_classes, seed=config.seed, head_stage=config.head_stage)
    if context.distributed and context.device.type == "cuda":
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model = model.to(context.device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def input_normalizer(
    config: PretrainConfig, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(mean, std) as (1, 3, 1, 1) tensors, or None for raw [0, 1] inputs."""
    if config.mean is None or config.std is None:
        return None
    mean = torch.tensor(config.mean, device=device).view(1, 3, 1, 1)
    return mean, torch.tensor(config.std, device=device).view(1, 3, 1, 1)


def make_criterion(config: PretrainConfig) -> Criterion:
    """Loss(logits (B, C) float32, targets) -> scalar and hits (B,) bool (top-1 is a positive label)."""
    if not config.multi_instance:
        cross_entropy = nn.CrossEntropyLoss()

        def single_label(logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            # y: class indices (B,), or soft class distributions (B, C) after MixUp/CutMix, whose hit is
            # the class with the larger share.
            best = y.argmax(1) if y.ndim == 2 else y
            return cross_entropy(logits, y), logits.argmax(1) == best

        return single_label

    def multi_label(logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # pos_weight = C / positives balances the few positive labels of an image against the C - k negatives.
        positives = y.sum(1).mean().clamp_min(1.0)
        weight = torch.full((y.shape[1],), y.shape[1], device=y.device) / positives
        loss = nn.functional.binary_cross_entropy_with_logits(logits, y, pos_weight=weight)
        return loss, y.gather(1, logits.argmax(1, keepdim=True)).squeeze(1) > 0.5

    return multi_label
