"""`fractalad bench run | status | merge`: run a grid file into a results store, read its state, merge shards.

Building the parser imports nothing heavy; the bench modules (torch, detectors) load inside the handlers.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from fractalad.commands.arguments import PRECISION_HELP, nonnegative_int, positive_int
from fractalad.devices import PRECISIONS


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `bench` subcommand and its run/status/merge actions."""
    parser = subparsers.add_parser(
        "bench",
        help="run a benchmark grid into a results store (resumable, shardable)",
        description="Run every (dataset, category, method, weights, layers, seed, few-shot) combination of a "
        "grid file into an SQLite results store. Killed runs resume where they stopped; finished runs are "
        "never repeated.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    run = actions.add_parser("run", help="run (or resume) a grid", description="Run or resume a grid file.")
    run.add_argument("grid", type=Path, help="grid YAML file (see configs/grids/)")
    run.add_argument("--store", type=Path, required=True, help="results database (created when missing)")
    run.add_argument("--shard", default=None, metavar="I/N", help="run only shard I of N (1-based), e.g. 1/4")
    run.add_argument(
        "--devices", default="cpu", help="one worker per device: cpu or cuda:0,cuda:1 (default cpu)"
    )
    run.add_argument(
        "--max-attempts", type=positive_int, default=2, help="tries per run before it stays failed (default 2)"
    )
    run.add_argument(
        "--artifacts",
        type=Path,
        default=None,
        help="folder for per-run scores and example maps (default: <store stem>-artifacts beside the store)",
    )
    run.add_argument("--batch-size", type=positive_int, default=16, help="images per batch (default 16)")
    run.add_argument("--precision", choices=PRECISIONS, default="auto", help=PRECISION_HELP)
    run.add_argument(
        "--workers", type=nonnegative_int, default=0, help="data-loading worker processes per run (default 0)"
    )
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.set_defaults(handler=run_command)
    status = actions.add_parser("status", help="done / failed / pending counts and failure messages")
    status.add_argument("--store", type=Path, required=True, help="results database")
    status.set_defaults(handler=status_command)
    merge = actions.add_parser("merge", help="merge shard stores into one")
    merge.add_argument("out", type=Path, help="output store (created when missing)")
    merge.add_argument("inputs", type=Path, nargs="+", help="shard stores")
    merge.set_defaults(handler=merge_command)


def run_command(args: argparse.Namespace) -> int:
    from fractalad.bench.artifacts import default_artifacts
    from fractalad.bench.evaluate import RunOptions
    from fractalad.bench.grid import describe, load_grid
    from fractalad.bench.runner import RunnerOptions, Shard, parse_devices, run_grid

    specs = load_grid(args.grid)
    options = RunnerOptions(
        devices=parse_devices(args.devices),
        shard=Shard.parse(args.shard) if args.shard else None,
        max_attempts=args.max_attempts,
        progress=not args.no_progress,
        run=RunOptions(
            batch_size=args.batch_size,
            precision=args.precision,
            num_workers=args.workers,
            artifacts_dir=args.artifacts or default_artifacts(args.store),
        ),
    )
    print(f"{args.grid}: {describe(specs)} -> {args.store}", flush=True)
    report = run_grid(specs, args.store, options)
    print(
        f"{report.done}/{report.total} done ({report.ran} now), {report.failed} failed, "
        f"{report.pending} pending; `fractalad bench status --store {args.store}` lists failures"
    )
    return 0 if report.done == report.total else 1


def status_command(args: argparse.Namespace) -> int:
    from fractalad.bench.store import ResultsStore

    store = ResultsStore(args.store, create=False)
    try:
        counts = store.counts()
        failures = store.failures()
    finally:
        store.close()
    print(f"{args.store}: " + ", ".join(f"{n} {status}" for status, n in counts.items()))
    for failure in failures:
        spec = failure.spec
        print(
            f"  failed {failure.run_id[:12]} {spec.dataset}/{spec.category} {spec.method} "
            f"{spec.weights_label} "
            f"layers={','.join(map(str, spec.layers))} seed={spec.seed} after {failure.attempt} attempt(s): "
            f"{failure.error_type}: {failure.error_message}"
        )
    return 0


def merge_command(args: argparse.Namespace) -> int:
    from fractalad.bench.store import merge_stores

    report = merge_stores(args.out, args.inputs)
    print(
        f"merged {len(args.inputs)} store(s) into {args.out}: {report.added} rows added, {report.replaced} "
        f"unfinished rows replaced by finished ones, {len(report.conflicts)} conflicts"
    )
    for run_id in report.conflicts:
        print(f"  conflict {run_id}: done in two stores with different metrics; the first one is kept")
    return 0 if not report.conflicts else 1
