"""The shared training helper and TrainSet: seeded, resumable, selection on normal images only."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from fractalad.detectors.base import TrainSet, as_trainset
from fractalad.detectors.components.training import (
    CHECKPOINT_NAME,
    build_optimizer,
    fingerprint,
    mean_validation_loss,
    train_epochs,
)
from fractalad.errors import InputError


def images(n: int = 12) -> torch.Tensor:
    return torch.rand(n, 3, 8, 8, generator=torch.Generator().manual_seed(5))


def model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(192, 4), nn.Tanh(), nn.Linear(4, 1))


def fit(net: nn.Module, train: TrainSet, work_dir: Path | None, epochs: int = 3, fail_at: int | None = None,
        validation: TrainSet | None = None):
    calls = {"n": 0}

    def step_loss(batch: torch.Tensor) -> torch.Tensor:
        calls["n"] += 1
        if fail_at is not None and calls["n"] == fail_at:
            raise KeyboardInterrupt
        return net(batch).pow(2).mean()

    optimizer = build_optimizer("sgd", net.parameters(), lr=0.1, momentum=0.9)
    validate = mean_validation_loss(lambda b: net(b).pow(2).mean(), 4, torch.device("cpu"))
    return train_epochs(
        {"net": net}, optimizer, train, step_loss, epochs=epochs, batch_size=4, seed=7,
        device=torch.device("cpu"), work_dir=work_dir, run_fingerprint=fingerprint({"lr": 0.1}, len(train)),
        validation=validation, validate=validate if validation is not None else None,
    )


def test_killed_fit_resumes_to_the_uninterrupted_result(tmp_path: Path):
    train = TrainSet.from_tensor(images())
    reference = model()
    fit(reference, train, None)
    resumed = model()
    with pytest.raises(KeyboardInterrupt):
        fit(resumed, train, tmp_path, fail_at=5)  # dies in epoch 2 (3 batches per epoch)
    assert torch.load(tmp_path / CHECKPOINT_NAME, weights_only=True)["epoch"] == 1
    record = fit(resumed, train, tmp_path)
    assert record.epochs_run == 3 and len(record.losses) == 3
    for a, b in zip(reference.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_checkpoint_of_another_fit_is_not_resumed(tmp_path: Path):
    train = TrainSet.from_tensor(images())
    fit(model(), train, tmp_path, epochs=2)
    other = TrainSet.from_tensor(images(8))
    record = fit(model(), other, tmp_path, epochs=2)  # other n_train -> other fingerprint -> fresh start
    assert record.epochs_run == 2 and len(record.losses) == 2


def test_validation_selects_the_best_epoch_and_restores_it():
    train, validation = TrainSet.from_tensor(images()).split(0.25, seed=1)
    net = model()
    record = fit(net, train, None, epochs=4, validation=validation)
    assert record.selection_rule == "lowest validation score"
    best = min(range(4), key=lambda i: record.validation_scores[i])
    assert record.selected_epoch == best + 1
    restored = mean_validation_loss(lambda b: net(b).pow(2).mean(), 4, torch.device("cpu"))(validation)
    assert restored == pytest.approx(record.validation_scores[best], rel=1e-6)


def test_split_is_seeded_disjoint_and_complete():
    data = TrainSet.from_tensor(torch.arange(10.0).view(10, 1, 1, 1).expand(10, 3, 1, 1).contiguous())
    first, second = data.split(0.3, seed=2)
    again, _ = data.split(0.3, seed=2)
    values = lambda s: sorted(float(b[:, 0, 0, 0].sum()) for b in s.batches(1))  # noqa: E731
    assert len(first) == 7 and len(second) == 3
    assert sorted(values(first) + values(second)) == [float(i) for i in range(10)]
    assert values(first) == values(again)
    assert values(second) != values(data.split(0.3, seed=3)[1])


def test_shuffle_needs_a_generator_and_batches_are_reiterable():
    data = TrainSet.from_tensor(images(5))
    with pytest.raises(ValueError, match="explicit torch.Generator"):
        next(data.batches(2, shuffle=True))
    assert [len(b) for b in data.batches(2)] == [2, 2, 1] == [len(b) for b in data.batches(2)]
    assert data.num_batches(2) == 3


def test_one_shot_iterators_are_refused():
    with pytest.raises(InputError, match="one-shot iterator"):
        as_trainset(batch for batch in [images(4)])
    assert len(as_trainset([images(4), images(2)])) == 6


def test_non_finite_loss_is_one_clear_error():
    net = model()
    optimizer = build_optimizer("adam", net.parameters(), lr=1e-3)
    with pytest.raises(InputError, match="loss became nan"):
        train_epochs({"net": net}, optimizer, TrainSet.from_tensor(images(4)),
                     lambda b: net(b).sum() * float("nan"), epochs=1, batch_size=4, seed=0,
                     device=torch.device("cpu"))


def test_bf16_autocast_covers_every_forward_pass_of_a_loss_generator():
    """A generator of losses (C-Flow's fibre batches) computes each loss when it is asked for, after the first
    `yield` too: every one of those forward passes must run under bf16 autocast, and none at fp32."""
    net = model()
    seen: dict[str, list[torch.dtype]] = {"fp32": [], "bf16": []}

    def losses(batch: torch.Tensor, precision: str):
        for part in batch.split(2):
            hidden = net[1](net[0](part))
            seen[precision].append(hidden.dtype)
            yield net[3](net[2](hidden)).float().pow(2).mean()

    train = TrainSet.from_tensor(images())
    for precision in ("fp32", "bf16"):
        optimizer = build_optimizer("sgd", net.parameters(), lr=0.1)
        record = train_epochs(
            {"net": net}, optimizer, train, lambda batch, p=precision: losses(batch, p), epochs=1, batch_size=4,
            seed=7, device=torch.device("cpu"), precision=precision,
        )  # fmt: skip
        assert record.precision == precision and record.as_info()["precision"] == precision
    assert seen["fp32"] == [torch.float32] * 6
    assert seen["bf16"] == [torch.bfloat16] * 6


def test_checkpoint_of_another_precision_is_not_resumed(tmp_path: Path):
    train = TrainSet.from_tensor(images())
    net = model()
    optimizer = build_optimizer("sgd", net.parameters(), lr=0.1)

    def run(precision: str, epochs: int):
        return train_epochs(
            {"net": net}, optimizer, train, lambda b: net(b).float().pow(2).mean(), epochs=epochs, batch_size=4,
            seed=7, device=torch.device("cpu"), precision=precision, work_dir=tmp_path, run_fingerprint="fit",
        )  # fmt: skip

    run("bf16", 1)
    assert len(run("bf16", 2).epoch_seconds) == 1  # resumed: only epoch 2 ran here
    assert len(run("fp32", 2).epoch_seconds) == 2  # the bf16 checkpoint is not taken up at fp32
    with pytest.raises(InputError, match="precision must be 'fp32' or 'bf16', got 'fp16'"):
        run("fp16", 1)
