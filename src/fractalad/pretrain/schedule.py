"""Learning-rate schedules evaluated per optimiser step, and the scalar logger (CSV + TensorBoard)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

from fractalad.files import atomic_path, write_error
from fractalad.pretrain.config import PretrainConfig


class LRSchedule:
    """LR multiplier for LambdaLR: linear warm-up, then multistep (per epoch) or cosine decay to zero.

    A plain class (not a lambda) so that LambdaLR's state_dict stores its fields and a resumed run matches.
    """

    def __init__(self, config: PretrainConfig, steps_per_epoch: int) -> None:
        self.kind = config.schedule
        self.milestones = [int(m) for m in config.milestones]
        self.gamma = float(config.gamma)
        self.warmup_epochs = float(config.warmup_epochs)
        self.epochs = int(config.epochs)
        self.steps_per_epoch = int(steps_per_epoch)

    def __call__(self, step: int) -> float:
        epoch = step / self.steps_per_epoch
        warm = (
            min(1.0, (step + 1) / (self.warmup_epochs * self.steps_per_epoch)) if self.warmup_epochs else 1.0
        )
        if self.kind == "multistep":
            return warm * self.gamma ** sum(epoch >= m for m in self.milestones)
        progress = (epoch - self.warmup_epochs) / max(self.epochs - self.warmup_epochs, 1e-9)
        return warm * 0.5 * (1.0 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))


class ScalarLogger:
    """Appends scalars to `metrics.csv` and TensorBoard; on resume drops rows from after the checkpoint."""

    FIELDS = ("step", "epoch", "loss", "accuracy", "lr", "images_per_s")

    def __init__(self, output_dir: Path, resume_step: int) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.path = output_dir / "metrics.csv"
        rows = self._read_rows(resume_step)
        with atomic_path(self.path) as tmp, open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=self.FIELDS)
            writer.writeheader()
            writer.writerows(rows)
        self.tensorboard = SummaryWriter(str(output_dir / "tensorboard"), purge_step=resume_step or None)

    def _read_rows(self, resume_step: int) -> list[dict[str, str]]:
        if not self.path.exists() or resume_step == 0:
            return []
        with open(self.path, newline="") as handle:
            rows = list(csv.DictReader(handle))
        # A row cut short by a killed process lacks its last fields; it is dropped like any later row.
        complete = [row for row in rows if None not in row.values() and row["images_per_s"]]
        return [row for row in complete if int(row["step"]) <= resume_step]

    def log(self, step: int, epoch: float, scalars: dict[str, float]) -> None:
        """Record one row: step = optimiser steps so far, epoch fractional."""
        row = {"step": step, "epoch": f"{epoch:.4f}", **{k: f"{v:.6g}" for k, v in scalars.items()}}
        try:
            with open(self.path, "a", newline="") as handle:
                csv.DictWriter(handle, fieldnames=self.FIELDS).writerow(row)
        except OSError as error:
            raise write_error(self.path, error) or error
        for name, value in scalars.items():
            self.tensorboard.add_scalar(f"train/{name}", value, step)

    def close(self) -> None:
        self.tensorboard.close()
