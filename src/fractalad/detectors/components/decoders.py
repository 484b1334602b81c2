"""Reverse Distillation's trained halves: the OCBE bottleneck and the de-ResNet decoder (Deng & Li, CVPR 2022).

Both are built from what the frozen teacher reports — channels and strides per extracted layer, its block family
(basic or bottleneck), its block counts and its bottleneck width — so any ResNet-family backbone the factory
offers works without a per-name table. For the classic names the result is the original RD4AD architecture:
- OCBE: each shallower map is brought to the deepest map's size by a chain of stride-2 3x3 convolutions (each with
  BatchNorm and ReLU) that doubles the channels per step, the maps are concatenated, and a ResNet stage of the
  teacher's family (2 basic blocks or 3 bottlenecks, stride 2, with a 1x1 conv/BN shortcut) compresses them to
  twice the deepest channels at half its size;
- decoder: mirrored ResNet stages whose first block upsamples with a stride-2 transposed convolution, one stage
  per teacher layer, deepest first; the stage producing layer j gets as many blocks as the teacher's stage
  `layers[i]` (the original's de_resnet pairs block counts that way).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck, conv1x1, conv3x3

from fractalad.backbones.factory import FeatureExtractor
from fractalad.errors import InputError

# OCBE depth of the original: 2 blocks for basic-block teachers (resnet18/34), 3 for bottleneck ones.
OCBE_BLOCKS = {False: 2, True: 3}
EXPANSION = {False: 1, True: 4}


@dataclass(frozen=True)
class TeacherLayout:
    """What the decoder needs to know about the teacher's extracted layers (shallowest first)."""

    channels: tuple[int, ...]
    strides: tuple[int, ...]
    bottleneck: bool  # block family: Bottleneck (resnet50, wide_resnet*) or BasicBlock (resnet18/34)
    blocks: tuple[int, ...]  # blocks in each extracted teacher stage
    groups: int
    base_width: int  # torchvision's width_per_group: 64, or 128 for the wide ResNets

    @property
    def expansion(self) -> int:
        return EXPANSION[self.bottleneck]


def describe_teacher(extractor: FeatureExtractor) -> TeacherLayout:
    """Read the teacher's layout from its reported channels/strides and its stage modules."""
    channels, strides = tuple(extractor.channels), tuple(extractor.strides)
    if len(channels) < 2:
        raise InputError(
            f"reverse distillation needs at least 2 teacher layers to fuse, got layers {list(extractor.layers)}"
        )
    if any(b <= a for a, b in itertools.pairwise(strides)):
        raise InputError(f"teacher layers {list(extractor.layers)} must be given shallowest first")
    # torch.fx keeps each stage as a module whose children are its blocks.
    stages = [list(getattr(extractor.body, f"layer{layer}").children()) for layer in extractor.layers]
    first = stages[0][0]
    bottleneck = hasattr(first, "conv3")
    groups, base_width = 1, 64
    if bottleneck:
        # torchvision/timm: width = int(planes * base_width / 64) * groups, planes = out_channels / 4.
        groups = first.conv2.groups
        planes = channels[0] // EXPANSION[True]
        base_width = 64 * first.conv2.in_channels // (groups * planes)
    return TeacherLayout(channels, strides, bottleneck, tuple(len(s) for s in stages), groups, base_width)


def _steps(factor: int, what: str) -> int:
    steps = round(math.log2(factor)) if factor > 0 else -1
    if steps < 0 or 2**steps != factor:
        raise InputError(f"{what}: stride ratio {factor} is not a power of two; choose other teacher layers")
    return steps


def _init_like_resnet(module: nn.Module) -> None:
    # The original initialises (non-transposed) convolutions and norms as torchvision's ResNet does; transposed
    # convolutions keep PyTorch's default initialisation.
    for sub in module.modules():
        if isinstance(sub, nn.Conv2d):
            nn.init.kaiming_normal_(sub.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(sub, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.constant_(sub.weight, 1)
            nn.init.constant_(sub.bias, 0)


class OCBE(nn.Module):
    """Multi-scale fusion + one-class bottleneck: [(B, C_j, H/s_j, W/s_j)] -> (B, 2 C_last, H/2s_last, W/2s_last)."""

    def __init__(self, layout: TeacherLayout) -> None:
        super().__init__()
        last_channels, last_stride = layout.channels[-1], layout.strides[-1]
        chains = []
        for channels, stride in zip(layout.channels[:-1], layout.strides[:-1], strict=True):
            steps = _steps(last_stride // stride, "OCBE")
            widths = [channels * 2**k for k in range(steps)] + [last_channels]
            chains.append(
                nn.Sequential(
                    *(
                        nn.Sequential(conv3x3(a, b, stride=2), nn.BatchNorm2d(b), nn.ReLU(inplace=True))
                        for a, b in itertools.pairwise(widths)
                    )
                )
            )
        self.chains = nn.ModuleList(chains)
        fused = last_channels * len(layout.channels)
        out_channels = 2 * last_channels
        planes = out_channels // layout.expansion
        block: type[BasicBlock | Bottleneck] = Bottleneck if layout.bottleneck else BasicBlock
        shortcut = nn.Sequential(conv1x1(fused, out_channels, stride=2), nn.BatchNorm2d(out_channels))
        width: dict[str, int] = (
            {"groups": layout.groups, "base_width": layout.base_width} if layout.bottleneck else {}
        )
        blocks = [block(fused, planes, 2, shortcut, **width)]
        blocks += [block(out_channels, planes, **width) for _ in range(1, OCBE_BLOCKS[layout.bottleneck])]
        self.fuse = nn.Sequential(*blocks)
        _init_like_resnet(self)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        """Teacher maps, shallowest first -> the bottleneck code (B, 2 C_last, h_last / 2, w_last / 2)."""
        reduced = [chain(feature) for chain, feature in zip(self.chains, features, strict=False)]
        return self.fuse(torch.cat([*reduced, features[-1]], dim=1)).contiguous()


class DecoderBasicBlock(nn.Module):
    """ResNet basic block run backwards: a stride-s block upsamples by s with a transposed convolution."""

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, upsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1: nn.Module = (
            nn.ConvTranspose2d(inplanes, planes, kernel_size=stride, stride=stride, bias=False)
            if stride > 1
            else conv3x3(inplanes, planes)
        )
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.upsample = upsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.upsample is None else self.upsample(x)
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu(out + identity)


class DecoderBottleneck(nn.Module):
    """ResNet bottleneck run backwards: its 3x3 becomes a stride-s transposed convolution when upsampling."""

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        upsample: nn.Module | None = None,
        groups: int = 1,
        base_width: int = 64,
    ) -> None:
        super().__init__()
        width = int(planes * (base_width / 64.0)) * groups
        self.conv1 = conv1x1(inplanes, width)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2: nn.Module = (
            nn.ConvTranspose2d(width, width, kernel_size=stride, stride=stride, groups=groups, bias=False)
            if stride > 1
            else conv3x3(width, width, groups=groups)
        )
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, planes * 4)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.upsample = upsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.upsample is None else self.upsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def _decoder_stage(
    make_block: Callable[[int, int, int, nn.Module | None], nn.Module],
    inplanes: int,
    out_channels: int,
    planes: int,
    count: int,
    factor: int,
) -> nn.Sequential:
    upsample = None
    if factor != 1 or inplanes != out_channels:
        upsample = nn.Sequential(
            nn.ConvTranspose2d(inplanes, out_channels, kernel_size=factor, stride=factor, bias=False),
            nn.BatchNorm2d(out_channels),
        )
    blocks = [make_block(inplanes, planes, factor, upsample)]
    blocks += [make_block(out_channels, planes, 1, None) for _ in range(1, count)]
    return nn.Sequential(*blocks)


class ResNetDecoder(nn.Module):
    """Bottleneck code -> one map per teacher layer with the teacher's channels and size, shallowest first."""

    def __init__(self, layout: TeacherLayout) -> None:
        super().__init__()
        expansion = layout.expansion

        def make_block(inplanes: int, planes: int, stride: int, upsample: nn.Module | None) -> nn.Module:
            if layout.bottleneck:
                return DecoderBottleneck(inplanes, planes, stride, upsample, layout.groups, layout.base_width)
            return DecoderBasicBlock(inplanes, planes, stride, upsample)

        stages = []
        inplanes, stride = 2 * layout.channels[-1], 2 * layout.strides[-1]
        for i, (channels, target) in enumerate(
            zip(reversed(layout.channels), reversed(layout.strides), strict=True)
        ):
            factor = 2 ** _steps(stride // target, "decoder")
            stages.append(
                _decoder_stage(
                    make_block, inplanes, channels, channels // expansion, layout.blocks[i], factor
                )
            )
            inplanes, stride = channels, target
        self.stages = nn.ModuleList(stages)
        _init_like_resnet(self)

    def forward(self, code: torch.Tensor) -> list[torch.Tensor]:
        """(B, 2 C_last, h, w) -> [(B, C_j, H/s_j, W/s_j)] in the teacher's order (shallowest first)."""
        outputs = []
        x = code
        for stage in self.stages:
            x = stage(x)
            outputs.append(x)
        return outputs[::-1]
