"""The project's one database: connections, schema versions, migrations, write
transactions and timestamps, for every store that keeps rows in it.

The file is `<home>/cifar-mtl.sqlite` (`default_path`). It holds the review tables
(`stores.reviews`) and the job queue (`stores.jobqueue`); each store is a
*component* with its own row in `schema_version(component, version)`, its own
migrations and its own schema check, and never touches another's tables. A
`Database` is one component's view of the file:

- Connections: one per thread (and per process after a fork), opened on first use
  and closed only when no call is using it (by its thread, or by whoever notices
  its thread has died); `close()` is for shutdown. So one object may be shared by
  every thread of a process (Streamlit's script threads, fragments, callbacks).
- Every connection: WAL, a busy timeout, synchronous FULL (a committed write
  survives a killed process), then the component's migrations and schema check.
- Migrations run in one write transaction: a component brought from version 0 (or
  a version recorded elsewhere by older code, see `Component.adopt`) to the code's
  version, checked before and after. A file newer than the code, or one that claims
  a version it does not hold, is refused with `SchemaError` before anything is written.
- `write()` is a write transaction (SQLite: BEGIN IMMEDIATE, so the write lock is
  taken up front and two writers never deadlock on an upgrade); `use()` a read.
- `now()` is the one timestamp format every store writes: UTC ISO 8601 with
  microseconds, e.g. `2026-11-25T21:03:31.123456+00:00`.
- The file used to be `<home>/reviews.sqlite`. Opening `cifar-mtl.sqlite` renames
  an old `reviews.sqlite` first (its WAL checkpointed into it, under a lock on the
  folder, so one process does it); when both files exist it refuses to guess.

Everything that is particular to SQLite (connecting, pragmas, how a write
transaction begins, catalogue queries, which errors are transient, detaching a
file before a rename) is in `SQLiteEngine`, the boundary where a PostgreSQL engine
would go. The stores' own SQL keeps to what both engines take where that is cheap
(`INSERT ... ON CONFLICT ... DO UPDATE`); what is SQLite's own there (the review
triggers' time arithmetic, `json_each`, `group_concat`, `?` placeholders) is named
in each store.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import sqlite3
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cifar_mtl.errors import UserError

DB_FILE = "cifar-mtl.sqlite"
LEGACY_FILE = "reviews.sqlite"  # the file's name before it held jobs too


class SchemaError(UserError):
    """The database file is not one this code can use (foreign, damaged, newer, or ambiguous)."""


def now() -> str:
    """The current UTC time in the database's one format (ISO 8601, microseconds, +00:00)."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="microseconds")


def parse_time(text) -> _dt.datetime | None:
    """A time written by `now()` (or an older `...T21:03:31+0000` row) as an aware datetime; None if not one."""
    if not isinstance(text, str):
        return None
    try:
        value = _dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=_dt.timezone.utc)


def short_time(text) -> str | None:
    """A stored time as 'YYYY-mm-dd HH:MM' for people (UTC); None when `text` is not a time."""
    when = parse_time(text)
    return when.strftime("%Y-%m-%d %H:%M") if when is not None else None


def default_path(home_dir=None) -> Path:
    """`<home>/cifar-mtl.sqlite`: the reviews and the job queue."""
    from cifar_mtl.runs import home

    return home(home_dir) / DB_FILE


def legacy_path(path) -> Path:
    """Where the file at `path` was kept under its old name (`<folder>/reviews.sqlite`)."""
    return Path(path).with_name(LEGACY_FILE)


def database_exists(path) -> bool:
    """Whether the database at `path` exists, under its name or still under the old one."""
    path = Path(path)
    return path.exists() or (path.name == DB_FILE and legacy_path(path).exists())


def rows_as_dicts(cursor) -> list[dict]:
    """A cursor's remaining rows as {column: value} dicts."""
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row)) for row in cursor.fetchall()]


# --- components ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Component:
    """One store's part of the database.

    Args:
        name: its row in `schema_version` ("reviews", "jobs").
        version: the schema version this code writes.
        migrations: version -> function(conn) bringing the schema from version - 1.
        tables: version -> {table: columns} that version adds (checked on open).
        triggers: version -> trigger names that version adds (checked on open).
        label: what to call it in messages ("review" -> "review schema version 2").
        owner: the class a user opens it with, for the closed-store message.
        schema_error: raised when the file cannot be used (a `SchemaError` subclass).
        closed_error: raised when the store is used after `close()`.
        unusable: function(path, exc) -> message for a file SQLite cannot use at all.
        adopt: function(conn, engine) -> version recorded elsewhere by older code (or 0), run in
            the migration's transaction when `schema_version` has no row; it may drop
            the old record.
    """

    name: str
    version: int
    migrations: Mapping[int, Callable]
    tables: Mapping[int, Mapping[str, tuple]] = field(default_factory=dict)
    triggers: Mapping[int, tuple] = field(default_factory=dict)
    label: str = "database"
    owner: str = "store"
    schema_error: type = SchemaError
    closed_error: type = SchemaError
    unusable: Callable | None = None
    adopt: Callable | None = None

    def unusable_message(self, path, exc) -> str:
        if self.unusable is not None:
            return self.unusable(path, exc)
        return f"{path} cannot be used as the {self.label} database ({exc}); move the file aside"


# --- the engine boundary ----------------------------------------------------------------------


class SQLiteEngine:
    """What the layer needs from a database engine, for SQLite.

    A PostgreSQL engine would connect from a URL, begin writes with a plain BEGIN,
    read the catalogue from information_schema, and have nothing to detach.
    """

    name = "sqlite"
    Error = sqlite3.Error
    DatabaseError = sqlite3.DatabaseError
    IntegrityError = sqlite3.IntegrityError
    ProgrammingError = sqlite3.ProgrammingError

    def connect(self, path: Path, timeout: float):
        conn = sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=False)
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
        except BaseException:
            conn.close()
            raise
        return conn

    @staticmethod
    def begin_write(conn) -> None:
        conn.execute("BEGIN IMMEDIATE")

    @staticmethod
    def in_transaction(conn) -> bool:
        return conn.in_transaction

    @staticmethod
    def has_table(conn, table: str) -> bool:
        return conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
        ).fetchone() is not None

    @staticmethod
    def columns(conn, table: str) -> set[str]:
        return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}

    @staticmethod
    def triggers(conn) -> set[str]:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")}

    def is_transient(self, exc: BaseException) -> bool:
        """A lock or busy error: worth a retry, not a verdict on the file."""
        text = str(exc).lower()
        return isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text)

    def detach(self, path: Path, timeout: float) -> None:
        """Make the file at `path` whole on its own so it can be renamed: its WAL
        checkpointed into it and removed (leaving WAL mode needs every other connection
        closed, so a file still in use raises a transient 'database is locked')."""
        conn = sqlite3.connect(path, timeout=timeout, isolation_level=None)
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
            mode = conn.execute("PRAGMA journal_mode = DELETE").fetchone()[0]
            if str(mode).lower() != "delete":
                raise sqlite3.OperationalError(f"database is locked (it stays in {mode} mode)")
        finally:
            conn.close()


# The engine's error class under an engine-neutral name, for callers outside the layer
# (the command line) that report "the database cannot be used right now".
EngineError = SQLiteEngine.Error

SQLITE = SQLiteEngine()

_SCHEMA_VERSION_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_version (component TEXT PRIMARY KEY, version INTEGER NOT NULL)"
)


# --- the database -------------------------------------------------------------------------


class Database:
    """`component`'s view of the database file at `path`: connections, migrations, transactions.

    Opening it renames an old `reviews.sqlite` beside a `cifar-mtl.sqlite` path, then
    opens a connection at once, so a bad file is reported at construction (as
    `component.schema_error`).
    """

    def __init__(self, path, component: Component, *, timeout: float = 30.0, engine=SQLITE):
        self.path = Path(path)
        self.component = component
        self.timeout = float(timeout)
        self.engine = engine
        self._local = threading.local()
        self._lock = threading.Lock()
        # Every thread's connection (this process's and, after a fork, the parent's), so
        # dead threads' connections can be closed and close() reaches them all.
        self._slots: list[_Slot] = []
        self._closed = False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.name == DB_FILE:
            self._adopt_legacy_file()
        with self.use():
            pass

    def __repr__(self) -> str:
        return f"Database({str(self.path)!r}, {self.component.name!r})"

    # -- the old file name --

    def _adopt_legacy_file(self) -> None:
        """Rename `<folder>/reviews.sqlite` (with its WAL) to this path, losing nothing."""
        legacy = legacy_path(self.path)
        if not legacy.exists():
            return
        from cifar_mtl.processes import folder_lock

        error = self.component.schema_error
        try:
            with folder_lock(self.path.parent, timeout=self.timeout) as folder_fd:
                if not legacy.exists():  # another process renamed it while we waited
                    return
                if self.path.exists():
                    raise error(
                        f"both {legacy} (the database's old name) and {self.path} exist, and cifar-mtl "
                        f"will not guess which holds your reviews and jobs: keep the one you want as "
                        f"{self.path.name}, move the other (with its -wal and -shm files) out of "
                        f"{self.path.parent}, and open it again"
                    )
                try:
                    self.engine.detach(legacy, self.timeout)
                except self.engine.DatabaseError as exc:
                    if self.engine.is_transient(exc):
                        raise error(
                            f"{legacy} is to be renamed to {self.path.name} but another process has it "
                            f"open ({exc}); stop other cifar-mtl apps and job runners on "
                            f"{self.path.parent} (an older version may still run), then open it again"
                        ) from None
                    raise error(self.component.unusable_message(legacy, exc)) from None
                os.rename(legacy, self.path)
                os.fsync(folder_fd)  # the rename itself survives a crash
        except TimeoutError as exc:
            raise error(f"{exc}; another process is renaming {legacy} to {self.path.name}, "
                        "try again in a moment") from None

    # -- connections --
    #
    # A connection is only ever closed when no call is using it: by its own thread, or
    # by another thread once its owner has died (Streamlit starts a thread per rerun,
    # so dead threads' connections must not pile up).

    @contextlib.contextmanager
    def use(self):
        """This thread's connection, marked busy for the `with` block."""
        slot = self._slot()
        try:
            yield slot.conn
        finally:
            with self._lock:
                slot.busy -= 1
                # close() ran meanwhile and left this busy connection to its user.
                shut = self._closed and slot.busy == 0 and not slot.closed
                if shut:
                    slot.closed = True
            if shut:
                slot.conn.close()

    def write(self) -> "WriteTransaction":
        """A `with` block holding the write lock, committed at exit (rolled back on error)."""
        return WriteTransaction(self)

    def _closed_error(self):
        c = self.component
        return c.closed_error(f"the {c.label} store {self.path} is closed; open a new {c.owner}")

    def _slot(self) -> "_Slot":
        """This thread's slot with its busy count raised (opening a connection if needed)."""
        slot = getattr(self._local, "slot", None)
        # A forked child inherits the parent's objects but must not share its connection.
        if slot is None or slot.pid != os.getpid():
            slot = self._open_slot()
        with self._lock:
            if self._closed:
                raise self._closed_error()
            slot.busy += 1
        return slot

    def _open_slot(self) -> "_Slot":
        with self._lock:
            if self._closed:
                raise self._closed_error()
        slot = _Slot(self._connect())
        self._local.slot = slot
        with self._lock:
            dead = self._prune()
            self._slots.append(slot)
        for old in dead:  # their threads have ended and no call holds them
            old.conn.close()
        return slot

    def _prune(self) -> list["_Slot"]:
        """Drop dead threads' slots (lock held); returns those of this process to close.

        A forked child forgets the parent's connections without closing them: SQLite
        forbids using a connection across fork, closing included.
        """
        pid, keep, dead = os.getpid(), [], []
        for slot in self._slots:
            if slot.pid != pid:
                continue
            if slot.thread.is_alive() or slot.busy:
                keep.append(slot)
            elif not slot.closed:
                slot.closed = True
                dead.append(slot)
        self._slots = keep
        return dead

    def open_connections(self) -> int:
        """How many connections this object holds (one per live thread that used it)."""
        with self._lock:
            return sum(1 for slot in self._slots if not slot.closed)

    def _connect(self):
        # A lock held past the busy timeout is raised as it is: not a verdict on the file.
        try:
            conn = self.engine.connect(self.path, self.timeout)
        except self.engine.DatabaseError as exc:
            if self.engine.is_transient(exc):
                raise
            raise self._unusable(exc) from exc
        try:
            self._migrate(conn)
        except BaseException as exc:
            conn.close()
            if isinstance(exc, self.engine.DatabaseError) and not self.engine.is_transient(exc):
                raise self._unusable(exc) from exc
            raise
        return conn

    def _unusable(self, exc) -> Exception:
        return self.component.schema_error(self.component.unusable_message(self.path, exc))

    def close(self) -> None:
        """Shut down: close every connection this object opened, in any thread.

        For explicit shutdown only (an object shared by threads lives as long as the
        process). A connection that a call in another thread is using right now is
        closed by that thread when its call returns; later calls raise `closed_error`.
        """
        with self._lock:
            self._closed = True
            idle = [s for s in self._slots if s.pid == os.getpid() and not s.busy and not s.closed]
            for slot in idle:
                slot.closed = True
            self._slots = [s for s in self._slots if s.busy and s.pid == os.getpid()]
        for slot in idle:
            try:
                slot.conn.close()
            except self.engine.Error:
                pass

    # -- schema versions and migrations --

    def schema_version(self) -> int:
        """This component's schema version as stored in the file (0 when none)."""
        with self.use() as conn:
            return self._stored_version(conn)

    def _stored_version(self, conn) -> int:
        if not self.engine.has_table(conn, "schema_version"):
            return 0
        try:
            row = conn.execute(
                "SELECT version FROM schema_version WHERE component = ?", (self.component.name,)
            ).fetchone()
        except self.engine.DatabaseError as exc:
            if self.engine.is_transient(exc):
                raise
            raise self.component.schema_error(
                f"{self.path}: its schema_version table has another layout ({exc}); "
                "it expects columns (component, version)"
            ) from exc
        return int(row[0]) if row else 0

    def _refuse_newer(self, version: int) -> None:
        c = self.component
        if version > c.version:
            raise c.schema_error(
                f"{self.path} has {c.label} schema version {version}, newer than this code's "
                f"{c.version}; upgrade cifar-mtl (git pull) before opening it"
            )

    def missing_schema(self, conn, version: int) -> list[str]:
        """What `version` of the component needs but the file lacks ("table t", "column t.c", ...)."""
        c, missing = self.component, []
        triggers = None
        for v in range(1, version + 1):
            for table, columns in c.tables.get(v, {}).items():
                have = self.engine.columns(conn, table)
                if not have:
                    missing.append(f"table {table}")
                    continue
                missing += [f"column {table}.{col}" for col in columns if col not in have]
            if c.triggers.get(v):
                triggers = self.engine.triggers(conn) if triggers is None else triggers
                missing += [f"trigger {t}" for t in c.triggers[v] if t not in triggers]
        return missing

    def _check_schema(self, conn, version: int) -> None:
        """`schema_error` naming the file and what is missing when it lacks `version`'s schema."""
        missing = self.missing_schema(conn, version)
        if missing:
            c = self.component
            shown = ", ".join(missing[:6]) + (f" and {len(missing) - 6} more" if len(missing) > 6 else "")
            raise c.schema_error(
                f"{self.path} says it holds {c.label} schema version {version} but lacks {shown}: it is "
                f"not a {c.label} database this code wrote, or it was damaged. Move the file aside (a new "
                "one is created in its place) or point CIFAR_MTL_HOME at another folder"
            )

    def _migrate(self, conn) -> None:
        c = self.component
        version = self._stored_version(conn)
        if version == c.version:
            self._check_schema(conn, version)
            return
        self._refuse_newer(version)
        self.engine.begin_write(conn)
        try:
            conn.execute(_SCHEMA_VERSION_TABLE)
            # Another process may have migrated while we waited for the write lock.
            version = self._stored_version(conn)
            if version == 0 and c.adopt is not None:
                version = int(c.adopt(conn, self.engine) or 0)
            self._refuse_newer(version)
            # A file that claims a version must hold it before we build on top of it.
            self._check_schema(conn, version)
            for v in range(version + 1, c.version + 1):
                c.migrations[v](conn)
            conn.execute(
                "INSERT INTO schema_version (component, version) VALUES (?, ?) "
                "ON CONFLICT (component) DO UPDATE SET version = excluded.version",
                (c.name, c.version),
            )
            self._check_schema(conn, c.version)
            conn.execute("COMMIT")
        except BaseException:
            if self.engine.in_transaction(conn):
                conn.execute("ROLLBACK")
            raise


class _Slot:
    """One thread's connection and how many calls are using it right now."""

    __slots__ = ("pid", "thread", "conn", "busy", "closed")

    def __init__(self, conn):
        self.pid, self.thread, self.conn = os.getpid(), threading.current_thread(), conn
        self.busy, self.closed = 0, False


class WriteTransaction:
    """`with` block holding the write lock (SQLite: BEGIN IMMEDIATE), committed at exit.

    The thread's connection stays marked busy for the whole transaction.
    """

    def __init__(self, db: Database):
        self.db = db
        self.use = db.use()

    def __enter__(self):
        self.conn = self.use.__enter__()
        try:
            self.db.engine.begin_write(self.conn)
        except BaseException:
            self.use.__exit__(None, None, None)
            raise
        return self.conn

    def __exit__(self, exc_type, exc, tb):
        try:
            self._finish(exc_type)
        finally:
            self.use.__exit__(None, None, None)
        return False

    def _finish(self, exc_type) -> None:
        if exc_type is None:
            try:
                self.conn.execute("COMMIT")
                return
            except self.db.engine.Error:
                # Leave no transaction open on this thread's connection, then report.
                if self.db.engine.in_transaction(self.conn):
                    self.conn.execute("ROLLBACK")
                raise
        self.conn.execute("ROLLBACK")
