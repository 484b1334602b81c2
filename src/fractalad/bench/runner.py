"""Run a grid into a store: skip finished runs, retry failed ones up to a limit, one worker per device,
shards for many machines, a progress bar with rate and ETA. Killing it at any moment and starting it
again finishes every run exactly once (the store's claims and final rows guarantee it)."""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from tqdm.auto import tqdm

from fractalad.bench.evaluate import RunOptions, run_one
from fractalad.bench.result import RunResult
from fractalad.bench.spec import RunSpec
from fractalad.bench.store import ResultsStore, worker_name
from fractalad.errors import InputError


@dataclass(frozen=True)
class Shard:
    """Shard `index` of `count` (1-based): every count-th run of the grid's fixed order."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        index, sep, count = text.partition("/")
        try:
            shard = cls(int(index), int(count))
        except ValueError:
            raise InputError(f"--shard {text!r}: expected I/N, e.g. 1/4 (shard 1 of 4)") from None
        if not sep or not 1 <= shard.index <= shard.count:
            raise InputError(f"--shard {text!r}: expected I/N with 1 <= I <= N, e.g. 1/4")
        return shard

    def select(self, specs: Sequence[RunSpec]) -> list[RunSpec]:
        return [spec for i, spec in enumerate(specs) if i % self.count == self.index - 1]


@dataclass(frozen=True)
class RunnerOptions:
    devices: tuple[str, ...] = ("cpu",)
    shard: Shard | None = None
    max_attempts: int = 2
    heartbeat_seconds: float = 30.0
    stale_seconds: float = 300.0  # a running row without a heartbeat for this long is claimed again
    progress: bool = True
    run: RunOptions = field(default_factory=RunOptions)


@dataclass(frozen=True)
class GridReport:
    """Counts over the runs this invocation was asked for (after sharding)."""

    total: int
    done: int
    failed: int
    pending: int
    ran: int  # runs finished by this invocation


def parse_devices(text: str) -> tuple[str, ...]:
    """'cpu' or 'cuda:0,cuda:1' -> one worker per entry."""
    devices = tuple(part.strip() for part in text.split(",") if part.strip())
    bad = [
        d for d in devices if d != "cpu" and d != "cuda" and not (d.startswith("cuda:") and d[5:].isdigit())
    ]
    if not devices or bad:
        raise InputError(f"--devices {text!r}: expected cpu or a comma-separated list such as cuda:0,cuda:1")
    return devices


class Heartbeat:
    """A thread that refreshes a claimed run's heartbeat, on its own connection, while the run executes."""

    def __init__(self, store_path: Path, run_id: str, worker: str, interval: float) -> None:
        self.args = (store_path, run_id, worker, interval)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True)

    def _beat(self) -> None:
        store_path, run_id, worker, interval = self.args
        store = ResultsStore(store_path)
        try:
            while not self.stop.wait(interval):
                store.heartbeat(run_id, worker)
        finally:
            store.close()

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def work(
    store_path: Path,
    run_ids: Sequence[str],
    device: str,
    options: RunnerOptions,
    on_finished: Callable[[RunSpec, RunResult | None], None] | None = None,
) -> int:
    """Claim and execute runs until none is left; returns how many this worker finished."""
    store = ResultsStore(store_path)
    store.select_runs(run_ids)
    worker = worker_name()
    finished = 0
    try:
        while (spec := store.claim(worker, options.max_attempts, options.stale_seconds)) is not None:
            with Heartbeat(store_path, spec.run_id, worker, options.heartbeat_seconds):
                try:
                    result = run_one(spec, device, options.run)
                except KeyboardInterrupt:
                    store.release(spec.run_id, worker)
                    raise
                except Exception as error:  # noqa: BLE001 - a failed run is recorded; the grid goes on
                    store.fail(spec.run_id, worker, error)
                    tqdm.write(f"run {spec.run_id[:12]} ({spec.category}/{spec.method}) failed: {error}")
                    result = None
                else:
                    finished += int(store.finish(result, worker))
            if on_finished is not None:
                on_finished(spec, result)
    finally:
        store.close()
    return finished


def _device_worker(store_path: Path, run_ids: Sequence[str], device: str, options: RunnerOptions) -> None:
    work(store_path, run_ids, device, options)


def run_grid(
    specs: Sequence[RunSpec], store_path: str | Path, options: RunnerOptions | None = None
) -> GridReport:
    """Queue `specs` (this shard's part) in the store and run what is not done yet."""
    options = options or RunnerOptions()
    store_path = Path(store_path)
    selected = options.shard.select(specs) if options.shard else list(specs)
    run_ids = [spec.run_id for spec in selected]
    store = ResultsStore(store_path)
    try:
        store.add_pending(selected)
        store.select_runs(run_ids)
        store.requeue_dead(options.max_attempts)
        already = store.counts(selected_only=True)["done"]
        bar = tqdm(total=len(run_ids), initial=already, desc="grid", unit="run", disable=not options.progress)

        def follow(spec: RunSpec, result: RunResult | None) -> None:
            counts = store.counts(selected_only=True)
            bar.n = counts["done"] + counts["failed"]
            bar.refresh()

        if len(options.devices) == 1:
            ran = work(store_path, run_ids, options.devices[0], options, follow)
        else:
            ran = _run_parallel(store, store_path, run_ids, options, bar)
        bar.close()
        counts = store.counts(selected_only=True)
    finally:
        store.close()
    return GridReport(
        len(run_ids), counts["done"], counts["failed"], counts["pending"] + counts["running"], ran
    )


def _run_parallel(
    store: ResultsStore, store_path: Path, run_ids: list[str], options: RunnerOptions, bar: tqdm
) -> int:
    """One spawned process per device; the bar follows the store's done/failed counts."""
    context = multiprocessing.get_context("spawn")  # CUDA cannot be initialised in forked children
    before = store.counts(selected_only=True)["done"]
    processes = [
        context.Process(target=_device_worker, args=(store_path, run_ids, device, options), daemon=False)
        for device in options.devices
    ]
    for process in processes:
        process.start()
    try:
        while any(p.is_alive() for p in processes):
            time.sleep(1.0)
            counts = store.counts(selected_only=True)
            bar.n = counts["done"] + counts["failed"]
            bar.refresh()
    finally:
        for process in processes:
            process.join()
    return store.counts(selected_only=True)["done"] - before
