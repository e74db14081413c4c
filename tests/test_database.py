"""The database layer: one file for reviews and jobs, per-component schema versions,
jobs_meta adopted and dropped, the old `reviews.sqlite` renamed on open losing nothing."""

import multiprocessing as mp
import shutil
import sqlite3

import pytest

from cifar_mtl.jobs import JobRunner
from cifar_mtl.stores import reviews
from cifar_mtl.stores.database import DB_FILE, LEGACY_FILE, SchemaError, default_path, now, parse_time
from cifar_mtl.stores.jobqueue import JOBS_SCHEMA_VERSION, JobStoreError
from cifar_mtl.stores.reviews import SCHEMA_VERSION, ReviewStore

OLD_JOBS = """
CREATE TABLE jobs (
    id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL UNIQUE, config TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    created_at TEXT NOT NULL, started_at TEXT, finished_at TEXT, pid INTEGER, pid_start INTEGER,
    boot_id TEXT, exit_code INTEGER, cancel_requested INTEGER NOT NULL DEFAULT 0, error TEXT, submitted_by TEXT
);
CREATE INDEX jobs_state ON jobs (state);
CREATE TABLE jobs_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def _old_file(folder, review_version: int, jobs_version: str = "1"):
    """A `reviews.sqlite` as the code before the database layer wrote it, with its last
    writes still in the WAL (copied while the writer held it open, as after a crash)."""
    scratch = folder / "scratch"
    scratch.mkdir()
    path = scratch / LEGACY_FILE
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode = WAL")
    con.execute("PRAGMA wal_autocheckpoint = 0")  # keep every write in the WAL
    con.execute("CREATE TABLE schema_version (component TEXT PRIMARY KEY, version INTEGER NOT NULL)")
    con.execute("BEGIN")
    for v in range(1, review_version + 1):
        reviews.MIGRATIONS[v](con)
    con.execute("INSERT INTO schema_version VALUES ('reviews', ?)", (review_version,))
    for i, (who, cat) in enumerate([("ann", "clutter"), ("ann", "pose"), ("bob", "clutter")]):
        con.execute("INSERT INTO review_events (at, reviewer, run_id, idx, kind, key, action) "
                    "VALUES (?, ?, 'r1', ?, 'tag', ?, 'add')", (now(), who, i, cat))
    con.execute("INSERT INTO review_events (at, reviewer, run_id, idx, kind, key, action, value) "
                "VALUES (?, 'bob', 'r1', 7, 'note', '', 'set', 'dark')", (now(),))
    con.execute("COMMIT")
    con.executescript(OLD_JOBS)
    con.execute("INSERT INTO jobs_meta VALUES ('jobs_schema_version', ?)", (jobs_version,))
    con.execute("INSERT INTO jobs (run_id, config, state, created_at) "
                "VALUES ('old-run', '{}', 'succeeded', '2026-11-25T21:03:31+0000')")
    for name in (LEGACY_FILE, LEGACY_FILE + "-wal", LEGACY_FILE + "-shm"):
        shutil.copy(scratch / name, folder / name)
    assert (folder / (LEGACY_FILE + "-wal")).stat().st_size > 0
    con.close()
    shutil.rmtree(scratch)
    return folder / LEGACY_FILE


def _versions(path) -> dict:
    con = sqlite3.connect(path)
    try:
        return dict(con.execute("SELECT component, version FROM schema_version").fetchall())
    finally:
        con.close()


def _tables(path) -> set:
    con = sqlite3.connect(path)
    try:
        return {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    finally:
        con.close()


@pytest.mark.parametrize("review_version", [1, 2])
@pytest.mark.parametrize("opener", ["reviews", "jobs"])
def test_old_reviews_sqlite_is_renamed_losing_nothing(home, review_version, opener):
    _old_file(home, review_version)
    if opener == "reviews":
        ReviewStore().close()  # the app opens the reviews first ...
    else:
        JobRunner(home, autostart=False)  # ... or `jobs list` opens the job queue first
    assert default_path(home) == home / DB_FILE
    assert sorted(p.name for p in home.iterdir() if "sqlite" in p.name)[0] == DB_FILE
    assert not (home / LEGACY_FILE).exists() and not (home / (LEGACY_FILE + "-wal")).exists()
    runner = JobRunner(home, autostart=False)
    with ReviewStore() as s:
        assert s.path == home / DB_FILE and s.schema_version() == SCHEMA_VERSION
        tags = s.current_tags()
        assert tags[["index", "category", "reviewer"]].values.tolist() == [
            [0, "clutter", "ann"], [1, "pose", "ann"], [2, "clutter", "bob"]]
        assert s.current_notes()["note"].tolist() == ["dark"]
        assert len(s.history()) == 4
    job = runner.get(1, refresh=False)
    assert job["run_id"] == "old-run" and job["state"] == "succeeded"
    assert runner.submit({}, run_id="new-run") == 2
    assert _versions(home / DB_FILE) == {"reviews": SCHEMA_VERSION, "jobs": JOBS_SCHEMA_VERSION}
    assert "jobs_meta" not in _tables(home / DB_FILE)
    con = sqlite3.connect(home / DB_FILE)
    assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert con.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    con.close()


def test_both_files_are_refused_without_guessing(home):
    ReviewStore().close()
    _old_file(home, 2)
    before = {p.name: p.read_bytes() for p in home.iterdir()}
    with pytest.raises(SchemaError, match="both .*reviews.sqlite.* and .*cifar-mtl.sqlite.* exist.*will not guess"):
        ReviewStore()
    with pytest.raises(JobStoreError, match="will not guess"):
        JobRunner(home, autostart=False)
    assert {p.name: p.read_bytes() for p in home.iterdir()} == before


def test_old_file_in_use_elsewhere_is_left_alone(home):
    path = _old_file(home, 2)
    holder = sqlite3.connect(path)
    holder.execute("SELECT COUNT(*) FROM review_events").fetchone()  # a reader holds it open
    try:
        with pytest.raises(SchemaError, match="another process has it open"):
            ReviewStore(timeout=0.2)
        assert path.exists() and not (home / DB_FILE).exists()
    finally:
        holder.close()
    with ReviewStore() as s:
        assert len(s.current_tags()) == 3


def _open_and_count(home, queue):
    import os

    os.environ["CIFAR_MTL_HOME"] = str(home)
    with ReviewStore() as s:
        queue.put(len(s.current_tags()))


def test_processes_racing_to_rename_agree(home):
    _old_file(home, 1)
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_open_and_count, args=(home, queue)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
    assert [p.exitcode for p in procs] == [0] * 4
    assert sorted(queue.get(timeout=5) for _ in procs) == [3] * 4
    assert not (home / LEGACY_FILE).exists()


def test_newer_job_table_in_jobs_meta_is_refused_and_kept(home):
    _old_file(home, 2, jobs_version="7")
    with pytest.raises(JobStoreError, match="job schema version 7, newer"):
        JobRunner(home, autostart=False)
    assert "jobs_meta" in _tables(home / DB_FILE)  # rolled back: nothing dropped
    with ReviewStore() as s:  # the reviews in the same file still open
        assert len(s.current_tags()) == 3


def test_one_timestamp_format():
    stamp = now()
    assert len(stamp) == len("2026-11-25T21:03:31.123456+00:00") and stamp.endswith("+00:00")
    assert parse_time(stamp).utcoffset().total_seconds() == 0
    old = parse_time("2026-11-25T21:03:31+0000")  # job rows written before the layer
    assert (old.year, old.hour, old.second) == (2026, 21, 31) and old.utcoffset().total_seconds() == 0
    assert parse_time("yesterday") is None and parse_time(None) is None
