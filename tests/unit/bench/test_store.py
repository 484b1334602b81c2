"""The results store: exclusive claims, final done rows, lost claims, dead and stale workers, merges."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from bench_rows import make_result, make_spec

from fractalad.bench.result import RunResult
from fractalad.bench.store import ResultsStore, merge_stores
from fractalad.errors import InputError


def open_store(path: Path, specs) -> ResultsStore:
    store = ResultsStore(path)
    store.add_pending(specs)
    store.select_runs([s.run_id for s in specs])
    return store


def test_add_pending_is_idempotent_and_claims_follow_grid_order(tmp_path: Path, specs) -> None:
    store = open_store(tmp_path / "r.db", specs)
    assert store.add_pending(specs) == 0 and store.counts()["pending"] == 4
    claimed = [store.claim(f"host:{i}", max_attempts=2, stale_seconds=60) for i in range(5)]
    assert [c.run_id for c in claimed[:4]] == [s.run_id for s in specs] and claimed[4] is None


def test_two_connections_never_claim_the_same_run(tmp_path: Path, specs) -> None:
    first, second = open_store(tmp_path / "r.db", specs), open_store(tmp_path / "r.db", specs)
    taken = []
    for _ in range(2):
        taken += [first.claim("a:1", 2, 60).run_id, second.claim("b:1", 2, 60).run_id]
    assert sorted(taken) == sorted(s.run_id for s in specs)


def test_done_rows_are_final_and_a_lost_claim_writes_nothing(tmp_path: Path, specs) -> None:
    store = open_store(tmp_path / "r.db", specs[:1])
    spec = store.claim("a:1", 2, 60)
    assert not store.finish(make_result(spec), "b:2")  # another worker's claim
    assert store.finish(make_result(spec, 0.5), "a:1")
    assert not store.finish(make_result(spec, 0.9), "a:1")
    with pytest.raises(sqlite3.IntegrityError, match="a done run is final"):
        store.db.execute("UPDATE runs SET image_auroc = 0.1")
    results = store.results()
    assert [r.image_auroc for r in results] == [0.5] and isinstance(results[0], RunResult)
    assert results[0].scores == (0.1, 0.2, 0.9, 0.3) and results[0].spec == spec


def test_failed_runs_are_retried_up_to_the_limit(tmp_path: Path, specs) -> None:
    store = open_store(tmp_path / "r.db", specs[:1])
    for _ in range(2):
        spec = store.claim("a:1", max_attempts=2, stale_seconds=60)
        store.fail(spec.run_id, "a:1", ValueError("broken weights\nsecond line"))
    assert store.claim("a:1", max_attempts=2, stale_seconds=60) is None
    (failure,) = store.failures()
    assert (failure.attempt, failure.error_type, failure.error_message) == (2, "ValueError", "broken weights")
    assert store.claim("a:1", max_attempts=3, stale_seconds=60).run_id == specs[0].run_id


def test_a_dead_workers_claim_is_requeued(tmp_path: Path, specs) -> None:
    store = open_store(tmp_path / "r.db", specs[:2])
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], check=False, capture_output=True, text=True
    )
    host = socket.gethostname()
    store.claim(f"{host}:{int(dead.stdout)}", 2, 60)  # that process has exited
    store.claim(f"{host}:{os.getpid()}", 2, 60)  # alive: this process
    assert store.requeue_dead(max_attempts=2) == 1
    assert store.counts() == {"pending": 1, "running": 1, "done": 0, "failed": 0}
    outcomes = [r[0] for r in store.db.execute("SELECT outcome FROM attempts ORDER BY outcome")]
    assert outcomes == ["killed", "running"]


def test_a_stale_heartbeat_lets_another_worker_take_over(tmp_path: Path, specs) -> None:
    store = open_store(tmp_path / "r.db", specs[:1])
    spec = store.claim("remote:1", 2, stale_seconds=60)
    assert store.claim("local:1", 2, stale_seconds=60) is None
    assert store.claim("local:1", 2, stale_seconds=-1).run_id == spec.run_id
    assert not store.finish(make_result(spec), "remote:1")


def test_a_store_of_another_schema_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    ResultsStore(path).close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value = '0' WHERE key = 'schema_version'")
    with pytest.raises(InputError, match="schema version 0.*reads version 1"):
        ResultsStore(path)
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as db:
        db.execute("CREATE TABLE x (y)")
    with pytest.raises(InputError, match="not a fractalad results store"):
        ResultsStore(other)


def test_merge_prefers_done_rows_and_reports_conflicts(tmp_path: Path, specs) -> None:
    a, b = open_store(tmp_path / "a.db", specs), open_store(tmp_path / "b.db", specs)
    for store, worker in ((a, "a:1"), (b, "b:1")):
        spec = store.claim(worker, 2, 60)
        store.finish(make_result(spec, 0.5 if worker == "a:1" else 0.6), worker)
    spec = b.claim("b:1", 2, 60)  # the second run is done only in b
    b.finish(make_result(spec), "b:1")
    a.close(), b.close()
    report = merge_stores(tmp_path / "m.db", [tmp_path / "a.db", tmp_path / "b.db"])
    assert report.conflicts == (specs[0].run_id,) and report.replaced == 1
    merged = ResultsStore(tmp_path / "m.db")
    assert merged.counts() == {"pending": 2, "running": 0, "done": 2, "failed": 0}
    assert {r.run_id: r.image_auroc for r in merged.results()} == {
        specs[0].run_id: 0.5,
        specs[1].run_id: 0.75,
    }
    with pytest.raises(InputError, match="into itself"):
        merge_stores(tmp_path / "m.db", [tmp_path / "m.db"])


def test_spec_round_trips_through_the_store(tmp_path: Path) -> None:
    spec = make_spec(few_shot=4, layers=(2, 3))
    store = open_store(tmp_path / "r.db", [spec])
    assert store.specs() == [spec] and store.claim("a:1", 1, 60) == spec
