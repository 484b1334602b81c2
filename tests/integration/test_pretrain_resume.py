"""SIGKILL a pre-training process mid-epoch, restart it, and get the uninterrupted run's weights exactly,
and its bookkeeping too: the resumed epoch's accuracy, best.pt, the checkpoint's state and metrics.csv."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
from pathlib import Path

import torch

from fractalad.pretrain import checkpoints as ckpt

SRC = Path(__file__).resolve().parents[2] / "src"
# Real fractals, 4 classes at 32 px, 8 steps per epoch, a checkpoint every 3 steps, one DataLoader worker.
OVERRIDES = [
    "num_classes=4",
    "num_systems=4",
    "samples_per_class=16",
    "batch_size=8",
    "epochs=2",
    "render_size=36",
    "crop=32",
    "render_points=3000",
    "workers=1",
    "threads=1",
    "checkpoint_every_steps=3",
    "log_every_steps=2",
]
SCRIPT = (
    "import sys; from fractalad.pretrain import pretrain, resolve_config; "
    "pretrain(resolve_config('tiny', None, sys.argv[2:]), sys.argv[1], resume=True)"
)


def _start(out: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(out), *OVERRIDES],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )


def test_sigkill_mid_epoch_then_resume_equals_uninterrupted(tmp_path: Path) -> None:
    reference = _start(tmp_path / "reference")
    reference_output = reference.communicate(timeout=600)[0]
    assert reference.returncode == 0
    victim = _start(tmp_path / "killed")
    for line in victim.stdout:  # type: ignore[union-attr]
        if line.startswith("checkpoint: epoch 2"):  # 1-based in messages
            os.kill(victim.pid, signal.SIGKILL)
            break
    victim.wait(timeout=600)
    assert victim.returncode == -signal.SIGKILL
    saved = ckpt.load_checkpoint(tmp_path / "killed" / "last.pt")["state"]
    assert saved["epoch"] == 1 and 0 < saved["step_in_epoch"] < 8
    assert not (tmp_path / "killed" / "backbone.safetensors").exists()

    resumed = _start(tmp_path / "killed")
    output = resumed.communicate(timeout=600)[0]
    assert resumed.returncode == 0
    assert (
        f"epoch {saved['epoch'] + 1} step {saved['step_in_epoch']} (global step {saved['global_step']})"
        in output
    )
    expected = ckpt.load_checkpoint(tmp_path / "reference" / "last.pt")["model"]
    actual = ckpt.load_checkpoint(tmp_path / "killed" / "last.pt")["model"]
    assert expected.keys() == actual.keys()
    assert all(torch.equal(expected[k], actual[k]) for k in expected)
    rows = (tmp_path / "killed" / "metrics.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == list(range(2, 17, 2))  # no duplicated or missing steps

    # The resumed epoch's accuracy counts the steps before the kill: same log line, same best.pt, same state.
    assert _epoch_lines(output)[-1] == _epoch_lines(reference_output)[-1]
    for name in (ckpt.LAST, ckpt.BEST):
        expected_payload = ckpt.load_checkpoint(tmp_path / "reference" / name)
        actual_payload = ckpt.load_checkpoint(tmp_path / "killed" / name)
        assert actual_payload["state"] == expected_payload["state"]
        assert all(torch.equal(expected_payload["model"][k], actual_payload["model"][k]) for k in expected)
    # Every row's loss and accuracy match the uninterrupted run's (throughput differs, naturally).
    assert _loss_and_accuracy(tmp_path / "killed") == _loss_and_accuracy(tmp_path / "reference")


def _epoch_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("epoch ") and "train accuracy" in line]


def _loss_and_accuracy(run: Path) -> list[tuple[str, ...]]:
    with open(run / "metrics.csv", newline="") as handle:
        return [(row["step"], row["loss"], row["accuracy"]) for row in csv.DictReader(handle)]
