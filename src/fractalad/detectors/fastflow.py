"""FastFlow (Yu et al. 2021): a 2-D normalising flow per feature scale of a frozen backbone.

Recipe of the reference re-implementation (gathierry/FastFlow) for ResNets: layer1-3 features, a trainable
LayerNorm over each whole (C, H, W) map (it pins the input size: by default the size of the training images, kept
as fitted state), 8 FrEIA AllInOneBlocks per scale with 3x3 conv
subnets (hidden ratio 1.0, clamp 2.0), Adam 1e-3 / wd 1e-5, batch 32, 500 epochs. The map is the mean over scales
of -exp(-0.5 mean_c z^2), upsampled bilinearly; the image score is its maximum.
"""

from __future__ import annotations

from collections.abc import Sequence
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
from fractalad.detectors.components.feature_cache import FeatureBatch, frozen_features
from fractalad.detectors.components.flows import fastflow_graph, numpy_seeded
from fractalad.detectors.components.training import (
    build_optimizer,
    check_training_params,
    fingerprint,
    fit_info,
    frozen_splits,
    mean_validation_loss,
    train_epochs,
)
from fractalad.errors import InputError


def _positive(name: str, value: float) -> None:
    if value <= 0:
        raise InputError(f"FastFlow {name} must be positive, got {value}")


class FastFlow(BaseDetector):
    """Per-scale 2-D flows on LayerNorm-ed frozen features; anomaly = low likelihood."""

    name: ClassVar[str] = "fastflow"
    fitted = ("input_size_", "norms_", "flows_")

    def __init__(
        self,
        backbone: str = "resnet18",
        weights: str = "imagenet",
        layers: Sequence[int] = (1, 2, 3),
        normalization: Normalization | str | None = None,
        input_size: int | None = None,
        flow_steps: int = 8,
        conv3x3_only: bool = True,
        hidden_ratio: float = 1.0,
        clamp: float = 2.0,
        epochs: int = 500,
        batch_size: int = 32,
        lr: float = 1e-3,
        weight_decay: float = 1e-5,
        validation_fraction: float = 0.0,
        seed: int = 0,
    ) -> None:
        if input_size is not None:
            _positive("input_size", input_size)
        for name, value in (
            ("flow_steps", flow_steps),
            ("hidden_ratio", hidden_ratio),
            ("clamp", clamp),
        ):
            _positive(name, value)
        check_training_params(epochs, batch_size, lr, weight_decay, validation_fraction)
        self.backbone = backbone
        self.weights = str(weights)
        self.layers = tuple(int(x) for x in layers)
        self.normalization = normalization_param(normalization)
        self.input_size = int(input_size) if input_size is not None else None
        self.flow_steps = int(flow_steps)
        self.conv3x3_only = bool(conv3x3_only)
        self.hidden_ratio = float(hidden_ratio)
        self.clamp = float(clamp)
        self.epochs = int(epochs)
        self.batch_size = int(batch_size)
        self.lr = float(lr)
        self.weight_decay = float(weight_decay)
        self.validation_fraction = float(validation_fraction)
        self.seed = int(seed)
        self.input_size_: torch.Tensor | None = None  # (2,) the (H, W) the LayerNorms were built for
        self.norms_: nn.ModuleList | None = None
        self.flows_: nn.ModuleList | None = None

    def feature_shapes(
        self, extractor: FeatureExtractor, size: tuple[int, int]
    ) -> list[tuple[int, int, int]]:
        """(C, h, w) of each layer's map for (H, W) = `size` images, from the backbone's channels and strides."""
        shapes = []
        for channels, stride in zip(extractor.channels, extractor.strides, strict=True):
            if size[0] % stride or size[1] % stride:
                raise InputError(
                    f"FastFlow input size {size[0]}x{size[1]} is not a multiple of the backbone stride {stride}"
                )
            shapes.append((channels, size[0] // stride, size[1] // stride))
        return shapes

    def build(self, extractor: FeatureExtractor) -> None:
        """Norms and flows for `input_size`; left to `fit` (the training images' size) when it is None."""
        self.input_size_ = self.norms_ = self.flows_ = None
        if self.input_size is not None:
            self.build_for(extractor, (self.input_size, self.input_size))

    def build_for(self, extractor: FeatureExtractor, size: tuple[int, int]) -> None:
        """One trainable LayerNorm over [C, h, w] and one flow per scale, for (H, W) = `size` images.

        The initial weights are drawn from `seed` alone, so a size given up front and one taken from the
        training images build the same networks.
        """
        shapes = self.feature_shapes(extractor, size)
        with torch.random.fork_rng(devices=[]), numpy_seeded(self.seed):
            torch.manual_seed(self.seed)
            self.norms_ = nn.ModuleList(
                nn.LayerNorm(list(shape), elementwise_affine=True) for shape in shapes
            )
            self.flows_ = nn.ModuleList(
                fastflow_graph(shape, self.flow_steps, self.conv3x3_only, self.hidden_ratio, self.clamp)
                for shape in shapes
            )
        self.input_size_ = torch.tensor(size)
        device = getattr(self, "device_", None)
        if device is not None:
            self.norms_.to(device)
            self.flows_.to(device)

    def check_size(self, images: torch.Tensor) -> None:
        """Refuse images of another size than the one the LayerNorms were built for."""
        height, width = (int(v) for v in self.input_size_)
        if tuple(images.shape[-2:]) != (height, width):
            raise InputError(
                f"FastFlow was built for {height}x{width} images (its LayerNorm pins the size) but got "
                f"{tuple(images.shape[-2:])}; resize the images to {height}x{width} or refit on images of this size"
            )

    def _restore(self, tensors: dict[str, torch.Tensor], source: Path) -> None:
        """Rebuild the networks for the saved input size before filling them."""
        if "input_size" in tensors:
            self.build_for(self.extractor_, tuple(int(v) for v in tensors["input_size"]))
        elif self.input_size_ is not None:  # a file from before the size was saved: its input_size param
            tensors = {**tensors, "input_size": self.input_size_}
        super()._restore(tensors, source)

    def latents(self, features: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Frozen maps [(B, C, h, w)] -> per scale z (B, C, h, w) and log|det J| (B,); gradients reach the flows."""
        zs, log_jacs = [], []
        for norm, flow, feature in zip(self.norms_, self.flows_, features, strict=True):
            z, log_jac = flow(norm(feature))
            zs.append(z)
            log_jacs.append(log_jac)
        return zs, log_jacs

    def loss(self, batch: FeatureBatch) -> torch.Tensor:
        """Sum over scales of mean_b(0.5 sum z^2 - log|det J|): the negative log-likelihood up to a constant."""
        zs, log_jacs = self.latents(batch.features)
        return sum(
            (0.5 * z.pow(2).sum((1, 2, 3)) - log_jac).mean() for z, log_jac in zip(zs, log_jacs, strict=True)
        )

    def _fit(self, train: TrainSet, progress: bool, work_dir: Path | None) -> None:
        first = next(iter(train.batches(1)))  # (1, 3, H, W)
        if self.norms_ is None:
            self.build_for(self.extractor_, tuple(first.shape[-2:]))
        self.check_size(first)
        train, validation = frozen_splits(
            train, self.validation_fraction, self.seed, self.extractor_, self.device_, self.batch_size
        )
        modules = {"norms": self.norms_, "flows": self.flows_}
        parameters = [*self.norms_.parameters(), *self.flows_.parameters()]
        optimizer = build_optimizer("adam", parameters, self.lr, self.weight_decay)
        size = [int(v) for v in self.input_size_]
        params = {**self.get_params(), "weights_id": self.extractor_.weights_id, "fitted_input_size": size}
        record = train_epochs(
            modules,
            optimizer,
            train,
            self.loss,
            epochs=self.epochs,
            batch_size=self.batch_size,
            seed=self.seed,
            device=self.device_,
            precision=self.precision_,
            progress=progress,
            work_dir=work_dir,
            run_fingerprint=fingerprint(params, len(train)),
            validation=validation,
            validate=mean_validation_loss(self.loss, self.batch_size, self.device_),
            desc="fastflow",
        )
        self.fit_info_ = fit_info(record, self.validation_fraction, train)

    @torch.no_grad()
    def predict(self, images: torch.Tensor) -> Prediction:
        """(B, 3, H, W) in [0, 1] -> Prediction(image_scores (B,), anomaly_maps (B, H, W))."""
        extractor = self.require_fitted()
        images = check_images(images)
        self.check_size(images)
        zs, _ = self.latents(frozen_features(extractor, images, self.device_))
        size = images.shape[-2:]
        per_scale = [
            F.interpolate(
                -torch.exp(-0.5 * z.pow(2).mean(1, keepdim=True)),
                size=size,
                mode="bilinear",
                align_corners=False,
            )
            for z in zs
        ]  # each (B, 1, H, W)
        maps = torch.stack(per_scale).mean(0)[:, 0].float()
        scores = maps.flatten(1).amax(1)
        check_finite(scores, "FastFlow image scores", extractor.weights_id)
        return Prediction(image_scores=scores.cpu(), anomaly_maps=maps.cpu())
