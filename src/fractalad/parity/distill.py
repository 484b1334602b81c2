"""Anomalib 2.7.0's Reverse Distillation and STFPM torch models driven with our weights and our batches.

Both sides start from the same tensors: the teacher weights of our detector, and the untrained bottleneck /
decoder / student weights our `fit` starts from (copied into Anomalib's modules). Anomalib's models are trained
here the way its Lightning `training_step` does — its loss, its optimiser from its own `configure_optimizers`,
its forward — on the same shuffled batches `train_epochs` draws, so what differs is only what Anomalib does
differently. STFPM's Anomalib constructor downloads ImageNet weights for the teacher unconditionally; it is run
with that download switched off, and our teacher weights are loaded into it afterwards.

Needs the optional `parity` extra (anomalib==2.7.0), imported lazily.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from unittest import mock

import torch
from torch import nn

from fractalad.backbones.factory import Normalization
from fractalad.detectors.base import TrainSet
from fractalad.detectors.components.training import _epoch_generator
from fractalad.detectors.reverse_distillation import ReverseDistillation
from fractalad.detectors.stfpm import STFPM
from fractalad.errors import InputError

# Our OCBE module names -> Anomalib's (its unused conv4/bn4 have no counterpart and keep their own init).
RD_BOTTLENECK_NAMES = {
    "chains.0.0.0.": "conv1.",
    "chains.0.0.1.": "bn1.",
    "chains.0.1.0.": "conv2.",
    "chains.0.1.1.": "bn2.",
    "chains.1.0.0.": "conv3.",
    "chains.1.0.1.": "bn3.",
    "fuse.": "bn_layer.",
}
RD_DECODER_NAMES = {f"stages.{i}.": f"layer{i + 1}." for i in range(3)}


@dataclass(frozen=True)
class AnomalibRun:
    """Anomalib's outputs on the test images and its speed: scores (N,), maps (N, H, W)."""

    scores: torch.Tensor
    maps: torch.Tensor
    seconds_per_epoch: float
    predict_images_per_second: float


def _renamed(state: dict[str, torch.Tensor], names: dict[str, str]) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in state.items():
        prefix = next((p for p in names if key.startswith(p)), None)
        if prefix is None:
            raise InputError(
                f"no Anomalib counterpart for {key!r}: the layouts differ (3 teacher layers only)"
            )
        out[names[prefix] + key[len(prefix) :]] = value
    return out


def _load_exactly(
    module: nn.Module, state: dict[str, torch.Tensor], what: str, unmatched: tuple[str, ...] = ()
) -> None:
    """Load `state` into `module`; every module tensor except the `unmatched` prefixes must be covered."""
    wanted = {k for k in module.state_dict() if not k.startswith(unmatched)}
    if wanted != set(state):
        missing, extra = sorted(wanted - set(state)), sorted(set(state) - wanted)
        raise InputError(
            f"{what}: {len(missing)} tensors missing {missing[:3]}, {len(extra)} extra {extra[:3]}"
        )
    module.load_state_dict(state, strict=False)


def _body_state(extractor: nn.Module) -> dict[str, torch.Tensor]:
    """A FeatureExtractor's backbone tensors under torchvision names (timm's ResNets use the same names)."""
    return {k[len("body.") :]: v.detach().clone() for k, v in extractor.state_dict().items()}


def _untrained(detector: ReverseDistillation | STFPM) -> None:
    """Build the detector's teacher and the untrained sub-networks its `fit` starts from (same seed, same init)."""
    detector._setup("cpu")


def build_reverse_distillation(detector: ReverseDistillation, image_size: int) -> nn.Module:
    """Anomalib's ReverseDistillationModel (maps added, as the original) with `detector`'s starting weights."""
    from anomalib.models.image.reverse_distillation.torch_model import ReverseDistillationModel

    if detector.layers != (1, 2, 3):
        raise InputError(
            f"Anomalib's Reverse Distillation is fixed to layers 1-3, not {list(detector.layers)}"
        )
    _untrained(detector)
    model = ReverseDistillationModel(
        backbone=detector.backbone,
        input_size=(image_size, image_size),
        layers=[f"layer{i}" for i in detector.layers],
        anomaly_map_mode="add",
        pre_trained=False,
    )
    _load_exactly(model.encoder.feature_extractor, _body_state(detector.extractor_), "RD encoder", ("fc.",))
    bottleneck = _renamed(detector.bottleneck_.state_dict(), RD_BOTTLENECK_NAMES)
    _load_exactly(model.bottleneck, bottleneck, "RD bottleneck", ("conv4.", "bn4."))
    _load_exactly(model.decoder, _renamed(detector.decoder_.state_dict(), RD_DECODER_NAMES), "RD decoder")
    return model


def _random_init_extractor(constructor: type) -> object:
    def build(*args: object, **options: object) -> nn.Module:
        return constructor(*args, **{**options, "pre_trained": False})

    return build


def build_stfpm(detector: STFPM) -> nn.Module:
    """Anomalib's STFPMModel with `detector`'s teacher weights and its student's initial weights."""
    from anomalib.models.image.stfpm import torch_model

    _untrained(detector)
    # Anomalib's constructor hard-codes an ImageNet download for the teacher; build both extractors randomly
    # initialised instead and load the weights we want.
    with mock.patch.object(
        torch_model, "TimmFeatureExtractor", _random_init_extractor(torch_model.TimmFeatureExtractor)
    ):
        model = torch_model.STFPMModel(
            layers=[f"layer{i}" for i in detector.layers], backbone=detector.backbone
        )
    teacher, student = _body_state(detector.extractor_), _body_state(detector.student_)
    _load_exactly(model.teacher_model.feature_extractor, teacher, "STFPM teacher", ("fc.",))
    _load_exactly(model.student_model.feature_extractor, student, "STFPM student", ("fc.",))
    return model


def anomalib_optimizer(model: nn.Module) -> torch.optim.Optimizer:
    """The optimiser Anomalib's Lightning module configures for `model` (its hard-coded settings)."""
    from anomalib.models.image.reverse_distillation.lightning_model import ReverseDistillation as LightningRD
    from anomalib.models.image.stfpm.lightning_model import Stfpm as LightningStfpm

    lightning = LightningStfpm if hasattr(model, "student_model") else LightningRD
    return lightning.configure_optimizers(SimpleNamespace(model=model))


def _anomalib_loss(model: nn.Module) -> nn.Module:
    from anomalib.models.image.reverse_distillation.loss import ReverseDistillationLoss
    from anomalib.models.image.stfpm.loss import STFPMLoss

    return STFPMLoss() if hasattr(model, "student_model") else ReverseDistillationLoss()


def _normalise(images: torch.Tensor, normalization: Normalization) -> torch.Tensor:
    mean = torch.tensor(normalization.mean).view(1, 3, 1, 1)
    std = torch.tensor(normalization.std).view(1, 3, 1, 1)
    return (images - mean) / std


def train_anomalib(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    train: TrainSet,
    *,
    epochs: int,
    batch_size: int,
    seed: int,
    normalization: Normalization,
) -> list[float]:
    """Train as Anomalib's `training_step` does, on the batches `train_epochs` draws; seconds of each epoch."""
    loss_fn = _anomalib_loss(model)
    seconds = []
    for epoch in range(epochs):
        start = time.perf_counter()
        model.train()
        for batch in train.batches(batch_size, shuffle=True, generator=_epoch_generator(seed, epoch)):
            loss = loss_fn(*model(_normalise(batch, normalization)))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        seconds.append(time.perf_counter() - start)
    return seconds


@torch.no_grad()
def predict_anomalib(
    model: nn.Module, test_batches: Sequence[torch.Tensor], normalization: Normalization
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(scores (N,), maps (N, H, W), images per second) of the trained model in eval mode."""
    model.eval()
    scores, maps = [], []
    start = time.perf_counter()
    for batch in test_batches:
        output = model(_normalise(batch, normalization))
        scores.append(output.pred_score.reshape(-1))
        maps.append(output.anomaly_map.reshape(batch.shape[0], *batch.shape[-2:]))
    seconds = time.perf_counter() - start
    return torch.cat(scores), torch.cat(maps), sum(len(b) for b in test_batches) / seconds


def run_anomalib(
    detector: ReverseDistillation | STFPM,
    train: TrainSet,
    test_batches: Sequence[torch.Tensor],
) -> AnomalibRun:
    """Anomalib's counterpart of `detector` (same weights, epochs, batch size, batches) trained and scored."""
    size = int(test_batches[0].shape[-1])
    model = (
        build_stfpm(detector) if isinstance(detector, STFPM) else build_reverse_distillation(detector, size)
    )
    normalization = detector.extractor_.normalization
    epoch_seconds = train_anomalib(
        model,
        anomalib_optimizer(model),
        train,
        epochs=detector.epochs,
        batch_size=detector.batch_size,
        seed=detector.seed,
        normalization=normalization,
    )
    scores, maps, rate = predict_anomalib(model, test_batches, normalization)
    return AnomalibRun(scores, maps, sum(epoch_seconds) / len(epoch_seconds), rate)
