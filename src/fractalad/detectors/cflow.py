"""C-Flow (Gudovskiy et al. 2022): a conditional normalising flow per feature scale, over single feature vectors.

Recipe of the official code (gudovskiy/cflow-ad): layer2-4 features of a frozen backbone; per scale 8 FrEIA
AllInOneBlocks (Linear(D, 2D)-ReLU-Linear subnets, clamp 1.9, soft permutations) conditioned on a 128-d 2-D sin/cos
code of the position; Adam 2e-4 with a 2-meta-epoch warm-up from lr/10 and a cosine decay to lr x 1e-3; 25
meta-epochs of 8 sub-epochs; batch 32; one optimiser step per *fibre batch* of 256 shuffled feature vectors;
loss -logsigmoid(log p / C).

Scoring: per scale exp(log p / C - c_l), upsampled (bilinear, corners aligned) and summed; map = m - sum. The
official code takes c_l and m as maxima over the *test set* and Anomalib over each *evaluation batch* (so a score
depends on the other images in its batch); here both constants are fitted on the training images after training,
so a score depends only on its own image.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from fractalad.backbones.factory import FeatureExtractor, Normalization
from fractalad.detectors.base import (
    BaseDetector,
    Prediction,
    TrainSet,
    check_finite,
    check_images,
    normalization_param,
)
from fractalad.detectors.components.feature_cache import FeatureBatch, FrozenFeatures, frozen_features
from fractalad.detectors.components.flows import (
    conditional_graph,
    log_likelihood,
    numpy_seeded,
    positional_encoding_2d,
)
from fractalad.detectors.components.training import (
    build_optimizer,
    check_training_params,
    fingerprint,
    fit_info,
    frozen_splits,
    train_epochs,
)
from fractalad.errors import InputError


def cflow_lr_factor(
    sub_epoch: int,
    sub_epochs: int,
    meta_epochs: int,
    warmup_epochs: int,
    warmup_factor: float,
    min_factor: float,
) -> float:
    """LR multiplier at the start of `sub_epoch` (0-based): linear warm-up, then cosine per meta-epoch.

    The official schedule: the cosine value lr_min + (lr - lr_min)(1 + cos(pi e / E)) / 2 is set at each meta-epoch
    e; during the first `warmup_epochs` meta-epochs a linear ramp from warmup_factor * lr to the cosine value at
    e = warmup_epochs overrides it. The official code ramps per batch; here the ramp advances per sub-epoch.
    """

    def cosine(meta_epoch: int) -> float:
        return min_factor + (1 - min_factor) * (1 + math.cos(math.pi * meta_epoch / meta_epochs)) / 2

    meta_epoch = sub_epoch // sub_epochs
    if meta_epoch < warmup_epochs:
        progress = sub_epoch / (warmup_epochs * sub_epochs)
        return warmup_factor + progress * (cosine(warmup_epochs) - warmup_factor)
    return cosine(meta_epoch)


class FibreOrder:
    """Generators for the fibre shuffles, a function of (seed, sub-epoch, batch): a resumed fit redraws them.

    The sub-epoch is read from the LR scheduler, whose state the training checkpoint restores.
    """

    def __init__(self, seed: int, scheduler: torch.optim.lr_scheduler.LRScheduler) -> None:
        self.seed = seed
        self.scheduler = scheduler
        self.sub_epoch = -1
        self.batch = 0

    def next_generator(self) -> torch.Generator:
        """A fresh generator for the next image batch."""
        if self.scheduler.last_epoch != self.sub_epoch:
            self.sub_epoch, self.batch = self.scheduler.last_epoch, 0
        self.batch += 1
        return torch.Generator().manual_seed((self.seed * 1_000_003 + self.sub_epoch) * 100_003 + self.batch)


class CFlow(BaseDetector):
    """Position-conditioned flows on single feature vectors of layer2-4; anomaly = low likelihood."""

    name: ClassVar[str] = "cflow"
    fitted = ("flows_", "log_likelihood_max_", "map_max_")

    def __init__(
        self,
        backbone: str = "wide_resnet50_2",
        weights: str = "imagenet",
        layers: Sequence[int] = (2, 3, 4),
        normalization: Normalization | str | None = None,
        condition_dim: int = 128,
        coupling_blocks: int = 8,
        clamp: float = 1.9,
        permute_soft: bool = True,
        subnet_hidden_ratio: float = 2.0,
        epochs: int = 25,
        sub_epochs: int = 8,
        batch_size: int = 32,
        fiber_batch_size: int = 256,
        lr: float = 2e-4,
        lr_warmup_epochs: int = 2,
        lr_warmup_factor: float = 0.1,
        lr_min_factor: float = 1e-3,
        validation_fraction: float = 0.0,
        seed: int = 0,
    ) -> None:
        if condition_dim < 4 or condition_dim % 4:
            raise InputError(f"C-Flow condition_dim must be a positive multiple of 4, got {condition_dim}")
        for name, value in (
            ("coupling_blocks", coupling_blocks),
            ("clamp", clamp),
            ("sub_epochs", sub_epochs),
            ("fiber_batch_size", fiber_batch_size),
            ("subnet_hidden_ratio", subnet_hidden_ratio),
        ):
            if value <= 0:
                raise InputError(f"C-Flow {name} must be positive, got {value}")
        if lr_warmup_epochs < 0 or not 0 < lr_warmup_factor <= 1 or not 0 < lr_min_factor <= 1:
            raise InputError(
                "C-Flow needs lr_warmup_epochs >= 0 and lr_warmup_factor, lr_min_factor in (0, 1], got "
                f"{lr_warmup_epochs}, {lr_warmup_factor}, {lr_min_factor}"
            )
        check_training_params(epochs, batch_size, lr, 0.0, validation_fraction)
        self.backbone = backbone
        self.weights = str(weights)
        self.layers = tuple(int(x) for x in layers)
        self.normalization = normalization_param(normalization)
        self.condition_dim = int(condition_dim)
        self.coupling_blocks = int(coupling_blocks)
        self.clamp = float(clamp)
        self.permute_soft = bool(permute_soft)
        self.subnet_hidden_ratio = float(subnet_hidden_ratio)
        self.epochs = int(epochs)
        self.sub_epochs = int(sub_epochs)
        self.batch_size = int(batch_size)
        self.fiber_batch_size = int(fiber_batch_size)
        self.lr = float(lr)
        self.lr_warmup_epochs = int(lr_warmup_epochs)
        self.lr_warmup_factor = float(lr_warmup_factor)
        self.lr_min_factor = float(lr_min_factor)
        self.validation_fraction = float(validation_fraction)
        self.seed = int(seed)
        self.flows_: nn.ModuleList | None = None
        self.log_likelihood_max_: torch.Tensor | None = (
            None  # (L,) per-scale max of log p / C on training data
        )
        self.map_max_: torch.Tensor | None = None  # () max over training pixels of the summed likelihood maps

    def build(self, extractor: FeatureExtractor) -> None:
        """One conditional flow per layer, sized by the backbone's reported channels."""
        with numpy_seeded(self.seed):
            self.flows_ = nn.ModuleList(
                conditional_graph(
                    channels,
                    self.condition_dim,
                    self.coupling_blocks,
                    self.clamp,
                    self.permute_soft,
                    self.subnet_hidden_ratio,
                )
                for channels in extractor.channels
            )

    def fibres(
        self, features: list[torch.Tensor]
    ) -> list[tuple[torch.Tensor, torch.Tensor, tuple[int, int]]]:
        """Frozen maps [(B, C, h, w)] -> per layer (vectors (B*h*w, C), position codes (B*h*w, P), (h, w)).

        Rows are in b-h-w order.
        """
        out = []
        for feature in features:
            batch, channels, height, width = feature.shape
            code = positional_encoding_2d(self.condition_dim, height, width).to(feature)  # (P, h, w)
            rows = feature.permute(0, 2, 3, 1).reshape(-1, channels)
            conditions = code.permute(1, 2, 0).reshape(1, height * width, -1).expand(batch, -1, -1)
            out.append((rows, conditions.reshape(-1, self.condition_dim), (height, width)))
        return out

    def per_dim_log_likelihood(
        self, layer: int, rows: torch.Tensor, conditions: torch.Tensor
    ) -> torch.Tensor:
        """log p / C of (N, C) feature vectors under layer `layer`'s flow -> (N,)."""
        z, log_jac = self.flows_[layer](rows, [conditions])
        return log_likelihood(z, log_jac) / rows.shape[1]

    def fibre_losses(self, batch: FeatureBatch, generator: torch.Generator) -> Iterator[torch.Tensor]:
        """One loss per fibre batch: each layer's vectors shuffled and cut into full batches of fiber_batch_size.

        The remainder is dropped, as in the official code; a (last, small) image batch with fewer vectors than
        fiber_batch_size at a layer trains that layer on all of them in one step instead of skipping it.
        """
        for layer, (rows, conditions, _) in enumerate(self.fibres(batch.features)):
            size = min(self.fiber_batch_size, rows.shape[0])
            order = torch.randperm(rows.shape[0], generator=generator).to(rows.device)
            for start in range(0, rows.shape[0] - size + 1, size):
                index = order[start : start + size]
                log_p = self.per_dim_log_likelihood(layer, rows[index], conditions[index])
                yield -F.logsigmoid(log_p).mean()

    @torch.no_grad()
    def validation_loss(self, validation: FrozenFeatures) -> float:
        """Mean -logsigmoid(log p / C) over every feature vector of the validation images (lower is better)."""
        total, count = 0.0, 0
        for batch in validation.batches(self.batch_size):
            for layer, (rows, conditions, _) in enumerate(self.fibres(batch.features)):
                total += float(-F.logsigmoid(self.per_dim_log_likelihood(layer, rows, conditions)).sum())
                count += rows.shape[0]
        return total / max(1, count)

    def _fit(self, train: TrainSet, progress: bool, work_dir: Path | None) -> None:
        image_size = tuple(next(iter(train.batches(1))).shape[-2:])
        train, validation = frozen_splits(
            train, self.validation_fraction, self.seed, self.extractor_, self.device_, self.batch_size
        )
        optimizer = build_optimizer("adam", self.flows_.parameters(), self.lr)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer,
            lambda sub_epoch: cflow_lr_factor(
                sub_epoch,
                self.sub_epochs,
                self.epochs,
                self.lr_warmup_epochs,
                self.lr_warmup_factor,
                self.lr_min_factor,
            ),
        )
        fibre_order = FibreOrder(self.seed, scheduler)
        params = {**self.get_params(), "weights_id": self.extractor_.weights_id}
        record = train_epochs(
            {"flows": self.flows_},
            optimizer,
            train,
            lambda batch: self.fibre_losses(batch, fibre_order.next_generator()),
            epochs=self.epochs * self.sub_epochs,
            batch_size=self.batch_size,
            seed=self.seed,
            device=self.device_,
            precision=self.precision_,
            progress=progress,
            work_dir=work_dir,
            run_fingerprint=fingerprint(params, len(train)),
            scheduler=scheduler,
            validation=validation,
            validate=self.validation_loss if validation is not None else None,
            desc="cflow",
        )
        self.fit_info_ = {
            **fit_info(record, self.validation_fraction, train),
            "epochs_run": math.ceil(record.epochs_run / self.sub_epochs),
            "sub_epochs_run": record.epochs_run,
            "selected_epoch": math.ceil(record.selected_epoch / self.sub_epochs),
            "selected_sub_epoch": record.selected_epoch,
        }
        self.fit_constants(train, image_size)

    @torch.no_grad()
    def layer_log_likelihoods(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        """Frozen maps [(B, C, h, w)] -> per layer log p / C maps (B, h, w)."""
        maps = []
        for layer, (rows, conditions, (height, width)) in enumerate(self.fibres(features)):
            log_p = self.per_dim_log_likelihood(layer, rows, conditions)
            maps.append(log_p.float().reshape(-1, height, width))
        return maps

    def likelihood_map(self, log_likelihoods: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        """Sum over layers of exp(log p / C - c_l), upsampled to `size` -> (B, H, W)."""
        total = torch.zeros(())
        for layer, log_p in enumerate(log_likelihoods):
            relative = torch.exp(log_p - self.log_likelihood_max_[layer])[:, None]
            total = total + F.interpolate(relative, size=size, mode="bilinear", align_corners=True)[:, 0]
        return total

    @torch.no_grad()
    def fit_constants(self, train: FrozenFeatures, size: tuple[int, int]) -> None:
        """Fit c_l (max log p / C per layer) and m (max summed map) on all the (size) training images."""
        self.flows_.eval()
        per_batch = [
            (self.layer_log_likelihoods(batch.features), size) for batch in train.batches(self.batch_size)
        ]
        layers = range(len(self.flows_))
        self.log_likelihood_max_ = torch.stack(
            [torch.stack([maps[layer].amax() for maps, _ in per_batch]).amax() for layer in layers]
        )
        self.map_max_ = torch.stack(
            [self.likelihood_map(maps, tuple(size)).amax() for maps, size in per_batch]
        ).amax()
        check_finite(self.log_likelihood_max_, "C-Flow training log-likelihoods", self.extractor_.weights_id)

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> Prediction:
        """(B, 3, H, W) in [0, 1] -> Prediction(image_scores (B,), anomaly_maps (B, H, W))."""
        extractor = self.require_fitted()
        images = check_images(images)
        features = frozen_features(extractor, images, self.device_)
        maps = self.map_max_ - self.likelihood_map(
            self.layer_log_likelihoods(features), tuple(images.shape[-2:])
        )
        maps = maps.float()
        scores = maps.flatten(1).amax(1)
        check_finite(scores, "C-Flow image scores", extractor.weights_id)
        return Prediction(image_scores=scores.cpu(), anomaly_maps=maps.cpu())
