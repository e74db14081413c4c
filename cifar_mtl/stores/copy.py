"""Copy a team's SQLite database into PostgreSQL, losing nothing: `python -m cifar_mtl db
copy --to postgresql://...`.

Both ends are first brought to this code's schema by the stores' own migrations (the
source file as opening it would; the target created from nothing), then every row
of every table goes across in one PostgreSQL transaction, ids kept:

    categories       (insertion order kept: SQLite's rowid)
    review_batches   (bulk actions)
    review_events    (every event, undo history included; in id order, so each
                      `undoes` and `batch` points at a row already there)
    jobs
    review_state     not copied but rebuilt, row by row, by PostgreSQL's own triggers
                     as the events arrive, then compared with the source's

Identity sequences are moved past the copied ids, so new rows follow on. The target
must be empty (no events, batches, jobs or categories of its own); a copy into a
database in use is refused, and a failed copy leaves it as it was. Rows go through
PostgreSQL's COPY protocol (psycopg's `cursor.copy`), so a million events take
seconds, not minutes.
"""

from __future__ import annotations

from pathlib import Path

from cifar_mtl.errors import UserError
from cifar_mtl.stores import jobqueue, reviews
from cifar_mtl.stores.database import Database, is_postgres_url, redact

# (table, columns, order) in the order the rows must arrive (foreign keys).
TABLES = (
    ("categories", ("name", "description", "builtin", "created_at", "created_by", "rowid"), "rowid"),
    ("review_batches", ("id", "at", "reviewer", "run_id", "action", "key", "size"), "id"),
    ("review_events", ("id", "at", "reviewer", "run_id", "idx", "kind", "key", "action", "value",
                       "suggested_label", "undoes", "batch"), "id"),
    ("jobs", ("id", "run_id", "config", "state", "created_at", "started_at", "finished_at", "pid",
              "pid_start", "boot_id", "exit_code", "cancel_requested", "error", "submitted_by", "worker",
              "heartbeat_at"), "id"),
)
# Identity columns whose sequences must follow the copied ids.
IDENTITIES = (("categories", "rowid"), ("review_batches", "id"), ("review_events", "id"), ("jobs", "id"))
STATE = ("SELECT kind, reviewer, idx, key, run_id, event_id, at_us, value, suggested_label "
         "FROM review_state ORDER BY kind, reviewer, idx, key")
BATCH_ROWS = 10_000


class CopyError(UserError):
    """The copy cannot start, or did not match its source; nothing was written."""


class Counts(dict):
    """{table: rows copied}, in copy order; `target` is where they went (no password)."""

    target: str = ""


def copy_sqlite_to_postgres(source, url: str, *, timeout: float = 30.0) -> Counts:
    """Copy the SQLite database at `source` into the empty PostgreSQL database at `url`.

    Returns the rows copied per table (`review_state` counted as rebuilt). Raises
    `CopyError` (a UserError) when the source is missing, the target is not empty, or
    the copy does not match its source; the target is then unchanged.
    """
    source = Path(source)
    if not is_postgres_url(url):
        raise CopyError(f"--to must be a postgresql:// URL, got {redact(url)!r}")
    if not source.is_file():
        raise CopyError(f"there is no database at {source}: pass --from FILE or --home, or check CIFAR_MTL_HOME")
    dbs = [Database(source, c, timeout=timeout, follow_env=False) for c in (reviews.COMPONENT, jobqueue.COMPONENT)]
    dbs += [Database(url, c, timeout=timeout) for c in (reviews.COMPONENT, jobqueue.COMPONENT)]
    try:
        with dbs[0].use() as src, dbs[2].use() as dst:
            src.execute("BEGIN")  # one snapshot of the source, even while an app writes to it
            try:
                return _copy(src, dst, dbs[2])
            finally:
                src.execute("ROLLBACK")
    finally:
        for db in dbs:
            db.close()


def _copy(src, dst, target: Database) -> Counts:
    _refuse_non_empty(dst, target.where)
    counts = Counts()
    counts.target = target.where
    raw = dst.raw
    with raw.transaction():
        # The target's migration seeded the built-in categories: the source's replace them.
        raw.execute("DELETE FROM categories")
        for table, columns, order in TABLES:
            counts[table] = _copy_table(src, raw, table, columns, order)
        for table, column in IDENTITIES:
            raw.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', '{column}'), "
                f"COALESCE((SELECT MAX({column}) FROM {table}), 0) + 1, false)"
            )
        mine = src.execute(STATE).fetchall()
        theirs = raw.execute(STATE).fetchall()
        if [tuple(r) for r in mine] != [tuple(r) for r in theirs]:
            raise CopyError(
                f"the current review state rebuilt in {target.where} ({len(theirs)} rows) differs from the "
                f"source's ({len(mine)} rows); nothing was copied. The source may be damaged: run "
                "`sqlite3 FILE 'PRAGMA integrity_check'`"
            )
        counts["review_state"] = len(theirs)
        for table, _, _ in TABLES:
            there = raw.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
            if there != counts[table]:
                raise CopyError(f"{table}: {counts[table]} rows read but {there} in the target; nothing was copied")
    return counts


def _refuse_non_empty(dst, where: str) -> None:
    """CopyError unless the target holds nothing but the categories its migration seeded."""
    found = {t: dst.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
             for t in ("review_events", "review_batches", "jobs")}
    custom = dst.execute("SELECT COUNT(*) FROM categories WHERE builtin = 0").fetchone()[0]
    if any(found.values()) or custom:
        held = ", ".join(f"{n} {t}" for t, n in {**found, "added categories": custom}.items() if n)
        raise CopyError(f"{where} is not empty ({held}): copy into a new, empty database "
                        "(createdb NAME), so nothing in it is mixed with or overwritten by the copy")


def _copy_table(src, raw, table: str, columns: tuple, order: str) -> int:
    """Stream `table`'s rows from SQLite into PostgreSQL with COPY; how many."""
    names = ", ".join(columns)
    rows = src.execute(f"SELECT {names} FROM {table} ORDER BY {order}")
    n = 0
    with raw.cursor().copy(f"COPY {table} ({names}) FROM STDIN") as copy:
        while True:
            chunk = rows.fetchmany(BATCH_ROWS)
            if not chunk:
                break
            for row in chunk:
                copy.write_row(row)
            n += len(chunk)
    return n
