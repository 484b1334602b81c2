"""Runner overhead per job and the time to report a store of 10,000 done rows, with their ratio to the targets
(1 s per job, 10 s per report). The overhead is measured twice: the store's own work per job (claim, heartbeat
thread, finish), and everything `run_one` does besides fit and predict (listing and hashing the category,
building the spec's detector, metrics, artefacts, provenance) on a small synthetic category.

    PYTHONPATH=src python benchmarks/bench_store.py
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "support"))

from bench_rows import make_result, make_spec  # noqa: E402

from fractalad.bench.evaluate import RunOptions, run_one  # noqa: E402
from fractalad.bench.grid import single_run_spec  # noqa: E402
from fractalad.bench.runner import Heartbeat  # noqa: E402
from fractalad.data.synthetic import generate_synthetic  # noqa: E402
from fractalad.bench.store import ResultsStore, worker_name  # noqa: E402
from fractalad.report.build import build_report  # noqa: E402
from fractalad.report.paper import CATEGORY_ORDER  # noqa: E402

ROWS = 10_000


def grid_specs() -> list:
    labels, categories = ("imagenet", "fractal"), CATEGORY_ORDER["mvtec"]
    specs = []
    for seed in range(ROWS // (len(labels) * len(categories) * 2) + 1):
        for category in categories:
            for method in ("patchcore", "padim"):
                for label in labels:
                    specs.append(
                        make_spec(
                            category,
                            method=method,
                            seed=seed,
                            dataset="mvtec",
                            weights_label=label,
                            weights_id=label,
                        )
                    )
    return specs[:ROWS]


def run_one_overhead(folder: Path, runs: int = 3) -> tuple[float, float]:
    """(median seconds of run_one outside fit and predict, median fit + predict seconds), PaDiM at 64 px."""
    root = generate_synthetic(folder / "synthetic", ["tile"], size=64, n_train=16, n_test_good=8, n_test_defect=8)
    params = {"backbone": "resnet18", "weights": "random", "n_features": 50}
    spec = single_run_spec("synthetic", root, "tile", "padim", params, 64)
    outside, inside = [], []
    for index in range(runs):
        options = RunOptions(examples=6, artifacts_dir=folder / f"artifacts-{index}")
        start = time.perf_counter()
        result = run_one(spec, "cpu", options)
        total = time.perf_counter() - start
        inside.append(result.fit_seconds + result.predict_seconds)
        outside.append(total - inside[-1])
    return sorted(outside)[runs // 2], sorted(inside)[runs // 2]


def main() -> None:
    folder = Path(tempfile.mkdtemp())
    outside, inside = run_one_overhead(folder)
    specs = grid_specs()
    path = folder / "r.db"
    store = ResultsStore(path)
    store.add_pending(specs)
    store.select_runs([s.run_id for s in specs])
    worker = worker_name()
    jobs = 200
    start = time.perf_counter()
    for _ in range(jobs):
        spec = store.claim(worker, 2, 300)
        with Heartbeat(path, spec.run_id, worker, 30.0):
            pass
        store.finish(make_result(spec), worker)
    per_job = (time.perf_counter() - start) / jobs
    while (spec := store.claim(worker, 2, 300)) is not None:
        store.finish(make_result(spec), worker)
    store.close()
    start = time.perf_counter()
    build_report(path, folder / "report")
    report_seconds = time.perf_counter() - start
    print(f"store work per job: {per_job * 1000:.1f} ms ({per_job / 1.0:.4f} of the 1 s target)")
    print(
        f"run_one outside fit and predict: {outside * 1000:.0f} ms ({outside / 1.0:.3f} of the 1 s target; "
        f"fit + predict took {inside:.2f} s)"
    )
    print(f"report of {ROWS} rows: {report_seconds:.2f} s ({report_seconds / 10.0:.3f} of the 10 s target)")


if __name__ == "__main__":
    main()
