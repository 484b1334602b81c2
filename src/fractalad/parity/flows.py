"""Anomalib 2.7's FastFlow and C-Flow torch models driven with our weights, for parity tests and benchmarks.

Anomalib trains these through Lightning; the loops here do what its `training_step`s do (FastFlow: Adam on the
summed per-scale loss; C-Flow: one Adam step per fibre batch of each layer, the remainder fibres included, a
constant learning rate) on Anomalib's own torch models, loss and likelihood helpers. Needs the optional `parity`
extra (anomalib==2.7.0), imported lazily.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from fractalad.backbones.factory import Normalization
from fractalad.detectors.base import TrainSet
from fractalad.detectors.components.flows import numpy_seeded
from fractalad.errors import InputError


def load_state(target: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load `state` (torchvision names) into a timm feature network, every tensor it has."""
    wanted = target.state_dict()
    missing = sorted(set(wanted) - set(state))
    if missing:
        raise InputError(
            f"weights lack {len(missing)} tensors Anomalib's extractor needs, e.g. {missing[:3]}"
        )
    target.load_state_dict({key: state[key] for key in wanted}, strict=True)


def normalise(images: torch.Tensor, normalization: Normalization) -> torch.Tensor:
    """Images in [0, 1] -> normalised as Anomalib's pre-processor does."""
    mean = torch.tensor(normalization.mean).view(1, 3, 1, 1)
    std = torch.tensor(normalization.std).view(1, 3, 1, 1)
    return (images - mean) / std


def build_fastflow(
    backbone: str,
    state: dict[str, torch.Tensor],
    input_size: int,
    flow_steps: int,
    conv3x3_only: bool,
    hidden_ratio: float,
    seed: int,
) -> nn.Module:
    """Anomalib FastflowModel (layer1-3, its clamp 2.0) with `state` in its backbone; flows drawn from `seed`."""
    from anomalib.models.image.fastflow.torch_model import FastflowModel

    with torch.random.fork_rng(devices=[]), numpy_seeded(seed):
        torch.manual_seed(seed)
        model = FastflowModel(
            input_size=(input_size, input_size),
            backbone=backbone,
            pre_trained=False,
            flow_steps=flow_steps,
            conv3x3_only=conv3x3_only,
            hidden_ratio=hidden_ratio,
        )
    load_state(model.feature_extractor, state)
    return model


def start_from_ours(model: nn.Module, norms: nn.Module, flows: nn.Module) -> None:
    """Give Anomalib's FastflowModel our untrained LayerNorms and flows (same FrEIA layout, same tensor names).

    The two sides then differ only in what their code does, not in their initial weight draw.
    """
    model.norms.load_state_dict(norms.state_dict(), strict=True)
    model.fast_flow_blocks.load_state_dict(flows.state_dict(), strict=True)


def build_cflow(
    backbone: str,
    layers: Sequence[int],
    state: dict[str, torch.Tensor],
    condition_dim: int,
    coupling_blocks: int,
    clamp: float,
    permute_soft: bool,
    fiber_batch_size: int,
    seed: int,
) -> nn.Module:
    """Anomalib CflowModel with our settings and `state` in its encoder; decoders drawn from `seed`."""
    from anomalib.models.image.cflow.torch_model import CflowModel

    with torch.random.fork_rng(devices=[]), numpy_seeded(seed):
        torch.manual_seed(seed)
        model = CflowModel(
            backbone=backbone,
            layers=[f"layer{i}" for i in layers],
            pre_trained=False,
            fiber_batch_size=fiber_batch_size,
            condition_vector=condition_dim,
            coupling_blocks=coupling_blocks,
            clamp_alpha=clamp,
            permute_soft=permute_soft,
        )
    load_state(model.encoder.feature_extractor, state)
    return model


def fastflow_loss(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Anomalib's FastflowLoss on the model's training outputs."""
    from anomalib.models.image.fastflow.loss import FastflowLoss

    hidden, jacobians = model(images)
    return FastflowLoss()(hidden, jacobians)


def cflow_steps(model: nn.Module, images: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
    """Anomalib's C-Flow training_step: per layer, shuffled fibre batches, one Adam step each."""
    from anomalib.models.image.cflow.utils import get_logp, positional_encoding_2d

    with torch.no_grad():
        activation = model.encoder(images)
    for index, layer in enumerate(model.pool_layers):
        features = activation[layer].detach()  # (B, C, h, w)
        batch, channels, height, width = features.shape
        code = positional_encoding_2d(model.condition_vector, height, width)
        conditions = code.permute(1, 2, 0).reshape(1, height * width, -1).expand(batch, -1, -1)
        conditions = conditions.reshape(batch * height * width, -1)
        rows = features.permute(0, 2, 3, 1).reshape(-1, channels)
        order = torch.randperm(rows.shape[0])
        size = model.fiber_batch_size
        count = rows.shape[0] // size
        if count == 0:
            raise InputError("Anomalib's C-Flow needs at least fiber_batch_size vectors per layer and batch")
        for step in range(count):
            stop = (
                (step + 1) * size if step < count - 1 else rows.shape[0]
            )  # the last one takes the remainder
            pick = order[step * size : stop]
            optimizer.zero_grad()
            z, log_jac = model.decoders[index](rows[pick], [conditions[pick]])
            loss = -F.logsigmoid(get_logp(channels, z, log_jac) / channels)
            loss.mean().backward()
            optimizer.step()


def train(
    method: str,
    model: nn.Module,
    train_set: TrainSet,
    normalization: Normalization,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    seed: int,
) -> list[float]:
    """Train Anomalib's `method` ("fastflow" | "cflow") model; seconds per epoch."""
    parameters = model.fast_flow_blocks.parameters() if method == "fastflow" else model.decoders.parameters()
    if method == "fastflow":
        parameters = [*model.norms.parameters(), *parameters]
    optimizer = torch.optim.Adam(parameters, lr=lr, weight_decay=weight_decay)
    seconds = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for epoch in range(epochs):
            start = time.perf_counter()
            model.train()
            generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
            for batch in train_set.batches(batch_size, shuffle=True, generator=generator):
                images = normalise(batch, normalization)
                if method == "fastflow":
                    optimizer.zero_grad()
                    fastflow_loss(model, images).backward()
                    optimizer.step()
                else:
                    cflow_steps(model, images, optimizer)
            seconds.append(time.perf_counter() - start)
    return seconds


@torch.no_grad()
def predict(
    model: nn.Module, test: Sequence[torch.Tensor], normalization: Normalization
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """Anomalib's inference on each test batch -> (scores (N,), maps (N, H, W), seconds)."""
    model.eval()
    scores, maps = [], []
    start = time.perf_counter()
    for batch in test:
        output = model(normalise(batch, normalization))
        scores.append(output.pred_score.reshape(-1))
        maps.append(output.anomaly_map.reshape(batch.shape[0], *batch.shape[-2:]))
    return torch.cat(scores), torch.cat(maps), time.perf_counter() - start
