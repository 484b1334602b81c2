"""Normalising-flow pieces shared by FastFlow and C-Flow: FrEIA coupling graphs, subnets, positional codes.

The coupling blocks are FrEIA's `AllInOneBlock` (affine coupling + learned global affine + fixed permutation);
this module only chooses their subnets and stacks them, and applies hard permutations by indexing
(`IndexPermutedBlock`) where FrEIA multiplies by a dense permutation matrix. FrEIA draws the fixed permutations from NumPy's global
random state, so graphs are built inside `numpy_seeded` to make them a function of the detector's seed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import torch
from FrEIA.framework import SequenceINN
from FrEIA.modules import AllInOneBlock
from torch import nn

SubnetConstructor = Callable[[int, int], nn.Module]
# log of the standard normal density's normaliser, ln(1 / sqrt(2 pi)).
LOG_NORMAL_CONSTANT = -0.5 * math.log(2 * math.pi)


@contextmanager
def numpy_seeded(seed: int) -> Iterator[None]:
    """Seed NumPy's global RNG (which FrEIA's permutations draw from) and restore the caller's state after."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


class IndexPermutedBlock(AllInOneBlock):
    """FrEIA's `AllInOneBlock` whose hard permutation reorders channels by indexing instead of multiplying.

    FrEIA applies its fixed channel permutation as a dense C x C 1x1 convolution (linear on vectors) with a
    0/1 matrix, forward and backward, in every block: for FastFlow's 3x3-subnet blocks about a fifth of a block's
    multiply-adds. A permutation matrix times x picks one entry per row and adds exact zeros, so indexing gives
    the same outputs, log-determinants and gradients. Everything else (coupling, global affine and its log-det)
    is FrEIA's, and a soft permutation (a dense rotation: real work) keeps FrEIA's product. The matrices stay as
    FrEIA stores them (`w_perm`, `w_perm_inv`), so saved files keep their keys; the index vectors are derived
    from them, again whenever a state dict is loaded.
    """

    def __init__(
        self,
        dims_in: list[tuple[int, ...]],
        dims_c: list[tuple[int, ...]] | None = None,
        subnet_constructor: SubnetConstructor | None = None,
        affine_clamping: float = 2.0,
        global_affine_type: str = "SOFTPLUS",
        permute_soft: bool = False,
    ) -> None:
        super().__init__(
            dims_in,
            dims_c if dims_c is not None else [],
            subnet_constructor=subnet_constructor,
            affine_clamping=affine_clamping,
            global_affine_type=global_affine_type,
            permute_soft=permute_soft,
        )
        self.indexed = not permute_soft
        self.register_buffer("permutation", torch.empty(0, dtype=torch.long), persistent=False)
        self.register_buffer("inverse_permutation", torch.empty(0, dtype=torch.long), persistent=False)
        self.derive_indices()

    def derive_indices(self) -> None:
        """(C,) indices with out[:, i] = x[:, permutation[i]]: the column of row i's one entry in each matrix."""
        if self.indexed:
            self.permutation = permutation_index(self.w_perm)
            self.inverse_permutation = permutation_index(self.w_perm_inv)

    def _load_from_state_dict(
        self,
        state_dict: dict[str, torch.Tensor],
        prefix: str,
        local_metadata: dict[str, object],
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )
        self.derive_indices()

    def _permute(self, x: torch.Tensor, rev: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """FrEIA's global affine then permutation (reverse: un-permute, then undo the affine)."""
        if not self.indexed:
            return super()._permute(x, rev)
        scale = self.global_scale_activation(self.global_scale)  # (1, C, 1, ...)
        log_jac = torch.sum(torch.log(scale))
        if rev:
            return (x.index_select(1, self.inverse_permutation) - self.global_offset) / scale, log_jac
        return (x * scale + self.global_offset).index_select(1, self.permutation), log_jac


def permutation_index(matrix: torch.Tensor) -> torch.Tensor:
    """(C, C, 1, ...) 0/1 permutation matrix -> (C,) column of each row's one; any other matrix is refused."""
    square = matrix.detach().reshape(matrix.shape[0], matrix.shape[0])
    is_permutation = bool(
        ((square == 0) | (square == 1)).all() and (square.sum(0) == 1).all() and (square.sum(1) == 1).all()
    )
    if not is_permutation:
        raise ValueError(
            "a hard-permutation flow block was given a w_perm that is not a 0/1 permutation matrix"
        )
    return square.argmax(1)


def conv_subnet(kernel_size: int, hidden_ratio: float) -> SubnetConstructor:
    """FastFlow's subnet: conv(k) -> ReLU -> conv(k), 'same' padding, hidden = in * hidden_ratio channels."""

    def make(channels_in: int, channels_out: int) -> nn.Module:
        hidden = int(channels_in * hidden_ratio)
        return nn.Sequential(
            nn.Conv2d(channels_in, hidden, kernel_size, padding="same"),
            nn.ReLU(),
            nn.Conv2d(hidden, channels_out, kernel_size, padding="same"),
        )

    return make


def linear_subnet(hidden_ratio: float) -> SubnetConstructor:
    """C-Flow's subnet: Linear -> ReLU -> Linear with hidden = in * hidden_ratio features."""

    def make(features_in: int, features_out: int) -> nn.Module:
        hidden = int(features_in * hidden_ratio)
        return nn.Sequential(nn.Linear(features_in, hidden), nn.ReLU(), nn.Linear(hidden, features_out))

    return make


def fastflow_graph(
    shape: tuple[int, int, int], steps: int, conv3x3_only: bool, hidden_ratio: float, clamp: float
) -> SequenceINN:
    """2-D flow over a (C, H, W) feature map: `steps` coupling blocks, 3x3 subnets (odd steps 1x1 unless
    `conv3x3_only`), hard channel permutations as in FastFlow."""
    graph = SequenceINN(*shape)
    for step in range(steps):
        kernel_size = 1 if step % 2 == 1 and not conv3x3_only else 3
        graph.append(
            IndexPermutedBlock,
            subnet_constructor=conv_subnet(kernel_size, hidden_ratio),
            affine_clamping=clamp,
        )
    return graph


def conditional_graph(
    features: int, condition_dim: int, blocks: int, clamp: float, permute_soft: bool, hidden_ratio: float
) -> SequenceINN:
    """C-Flow's decoder: `blocks` coupling blocks on (N, features) vectors, each conditioned on (N, condition_dim)."""
    graph = SequenceINN(features)
    for _ in range(blocks):
        graph.append(
            IndexPermutedBlock,
            cond=0,
            cond_shape=(condition_dim,),
            subnet_constructor=linear_subnet(hidden_ratio),
            affine_clamping=clamp,
            global_affine_type="SOFTPLUS",
            permute_soft=permute_soft,
        )
    return graph


def positional_encoding_2d(channels: int, height: int, width: int) -> torch.Tensor:
    """(channels, height, width) sin/cos code: the first half encodes the column, the second half the row.

    Within each half, even channels are sin(pos * f_k) and odd channels cos(pos * f_k), with frequencies
    f_k = 10000^(-2k / (channels / 2)) as in the Transformer's 1-D code.
    """
    if channels % 4 != 0:
        raise ValueError(
            f"a 2-D sin/cos positional code needs a channel count divisible by 4, got {channels}"
        )
    half = channels // 2
    frequencies = torch.exp(
        torch.arange(0, half, 2, dtype=torch.float32) * (-math.log(1e4) / half)
    )  # (half/2,)
    columns = torch.arange(width, dtype=torch.float32)[:, None] * frequencies  # (W, half/2)
    rows = torch.arange(height, dtype=torch.float32)[:, None] * frequencies  # (H, half/2)
    code = torch.zeros(channels, height, width)
    code[0:half:2] = torch.sin(columns).T[:, None, :].expand(-1, height, -1)
    code[1:half:2] = torch.cos(columns).T[:, None, :].expand(-1, height, -1)
    code[half::2] = torch.sin(rows).T[:, :, None].expand(-1, -1, width)
    code[half + 1 :: 2] = torch.cos(rows).T[:, :, None].expand(-1, -1, width)
    return code


def log_likelihood(z: torch.Tensor, log_jac_det: torch.Tensor) -> torch.Tensor:
    """Log density of (N, D) inputs under a flow to a standard normal: log N(z; 0, I) + log|det J| -> (N,)."""
    return z.shape[1] * LOG_NORMAL_CONSTANT - 0.5 * z.pow(2).sum(1) + log_jac_det
