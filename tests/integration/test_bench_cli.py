"""`fractalad bench`: a small grid killed with SIGKILL and resumed, sharded and merged, equals a clean run."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fractalad.cli import main
from fractalad.data.synthetic import generate_synthetic

SRC = Path(__file__).resolve().parents[2] / "src"
GRID = """
dataset: synthetic
root: {root}
categories: [tile, weave]
methods:
  padim: {{n_features: 16}}
  patchcore: {{}}
weights: {{random: random}}
backbone: resnet18
layers: [default]
seeds: [0]
size: 64
"""


@pytest.fixture(scope="module")
def grid(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("bench")
    root = generate_synthetic(
        folder / "synthetic", categories=["tile", "weave"], size=64, n_train=5, n_test_good=3, n_test_defect=3
    )
    path = folder / "grid.yaml"
    path.write_text(GRID.format(root=root))
    return path


def bench_process(grid: Path, store: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "fractalad",
        "bench",
        "run",
        str(grid),
        "--store",
        str(store),
        "--no-progress",
    ]
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def rows(store: Path) -> list[tuple]:
    with sqlite3.connect(store) as db:
        return db.execute(
            "SELECT run_id, status, image_auroc, pixel_auroc, aupro, json_extract(result, '$.scores') "
            "FROM runs ORDER BY run_id"
        ).fetchall()


def counts(store: Path) -> dict[str, int]:
    try:
        with sqlite3.connect(store, timeout=5) as db:
            return dict(db.execute("SELECT status, COUNT(*) FROM runs GROUP BY status").fetchall())
    except sqlite3.OperationalError:  # the store is not created yet
        return {}


@pytest.fixture(scope="module")
def clean_store(grid: Path) -> Path:
    store = grid.parent / "clean.db"
    process = bench_process(grid, store)
    assert process.wait(timeout=600) == 0, process.stderr.read()
    return store


def test_sigkill_mid_run_then_resume_finishes_every_run_exactly_once(grid: Path, clean_store: Path) -> None:
    store = grid.parent / "killed.db"
    process = bench_process(grid, store)
    deadline = time.monotonic() + 300
    # Kill while a run is in flight after one has finished, so the kill lands inside fit or predict.
    while not (counts(store).get("done", 0) >= 1 and counts(store).get("running", 0) == 1):
        assert process.poll() is None and time.monotonic() < deadline, (
            "the grid ended before it could be killed"
        )
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    assert counts(store).get("running") == 1
    resumed = bench_process(grid, store)
    assert resumed.wait(timeout=600) == 0, resumed.stderr.read()
    with sqlite3.connect(store) as db:
        outcomes = [r[0] for r in db.execute("SELECT outcome FROM attempts")]
    assert outcomes.count("killed") == 1 and outcomes.count("done") == 4
    assert rows(store) == rows(clean_store) and len(rows(store)) == 4
    assert {r[1] for r in rows(store)} == {"done"}


def test_two_shards_merged_equal_one_unsharded_run(grid: Path, clean_store: Path, capsys) -> None:
    shards = [grid.parent / f"shard{i}.db" for i in (1, 2)]
    for i, shard in enumerate(shards, start=1):
        assert (
            main(["bench", "run", str(grid), "--store", str(shard), "--shard", f"{i}/2", "--no-progress"])
            == 0
        )
    assert [len(rows(s)) for s in shards] == [2, 2]
    merged = grid.parent / "merged.db"
    assert main(["bench", "merge", str(merged), *map(str, shards)]) == 0
    assert rows(merged) == rows(clean_store)
    assert main(["bench", "status", "--store", str(merged)]) == 0
    assert "0 pending, 0 running, 4 done, 0 failed" in capsys.readouterr().out


def test_rerun_skips_finished_runs_and_status_lists_failures(grid: Path, clean_store: Path, capsys) -> None:
    before = rows(clean_store)
    assert main(["bench", "run", str(grid), "--store", str(clean_store), "--no-progress"]) == 0
    assert "4/4 done (0 now)" in capsys.readouterr().out and rows(clean_store) == before
    broken = grid.parent / "broken.yaml"
    broken.write_text(
        grid.read_text().replace("weights: {random: random}", "weights: {random: random}\nnormalization: 0/0")
    )
    store = grid.parent / "broken.db"
    assert (
        main(["bench", "run", str(broken), "--store", str(store), "--no-progress", "--max-attempts", "1"])
        == 1
    )
    assert main(["bench", "status", "--store", str(store)]) == 0
    out = capsys.readouterr().out
    assert "4 failed" in out and "InputError" in out and "positive stds" in out


def test_bad_grid_and_shard_arguments_give_one_line_errors(grid: Path, tmp_path: Path, capsys) -> None:
    assert main(["bench", "run", str(grid), "--store", str(tmp_path / "r.db"), "--shard", "3/2"]) == 2
    assert "1 <= I <= N" in capsys.readouterr().err
    assert main(["bench", "run", str(tmp_path / "none.yaml"), "--store", str(tmp_path / "r.db")]) == 2
    assert "grid file" in capsys.readouterr().err
    assert main(["bench", "status", "--store", str(tmp_path / "missing.db")]) == 2
    assert "does not exist" in capsys.readouterr().err
