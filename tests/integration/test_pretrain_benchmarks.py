"""The pre-training benchmarks run end to end in their smoke sizes (CPU)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(args: list[str]) -> str:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=120, env=env, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_gpu_benchmark_cpu_smoke(tmp_path: Path) -> None:
    out = _run(
        [
            "benchmarks/gpu_pretrain.py",
            "--device",
            "cpu",
            "--steps",
            "2",
            "--warmup",
            "1",
            "--json",
            str(tmp_path / "r.json"),
        ]
    )
    rates = json.loads((tmp_path / "r.json").read_text())["img_per_s"]
    assert set(rates) == {"fixed", "device", "workers"} and all(r > 0 for r in rates.values())
    assert "device " in out and "x fixed" in out


def test_input_benchmark_smoke() -> None:
    out = _run(
        [
            "benchmarks/pretrain_input.py",
            "--rounds",
            "1",
            "--steps",
            "1",
            "--warmup",
            "1",
            "samples_per_class=2",
            "num_classes=10",
            "num_systems=10",
            "batch_size=8",
        ]
    )
    assert "ratio on-the-fly / fixed = " in out
