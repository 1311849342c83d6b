"""The results store: one SQLite database inside the study folder (no server).

Tables: ``runs`` (resolved config, grid values, status, attempts, timings, versions, git SHA,
error) and ``metrics`` (per run, split, attack, ε and class: n, correct, accuracy, 95% interval).
A run's metrics and its ``done`` status are written in one transaction, so a crash never leaves
a half-recorded run; WAL mode and a busy timeout make concurrent worker processes safe, and a
run is claimed with one conditional UPDATE so two workers never take the same run.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from classwise.errors import ClasswiseError
from classwise.provenance import git_commit
from classwise.study.spec import Run

STORE_FILE = "results.sqlite"
RUNS_QUERY = "SELECT * FROM runs ORDER BY position"
DAMAGED = ("file is not a database", "malformed", "file is encrypted")
SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    position INTEGER NOT NULL,
    config TEXT NOT NULL,
    overrides TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'running', 'done', 'failed')),
    attempts INTEGER NOT NULL DEFAULT 0,
    worker TEXT,
    started REAL,
    finished REAL,
    seconds REAL,
    versions TEXT,
    git_sha TEXT,
    error TEXT
);
CREATE TABLE IF NOT EXISTS metrics (
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    split TEXT NOT NULL,
    attack TEXT NOT NULL,
    eps REAL NOT NULL,
    norm TEXT NOT NULL,
    class_index INTEGER NOT NULL,
    class_name TEXT NOT NULL,
    n INTEGER NOT NULL,
    correct INTEGER NOT NULL,
    accuracy REAL NOT NULL,
    ci_low REAL NOT NULL,
    ci_high REAL NOT NULL,
    PRIMARY KEY (run_id, split, attack, eps, class_index)
);
"""


class StoreError(ClasswiseError):
    """The study store is damaged or is not one."""


class Store:
    """Open (creating if needed) the store at ``path``."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.executescript(SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        try:
            db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        except sqlite3.Error as exc:
            raise self._damaged(exc) from None
        try:
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA busy_timeout=60000")
            yield db
        except sqlite3.DatabaseError as exc:
            if not any(text in str(exc) for text in DAMAGED):
                raise
            raise self._damaged(exc) from None
        finally:
            db.close()

    def _damaged(self, exc: sqlite3.Error) -> StoreError:
        return StoreError(
            f"{self.path} is not a readable study store ({exc}); restore it from a copy, or move it away and run "
            "classwise study run again: finished run folders beside it are reused, unfinished ones resume"
        )

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def register(self, runs: tuple[Run, ...]) -> None:
        """Make the grid the plan: add runs not yet known, put every run at its place in the grid,
        and forget runs an edited grid no longer holds unless they finished (a re-run or extended
        study keeps finished runs; a run taken out or renamed before it finished is not planned)."""
        with self.transaction() as db:
            db.execute("CREATE TEMP TABLE grid (run_id TEXT PRIMARY KEY)")
            db.executemany("INSERT OR IGNORE INTO grid VALUES (?)", [(run.run_id,) for run in runs])
            db.execute("DELETE FROM runs WHERE status != 'done' AND run_id NOT IN (SELECT run_id FROM grid)")
            db.execute("DROP TABLE grid")
            for i, run in enumerate(runs):
                db.execute(
                    "INSERT INTO runs (run_id, position, config, overrides) VALUES (?, ?, ?, ?) "
                    "ON CONFLICT (run_id) DO UPDATE SET position=excluded.position",
                    (run.run_id, i, json.dumps(run.config.to_dict()), json.dumps(run.overrides)),
                )

    def release_stale(self) -> int:
        """Runs left 'running' by a study that died go back to 'pending' (their run folder resumes)."""
        with self.transaction() as db:
            return db.execute("UPDATE runs SET status='pending', worker=NULL WHERE status='running'").rowcount

    def claim(self, run_id: str, worker: str, max_attempts: int) -> bool:
        """Atomically mark a pending (or retryable failed) run as running by ``worker``."""
        with self.transaction() as db:
            cur = db.execute(
                "UPDATE runs SET status='running', worker=?, attempts=attempts+1, started=? "
                "WHERE run_id=? AND (status='pending' OR (status='failed' AND attempts < ?))",
                (worker, time.time(), run_id, max_attempts),
            )
            return cur.rowcount == 1

    def finish(self, run_id: str, rows: list[dict[str, Any]], versions: dict[str, str]) -> None:
        """Record a run's per-class metrics and mark it done, in one transaction."""
        with self.transaction() as db:
            db.execute("DELETE FROM metrics WHERE run_id=?", (run_id,))
            db.executemany(
                "INSERT INTO metrics VALUES (:run_id, :split, :attack, :eps, :norm, :class_index, :class_name, "
                ":n, :correct, :accuracy, :ci_low, :ci_high)",
                [{**r, "run_id": run_id} for r in rows],
            )
            db.execute(
                "UPDATE runs SET status='done', finished=?, seconds=?-started, versions=?, git_sha=?, error=NULL "
                "WHERE run_id=?",
                (time.time(), time.time(), json.dumps(versions), git_commit(), run_id),
            )

    def fail(self, run_id: str, error: str) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE runs SET status='failed', finished=?, seconds=?-started, error=? WHERE run_id=?",
                (time.time(), time.time(), error, run_id),
            )

    def runs(self) -> list[dict[str, Any]]:
        return self.read()[0]

    def metrics(self) -> list[dict[str, Any]]:
        return self.read()[1]

    def read(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The runs and their metrics as of one moment: read in one transaction, so a run a worker
        finishes meanwhile is either done with its metrics or not yet done, never half of each."""
        with self._connect() as db:
            db.execute("BEGIN")
            try:
                runs = [dict(r) for r in db.execute(RUNS_QUERY)]
                metrics = [
                    dict(r)
                    for r in db.execute(
                        "SELECT m.* FROM metrics m JOIN runs r USING (run_id) "
                        "ORDER BY r.position, m.split, m.attack, m.eps, m.class_index"
                    )
                ]
            finally:
                db.execute("COMMIT")
            return runs, metrics


def worker_name() -> str:
    return f"{os.uname().nodename}:{os.getpid()}"
