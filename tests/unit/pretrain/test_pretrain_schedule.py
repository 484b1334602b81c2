"""LR schedules per optimiser step and the CSV logger's resume truncation."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

from fractalad.pretrain.config import PRESETS, resolve_config
from fractalad.pretrain.schedule import LRSchedule, ScalarLogger


def test_multistep_follows_milestones() -> None:
    schedule = LRSchedule(PRESETS["paper-resnet18"], steps_per_epoch=10)
    assert schedule(0) == 1.0 and schedule(299) == 1.0
    assert schedule(300) == pytest.approx(0.1) and schedule(599) == pytest.approx(0.1)
    assert schedule(600) == pytest.approx(0.01) and schedule(999) == pytest.approx(0.01)


def test_cosine_with_warmup() -> None:
    config = resolve_config("tiny", None, ["epochs=10", "warmup_epochs=2"])
    schedule = LRSchedule(config, steps_per_epoch=5)
    assert schedule(0) == pytest.approx(1 / 10) and schedule(4) == pytest.approx(5 / 10)
    assert schedule(9) == pytest.approx(1.0)
    assert schedule(30) == pytest.approx(0.5 * (1 + math.cos(math.pi * 4 / 8)))
    assert schedule(50) == pytest.approx(0.0, abs=1e-12)
    values = [schedule(s) for s in range(10, 50)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_schedule_state_is_plain_data() -> None:
    schedule = LRSchedule(PRESETS["tiny"], steps_per_epoch=3)
    assert all(isinstance(v, (int, float, str, list)) for v in vars(schedule).values())


def test_logger_drops_rows_after_resume_step(tmp_path: Path) -> None:
    logger = ScalarLogger(tmp_path, resume_step=0)
    for step in (5, 10, 15):
        logger.log(step, step / 10, {"loss": 1.0, "accuracy": 0.5, "lr": 0.1, "images_per_s": 100.0})
    logger.close()
    ScalarLogger(tmp_path, resume_step=10).close()
    with open(tmp_path / "metrics.csv", newline="") as handle:
        assert [int(r["step"]) for r in csv.DictReader(handle)] == [5, 10]
    assert any((tmp_path / "tensorboard").iterdir())
