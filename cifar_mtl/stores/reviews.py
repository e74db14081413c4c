"""The review database: reviewers' error categories, notes and mislabel verdicts.

Reviews are about *test images*, named by their official test-set index (0..9999).
The run a reviewer was looking at is recorded with every review, but it is not part
of the key: the current state is keyed by (reviewer, index, category) for tags and
by (reviewer, index) for notes and mislabel verdicts. A query with `run_id=None`
covers every run; with a run id it keeps the current entries whose latest event was
recorded while reviewing that run.

Storage: the project's database (`stores.database`: `<home>/cifar-mtl.sqlite`, WAL,
busy timeout, synchronous FULL so a committed review survives a killed process),
as the component `reviews`:

- `review_events` is append-only (triggers refuse UPDATE and DELETE). Every change
  is one row: tag add/remove, note set/clear, mislabel set/clear. Removal is an
  event, so history and undo always work.
- The current state of a key is its latest event. `review_state` (schema version 2)
  holds it for every active key; triggers on `review_events` keep it in the same
  transaction as each appended event (tags, tag_many, notes, verdicts, undo alike),
  so it cannot drift, and `current_*` read it without scanning the events (a
  million tags in a fraction of a second). Migration 2 builds it from the events.
- Opening checks the schema itself (tables, columns, triggers), not only the
  version row, so a foreign file is refused with `SchemaError` up front.
- Bulk actions (schema version 3): `tag_many` and `untag_many` record one row of
  `review_batches` (append-only too) and give each of their events its id in
  `review_events.batch`; single edits leave `batch` NULL.
- `undo(reviewer)` takes the reviewer's latest action that is not an undo and not
  yet undone (one edit, or every event of one batch) and records new events
  restoring each key's previous state, in one transaction (each undo event points at
  what it undid in `undoes`; the undo of a batch is a batch of its own). Repeated
  undos walk further back.
- Training images (schema version 4, issue 16's label loop): mislabel verdicts with
  `split="train"` are events of kind `mislabel` with key `train` and a training index
  (0..49999); test verdicts keep key ''. The state key keeps them apart, so history and
  undo work alike; a trigger refuses any other key, and any index beyond the test set
  outside that split.
- `schema_version` holds one row per component (`reviews` here; the job queue
  keeps its own). A database newer than this code is refused with `SchemaError`.

One store may be shared by every thread of a process (Streamlit's script threads,
fragments, callbacks, browser tabs), and tests use several processes: the
`Database` under it gives each thread (and each process after a fork) its own
connection, closed only when no call is using it; `close()` is for shutdown.

Both engines (`stores.database`): SQLite by default, PostgreSQL with `CIFAR_MTL_DB`.
The schema is written twice (`MIGRATIONS`, `POSTGRES_MIGRATIONS`: the same versions,
tables, columns and trigger names; SQLite's triggers do their time arithmetic with
`strftime('%s')`, PostgreSQL's are plpgsql functions); the queries are written once,
with the engine's `int_list_match` and `concat_ints` where the two differ.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd

from cifar_mtl.errors import UserError
from cifar_mtl.labels import CLASS_NAMES, NUM_CLASSES
from cifar_mtl.stores.database import Component, Database, SchemaError, default_path, now, statements_migration

SCHEMA_VERSION = 4
COMPONENT_NAME = "reviews"
N_TEST = 10_000
N_TRAIN = 50_000
# Mislabel verdicts are about test images (key '') or training images (key 'train', issue
# 16's label loop). The state key (kind, reviewer, idx, key) keeps the two apart, so
# history, undo and bulk reads work unchanged for both.
SPLITS = ("test", "train")
_MISLABEL_KEYS = {"test": "", "train": "train"}
MAX_NOTE_CHARS = 10_000
MAX_REVIEWER_CHARS = 100

CATEGORIES = (
    ("clutter", "cluttered background draws attention away from the object"),
    ("occlusion", "the object is partially hidden or cut off"),
    ("colour", "unusual colour, or colour shared with another class"),
    ("context", "surroundings typical of another class (sky, water, road)"),
    ("pose", "unusual pose, viewpoint or scale of the object"),
    ("distinctive_features", "the features that tell the class apart are not visible"),
    ("mislabel", "the test label itself looks wrong"),
)
VERDICTS = ("confirmed", "rejected", "unsure")
CATEGORY_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,39}")

TAG_COLUMNS = ["index", "category", "reviewer", "run_id", "at"]
MISLABEL_COLUMNS = ["index", "reviewer", "verdict", "suggested_label", "run_id", "at"]
NOTE_COLUMNS = ["index", "reviewer", "note", "run_id", "at"]
EVENT_COLUMNS = [
    "id", "at", "reviewer", "run_id", "index", "kind", "category", "action",
    "note", "verdict", "suggested_label", "undoes", "batch", "split",
]
# What a bulk action (one row of `review_batches`) did: tag or untag many images, or undo one.
BATCH_ACTIONS = ("tag_many", "untag_many", "undo")


class ReviewError(UserError, ValueError):
    """A review operation got bad input (unknown category, index, verdict, ...)."""


# --- schema ------------------------------------------------------------------------


_SCHEMA_1 = (
    """CREATE TABLE categories (
        name TEXT PRIMARY KEY,
        description TEXT NOT NULL DEFAULT '',
        builtin INTEGER NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL,
        created_by TEXT
    )""",
    """CREATE TABLE review_events (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at TEXT NOT NULL,
        reviewer TEXT NOT NULL,
        run_id TEXT NOT NULL,
        idx INTEGER NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('tag', 'note', 'mislabel')),
        key TEXT NOT NULL DEFAULT '',
        action TEXT NOT NULL CHECK (action IN ('add', 'remove', 'set', 'clear')),
        value TEXT,
        suggested_label INTEGER,
        undoes INTEGER REFERENCES review_events(id)
    )""",
    "CREATE INDEX review_events_state ON review_events(kind, reviewer, idx, key, id)",
    "CREATE INDEX review_events_reviewer ON review_events(reviewer, id)",
    "CREATE INDEX review_events_run ON review_events(run_id, id)",
    "CREATE INDEX review_events_undoes ON review_events(undoes)",
    """CREATE TRIGGER review_events_no_update BEFORE UPDATE ON review_events
        BEGIN SELECT RAISE(ABORT, 'review events are append-only'); END""",
    """CREATE TRIGGER review_events_no_delete BEFORE DELETE ON review_events
        BEGIN SELECT RAISE(ABORT, 'review events are append-only'); END""",
)


def _seed_categories(conn) -> None:
    """The built-in categories (the same SQL on both engines)."""
    at = now()
    conn.executemany(
        "INSERT INTO categories (name, description, builtin, created_at) VALUES (?, ?, 1, ?)",
        [(name, desc, at) for name, desc in CATEGORIES],
    )


_migration_1 = statements_migration(_SCHEMA_1, _seed_categories)


# `at` as integer microseconds since the epoch, exact for the one format `now()` writes
# (YYYY-MM-DDTHH:MM:SS.ffffff+00:00); strftime('%s') works on every SQLite version.
_AT_US = (
    "(CAST(strftime('%s', substr({at}, 1, 19)) AS INTEGER) * 1000000 "
    "+ CAST(substr({at}, 21, 6) AS INTEGER))"
)
_STATE_COLUMNS = "kind, reviewer, idx, key, run_id, event_id, at_us, value, suggested_label"

# Version 2: `review_state` holds the current entry of every active key (the latest
# event per (kind, reviewer, idx, key) when it is an add or set), kept by triggers in
# the very transaction that appends the event, so it cannot drift from the events and
# reads never have to find the latest of a million events.
_SCHEMA_2 = (
    """CREATE TABLE review_state (
        kind TEXT NOT NULL,
        reviewer TEXT NOT NULL,
        idx INTEGER NOT NULL,
        key TEXT NOT NULL,
        run_id TEXT NOT NULL,
        event_id INTEGER NOT NULL REFERENCES review_events(id),
        at_us INTEGER NOT NULL,
        value TEXT,
        suggested_label INTEGER,
        UNIQUE (kind, reviewer, idx, key)
    )""",
    # Covers the bulk tag read: grouped by (key, reviewer, run_id) in index order, no sort.
    "CREATE INDEX review_state_groups ON review_state(kind, key, reviewer, run_id, idx, at_us)",
    f"""CREATE TRIGGER review_state_set AFTER INSERT ON review_events
        WHEN NEW.action IN ('add', 'set')
        BEGIN
            INSERT INTO review_state ({_STATE_COLUMNS})
            VALUES (NEW.kind, NEW.reviewer, NEW.idx, NEW.key, NEW.run_id, NEW.id,
                    {_AT_US.format(at="NEW.at")}, NEW.value, NEW.suggested_label)
            ON CONFLICT (kind, reviewer, idx, key) DO UPDATE SET
                run_id = excluded.run_id, event_id = excluded.event_id, at_us = excluded.at_us,
                value = excluded.value, suggested_label = excluded.suggested_label;
        END""",
    """CREATE TRIGGER review_state_clear AFTER INSERT ON review_events
        WHEN NEW.action IN ('remove', 'clear')
        BEGIN
            DELETE FROM review_state WHERE kind = NEW.kind AND reviewer = NEW.reviewer
                AND idx = NEW.idx AND key = NEW.key;
        END""",
)


def _build_state(conn, at_us: str = _AT_US) -> None:
    """Fill `review_state` from the events: the latest event of each key, if active.
    `at_us`: the engine's expression for an `at` as integer microseconds."""
    conn.execute(
        f"INSERT INTO review_state ({_STATE_COLUMNS}) "
        f"SELECT e.kind, e.reviewer, e.idx, e.key, e.run_id, e.id, {at_us.format(at='e.at')}, "
        "e.value, e.suggested_label FROM review_events e JOIN (SELECT MAX(id) AS id "
        "FROM review_events GROUP BY kind, reviewer, idx, key) m ON e.id = m.id "
        "WHERE e.action IN ('add', 'set')"
    )


_migration_2 = statements_migration(_SCHEMA_2, _build_state)


# Version 3: bulk actions. A bulk write (`tag_many`, `untag_many`, the undo of a bulk
# action) is one row of `review_batches`, and each of its events points at it in
# `review_events.batch` (NULL for single edits), so `undo` reverts the action whole.
_SCHEMA_3 = (
    """CREATE TABLE review_batches (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at TEXT NOT NULL,
        reviewer TEXT NOT NULL,
        run_id TEXT NOT NULL,
        action TEXT NOT NULL CHECK (action IN ('tag_many', 'untag_many', 'undo')),
        key TEXT NOT NULL DEFAULT '',
        size INTEGER NOT NULL
    )""",
    "ALTER TABLE review_events ADD COLUMN batch INTEGER REFERENCES review_batches(id)",
    "CREATE INDEX review_events_batch ON review_events(batch)",
    """CREATE TRIGGER review_batches_no_update BEFORE UPDATE ON review_batches
        BEGIN SELECT RAISE(ABORT, 'review batches are append-only'); END""",
    """CREATE TRIGGER review_batches_no_delete BEFORE DELETE ON review_batches
        BEGIN SELECT RAISE(ABORT, 'review batches are append-only'); END""",
)


# Every event recorded so far was a single edit (or a bulk tag from before version 3,
# which stays undoable one image at a time): batch stays NULL for them all.
_migration_3 = statements_migration(_SCHEMA_3)


# Version 4: verdicts on training images (mislabel events with key 'train', indices
# 0..49999). The trigger makes the database itself refuse any other mislabel key and any
# index beyond the test set outside that split; the version makes older code, which would
# read training verdicts as test verdicts, refuse the database instead.
_SPLIT_RULE = (
    f"(NEW.kind = 'mislabel' AND NEW.key NOT IN ('', 'train')) OR NEW.idx < 0 OR NEW.idx >= {N_TRAIN} "
    f"OR (NEW.idx >= {N_TEST} AND NOT (NEW.kind = 'mislabel' AND NEW.key = 'train'))"
)
_SCHEMA_4 = (
    f"""CREATE TRIGGER review_events_split BEFORE INSERT ON review_events
        WHEN {_SPLIT_RULE}
        BEGIN SELECT RAISE(ABORT, 'review events: a verdict key is test or train, an index in its split'); END""",
)


_migration_4 = statements_migration(_SCHEMA_4)


# version -> function bringing the schema from version - 1 to version.
MIGRATIONS = {1: _migration_1, 2: _migration_2, 3: _migration_3, 4: _migration_4}

# --- the same schema for PostgreSQL -------------------------------------------------------
#
# Same versions, tables, columns and trigger names; PostgreSQL's types (BIGINT identity
# ids, BY DEFAULT so `stores.copy` can keep a copied row's id) and plpgsql trigger
# functions. `categories.rowid` makes SQLite's implicit insertion order explicit, so
# both engines list categories with the same `ORDER BY builtin DESC, rowid`.

_PG_AT_US = "CAST(EXTRACT(EPOCH FROM CAST({at} AS timestamptz)) * 1000000 AS BIGINT)"


def _pg_append_only(table: str, what: str) -> tuple:
    """A trigger function and the UPDATE and DELETE triggers that make `table` append-only."""
    return (
        f"""CREATE FUNCTION {table}_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN RAISE EXCEPTION '{what} are append-only'; END $$""",
        f"""CREATE TRIGGER {table}_no_update BEFORE UPDATE ON {table}
            FOR EACH ROW EXECUTE FUNCTION {table}_append_only()""",
        f"""CREATE TRIGGER {table}_no_delete BEFORE DELETE ON {table}
            FOR EACH ROW EXECUTE FUNCTION {table}_append_only()""",
        f"""CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}
            FOR EACH STATEMENT EXECUTE FUNCTION {table}_append_only()""",
    )


_PG_SCHEMA_1 = (
    """CREATE TABLE categories (
        name TEXT PRIMARY KEY,
        description TEXT NOT NULL DEFAULT '',
        builtin INTEGER NOT NULL DEFAULT 0,
        created_at TEXT NOT NULL,
        created_by TEXT,
        rowid BIGINT GENERATED BY DEFAULT AS IDENTITY UNIQUE
    )""",
    """CREATE TABLE review_events (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        at TEXT NOT NULL,
        reviewer TEXT NOT NULL,
        run_id TEXT NOT NULL,
        idx INTEGER NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('tag', 'note', 'mislabel')),
        key TEXT NOT NULL DEFAULT '',
        action TEXT NOT NULL CHECK (action IN ('add', 'remove', 'set', 'clear')),
        value TEXT,
        suggested_label INTEGER,
        undoes BIGINT REFERENCES review_events(id)
    )""",
    *[x for x in _SCHEMA_1 if x.startswith("CREATE INDEX")],
    *_pg_append_only("review_events", "review events"),
)

_PG_SCHEMA_2 = (
    """CREATE TABLE review_state (
        kind TEXT NOT NULL,
        reviewer TEXT NOT NULL,
        idx INTEGER NOT NULL,
        key TEXT NOT NULL,
        run_id TEXT NOT NULL,
        event_id BIGINT NOT NULL REFERENCES review_events(id),
        at_us BIGINT NOT NULL,
        value TEXT,
        suggested_label INTEGER,
        UNIQUE (kind, reviewer, idx, key)
    )""",
    *[x for x in _SCHEMA_2 if x.startswith("CREATE INDEX")],
    f"""CREATE FUNCTION review_state_set() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        INSERT INTO review_state ({_STATE_COLUMNS})
        VALUES (NEW.kind, NEW.reviewer, NEW.idx, NEW.key, NEW.run_id, NEW.id,
                {_PG_AT_US.format(at="NEW.at")}, NEW.value, NEW.suggested_label)
        ON CONFLICT (kind, reviewer, idx, key) DO UPDATE SET
            run_id = excluded.run_id, event_id = excluded.event_id, at_us = excluded.at_us,
            value = excluded.value, suggested_label = excluded.suggested_label;
        RETURN NULL;
    END $$""",
    """CREATE FUNCTION review_state_clear() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        DELETE FROM review_state WHERE kind = NEW.kind AND reviewer = NEW.reviewer
            AND idx = NEW.idx AND key = NEW.key;
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER review_state_set AFTER INSERT ON review_events FOR EACH ROW
        WHEN (NEW.action IN ('add', 'set')) EXECUTE FUNCTION review_state_set()""",
    """CREATE TRIGGER review_state_clear AFTER INSERT ON review_events FOR EACH ROW
        WHEN (NEW.action IN ('remove', 'clear')) EXECUTE FUNCTION review_state_clear()""",
)

_PG_SCHEMA_3 = (
    """CREATE TABLE review_batches (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        at TEXT NOT NULL,
        reviewer TEXT NOT NULL,
        run_id TEXT NOT NULL,
        action TEXT NOT NULL CHECK (action IN ('tag_many', 'untag_many', 'undo')),
        key TEXT NOT NULL DEFAULT '',
        size INTEGER NOT NULL
    )""",
    "ALTER TABLE review_events ADD COLUMN batch BIGINT REFERENCES review_batches(id)",
    "CREATE INDEX review_events_batch ON review_events(batch)",
    *_pg_append_only("review_batches", "review batches"),
)

_PG_SCHEMA_4 = (
    f"""CREATE FUNCTION review_events_split() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF {_SPLIT_RULE} THEN
            RAISE EXCEPTION 'review events: a verdict key is test or train, an index in its split';
        END IF;
        RETURN NEW;
    END $$""",
    """CREATE TRIGGER review_events_split BEFORE INSERT ON review_events FOR EACH ROW
        EXECUTE FUNCTION review_events_split()""",
)


POSTGRES_MIGRATIONS = {
    1: statements_migration(_PG_SCHEMA_1, _seed_categories),
    2: statements_migration(_PG_SCHEMA_2, lambda conn: _build_state(conn, _PG_AT_US)),
    3: statements_migration(_PG_SCHEMA_3),
    4: statements_migration(_PG_SCHEMA_4),
}

# What each version must hold: table -> columns, and the triggers that keep the rules.
REQUIRED_TABLES = {
    1: {
        "categories": ("name", "description", "builtin", "created_at", "created_by"),
        "review_events": (
            "id", "at", "reviewer", "run_id", "idx", "kind", "key", "action", "value",
            "suggested_label", "undoes",
        ),
    },
    2: {"review_state": ("kind", "reviewer", "idx", "key", "run_id", "event_id", "at_us", "value",
                         "suggested_label")},
    3: {"review_batches": ("id", "at", "reviewer", "run_id", "action", "key", "size"),
        "review_events": ("batch",)},
}
REQUIRED_TRIGGERS = {
    1: ("review_events_no_update", "review_events_no_delete"),
    2: ("review_state_set", "review_state_clear"),
    3: ("review_batches_no_update", "review_batches_no_delete"),
    4: ("review_events_split",),
}


def _unusable(path, exc) -> str:
    return (f"{path} cannot be used as the review database ({exc}); "
            "move the file aside or point CIFAR_MTL_HOME elsewhere")


COMPONENT = Component(
    name=COMPONENT_NAME, version=SCHEMA_VERSION, migrations=MIGRATIONS,
    postgres_migrations=POSTGRES_MIGRATIONS, tables=REQUIRED_TABLES,
    triggers=REQUIRED_TRIGGERS, label="review", owner="ReviewStore", schema_error=SchemaError,
    closed_error=ReviewError, unusable=_unusable,
)


# --- validation ----------------------------------------------------------------------


def _whole_number(value, limit: int, what: str, where: str) -> int:
    """`value` as an int in 0..limit-1, else ReviewError naming `what` and `where`."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ReviewError(f"{what} must be an integer in 0..{limit - 1}{where}, got {value!r}")
    if not 0 <= int(value) < limit:
        raise ReviewError(f"{what} {int(value)} is outside 0..{limit - 1}{where}")
    return int(value)


def _check_index(index, split: str = "test") -> int:
    if split == "train":
        return _whole_number(index, N_TRAIN, "image index", " (the training set)")
    return _whole_number(index, N_TEST, "image index", " (the test set)")


def _mislabel_key(split) -> str:
    if split not in SPLITS:
        raise ReviewError(f"unknown split {split!r}; expected one of {SPLITS}")
    return _MISLABEL_KEYS[split]


def _check_reviewer(reviewer) -> str:
    if not isinstance(reviewer, str) or not reviewer.strip():
        raise ReviewError("reviewer name is empty: pick or type a reviewer name first")
    reviewer = reviewer.strip()
    if len(reviewer) > MAX_REVIEWER_CHARS:
        raise ReviewError(f"reviewer name is longer than {MAX_REVIEWER_CHARS} characters")
    return reviewer


def _check_run(run_id) -> str:
    from cifar_mtl.runs import validate_run_id

    try:
        return validate_run_id(run_id)
    except ValueError as exc:
        raise ReviewError(str(exc)) from exc


def _check_label(label) -> int:
    return _whole_number(label, NUM_CLASSES, "suggested label", " (a class index)")


def normalise_category(name) -> str:
    """Category key: lower case, spaces to underscores ("Bad light" -> "bad_light")."""
    if not isinstance(name, str) or not name.strip():
        raise ReviewError("category name is empty")
    key = re.sub(r"[\s-]+", "_", name.strip().lower())
    if not CATEGORY_PATTERN.fullmatch(key):
        raise ReviewError(
            f"category name {name!r} is not usable: use 1-40 letters, digits or "
            "underscores, starting with a letter"
        )
    return key


# --- the store -----------------------------------------------------------------------


class ReviewStore:
    """The review database at `path`: an SQLite file or a postgresql:// URL (default
    `<home>/cifar-mtl.sqlite`, or `CIFAR_MTL_DB` when set; see `stores.database`).

    Opening it creates or migrates the schema (and renames an old `reviews.sqlite`
    beside the default file). Raises `SchemaError` when the file is not an SQLite
    database, the server cannot be reached, or the schema is newer than this code's.
    """

    def __init__(self, path=None, *, timeout: float = 30.0):
        self._db = Database(path if path is not None else default_path(), COMPONENT, timeout=timeout)
        self.path = self._db.path  # the file, or the postgresql:// URL
        self.where = self._db.where  # the same for messages (no password)
        self.timeout = self._db.timeout

    def __repr__(self) -> str:
        return f"ReviewStore({self.where!r})"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- connections (see stores.database) --

    def _use(self):
        """This thread's connection, marked busy for the `with` block."""
        return self._db.use()

    def _write(self, key: str):
        """A write transaction, committed at exit, for one lock `key` ("reviewer:NAME", "categories").

        SQLite takes the file's write lock up front; PostgreSQL locks only `key`, so one
        reviewer's read-then-write steps never interleave while reviewers never wait on
        each other."""
        return self._db.write(lock=key)

    def open_connections(self) -> int:
        """How many connections this store holds (one per live thread that used it)."""
        return self._db.open_connections()

    def schema_version(self) -> int:
        """The review schema version stored in the file."""
        return self._db.schema_version()

    def close(self) -> None:
        """Shut the store down: close every connection it opened, in any thread.

        For explicit shutdown only (a store shared by threads lives as long as the
        process). A connection that a call in another thread is using right now is
        closed by that thread when its call returns; later calls raise ReviewError.
        """
        self._db.close()

    # -- categories --

    def categories(self) -> pd.DataFrame:
        """DataFrame[name, description, builtin]: seeded categories first, then added ones."""
        with self._use() as conn:
            rows = conn.execute(
                "SELECT name, description, builtin FROM categories ORDER BY builtin DESC, rowid"
            ).fetchall()
        df = pd.DataFrame(rows, columns=["name", "description", "builtin"])
        df["builtin"] = df["builtin"].astype(bool)
        return df

    def category_names(self) -> list[str]:
        return self.categories()["name"].tolist()

    def add_category(self, name: str, description: str = "", reviewer: str | None = None) -> str:
        """Add a category; returns its key (see `normalise_category`)."""
        key = normalise_category(name)
        if not isinstance(description, str):
            raise ReviewError("category description must be text")
        with self._write("categories") as conn:
            if conn.execute("SELECT 1 FROM categories WHERE name = ?", (key,)).fetchone():
                raise ReviewError(f"category {key!r} already exists")
            conn.execute(
                "INSERT INTO categories (name, description, builtin, created_at, created_by) "
                "VALUES (?, ?, 0, ?, ?)",
                (key, description.strip(), now(), reviewer),
            )
        return key

    def _check_category(self, conn, category) -> str:
        key = normalise_category(category)
        if not conn.execute("SELECT 1 FROM categories WHERE name = ?", (key,)).fetchone():
            known = [r[0] for r in conn.execute("SELECT name FROM categories ORDER BY rowid")]
            raise ReviewError(f"unknown category {category!r}; known: {known}. Add it first.")
        return key

    # -- tags --

    def tag(self, run_id: str, index: int, category: str, reviewer: str) -> bool:
        """Tag test image `index` with `category`. Returns False if it already was."""
        return self._set_tag(run_id, index, category, reviewer, on=True)

    def untag(self, run_id: str, index: int, category: str, reviewer: str) -> bool:
        """Remove the tag (recorded as an event). Returns False if there was none."""
        return self._set_tag(run_id, index, category, reviewer, on=False)

    def toggle(self, run_id: str, index: int, category: str, reviewer: str) -> bool:
        """Flip the tag; returns the new state (True = tagged)."""
        run_id, index, reviewer = _check_run(run_id), _check_index(index), _check_reviewer(reviewer)
        with self._write(f"reviewer:{reviewer}") as conn:
            key = self._check_category(conn, category)
            on = _state(conn, "tag", reviewer, index, key) is None
            _insert(conn, reviewer, run_id, index, "tag", key, "add" if on else "remove")
        return on

    def _set_tag(self, run_id, index, category, reviewer, on: bool) -> bool:
        run_id, index, reviewer = _check_run(run_id), _check_index(index), _check_reviewer(reviewer)
        with self._write(f"reviewer:{reviewer}") as conn:
            key = self._check_category(conn, category)
            if (_state(conn, "tag", reviewer, index, key) is not None) == on:
                return False
            _insert(conn, reviewer, run_id, index, "tag", key, "add" if on else "remove")
        return True

    def tag_many(self, run_id: str, indices, category: str, reviewer: str) -> int:
        """Tag many images as one action (one transaction, one `undo`); returns how many were newly tagged.

        Images already tagged keep their tag and get no event, so undoing the action
        leaves them tagged. `indices`: ints or an int array in 0..9999 (repeats ignored).
        """
        return self._set_many(run_id, indices, category, reviewer, on=True)

    def untag_many(self, run_id: str, indices, category: str, reviewer: str) -> int:
        """Remove a tag from many images as one action (one `undo` puts them all back);
        returns how many were tagged before."""
        return self._set_many(run_id, indices, category, reviewer, on=False)

    def _set_many(self, run_id, indices, category, reviewer, on: bool) -> int:
        run_id, reviewer = _check_run(run_id), _check_reviewer(reviewer)
        indices = [_check_index(i) for i in _as_index_list(indices)]
        with self._write(f"reviewer:{reviewer}") as conn:
            key = self._check_category(conn, category)
            active = set(self._active_indices(conn, reviewer, "tag", key))
            changed = [i for i in dict.fromkeys(indices) if (i in active) != on]
            if not changed:
                return 0
            action = "add" if on else "remove"
            batch = _new_batch(conn, reviewer, run_id, "tag_many" if on else "untag_many", key, len(changed))
            at = now()
            conn.executemany(
                "INSERT INTO review_events (at, reviewer, run_id, idx, kind, key, action, batch) "
                "VALUES (?, ?, ?, ?, 'tag', ?, ?, ?)",
                [(at, reviewer, run_id, i, key, action, batch) for i in changed],
            )
        return len(changed)

    @staticmethod
    def _active_indices(conn, reviewer, kind, key) -> list[int]:
        rows = conn.execute(
            "SELECT idx FROM review_state WHERE kind = ? AND reviewer = ? AND key = ?",
            (kind, reviewer, key),
        )
        return [r[0] for r in rows]

    # -- notes and mislabels --

    def set_note(self, run_id: str, index: int, reviewer: str, note: str | None) -> bool:
        """Set the reviewer's note on an image; an empty note clears it. Returns whether it changed."""
        run_id, index, reviewer = _check_run(run_id), _check_index(index), _check_reviewer(reviewer)
        if note is not None and not isinstance(note, str):
            raise ReviewError(f"note must be text, got {type(note).__name__}")
        note = (note or "").strip()
        if len(note) > MAX_NOTE_CHARS:
            raise ReviewError(f"note is {len(note)} characters; keep it under {MAX_NOTE_CHARS}")
        with self._write(f"reviewer:{reviewer}") as conn:
            last = _state(conn, "note", reviewer, index, "")
            current = last["value"] if last is not None else ""
            if current == note:
                return False
            _insert(conn, reviewer, run_id, index, "note", "", "set" if note else "clear", note or None)
        return True

    def set_mislabel(
        self, run_id: str, index: int, reviewer: str, verdict: str, suggested_label: int | None = None,
        *, given_label: int | None = None, split: str = "test",
    ) -> bool:
        """Record a mislabel verdict; `suggested_label` (0..9) is required when confirmed.

        `split` "train" records a verdict on training image `index` (0..49999), kept apart
        from the test verdicts (its own history and undo, `current_mislabels(split="train")`).

        A rejected verdict says the test label is right, so it takes no suggested label.
        `given_label` is the test set's label of the image: when passed, confirming it
        as mislabelled with that same label is refused (it would say nothing).
        Returns whether the state changed.
        """
        key = _mislabel_key(split)
        run_id, index, reviewer = _check_run(run_id), _check_index(index, split), _check_reviewer(reviewer)
        if verdict not in VERDICTS:
            raise ReviewError(f"unknown verdict {verdict!r}; expected one of {VERDICTS}")
        if suggested_label is not None:
            suggested_label = _check_label(suggested_label)
        if verdict == "confirmed" and suggested_label is None:
            raise ReviewError("a confirmed mislabel needs the label you believe is right")
        if verdict == "rejected" and suggested_label is not None:
            raise ReviewError("a rejected verdict keeps the test label; leave suggested_label empty")
        if given_label is not None:
            given_label = _whole_number(given_label, NUM_CLASSES, "given label", " (a class index)")
            if verdict == "confirmed" and suggested_label == given_label:
                raise ReviewError(
                    f"image {index} already has label {given_label} ({CLASS_NAMES[given_label]}); "
                    "pick the label you believe is right, or reject the suspicion if the label is right"
                )
        with self._write(f"reviewer:{reviewer}") as conn:
            last = _state(conn, "mislabel", reviewer, index, key)
            if last is not None and (last["value"], last["suggested_label"]) == (verdict, suggested_label):
                return False
            _insert(conn, reviewer, run_id, index, "mislabel", key, "set", verdict, suggested_label)
        return True

    def clear_mislabel(self, run_id: str, index: int, reviewer: str, *, split: str = "test") -> bool:
        """Withdraw the reviewer's verdict (recorded as an event). Returns whether there was one."""
        key = _mislabel_key(split)
        run_id, index, reviewer = _check_run(run_id), _check_index(index, split), _check_reviewer(reviewer)
        with self._write(f"reviewer:{reviewer}") as conn:
            if _state(conn, "mislabel", reviewer, index, key) is None:
                return False
            _insert(conn, reviewer, run_id, index, "mislabel", key, "clear")
        return True

    # -- undo --

    def undo(self, reviewer: str, run_id: str | None = None) -> dict | None:
        """Undo the reviewer's latest action (optionally only among `run_id`'s).

        An action is one edit, or a whole bulk action (`tag_many`, `untag_many`): all of
        its events are reverted in one transaction, each key restored to its state
        before the event (new events recording that; the undo of a bulk action is itself
        one batch). Returns the action's first event as a dict (keys of `EVENT_COLUMNS`)
        plus `undone_by` (the id of the event that reverted it) and `count` (events
        reverted: 1 for a single edit), or None when there is nothing left to undo.
        """
        reviewer = _check_reviewer(reviewer)
        run_clause, params = ("AND run_id = ?", (reviewer, _check_run(run_id))) if run_id else ("", (reviewer,))
        with self._write(f"reviewer:{reviewer}") as conn:
            row = conn.execute(
                f"{_SELECT_EVENTS} e WHERE reviewer = ? {run_clause} AND undoes IS NULL "
                "AND NOT EXISTS (SELECT 1 FROM review_events u WHERE u.undoes = e.id) "
                "ORDER BY id DESC LIMIT 1",
                params,
            ).fetchone()
            if row is None:
                return None
            latest = _row_dict(row)
            if latest["batch"] is None:
                events = [latest]
            else:  # the whole action; none of it can have been undone on its own
                events = [_row_dict(r) for r in conn.execute(
                    f"{_SELECT_EVENTS} e WHERE batch = ? AND undoes IS NULL "
                    "AND NOT EXISTS (SELECT 1 FROM review_events u WHERE u.undoes = e.id) ORDER BY id",
                    (latest["batch"],),
                )]
            reverts = [_revert(event, prev) for event, prev in zip(events, _previous_events(conn, events))]
            batch = None
            if latest["batch"] is not None:
                batch = _new_batch(conn, reviewer, latest["run_id"], "undo", latest["key"], len(events))
            at = now()
            conn.executemany(
                "INSERT INTO review_events (at, reviewer, run_id, idx, kind, key, action, value, "
                "suggested_label, undoes, batch) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(at, reviewer, *revert, batch) for revert in reverts],
            )
            first = events[0]
            undone_by = conn.execute("SELECT id FROM review_events WHERE undoes = ?", (first["id"],)).fetchone()[0]
        return {**_public_event(first), "undone_by": int(undone_by), "count": len(events)}

    # -- queries --

    def _filters(self, kind, run_id, reviewer, indices, key=None) -> tuple[str, list]:
        """WHERE clause and parameters over `review_state` for the `current_*` queries."""
        where, params = ["kind = ?"], [kind]
        if key is not None:
            where.append("key = ?")
            params.append(key)
        if reviewer is not None:
            where.append("reviewer = ?")
            params.append(_check_reviewer(reviewer))
        if run_id is not None:
            where.append("run_id = ?")
            params.append(_check_run(run_id))
        if indices is not None:
            where.append(self._db.engine.int_list_match("idx"))
            params.append(json.dumps([int(i) for i in _as_index_list(indices)]))
        return " AND ".join(where), params

    def _current(self, kind, run_id, reviewer, indices=None, key=None) -> list[tuple]:
        """Current entries as rows (idx, key, reviewer, value, suggested_label, run_id, at_us)."""
        where, params = self._filters(kind, run_id, reviewer, indices, key)
        sql = (
            "SELECT idx, key, reviewer, value, suggested_label, run_id, at_us FROM review_state "
            f"WHERE {where} ORDER BY idx, key, reviewer"
        )
        with self._use() as conn:
            return conn.execute(sql, params).fetchall()

    def current_tags(self, run_id=None, reviewer=None, indices=None) -> pd.DataFrame:
        """Current tags: DataFrame[index, category, reviewer, run_id, at], by index, category, reviewer.

        Read a column at a time: the database concatenates each (category, reviewer,
        run) group's indices and times, so a million tags cost no Python object per row.
        """
        where, params = self._filters("tag", run_id, reviewer, indices)
        concat = self._db.engine.concat_ints
        sql = (
            f"SELECT key, reviewer, run_id, COUNT(*), {concat('idx', 'idx')}, {concat('at_us', 'idx')} "
            f"FROM review_state WHERE {where} GROUP BY key, reviewer, run_id"
        )
        with self._use() as conn:
            groups = conn.execute(sql, params).fetchall()
        return _tags_frame(sorted(groups, key=lambda g: g[:3]))

    def current_mislabels(self, run_id=None, reviewer=None, indices=None, split: str = "test") -> pd.DataFrame:
        """Current verdicts: DataFrame[index, reviewer, verdict, suggested_label, run_id, at].

        `suggested_label` is a nullable Int64 (missing unless confirmed or given with unsure).
        `split` "train": the verdicts on training images (indices 0..49999) instead.
        """
        rows = self._current("mislabel", run_id, reviewer, indices, _mislabel_key(split))
        df = pd.DataFrame(
            [(r[0], r[2], r[3], r[4], r[5], r[6]) for r in rows], columns=MISLABEL_COLUMNS
        )
        df["suggested_label"] = df["suggested_label"].astype("Int64")
        return _typed(df)

    def current_notes(self, run_id=None, reviewer=None, indices=None) -> pd.DataFrame:
        """Current notes: DataFrame[index, reviewer, note, run_id, at]."""
        rows = self._current("note", run_id, reviewer, indices)
        df = pd.DataFrame([(r[0], r[2], r[3], r[5], r[6]) for r in rows], columns=NOTE_COLUMNS)
        return _typed(df)

    def history(self, run_id=None, index=None, reviewer=None) -> pd.DataFrame:
        """Every event, oldest first: DataFrame with `EVENT_COLUMNS`.

        `kind` is tag, note or mislabel; `action` add/remove (tags) or set/clear;
        `undoes` is the id of the event an undo reversed (else missing).
        """
        where, params = [], []
        if run_id is not None:
            where.append("run_id = ?")
            params.append(_check_run(run_id))
        if index is not None:
            where.append("idx = ?")
            params.append(_check_index(index, "train"))  # a test or a training image
        if reviewer is not None:
            where.append("reviewer = ?")
            params.append(_check_reviewer(reviewer))
        sql = _SELECT_EVENTS
        if where:
            sql += " WHERE " + " AND ".join(where)
        with self._use() as conn:
            rows = conn.execute(sql + " ORDER BY id", params).fetchall()
        return _events_frame(rows)

    def last_run(self, reviewer: str) -> str | None:
        """The run `reviewer` last recorded a review on (their last choice), None if none."""
        reviewer = _check_reviewer(reviewer)
        with self._use() as conn:
            row = conn.execute(
                "SELECT run_id FROM review_events WHERE reviewer = ? ORDER BY id DESC LIMIT 1", (reviewer,)
            ).fetchone()
        return row[0] if row else None

    def reviewed_pairs(self, run_id=None) -> pd.DataFrame:
        """DataFrame[index, reviewer]: every (image, reviewer) with at least one event."""
        sql, params = "SELECT DISTINCT idx, reviewer FROM review_events", []
        if run_id is not None:
            sql, params = sql + " WHERE run_id = ?", [_check_run(run_id)]
        with self._use() as conn:
            rows = conn.execute(sql, params).fetchall()
        return pd.DataFrame(rows, columns=["index", "reviewer"]).astype({"index": "int64"})

def _state(conn, kind, reviewer, index, key) -> dict | None:
    """The key's current entry (value, suggested_label, run_id), or None when inactive."""
    row = conn.execute(
        "SELECT value, suggested_label, run_id FROM review_state "
        "WHERE kind = ? AND reviewer = ? AND idx = ? AND key = ?",
        (kind, reviewer, index, key),
    ).fetchone()
    return None if row is None else dict(zip(("value", "suggested_label", "run_id"), row))


def _insert(conn, reviewer, run_id, index, kind, key, action, value=None, label=None, undoes=None) -> int:
    """Append one single-edit event; its id."""
    return conn.execute(
        "INSERT INTO review_events (at, reviewer, run_id, idx, kind, key, action, value, "
        "suggested_label, undoes) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        (now(), reviewer, run_id, index, kind, key, action, value, label, undoes),
    ).fetchone()[0]


def _new_batch(conn, reviewer, run_id, action, key, size) -> int:
    """Record one bulk action in `review_batches`; its id (the events' `batch`)."""
    return conn.execute(
        "INSERT INTO review_batches (at, reviewer, run_id, action, key, size) "
        "VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
        (now(), reviewer, run_id, action, key, size),
    ).fetchone()[0]


def _previous_events(conn, events: list[dict]) -> list[dict | None]:
    """For each event, the event before it on the same key (None when it was the first)."""
    if len(events) == 1:
        e = events[0]
        row = conn.execute(
            f"{_SELECT_EVENTS} WHERE kind = ? AND reviewer = ? AND idx = ? AND key = ? "
            "AND id < ? ORDER BY id DESC LIMIT 1",
            (e["kind"], e["reviewer"], e["idx"], e["key"], e["id"]),
        ).fetchone()
        return [_row_dict(row) if row is not None else None]
    # A bulk action's events in one query (its keys are distinct: one event per image).
    fields = ", ".join(f"p.{f}" for f in EVENT_FIELDS)
    rows = conn.execute(
        f"SELECT e.id, {fields} FROM review_events e LEFT JOIN review_events p ON p.id = ("
        "SELECT MAX(q.id) FROM review_events q WHERE q.kind = e.kind AND q.reviewer = e.reviewer "
        "AND q.idx = e.idx AND q.key = e.key AND q.id < e.id) WHERE e.batch = ?",
        (events[0]["batch"],),
    ).fetchall()
    by_id = {r[0]: (_row_dict(r[1:]) if r[1] is not None else None) for r in rows}
    return [by_id[e["id"]] for e in events]


def _revert(event: dict, prev: dict | None) -> tuple:
    """(run_id, idx, kind, key, action, value, suggested_label, undoes) of the event that
    restores `event`'s key to `prev`, its state before `event` (inactive when None)."""
    if prev is not None:
        action, value, label, run = prev["action"], prev["value"], prev["suggested_label"], prev["run_id"]
    else:
        action = "remove" if event["kind"] == "tag" else "clear"
        value, label, run = None, None, event["run_id"]
    return run, event["idx"], event["kind"], event["key"], action, value, label, event["id"]


# The table's columns in order; queries select them explicitly so rows map onto these.
EVENT_FIELDS = (
    "id", "at", "reviewer", "run_id", "idx", "kind", "key", "action", "value", "suggested_label", "undoes",
    "batch",
)
_SELECT_EVENTS = f"SELECT {', '.join(EVENT_FIELDS)} FROM review_events"


def _row_dict(row) -> dict:
    return dict(zip(EVENT_FIELDS, row))


def _public_event(e: dict) -> dict:
    """A stored event as a dict with the keys of `EVENT_COLUMNS` (None where not applicable)."""
    kind = e["kind"]
    return {
        "id": e["id"], "at": pd.Timestamp(e["at"]), "reviewer": e["reviewer"], "run_id": e["run_id"],
        "index": e["idx"], "kind": kind, "category": e["key"] if kind == "tag" else None,
        "action": e["action"], "note": e["value"] if kind == "note" else None,
        "verdict": e["value"] if kind == "mislabel" else None,
        "suggested_label": e["suggested_label"], "undoes": e["undoes"], "batch": e["batch"],
        "split": "train" if kind == "mislabel" and e["key"] == "train" else "test",
    }


def _as_index_list(indices) -> list:
    if isinstance(indices, (int, np.integer)):
        return [indices]
    return list(np.asarray(indices).reshape(-1).tolist())


def _typed(df: pd.DataFrame) -> pd.DataFrame:
    """Index as int64 and `at` as UTC timestamps (from ISO text, or integer microseconds)."""
    df["index"] = df["index"].astype("int64")
    if len(df) and isinstance(df["at"].iloc[0], (int, np.integer)):
        df["at"] = pd.to_datetime(df["at"].astype("int64"), unit="us", utc=True)
    else:
        df["at"] = pd.to_datetime(df["at"], utc=True, format="ISO8601")
    return df


def _ints(text: str | None) -> np.ndarray:
    """ "1,2,3" (a `concat_ints` of integers) as an int64 array, parsed in C."""
    if not text:
        return np.zeros(0, np.int64)
    return np.fromstring(text, dtype=np.int64, sep=",")


def _take_text(labels: list[str], codes: np.ndarray):
    """labels[codes] as a pandas array in pandas' default text dtype (no Python str per row)."""
    return pd.Series(labels, dtype=None if labels else object).array.take(codes)


def _tags_frame(groups: list[tuple]) -> pd.DataFrame:
    """The tags frame from (key, reviewer, run_id, count, indices, times) groups, sorted by key.

    A stable sort by index keeps the groups' (category, reviewer) order among an
    image's tags, so rows come out by index, category, reviewer.
    """
    counts = np.array([g[3] for g in groups], dtype=np.int64)
    index = np.concatenate([_ints(g[4]) for g in groups] + [np.zeros(0, np.int64)])
    at_us = np.concatenate([_ints(g[5]) for g in groups] + [np.zeros(0, np.int64)])
    order = np.argsort(index, kind="stable")
    group = np.repeat(np.arange(len(groups)), counts)[order]
    columns = {
        "index": index[order],
        **{name: _take_text([g[k] for g in groups], group) for k, name in enumerate(TAG_COLUMNS[1:4])},
        "at": pd.to_datetime(at_us[order], unit="us", utc=True),
    }
    return pd.DataFrame(columns, columns=TAG_COLUMNS)


def _events_frame(rows) -> pd.DataFrame:
    raw = pd.DataFrame(rows, columns=list(EVENT_FIELDS)).rename(columns={"idx": "index"})
    df = pd.DataFrame(
        {
            "id": raw["id"].astype("int64"),
            "at": raw["at"],
            "reviewer": raw["reviewer"],
            "run_id": raw["run_id"],
            "index": raw["index"],
            "kind": raw["kind"],
            "category": raw["key"].where(raw["kind"] == "tag"),
            "action": raw["action"],
            "note": raw["value"].where(raw["kind"] == "note"),
            "verdict": raw["value"].where(raw["kind"] == "mislabel"),
            "suggested_label": raw["suggested_label"].astype("Int64"),
            "undoes": raw["undoes"].astype("Int64"),
            "batch": raw["batch"].astype("Int64"),
            "split": np.where((raw["kind"] == "mislabel") & (raw["key"] == "train"), "train", "test"),
        },
        columns=EVENT_COLUMNS,
    )
    return _typed(df)
