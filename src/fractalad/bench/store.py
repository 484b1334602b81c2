"""The results store: one embedded SQLite file per grid (or per shard), append-only and idempotent on run_id.

A run row goes pending -> running (claimed inside BEGIN IMMEDIATE, so two workers never take the same
run) -> done | failed. Finishing is one transaction that only succeeds for the worker holding the claim, and
a trigger makes done rows final, so a result is written exactly once whatever is killed when. A "running"
row whose worker died (its process is gone on this host, or its heartbeat is stale) is claimed again.
WAL lets several processes on one host share the file; never put it on a network file system (SPECS §11).
"""

from __future__ import annotations

import os
import socket
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from fractalad import __version__
from fractalad.bench.result import RunResult
from fractalad.bench.spec import RunSpec
from fractalad.errors import InputError

SCHEMA_VERSION = 1
STATUSES: tuple[str, ...] = ("pending", "running", "done", "failed")

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    dataset TEXT NOT NULL, category TEXT NOT NULL, method TEXT NOT NULL, backbone TEXT NOT NULL,
    weights_label TEXT NOT NULL, weights_id TEXT NOT NULL, layers TEXT NOT NULL,
    few_shot INTEGER, seed INTEGER NOT NULL, size INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'running', 'done', 'failed')),
    attempt INTEGER NOT NULL DEFAULT 0,
    worker TEXT, heartbeat REAL, started REAL, ended REAL,
    error_type TEXT, error_message TEXT,
    image_auroc REAL, pixel_auroc REAL, aupro REAL,
    result TEXT
);
CREATE INDEX IF NOT EXISTS runs_status ON runs (status);
CREATE TABLE IF NOT EXISTS attempts (
    run_id TEXT NOT NULL, attempt INTEGER NOT NULL, worker TEXT NOT NULL, started REAL NOT NULL,
    ended REAL, outcome TEXT NOT NULL, error_type TEXT, error_message TEXT,
    PRIMARY KEY (run_id, attempt, worker, started)
);
CREATE TRIGGER IF NOT EXISTS done_rows_are_final BEFORE UPDATE ON runs WHEN OLD.status = 'done'
BEGIN SELECT RAISE(ABORT, 'a done run is final'); END;
CREATE TRIGGER IF NOT EXISTS done_rows_stay BEFORE DELETE ON runs WHEN OLD.status = 'done'
BEGIN SELECT RAISE(ABORT, 'a done run is final'); END;
"""

CLAIMABLE = """
    (r.status IN ('pending', 'failed') AND r.attempt < :max_attempts)
    OR (r.status = 'running' AND r.heartbeat < :stale_before AND r.attempt < :max_attempts)
"""


@dataclass(frozen=True)
class Failure:
    run_id: str
    spec: RunSpec
    attempt: int
    error_type: str
    error_message: str


def worker_name() -> str:
    """host:pid — enough to tell whether a claim's process is still alive on this host."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: alive
        return True
    return True


class ResultsStore:
    """A results database; open one per process (SQLite connections are not shared across processes)."""

    def __init__(self, path: str | Path, create: bool = True, timeout: float = 60.0) -> None:
        self.path = Path(path)
        if not create and not self.path.is_file():
            raise FileNotFoundError(
                f"results store {self.path} does not exist; run `fractalad bench run` first"
            )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE), never opened behind our back.
        self.db = sqlite3.connect(self.path, timeout=timeout, isolation_level=None)
        self.db.row_factory = sqlite3.Row
        self.db.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
        self.db.execute("PRAGMA journal_mode = WAL")
        self._check_schema()

    def _check_schema(self) -> None:
        tables = {r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "meta" in tables:
            row = self.db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            found = row[0] if row else "none"
            if found != str(SCHEMA_VERSION):
                raise InputError(
                    f"results store {self.path} has schema version {found}, this fractalad ({__version__}) "
                    f"reads version {SCHEMA_VERSION}; use a new --store file or the fractalad that wrote it"
                )
        elif tables:
            raise InputError(
                f"{self.path} is an SQLite file but not a fractalad results store; use another path"
            )
        if not tables:
            # executescript commits first, so the script carries its own transaction.
            self.db.executescript(
                f"BEGIN IMMEDIATE; {SCHEMA} INSERT OR IGNORE INTO meta VALUES "
                f"('schema_version', '{SCHEMA_VERSION}'), ('created_by', 'fractalad {__version__}'); COMMIT;"
            )

    @contextmanager
    def transaction(self, immediate: bool = False) -> Iterator[None]:
        """BEGIN [IMMEDIATE] ... COMMIT, ROLLBACK on any error. IMMEDIATE takes the write lock up front, so
        a read-then-write (a claim) cannot interleave with another process's."""
        self.db.execute("BEGIN IMMEDIATE" if immediate else "BEGIN")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def close(self) -> None:
        self.db.close()

    # -- queueing -------------------------------------------------------------------------------------------
    def add_pending(self, specs: Sequence[RunSpec]) -> int:
        """Insert the runs not yet in the store as pending; returns how many were new."""
        rows = [
            (
                s.run_id,
                s.to_json(),
                s.dataset,
                s.category,
                s.method,
                s.backbone,
                s.weights_label,
                s.weights_id,
                ",".join(map(str, s.layers)),
                s.few_shot,
                s.seed,
                s.size,
            )
            for s in specs
        ]
        with self.transaction():
            before = self.db.total_changes
            self.db.executemany(
                "INSERT OR IGNORE INTO runs (run_id, spec, dataset, category, method, backbone, "
                "weights_label, weights_id, layers, few_shot, seed, size, status) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,'pending')",
                rows,
            )
            return self.db.total_changes - before

    def select_runs(self, run_ids: Iterable[str]) -> None:
        """Restrict claims of this connection to `run_ids`, claimed in the given order (a TEMP table)."""
        self.db.execute("CREATE TEMP TABLE IF NOT EXISTS wanted (run_id TEXT PRIMARY KEY, position INTEGER)")
        with self.transaction():
            self.db.execute("DELETE FROM wanted")
            self.db.executemany(
                "INSERT OR IGNORE INTO wanted VALUES (?, ?)", ((r, i) for i, r in enumerate(run_ids))
            )

    def requeue_dead(self, max_attempts: int) -> int:
        """Release claims held by processes of this host that no longer exist; returns how many."""
        host = socket.gethostname()
        with self.transaction(immediate=True):
            rows = self.db.execute(
                "SELECT run_id, worker, attempt FROM runs WHERE status = 'running'"
            ).fetchall()
            dead = [
                r
                for r in rows
                if r["worker"].rsplit(":", 1)[0] == host
                and not _process_alive(int(r["worker"].rsplit(":", 1)[1]))
            ]
            for row in dead:
                self._end_attempt(row["run_id"], row["worker"], "killed", "Killed", "the worker process died")
                exhausted = row["attempt"] >= max_attempts
                self.db.execute(
                    "UPDATE runs SET status = ?, worker = NULL, error_type = ?, error_message = ? "
                    "WHERE run_id = ?",
                    (
                        "failed" if exhausted else "pending",
                        "Killed" if exhausted else None,
                        "the worker process died on every attempt" if exhausted else None,
                        row["run_id"],
                    ),
                )
        return len(dead)

    def claim(self, worker: str, max_attempts: int, stale_seconds: float) -> RunSpec | None:
        """Take the first claimable selected run (pending, failed with attempts left, or stale running)."""
        now = time.time()
        with self.transaction(immediate=True):
            row = self.db.execute(
                f"SELECT r.run_id, r.spec FROM runs r JOIN wanted w USING (run_id) WHERE {CLAIMABLE} "
                "ORDER BY w.position LIMIT 1",
                {"max_attempts": max_attempts, "stale_before": now - stale_seconds},
            ).fetchone()
            if row is None:
                return None
            self.db.execute(
                "UPDATE runs SET status = 'running', attempt = attempt + 1, worker = ?, heartbeat = ?, "
                "started = ?, ended = NULL, error_type = NULL, error_message = NULL WHERE run_id = ?",
                (worker, now, now, row["run_id"]),
            )
            self.db.execute(
                "INSERT INTO attempts (run_id, attempt, worker, started, outcome) "
                "SELECT run_id, attempt, worker, started, 'running' FROM runs WHERE run_id = ?",
                (row["run_id"],),
            )
        return RunSpec.from_json(row["spec"])

    def heartbeat(self, run_id: str, worker: str) -> None:
        with self.transaction():
            self.db.execute(
                "UPDATE runs SET heartbeat = ? WHERE run_id = ? AND worker = ? AND status = 'running'",
                (time.time(), run_id, worker),
            )

    def _end_attempt(
        self, run_id: str, worker: str, outcome: str, error_type: str | None, message: str | None
    ) -> None:
        self.db.execute(
            "UPDATE attempts SET ended = ?, outcome = ?, error_type = ?, error_message = ? "
            "WHERE run_id = ? AND worker = ? AND outcome = 'running'",
            (time.time(), outcome, error_type, message, run_id, worker),
        )

    def finish(self, result: RunResult, worker: str) -> bool:
        """Record a finished run in one transaction; False (nothing written) if this worker lost the claim."""
        with self.transaction(immediate=True):
            cursor = self.db.execute(
                "UPDATE runs SET status = 'done', ended = ?, image_auroc = ?, pixel_auroc = ?, aupro = ?, "
                "result = ? WHERE run_id = ? AND worker = ? AND status = 'running'",
                (
                    time.time(),
                    result.image_auroc,
                    result.pixel_auroc,
                    result.aupro,
                    result.to_json(),
                    result.run_id,
                    worker,
                ),
            )
            if cursor.rowcount == 1:
                self._end_attempt(result.run_id, worker, "done", None, None)
            return cursor.rowcount == 1

    def fail(self, run_id: str, worker: str, error: BaseException) -> None:
        message = str(error).strip().splitlines()[0][:500] if str(error).strip() else repr(error)
        with self.transaction(immediate=True):
            self.db.execute(
                "UPDATE runs SET status = 'failed', ended = ?, error_type = ?, error_message = ? "
                "WHERE run_id = ? AND worker = ? AND status = 'running'",
                (time.time(), type(error).__name__, message, run_id, worker),
            )
            self._end_attempt(run_id, worker, "failed", type(error).__name__, message)

    def release(self, run_id: str, worker: str) -> None:
        """Give a claim back without spending an attempt (an interrupted run, e.g. Ctrl-C)."""
        with self.transaction(immediate=True):
            self.db.execute(
                "UPDATE runs SET status = 'pending', attempt = attempt - 1, worker = NULL "
                "WHERE run_id = ? AND worker = ? AND status = 'running'",
                (run_id, worker),
            )
            self._end_attempt(run_id, worker, "released", "KeyboardInterrupt", "interrupted")

    # -- reading --------------------------------------------------------------------------------------------
    def counts(self, selected_only: bool = False) -> dict[str, int]:
        join = "JOIN wanted w USING (run_id)" if selected_only else ""
        rows = self.db.execute(f"SELECT r.status, COUNT(*) FROM runs r {join} GROUP BY r.status").fetchall()
        found = {status: n for status, n in rows}
        return {status: found.get(status, 0) for status in STATUSES}

    def failures(self) -> list[Failure]:
        rows = self.db.execute(
            "SELECT run_id, spec, attempt, error_type, error_message FROM runs WHERE status = 'failed' "
            "ORDER BY category, method, run_id"
        ).fetchall()
        return [
            Failure(
                r["run_id"], RunSpec.from_json(r["spec"]), r["attempt"], r["error_type"], r["error_message"]
            )
            for r in rows
        ]

    def results(self) -> list[RunResult]:
        """Every done run, in insertion order."""
        rows = self.db.execute(
            "SELECT spec, result FROM runs WHERE status = 'done' ORDER BY rowid"
        ).fetchall()
        return [RunResult.from_json(RunSpec.from_json(r["spec"]), r["result"]) for r in rows]

    def specs(self) -> list[RunSpec]:
        """Every run in the store whatever its status (the grid the store was asked to run)."""
        return [RunSpec.from_json(r[0]) for r in self.db.execute("SELECT spec FROM runs ORDER BY rowid")]


@dataclass(frozen=True)
class MergeReport:
    """What `merge_stores` did: rows added, unfinished rows replaced by finished ones, disagreements."""

    added: int
    replaced: int
    conflicts: tuple[str, ...]  # run ids done in two stores with different metrics (the first one is kept)


def merge_stores(out_path: str | Path, inputs: Sequence[str | Path]) -> MergeReport:
    """Merge shard stores into `out_path`: a done row beats an unfinished one and is never replaced."""
    out = ResultsStore(out_path)
    added = replaced = 0
    conflicts: list[str] = []
    try:
        for path in inputs:
            if Path(path).resolve() == out.path.resolve():
                raise InputError(f"cannot merge {path} into itself; name a new output store")
            ResultsStore(path, create=False).close()  # refuses other schema versions with a clear message
            out.db.execute("ATTACH DATABASE ? AS source", (str(path),))
            try:
                with out.transaction(immediate=True):
                    conflicts += [
                        r[0]
                        for r in out.db.execute(
                            "SELECT a.run_id FROM runs a JOIN source.runs b USING (run_id) "
                            "WHERE a.status = 'done' AND b.status = 'done' "
                            "AND (a.image_auroc IS NOT b.image_auroc OR a.pixel_auroc IS NOT b.pixel_auroc "
                            "OR a.aupro IS NOT b.aupro)"
                        )
                    ]
                    replaced += out.db.execute(
                        "DELETE FROM runs WHERE status != 'done' AND run_id IN "
                        "(SELECT run_id FROM source.runs WHERE status = 'done')"
                    ).rowcount
                    before = out.db.total_changes
                    out.db.execute("INSERT OR IGNORE INTO runs SELECT * FROM source.runs")
                    added += out.db.total_changes - before
                    out.db.execute("INSERT OR IGNORE INTO attempts SELECT * FROM source.attempts")
            finally:
                out.db.execute("DETACH DATABASE source")
    finally:
        out.close()
    return MergeReport(added - replaced, replaced, tuple(conflicts))
