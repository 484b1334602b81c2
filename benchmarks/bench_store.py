"""Runner overhead per job (store claim + heartbeat thread + finish, no fit/predict) and the time to report
a store of 10,000 done rows. Prints both and their ratio to the targets (1 s per job, 10 s per report).

    PYTHONPATH=src python benchmarks/bench_store.py
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "unit" / "bench"))

from bench_rows import make_result, make_spec  # noqa: E402

from fractalad.bench.runner import Heartbeat  # noqa: E402
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


def main() -> None:
    folder = Path(tempfile.mkdtemp())
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
    print(f"runner overhead per job: {per_job * 1000:.1f} ms ({per_job / 1.0:.4f} of the 1 s target)")
    print(f"report of {ROWS} rows: {report_seconds:.2f} s ({report_seconds / 10.0:.3f} of the 10 s target)")


if __name__ == "__main__":
    main()
