"""The retrain job queue: the `jobs` table of the project's database.

One row per job: id, run_id (unique), the config it runs (JSON), state (queued,
running, succeeded, failed, cancelled), the worker's pid with its start time and
boot id, times (`stores.database.now()`), exit code, cancel request, error and who
submitted it. Its schema version is the `jobs` row of `schema_version`; files
written before that kept it in a `jobs_meta` table, which opening adopts and drops.

This module only stores rows; `cifar_mtl.jobs.JobRunner` starts, watches and
cancels the workers.
"""

from __future__ import annotations

import json

from cifar_mtl.errors import UserError
from cifar_mtl.stores.database import Component, Database, SchemaError, default_path, now, rows_as_dicts

JOBS_SCHEMA_VERSION = 1
STATES = ("queued", "running", "succeeded", "failed", "cancelled")
FINAL_STATES = ("succeeded", "failed", "cancelled")
JOB_COLUMNS = ["id", "run_id", "state", "created_at", "started_at", "finished_at", "pid", "error"]
MAX_JOB_ID = 2**63 - 1  # SQLite's largest INTEGER; a larger id cannot even be looked up
# Columns a job's row may have set after it is queued.
UPDATABLE = ("state", "started_at", "finished_at", "pid", "pid_start", "boot_id", "exit_code",
             "cancel_requested", "error")


class JobError(UserError, ValueError):
    """A job is unknown, or the job table cannot be used. The message says what to do."""


class JobStoreError(JobError, SchemaError):
    """The database file cannot be used as a job table (not SQLite, damaged, unreadable, newer)."""


_SCHEMA_1 = (
    """CREATE TABLE IF NOT EXISTS jobs (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id TEXT NOT NULL UNIQUE,
        config TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
        created_at TEXT NOT NULL,
        started_at TEXT,
        finished_at TEXT,
        pid INTEGER,
        pid_start INTEGER,
        boot_id TEXT,
        exit_code INTEGER,
        cancel_requested INTEGER NOT NULL DEFAULT 0,
        error TEXT,
        submitted_by TEXT
    )""",
    "CREATE INDEX IF NOT EXISTS jobs_state ON jobs (state)",
)


def _migration_1(conn) -> None:
    # IF NOT EXISTS: a file from before schema_version knew jobs may hold the table
    # without a record of its version; the schema check after the migration vets it.
    for statement in _SCHEMA_1:
        conn.execute(statement)


def _adopt_jobs_meta(conn, engine) -> int:
    """The version older code kept in `jobs_meta` (then dropped), 0 if there is none."""
    if not engine.has_table(conn, "jobs_meta"):
        return 0
    row = conn.execute("SELECT value FROM jobs_meta WHERE key = 'jobs_schema_version'").fetchone()
    conn.execute("DROP TABLE jobs_meta")
    return int(row[0]) if row else 0


def _unusable(path, exc) -> str:
    return (
        f"{path} is not a usable SQLite database ({exc}). It also holds the reviews: "
        "restore it from a backup, or move it aside (a new empty one is then made), "
        "or point --home / CIFAR_MTL_HOME at another artifacts folder"
    )


COMPONENT = Component(
    name="jobs", version=JOBS_SCHEMA_VERSION, migrations={1: _migration_1},
    tables={1: {"jobs": ("id", "run_id", "config", "state", "created_at", "started_at", "finished_at",
                         "pid", "pid_start", "boot_id", "exit_code", "cancel_requested", "error",
                         "submitted_by")}},
    label="job", owner="JobRunner", schema_error=JobStoreError, closed_error=JobError,
    unusable=_unusable, adopt=_adopt_jobs_meta,
)


class JobQueue:
    """The `jobs` table of the database at `path` (default `<home>/cifar-mtl.sqlite`).

    Rows come back as dicts with every column; `config` stays JSON text.
    Raises `JobStoreError` when the file cannot be used.
    """

    def __init__(self, path=None, *, timeout: float = 30.0):
        self._db = Database(path if path is not None else default_path(), COMPONENT, timeout=timeout)
        self.path = self._db.path
        # The engine's error class: a call may raise it when the file stays locked past the busy timeout.
        self.errors = self._db.engine.Error

    def __repr__(self) -> str:
        return f"JobQueue({str(self.path)!r})"

    def close(self) -> None:
        self._db.close()

    def schema_version(self) -> int:
        return self._db.schema_version()

    def add(self, run_id: str, config: dict, submitted_by: str | None = None) -> int:
        """Queue a job; its id. JobError when `run_id` is already used by a job."""
        try:
            with self._db.write() as conn:
                cur = conn.execute(
                    "INSERT INTO jobs (run_id, config, state, created_at, submitted_by) "
                    "VALUES (?, ?, 'queued', ?, ?)",
                    (run_id, json.dumps(config), now(), submitted_by),
                )
                return int(cur.lastrowid)
        except self._db.engine.IntegrityError:
            raise JobError(f"run id {run_id!r} is already used by a job; choose another or leave it empty") from None

    def get(self, job_id: int) -> dict:
        """One job's row; JobError naming the file when there is none."""
        row = None
        if 1 <= int(job_id) <= MAX_JOB_ID:  # ids start at 1; SQLite cannot take a larger number
            with self._db.use() as conn:
                found = rows_as_dicts(conn.execute("SELECT * FROM jobs WHERE id = ?", (int(job_id),)))
            row = found[0] if found else None
        if row is None:
            raise JobError(f"no job {job_id} in {self.path}; `python -m cifar_mtl jobs list` shows the jobs")
        return row

    def rows(self, *states: str) -> list[dict]:
        """Every job (or those in `states`), oldest first."""
        unknown = [s for s in states if s not in STATES]
        if unknown:
            raise ValueError(f"unknown job states {unknown}; expected some of {STATES}")
        sql, args = "SELECT * FROM jobs", list(states)
        if states:
            sql += f" WHERE state IN ({', '.join('?' for _ in states)})"
        with self._db.use() as conn:
            return rows_as_dicts(conn.execute(sql + " ORDER BY id", args))

    def update(self, job_id: int, when_state: str | None = None, **values) -> bool:
        """Set columns of a job, only if it is still in `when_state`; True if it changed."""
        bad = [k for k in values if k not in UPDATABLE]
        if bad or not values:
            raise ValueError(f"cannot set job columns {bad or '(none)'}; settable: {UPDATABLE}")
        sets = ", ".join(f"{k} = ?" for k in values)
        sql, args = f"UPDATE jobs SET {sets} WHERE id = ?", [*values.values(), int(job_id)]
        if when_state:
            sql += " AND state = ?"
            args.append(when_state)
        with self._db.write() as conn:
            return conn.execute(sql, args).rowcount == 1
