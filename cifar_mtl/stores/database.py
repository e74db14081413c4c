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

Two engines, one API. Everything particular to an engine (connecting, session
settings, how a write transaction begins, catalogue queries, which errors are
transient, the few SQL fragments that differ) is in `SQLiteEngine` or
`PostgresEngine`:

- SQLite (the default): `<home>/cifar-mtl.sqlite`, nothing to set up.
- PostgreSQL (psycopg 3), for a team: `CIFAR_MTL_DB=postgresql://user:pass@host/db`.
  Set, it *replaces the home's database*: every store asked for `<home>/cifar-mtl.sqlite`
  (`default_path`, the app, the job runner, the command line) opens the PostgreSQL
  database instead; an explicit other file or URL is opened as given. Write
  transactions are `BEGIN` plus, where a store asks for it, a transaction-level
  advisory lock on a key (the reviews lock per reviewer, so two reviewers never wait
  on each other, while one reviewer's writes are serialised as SQLite serialises all
  of them); migrations hold one advisory lock for the whole schema. Each store's
  migrations exist for both engines (PostgreSQL's review triggers are plpgsql
  functions). Connections are autocommit, so a read is one statement, as in SQLite.

The stores write their SQL once with `?` placeholders; `PostgresEngine`'s connections
translate them to psycopg's `%s`. What differs (`json_each` against
`json_array_elements_text`, `group_concat` against `string_agg`) comes from the
engine (`int_list_match`, `concat_ints`). `stores.copy` copies an SQLite database
into PostgreSQL.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import os
import sqlite3
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from cifar_mtl.errors import UserError

DB_FILE = "cifar-mtl.sqlite"
LEGACY_FILE = "reviews.sqlite"  # the file's name before it held jobs too
DB_ENV = "CIFAR_MTL_DB"  # a postgresql:// URL: the team database, in place of <home>/cifar-mtl.sqlite
POSTGRES_SCHEMES = ("postgresql://", "postgres://")


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
    """`<home>/cifar-mtl.sqlite`: the reviews and the job queue (see `resolve_target`
    for `CIFAR_MTL_DB`, which replaces it)."""
    from cifar_mtl.runs import home

    return home(home_dir) / DB_FILE


def is_postgres_url(target) -> bool:
    return isinstance(target, str) and target.startswith(POSTGRES_SCHEMES)


def team_url() -> str | None:
    """`CIFAR_MTL_DB` when set (a postgresql:// URL), else None; SchemaError for anything else."""
    url = os.environ.get(DB_ENV, "").strip()
    if not url:
        return None
    if not is_postgres_url(url):
        raise SchemaError(
            f"{DB_ENV} must be a postgresql:// URL (e.g. postgresql://user:password@host:5432/cifar), "
            f"got {redact(url)!r}; unset it to keep the reviews and jobs in <home>/{DB_FILE}"
        )
    return url


def resolve_target(target):
    """Where a store asked for `target` really goes: the `CIFAR_MTL_DB` URL when `target`
    is a home's database file (named `cifar-mtl.sqlite`) and the variable is set, else
    `target` itself (a path, or a postgresql:// URL)."""
    if is_postgres_url(target):
        return target
    url = team_url() if Path(target).name == DB_FILE else None
    return url if url is not None else Path(target)


def default_target(home_dir=None):
    """The database the stores use: `CIFAR_MTL_DB`'s URL if set, else `<home>/cifar-mtl.sqlite`."""
    return resolve_target(default_path(home_dir))


def redact(target) -> str:
    """`target` for messages: a URL's password replaced by ***."""
    text = str(target)
    if not is_postgres_url(text):
        return text
    import re

    text = re.sub(r"(://[^:/@?]*:)[^@/?]*@", r"\1***@", text)
    return re.sub(r"(password=)[^&]*", r"\1***", text)


def legacy_path(path) -> Path:
    """Where the file at `path` was kept under its old name (`<folder>/reviews.sqlite`)."""
    return Path(path).with_name(LEGACY_FILE)


def database_exists(path) -> bool:
    """Whether the database at `path` exists, under its name or still under the old one
    (a PostgreSQL database, `CIFAR_MTL_DB` included, is taken to exist: it is the server's)."""
    target = resolve_target(path)
    if is_postgres_url(target):
        return True
    return target.exists() or (target.name == DB_FILE and legacy_path(target).exists())


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
        migrations: version -> function(conn) bringing the schema from version - 1 (SQLite).
        postgres_migrations: the same for PostgreSQL (same versions, same tables and
            columns, PostgreSQL's types and plpgsql triggers).
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
    postgres_migrations: Mapping[int, Callable] = field(default_factory=dict)
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

    def migrations_for(self, engine) -> Mapping[int, Callable]:
        return self.postgres_migrations if engine.name == "postgresql" else self.migrations


def statements_migration(statements, then: Callable | None = None) -> Callable:
    """A migration, function(conn), that executes `statements` in order, then `then(conn)` if given.

    One statement at a time, on either engine: SQLite's executescript() would commit the
    migration's transaction. `then` is for what SQL text alone cannot say (rows
    stamped with `now()`, state rebuilt from existing rows).
    """
    statements = tuple(statements)

    def migrate(conn) -> None:
        for statement in statements:
            conn.execute(statement)
        if then is not None:
            then(conn)

    return migrate


# --- the engine boundary ----------------------------------------------------------------------


class SQLiteEngine:
    """What the layer needs from a database engine, for SQLite (one file, one writer at a time)."""

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
    def begin_write(conn, lock: str | None = None) -> None:
        # The write lock of the whole file, taken up front: `lock` adds nothing to it.
        conn.execute("BEGIN IMMEDIATE")

    @staticmethod
    def in_transaction(conn) -> bool:
        return conn.in_transaction

    @staticmethod
    def usable(conn) -> bool:
        return True  # a file connection does not break under us

    @staticmethod
    def has_table(conn, table: str) -> bool:
        return conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)
        ).fetchone() is not None

    @staticmethod
    def tables(conn) -> list[str]:
        return [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")]

    @staticmethod
    def columns(conn, table: str) -> set[str]:
        return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}

    @staticmethod
    def triggers(conn) -> set[str]:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")}

    @staticmethod
    def int_list_match(column: str) -> str:
        """SQL true when `column` is in the JSON list of integers bound to its one `?`."""
        return f"{column} IN (SELECT value FROM json_each(?))"

    @staticmethod
    def concat_ints(expr: str, order: str) -> str:
        """SQL aggregate: a group's `expr` values as '1,2,3' (every such aggregate of one
        query in the same row order; SQLite keeps the scan's, so `order` is not needed)."""
        return f"group_concat({expr})"

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


class PostgresEngine:
    """What the layer needs from a database engine, for PostgreSQL through psycopg 3.

    Connections are autocommit (a read is one statement; a write transaction is an
    explicit BEGIN ... COMMIT, as in SQLite) and wrapped in `PostgresConnection`, which
    takes the stores' `?` placeholders. `lock_timeout` is the layer's timeout, so a
    writer waiting on another's lock past it gets a transient error, like SQLite's busy
    timeout. psycopg is imported on first use: SQLite users never load it.
    """

    name = "postgresql"
    SCHEMA_LOCK = "cifar-mtl:schema"

    def __init__(self):
        import psycopg

        self.psycopg = psycopg
        self.Error = psycopg.Error
        self.DatabaseError = psycopg.DatabaseError
        self.IntegrityError = psycopg.IntegrityError
        self.ProgrammingError = psycopg.ProgrammingError

    def connect(self, url: str, timeout: float):
        conn = self.psycopg.connect(url, autocommit=True, connect_timeout=max(1, int(timeout)),
                                    application_name="cifar-mtl")
        try:
            conn.execute(f"SET lock_timeout = {int(timeout * 1000)}")
        except BaseException:
            conn.close()
            raise
        return PostgresConnection(conn)

    @staticmethod
    def begin_write(conn, lock: str | None = None) -> None:
        """BEGIN, then (with `lock`) the transaction-level advisory lock on that key, held to
        COMMIT or ROLLBACK: writers with the same key run one at a time."""
        conn.execute("BEGIN")
        if lock is not None:
            try:
                conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(?, 0))", (lock,))
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def in_transaction(self, conn) -> bool:
        return conn.raw.info.transaction_status != self.psycopg.pq.TransactionStatus.IDLE

    @staticmethod
    def usable(conn) -> bool:
        """False once the server closed the session (a restart, a network cut): open a new one."""
        return not (conn.raw.closed or conn.raw.broken)

    @staticmethod
    def has_table(conn, table: str) -> bool:
        return conn.execute(
            "SELECT 1 FROM information_schema.tables WHERE table_schema = current_schema() "
            "AND table_name = ?", (table,)
        ).fetchone() is not None

    @staticmethod
    def tables(conn) -> list[str]:
        return [r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() "
            "AND table_type = 'BASE TABLE' ORDER BY table_name")]

    @staticmethod
    def columns(conn, table: str) -> set[str]:
        return {r[0] for r in conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() "
            "AND table_name = ?", (table,))}

    @staticmethod
    def triggers(conn) -> set[str]:
        return {r[0] for r in conn.execute(
            "SELECT t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
            "WHERE c.relnamespace = current_schema()::regnamespace AND NOT t.tgisinternal")}

    @staticmethod
    def int_list_match(column: str) -> str:
        return f"{column} IN (SELECT CAST(value AS INTEGER) FROM json_array_elements_text(CAST(? AS json)))"

    @staticmethod
    def concat_ints(expr: str, order: str) -> str:
        return f"string_agg(CAST({expr} AS TEXT), ',' ORDER BY {order})"

    def is_transient(self, exc: BaseException) -> bool:
        """Lock waits, deadlocks, serialisation failures: worth a retry."""
        errors = self.psycopg.errors
        return isinstance(exc, (errors.LockNotAvailable, errors.DeadlockDetected, errors.SerializationFailure))

    def detach(self, path, timeout: float) -> None:  # pragma: no cover - no files to rename
        raise NotImplementedError("a PostgreSQL database has no file to rename")


class PostgresConnection:
    """A psycopg connection that runs the stores' SQL: `?` placeholders become `%s`
    (and a literal `%` is doubled) when parameters are passed. The stores' SQL never
    has `?` inside a string literal."""

    __slots__ = ("raw",)

    def __init__(self, raw):
        self.raw = raw

    def execute(self, sql: str, params=None):
        if params is None:
            return self.raw.execute(sql)
        return self.raw.execute(_placeholders(sql), params)

    def executemany(self, sql: str, rows):
        cur = self.raw.cursor()
        cur.executemany(_placeholders(sql), list(rows))
        return cur

    def close(self) -> None:
        self.raw.close()


@functools.lru_cache(maxsize=512)
def _placeholders(sql: str) -> str:
    return sql.replace("%", "%%").replace("?", "%s")


_ENGINES: dict[str, object] = {"sqlite": SQLiteEngine()}


def engine_for(target):
    """The engine for `target`: PostgreSQL for a postgresql:// URL, else SQLite."""
    name = "postgresql" if is_postgres_url(target) else "sqlite"
    if name not in _ENGINES:
        try:
            _ENGINES[name] = PostgresEngine()
        except ImportError:
            raise SchemaError(
                f"{redact(target)} is a PostgreSQL database but psycopg is not installed: "
                "pip install 'psycopg[binary]' (or unset CIFAR_MTL_DB to use SQLite)"
            ) from None
    return _ENGINES[name]


def _engine_errors() -> tuple:
    errors = [sqlite3.Error]
    try:
        import psycopg

        errors.append(psycopg.Error)
    except ImportError:
        pass
    return tuple(errors)


# Every engine's error class under one name, for callers outside the layer (the command
# line) that report "the database cannot be used right now".
EngineError = _engine_errors()

SQLITE = _ENGINES["sqlite"]

_SCHEMA_VERSION_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_version (component TEXT PRIMARY KEY, version INTEGER NOT NULL)"
)


# --- the database -------------------------------------------------------------------------


class Database:
    """`component`'s view of the database at `path`: connections, migrations, transactions.

    `path` is an SQLite file or a postgresql:// URL; a home's `cifar-mtl.sqlite` is
    replaced by `CIFAR_MTL_DB` when that is set (`resolve_target`; `follow_env=False`
    opens the file itself). Opening an SQLite file renames an old `reviews.sqlite`
    beside a `cifar-mtl.sqlite` path; then a connection is opened at once, so a bad
    file or an unreachable server is reported at construction (as `component.schema_error`).
    `path` is the file (a Path) or the URL; `where` the same for messages, without password.
    """

    def __init__(self, path, component: Component, *, timeout: float = 30.0, engine=None,
                 follow_env: bool = True):
        target = resolve_target(path) if follow_env else (path if is_postgres_url(path) else Path(path))
        self.engine = engine if engine is not None else engine_for(target)
        self.path = target
        self.where = redact(target)
        self.component = component
        self.timeout = float(timeout)
        self._local = threading.local()
        self._lock = threading.Lock()
        # Every thread's connection (this process's and, after a fork, the parent's), so
        # dead threads' connections can be closed and close() reaches them all.
        self._slots: list[_Slot] = []
        self._closed = False
        if self.engine.name == "sqlite":
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if self.path.name == DB_FILE:
                self._adopt_legacy_file()
        with self.use():
            pass

    def __repr__(self) -> str:
        return f"Database({self.where!r}, {self.component.name!r})"

    @property
    def is_postgres(self) -> bool:
        return self.engine.name == "postgresql"

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

    def write(self, lock: str | None = None) -> "WriteTransaction":
        """A `with` block holding the write lock, committed at exit (rolled back on error).

        SQLite: the file's one write lock. PostgreSQL: a transaction, plus an advisory
        lock on `lock` (this component's key) when given: writers of one key run one at
        a time, writers of different keys side by side.
        """
        return WriteTransaction(self, lock)

    def _closed_error(self):
        c = self.component
        return c.closed_error(f"the {c.label} store {self.where} is closed; open a new {c.owner}")

    def _slot(self) -> "_Slot":
        """This thread's slot with its busy count raised (opening a connection if needed)."""
        slot = getattr(self._local, "slot", None)
        # A forked child inherits the parent's objects but must not share its connection;
        # a server connection the server has dropped (a restart) is replaced.
        if slot is not None and slot.pid == os.getpid() and not (slot.busy or self.engine.usable(slot.conn)):
            self._drop(slot)
            slot = None
        if slot is None or slot.pid != os.getpid():
            slot = self._open_slot()
        with self._lock:
            if self._closed:
                raise self._closed_error()
            slot.busy += 1
        return slot

    def _drop(self, slot: "_Slot") -> None:
        """Forget this thread's broken connection (closing what is left of it)."""
        with self._lock:
            if slot.closed:
                return
            slot.closed = True
            self._slots = [s for s in self._slots if s is not slot]
        with contextlib.suppress(self.engine.Error):
            slot.conn.close()

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
        c = self.component
        if self.is_postgres:
            return c.schema_error(
                f"the PostgreSQL database {self.where} cannot be used as the {c.label} database ({exc}); "
                f"check {DB_ENV} (host, port, database, user, password) and that the server is running"
            )
        return c.schema_error(c.unusable_message(self.path, exc))

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
                f"{self.where}: its schema_version table has another layout ({exc}); "
                "it expects columns (component, version)"
            ) from exc
        return int(row[0]) if row else 0

    def _refuse_newer(self, version: int) -> None:
        c = self.component
        if version > c.version:
            raise c.schema_error(
                f"{self.where} has {c.label} schema version {version}, newer than this code's "
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
            fix = (f"Use another database in {DB_ENV}" if self.is_postgres else
                   "Move the file aside (a new one is created in its place) or point CIFAR_MTL_HOME at another folder")
            raise c.schema_error(
                f"{self.where} says it holds {c.label} schema version {version} but lacks {shown}: it is "
                f"not a {c.label} database this code wrote, or it was damaged. {fix}"
            )

    def _migrate(self, conn) -> None:
        c = self.component
        version = self._stored_version(conn)
        if version == c.version:
            self._check_schema(conn, version)
            return
        self._refuse_newer(version)
        # One migration at a time across components (PostgreSQL's CREATE TABLE IF NOT
        # EXISTS is not safe against a concurrent one); SQLite's write lock already is.
        self.engine.begin_write(conn, getattr(self.engine, "SCHEMA_LOCK", None))
        try:
            conn.execute(_SCHEMA_VERSION_TABLE)
            # Another process may have migrated while we waited for the write lock.
            version = self._stored_version(conn)
            if version == 0 and c.adopt is not None:
                version = int(c.adopt(conn, self.engine) or 0)
            self._refuse_newer(version)
            # A file that claims a version must hold it before we build on top of it.
            self._check_schema(conn, version)
            migrations = c.migrations_for(self.engine)
            for v in range(version + 1, c.version + 1):
                migrations[v](conn)
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

    def __init__(self, db: Database, lock: str | None = None):
        self.db = db
        self.lock = None if lock is None else f"{db.component.name}:{lock}"
        self.use = db.use()

    def __enter__(self):
        self.conn = self.use.__enter__()
        try:
            self.db.engine.begin_write(self.conn, self.lock)
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
        # The error that got us here is what the caller needs to see, even if the
        # connection itself is gone and cannot roll back (the server then has).
        with contextlib.suppress(self.db.engine.Error):
            self.conn.execute("ROLLBACK")
