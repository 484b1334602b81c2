"""The training loop on a toy dataset: it learns, resumes exactly after a crash, refuses foreign runs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from fractalad.errors import InputError
from fractalad.pretrain import checkpoints as ckpt
from fractalad.pretrain.train import pretrain


def _model_state(run: Path) -> dict[str, torch.Tensor]:
    return ckpt.load_checkpoint(run / "last.pt")["model"]


def test_learns_and_writes_outputs(tmp_path: Path, toy, make_config) -> None:
    config = make_config("epochs=3")
    out = pretrain(config, tmp_path, dataset=toy(4, 16, 32))
    assert out == tmp_path / "backbone.safetensors" and out.exists()
    for name in ("config.yaml", "last.pt", "best.pt", "metrics.csv", "summary.json"):
        assert (tmp_path / name).exists(), name
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["global_step"] == 3 * 64 // 8 and summary["epochs"] == 3
    assert summary["best_accuracy"] > 0.5  # chance is 0.25
    rows = (tmp_path / "metrics.csv").read_text().splitlines()
    assert rows[0] == "step,epoch,loss,accuracy,lr,images_per_s" and len(rows) == 1 + 3 * 4
    payload = ckpt.load_checkpoint(tmp_path / "last.pt")
    assert payload["config"] == config.to_dict() and payload["state"]["step_in_epoch"] == 0


def test_crash_and_resume_matches_uninterrupted_run(tmp_path: Path, toy, make_config) -> None:
    config = make_config()
    pretrain(config, tmp_path / "full", dataset=toy(4, 16, 32))
    # Sample 40 of epoch 1 is in step 5 of that epoch (batch 8); the checkpoint before it is global step 12.
    with pytest.raises(RuntimeError, match="simulated crash"):
        pretrain(config, tmp_path / "cut", dataset=toy(4, 16, 32, fail_at=(1, 40)))
    state = ckpt.load_checkpoint(tmp_path / "cut" / "last.pt")["state"]
    assert 0 < state["step_in_epoch"] < 8 and state["epoch"] == 1
    with pytest.raises(InputError, match="already holds a checkpoint"):
        pretrain(config, tmp_path / "cut", resume=False, dataset=toy(4, 16, 32))
    pretrain(config, tmp_path / "cut", dataset=toy(4, 16, 32))
    full, resumed = _model_state(tmp_path / "full"), _model_state(tmp_path / "cut")
    assert all(torch.equal(full[k], resumed[k]) for k in full)


def test_resume_refuses_another_architecture(tmp_path: Path, toy, make_config) -> None:
    pretrain(make_config("epochs=1"), tmp_path, dataset=toy(4, 16, 32))
    with pytest.raises(InputError, match="holds a resnet18 but the config asks for resnet34"):
        pretrain(make_config("epochs=1", "arch=resnet34"), tmp_path, dataset=toy(4, 16, 32))
    with pytest.raises(InputError, match="lr: 0.1 -> 0.2"):
        pretrain(make_config("epochs=2", "lr=0.2"), tmp_path, dataset=toy(4, 16, 32))


def test_foreign_checkpoint_files(tmp_path: Path) -> None:
    torch.save({"weight": torch.zeros(2)}, tmp_path / "plain.pt")
    with pytest.raises(InputError, match="not a fractalad pre-training checkpoint"):
        ckpt.load_checkpoint(tmp_path / "plain.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a zip")
    with pytest.raises(InputError, match="not a plain fractalad pre-training checkpoint"):
        ckpt.load_checkpoint(tmp_path / "junk.pt")
    with pytest.raises(FileNotFoundError):
        ckpt.load_checkpoint(tmp_path / "missing.pt")


def test_multi_instance_and_accumulation(tmp_path: Path, toy, make_config) -> None:
    config = make_config("multi_instance=true", "accumulation_steps=2", "epochs=3")
    pretrain(config, tmp_path, dataset=toy(4, 16, 32, multi_label=True))
    summary = json.loads((tmp_path / "summary.json").read_text())
    # Top-1 hits one of two positive labels; chance is 0.5.
    assert summary["global_step"] == 24 and summary["best_accuracy"] > 0.6


def test_real_fractals_with_device_rendering_on_cpu(tmp_path: Path, make_config) -> None:
    config = make_config("epochs=1", "device_render=true", "render_size=36", "render_points=2000")
    pretrain(config, tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["global_step"] == 8 and (tmp_path / "systems.npz").exists()
    with pytest.raises(InputError, match="device_render"):
        pretrain(config, tmp_path / "custom", dataset=toy_dataset())


def toy_dataset():
    from torch.utils.data import TensorDataset

    return TensorDataset(torch.rand(64, 3, 32, 32), torch.zeros(64, dtype=torch.long))


def test_resume_can_extend_epochs_with_the_new_schedule(tmp_path: Path, toy, make_config) -> None:
    pretrain(make_config("epochs=1"), tmp_path, dataset=toy(4, 16, 32))
    pretrain(make_config("epochs=2"), tmp_path, dataset=toy(4, 16, 32))
    rows = [line.split(",") for line in (tmp_path / "metrics.csv").read_text().splitlines()[1:]]
    lr = {int(r[0]): float(r[4]) for r in rows}
    assert lr[8] == 0.0  # the 1-epoch cosine ended at zero
    # 2-epoch cosine with 0.5 warm-up epochs, after step 10 of 16: 0.5 (1 + cos(pi (10/8 - 0.5) / 1.5)) x 0.1
    assert lr[10] == pytest.approx(0.05 * (1 + math.cos(math.pi * 0.5)), abs=1e-6)
    assert json.loads((tmp_path / "summary.json").read_text())["global_step"] == 16


def test_real_multi_instance_fractals(tmp_path: Path, make_config) -> None:
    config = make_config(
        "epochs=1", "multi_instance=true", "instances=2,3", "render_size=36", "render_points=2000"
    )
    pretrain(config, tmp_path)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["global_step"] == 8
    # the one epoch's accuracy is the best one, and best.pt holds the same bookkeeping as the summary
    best = ckpt.load_checkpoint(tmp_path / "best.pt")["state"]
    assert best["best_accuracy"] == summary["best_accuracy"] and best["epoch"] == 1


@pytest.mark.parametrize("native", [False, True])
def test_amp_trains_in_bf16_only_where_native(
    tmp_path: Path, toy, make_config, monkeypatch: pytest.MonkeyPatch, native: bool
) -> None:
    pretrain(make_config("epochs=1", "amp=false"), tmp_path / "fp32", dataset=toy(4, 16, 32))
    monkeypatch.setattr("fractalad.pretrain.train.native_bf16", lambda device: native)
    pretrain(make_config("epochs=1", "amp=true"), tmp_path / "amp", dataset=toy(4, 16, 32))
    summary = json.loads((tmp_path / "amp" / "summary.json").read_text())
    assert summary["precision"] == ("bf16" if native else "fp32")
    fp32, amp = _model_state(tmp_path / "fp32"), _model_state(tmp_path / "amp")
    # Without native bf16, amp=true is the float32 run to the bit; with it, bf16 rounding changes the weights.
    assert all(torch.equal(fp32[k], amp[k]) for k in fp32) is not native
