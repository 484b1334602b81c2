"""The flows' index permutation computes exactly what FrEIA's dense permutation matrix does."""

from __future__ import annotations

import pytest
import torch
from FrEIA.framework import SequenceINN
from FrEIA.modules import AllInOneBlock

from fractalad.detectors.components.flows import (
    IndexPermutedBlock,
    conditional_graph,
    conv_subnet,
    fastflow_graph,
    linear_subnet,
    numpy_seeded,
    permutation_index,
)

CONV_SHAPE = (6, 5, 4)  # (C, h, w): an even channel count as in every backbone, a non-square map


def conv_pair() -> tuple[SequenceINN, SequenceINN]:
    """FastFlow-style graphs, FrEIA's blocks and ours, with identical weights and permutations."""
    graphs = []
    for block in (AllInOneBlock, IndexPermutedBlock):
        with numpy_seeded(3), torch.random.fork_rng(devices=[]):
            torch.manual_seed(3)
            graph = SequenceINN(*CONV_SHAPE)
            for kernel_size in (3, 1, 3):
                graph.append(block, subnet_constructor=conv_subnet(kernel_size, 1.0), affine_clamping=2.0)
            graphs.append(graph)
    return graphs[0], graphs[1]


def conditional_pair() -> tuple[SequenceINN, SequenceINN]:
    """C-Flow-style conditional graphs on (N, 8) vectors, FrEIA's blocks and ours, identical weights."""
    graphs = []
    for block in (AllInOneBlock, IndexPermutedBlock):
        with numpy_seeded(4), torch.random.fork_rng(devices=[]):
            torch.manual_seed(4)
            graph = SequenceINN(8)
            for _ in range(3):
                graph.append(
                    block, cond=0, cond_shape=(4,), subnet_constructor=linear_subnet(1.0),
                    affine_clamping=1.9, global_affine_type="SOFTPLUS", permute_soft=False,
                )  # fmt: skip
            graphs.append(graph)
    return graphs[0], graphs[1]


def perturb_global_affine(graph: SequenceINN, seed: int) -> None:
    """Move the global scales and offsets off their constant init, so a wrong channel order would show."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for block in graph.module_list:
            block.global_scale.add_(torch.randn(block.global_scale.shape, generator=generator))
            block.global_offset.add_(torch.randn(block.global_offset.shape, generator=generator))


@pytest.mark.parametrize("kind", ["conv", "conditional"])
def test_outputs_log_dets_and_gradients_equal_freia(kind):
    theirs, ours = conv_pair() if kind == "conv" else conditional_pair()
    perturb_global_affine(theirs, seed=5)
    ours.load_state_dict(theirs.state_dict())
    generator = torch.Generator().manual_seed(6)
    shape = (3, *CONV_SHAPE) if kind == "conv" else (7, 8)
    x = torch.randn(shape, generator=generator)
    condition = [torch.randn(7, 4, generator=generator)] if kind == "conditional" else None
    results = []
    for graph in (theirs, ours):
        inputs = x.clone().requires_grad_(True)
        z, log_jac = graph(inputs, c=condition)
        (z.pow(2).sum() - log_jac.sum()).backward()
        back, back_log_jac = graph(z.detach(), c=condition, rev=True)
        grads = [p.grad for p in graph.parameters() if p.requires_grad]
        results.append((z, log_jac, back, back_log_jac, inputs.grad, grads))
    torch.testing.assert_close(results[1], results[0], rtol=0, atol=0)
    torch.testing.assert_close(results[1][2], x, rtol=1e-5, atol=1e-5)  # reverse inverts forward
    assert not torch.equal(results[1][0], x)  # the flow moved the inputs


def test_two_adam_steps_reach_the_same_weights():
    theirs, ours = conv_pair()
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(4, *CONV_SHAPE, generator=torch.Generator().manual_seed(7))
    for graph in (theirs, ours):
        optimizer = torch.optim.Adam([p for p in graph.parameters() if p.requires_grad], lr=1e-2)
        for _ in range(2):
            optimizer.zero_grad()
            z, log_jac = graph(x)
            (0.5 * z.pow(2).sum((1, 2, 3)) - log_jac).mean().backward()
            optimizer.step()
    torch.testing.assert_close(ours.state_dict(), theirs.state_dict(), rtol=0, atol=0)


def test_state_dict_keys_are_freias_and_loading_rederives_the_indices():
    theirs, ours = conv_pair()
    assert list(ours.state_dict()) == list(theirs.state_dict())  # files saved before still load
    with numpy_seeded(11):  # another permutation draw
        other = fastflow_graph(CONV_SHAPE, steps=3, conv3x3_only=False, hidden_ratio=1.0, clamp=2.0)
    assert not torch.equal(other.module_list[0].w_perm, ours.module_list[0].w_perm)
    ours.load_state_dict(other.state_dict())
    x = torch.randn(2, *CONV_SHAPE, generator=torch.Generator().manual_seed(8))
    theirs.load_state_dict(other.state_dict())
    torch.testing.assert_close(ours(x), theirs(x), rtol=0, atol=0)
    block = ours.module_list[0]
    torch.testing.assert_close(x[:, block.permutation], torch.conv2d(x, block.w_perm), rtol=0, atol=0)


def test_soft_permutations_keep_the_dense_rotation():
    with numpy_seeded(2):
        graph = conditional_graph(8, 4, blocks=1, clamp=1.9, permute_soft=True, hidden_ratio=1.0)
    block = graph.module_list[0]
    assert not block.indexed and block.permutation.numel() == 0
    with pytest.raises(ValueError, match="not a 0/1 permutation matrix"):
        permutation_index(block.w_perm)
